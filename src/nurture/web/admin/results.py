"""The results page: per sequence and step, the deliveries by status and what people did after each
step, over a chosen range of dates and for one locale or all, with a funnel chart of the emails
sent and the totals of each locale; and each experiment of a sequence shown, with its rate per
arm, its state and its decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from nurture.domain.model import Sequence
from nurture.services.experiments import ExperimentReport, report
from nurture.store.admin_views import step_stats_between, step_stats_by_locale_between
from nurture.store.experiments import PINNED
from nurture.store.stats import DELIVERY_COLUMNS, StepStats
from nurture.web.admin.context import Admin, AdminContext, SignedIn, first, page, strings
from nurture.web.charts import ArmBar, FunnelStage, experiment_svg, funnel_svg, percent_of

router = APIRouter(prefix="/admin", include_in_schema=False)


@dataclass(frozen=True)
class StatsRow:
    step: str
    counts: tuple[int, ...]
    unsubscribed_after: int
    paused_after: int
    converted_after: int
    share: str
    known: bool


@dataclass(frozen=True)
class ExperimentResult:
    key: str
    step: str
    status: str
    sending: str
    chart: Markup
    decision: str
    """The winner with the date it was declared, or what the rule still waits for."""
    decided_at: str


@dataclass(frozen=True)
class SequenceResults:
    key: str
    name: str
    rows: tuple[StatsRow, ...]
    chart: Markup
    sent: int
    experiments: tuple[ExperimentResult, ...] = ()


def experiment_result(found: ExperimentReport) -> ExperimentResult:
    judgement = found.judgement
    arms = [*judgement.arms, *([judgement.holdout] if judgement.holdout is not None else [])]
    bars = [ArmBar(arm.key, arm.exposed, arm.converted, arm.rate, arm.interval.low,
                   arm.interval.high, arm.p_best) for arm in arms]
    key = found.experiment.key
    decided = found.decided
    pinned = found.experiment.winner
    if pinned is not None:
        entry = next((e for e in found.history if (e.kind, e.variant) == (PINNED, pinned)), None)
        at = "" if entry is None else f"{entry.at:%Y-%m-%d}"
        decision = f"{pinned} is pinned in the sequence file" + (f" since {at}." if at else ".")
    elif decided is not None:
        at = f"{decided.at:%Y-%m-%d}"
        decision = f"{decided.variant} was declared the winner on {at}: {decided.reason}"
    else:
        decision, at = judgement.reason, ""
    return ExperimentResult(
        key=key, step=found.step.key, status=found.status, sending=found.sending,
        chart=experiment_svg(f"Conversion rate per arm: {key} on step {found.step.key}", bars,
                             chart_id=f"experiment-{key}"),
        decision=decision, decided_at=at)


@dataclass
class DateRange:
    since: date | None = None
    until: date | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def since_at(self) -> datetime | None:
        return None if self.since is None else datetime.combine(self.since, datetime.min.time(), UTC)

    @property
    def until_before(self) -> datetime | None:
        """The end as an exclusive instant: `until` is a whole (UTC) day, included."""
        if self.until is None:
            return None
        return datetime.combine(self.until + timedelta(days=1), datetime.min.time(), UTC)


def parse_range(fields: Mapping[str, list[str]]) -> DateRange:
    found = DateRange()
    for name in ("since", "until"):
        raw = first(fields, name)
        if not raw:
            continue
        try:
            setattr(found, name, date.fromisoformat(raw))
        except ValueError:
            found.errors[name] = "Write the date as YYYY-MM-DD, e.g. 2026-03-01."
    if found.since and found.until and found.until < found.since:
        found.errors["until"] = "The end date must not be before the start date."
        found.until = None
    return found


def sequence_results(key: str, sequence: Sequence | None,
                     stats: Mapping[tuple[str, str], StepStats]) -> SequenceResults:
    """One sequence's rows in its step order (steps no longer in the content last) and its chart."""
    order = [step.key for step in sequence.steps] if sequence is not None else []
    order += sorted(step for seq, step in stats if seq == key and step not in order)
    rows_stats = [stats.get((key, step)) or StepStats(key, step) for step in order]
    first_sent = rows_stats[0].counts.get("sent", 0) if rows_stats else 0
    rows = tuple(
        StatsRow(step=row.step, counts=tuple(row.counts.get(c, 0) for c in DELIVERY_COLUMNS),
                 unsubscribed_after=row.unsubscribed_after, paused_after=row.paused_after,
                 converted_after=row.converted_after,
                 share=percent_of(row.counts.get("sent", 0), first_sent),
                 known=sequence is not None and sequence.step(row.step) is not None)
        for row in rows_stats)
    stages = [FunnelStage(row.step, row.counts.get("sent", 0),
                          f"{row.unsubscribed_after} unsubscribed after"
                          if row.unsubscribed_after else "")
              for row in rows_stats]
    name = sequence.name if sequence is not None else key
    return SequenceResults(
        key=key, name=name, rows=rows, sent=sum(stage.value for stage in stages),
        chart=funnel_svg(f"Emails sent per step: {name}", stages, chart_id=f"funnel-{key}"))


