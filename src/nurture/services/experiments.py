"""Experiments as marketers see them: each one's figures and state, judged at `now`; and the judging
run (by the scheduler, or `nurture experiments --judge`) that records winners, pins and removed
variants in the history."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from nurture.content.library import Content
from nurture.domain.experiments import HOLDOUT, Experiment
from nurture.domain.model import Sequence, Step
from nurture.engine.judging import ArmCounts, ArmResult, Judgement, judge
from nurture.store.experiments import (
    PINNED,
    VARIANT_REMOVED,
    WINNER,
    ArmTally,
    HistoryEntry,
    arm_tallies,
    assigned_arms,
    history,
    record_history,
)

log = logging.getLogger(__name__)

RUNNING, DECLARED, PINNED_STATE = "running", "winner declared", "pinned"


@dataclass(frozen=True)
class ExperimentReport:
    sequence: Sequence
    step: Step
    experiment: Experiment
    judgement: Judgement
    tallies: dict[str, ArmTally]
    history: tuple[HistoryEntry, ...]
    running_for: timedelta

    @property
    def decided(self) -> HistoryEntry | None:
        return next((entry for entry in self.history if entry.kind == WINNER), None)

    @property
    def status(self) -> str:
        if self.experiment.winner is not None:
            return PINNED_STATE
        return DECLARED if self.decided is not None else RUNNING

    @property
    def sending(self) -> str:
        """What people not yet assigned get now."""
        if self.experiment.winner is not None:
            return f"everyone gets {self.experiment.winner} (pinned)"
        decided = self.decided
        if decided is not None and self.experiment.auto_promote:
            return f"everyone gets {decided.variant} (promoted)"
        return "people are assigned by weight" + (" and holdout" if self.experiment.holdout else "")

    def as_dict(self) -> dict[str, Any]:
        judgement = self.judgement
        decided = self.decided
        return {
            "experiment": self.experiment.key, "sequence": self.sequence.key,
            "step": self.step.key, "status": self.status, "sending": self.sending,
            "metric": self.experiment.metric,
            "window_hours": self.experiment.window.total_seconds() / 3600,
            "holdout_share": self.experiment.holdout, "promote": self.experiment.promote,
            "pinned": self.experiment.winner, "running_days": self.running_for.total_seconds() / 86400,
            "leader": judgement.leader, "rule_winner": judgement.winner, "reason": judgement.reason,
            "decision": decided.as_dict() if decided is not None else None,
            "variants": [self._arm(arm) for arm in judgement.arms],
            "holdout": self._arm(judgement.holdout) if judgement.holdout is not None else None,
            "history": [entry.as_dict() for entry in self.history],
        }

    def _arm(self, arm: ArmResult) -> dict[str, Any]:
        tally = self.tallies.get(arm.key, ArmTally())
        variant = self.experiment.variant(arm.key)
        return {
            "key": arm.key, "weight": variant.weight if variant is not None else None,
            "sends": arm.exposed, "pending": tally.pending, "conversions": arm.converted,
            "rate": arm.rate, "interval": [arm.interval.low, arm.interval.high],
            "p_best": arm.p_best, "expected_loss": arm.expected_loss,
            "p_beats_holdout": arm.p_beats_holdout,
            "clicks": tally.clicked,
            "guardrails": {name: {"count": getattr(tally, name), "rate": found.rate,
                                  "p_worse": found.p_worse}
                           for name, found in arm.guardrails.items()},
        }


def _counts(key: str, tally: ArmTally | None) -> ArmCounts:
    tally = tally or ArmTally()
    return ArmCounts(key, tally.exposed, tally.converted, tally.unsubscribed, tally.paused)


def report(engine: Engine, content: Content, now: datetime,
           keys: set[str] | None = None) -> list[ExperimentReport]:
    """Every experiment of the content (or those named), judged at `now`."""
    reports: list[ExperimentReport] = []
    tested = [(s, st) for s, st in content.experiments
              if st.experiment is not None and (keys is None or st.experiment.key in keys)]
    past = history(engine, [st.experiment.key for _, st in tested if st.experiment is not None])
    for sequence, step in tested:
        experiment = step.experiment
        assert experiment is not None
        tallies = arm_tallies(engine, experiment.key, metric=experiment.metric,
                              window=experiment.window, now=now)
        starts = [t.first_exposed_at for t in tallies.values() if t.first_exposed_at is not None]
        running_for = now - min(starts) if starts else timedelta(0)
        judgement = judge([_counts(key, tallies.get(key)) for key in experiment.variant_keys],
                          _counts(HOLDOUT, tallies.get(HOLDOUT)) if experiment.holdout else None,
                          experiment.stop, running_for)
        reports.append(ExperimentReport(
            sequence, step, experiment, judgement, tallies,
            tuple(entry for entry in past if entry.experiment_key == experiment.key), running_for))
    return reports


def judge_experiments(engine: Engine, content: Content, now: datetime) -> list[HistoryEntry]:
    """Record what the figures and the files decide now; returns the entries that are new.

    A winner is recorded once per experiment, whether or not it is promoted: the marketer sees
    it with its figures and can pin it. Several schedulers may judge at once; the database keeps
    one entry of each."""
    recorded: list[HistoryEntry] = []
    for found in report(engine, content, now):
        for entry in _new_entries(engine, found, content.version, now):
            if record_history(engine, entry):
                log.info("experiment history", extra={"experiment": entry.experiment_key,
                                                      "kind": entry.kind, "variant": entry.variant})
                recorded.append(entry)
    return recorded


def _new_entries(engine: Engine, found: ExperimentReport, version: str,
                 now: datetime) -> list[HistoryEntry]:
    experiment, judgement = found.experiment, found.judgement
    known = {(entry.kind, entry.variant) for entry in found.history}
    figures = found.as_dict()
    figures.pop("history")

    def entry(kind: str, variant: str, reason: str) -> HistoryEntry:
        return HistoryEntry(experiment.key, found.sequence.key, found.step.key, kind, variant,
                            now, version, reason, figures)

    entries: list[HistoryEntry] = []
    if experiment.winner is not None and (PINNED, experiment.winner) not in known:
        entries.append(entry(PINNED, experiment.winner,
                             f"{experiment.winner} pinned in {found.sequence.source.name}"))
    elif experiment.winner is None and found.decided is None and judgement.winner is not None:
        entries.append(entry(WINNER, judgement.winner, judgement.reason))
    for arm in sorted(assigned_arms(engine, experiment.key) - {HOLDOUT, *experiment.variant_keys}):
        if (VARIANT_REMOVED, arm) not in known:
            entries.append(entry(VARIANT_REMOVED, arm,
                                 f"variant {arm} of experiment {experiment.key} was removed: its "
                                 f"people get step {found.step.key} as written"))
    return entries