@dataclass(frozen=True)
class LocaleTotals:
    """One locale's totals over the sequences shown: how a translation does beside the default."""

    locale: str
    sent: int
    unsubscribed_after: int
    converted_after: int


def locale_totals(stats: Mapping[tuple[str, str, str], StepStats]) -> list[LocaleTotals]:
    totals: dict[str, list[int]] = {}
    for (locale, _, _), row in stats.items():
        entry = totals.setdefault(locale, [0, 0, 0])
        entry[0] += row.counts.get("sent", 0)
        entry[1] += row.unsubscribed_after
        entry[2] += row.converted_after
    return [LocaleTotals(locale, *values) for locale, values in sorted(totals.items())]


def results_context(admin: AdminContext, chosen: str | None, dates: DateRange,
                    locale: str | None = None) -> dict[str, Any]:
    content = admin.content()
    engine = admin.runtime.engine
    stats = step_stats_between(engine, sequence=chosen, since=dates.since_at,
                               until=dates.until_before, locale=locale)
    by_locale = step_stats_by_locale_between(engine, sequence=chosen, since=dates.since_at,
                                             until=dates.until_before)
    by_locale = {key: row for key, row in by_locale.items() if key[1] != "system"}
    keys = sorted({k for k in content.sequences if k != "system"} | {seq for seq, _ in stats})
    if chosen is not None:
        keys = [k for k in keys if k == chosen]
    tested = report(engine, content, admin.clock(), None)
    results = [replace(sequence_results(key, content.sequences.get(key), stats),
                       experiments=tuple(experiment_result(found) for found in tested
                                         if found.sequence.key == key))
               for key in keys]
    languages = content.library.locales.languages()
    locales = sorted(set(languages) | content.library.translations.locales
                     | {key[0] for key in by_locale})
    return {"results": results, "columns": DELIVERY_COLUMNS,
            "all_sequences": sorted(k for k in content.sequences if k != "system"),
            "locale_totals": locale_totals(by_locale),
            "all_locales": {key: languages[key].name if key in languages else key
                            for key in locales}}


@router.api_route("/results", methods=["GET", "HEAD"])
async def results(request: Request, admin: Admin, user: SignedIn) -> Response:
    fields = strings(request.query_params)
    dates = parse_range(fields)
    chosen = first(fields, "sequence") or None
    # Any text is harmless here: it is only compared with the subscribers' locale column.
    locale = (first(fields, "locale") or "")[:35] or None
    context = await run_in_threadpool(results_context, admin, chosen, dates, locale)
    return page(admin, request, "results.html", user=user, section="results",
                status=422 if dates.errors else 200, errors=dates.errors,
                since=first(fields, "since") or "", until=first(fields, "until") or "",
                chosen=chosen or "", chosen_locale=locale or "", **context)
