"""`nurture experiments`: each experiment of the content with its figures per arm, its state and
its decision history; `--judge` records what the figures decide, as the scheduler does once a
day. Also the short per-variant block `nurture stats` shows under its step table."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence as Seq
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from nurture.cli.arguments import CommandError, Commands, instant_argument, say
from nurture.clock import utcnow
from nurture.config import Settings
from nurture.domain.experiments import HOLDOUT
from nurture.domain.model import Step

if TYPE_CHECKING:
    from rich.table import Table

    from nurture.services.experiments import ExperimentReport
    from nurture.store.experiments import HistoryEntry

ARM_HEADERS = ("arm", "sends", "pending", "conversions", "rate", "95% interval", "P(best)",
               "exp. loss", "P(> holdout)", "unsubscribed", "paused")
SHORT_HEADERS = ("variant", "sends", "conversions", "rate (95% interval)", "P(best)")


def window_text(window: timedelta) -> str:
    """7d, 36h: as the sequence files write a window."""
    hours = int(window.total_seconds() // 3600)
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def validate_line(sequence: str, step: Step, own_text: Seq[str]) -> str:
    """What `nurture sequences validate` says of an experiment: the shares, the metric, the rule of
    promotion, a pinned winner, and the locales whose readers the test leaves out."""
    experiment = step.experiment
    assert experiment is not None
    total = sum(variant.weight for variant in experiment.variants) or 1.0
    shares = [f"{variant.key} {round(100 * variant.weight / total, 1):g}%"
              for variant in experiment.variants]
    if experiment.holdout:
        shares.append(f"{HOLDOUT} {round(100 * experiment.holdout, 1):g}%")
    line = (f"experiment {experiment.key} on {sequence}/{step.key}: {' · '.join(shares)}; "
            f"metric {experiment.metric} within {window_text(experiment.window)}; "
            f"promote {experiment.promote}")
    if experiment.winner is not None:
        line += f"; winner pinned: {experiment.winner}"
    if own_text:
        line += f"; {', '.join(own_text)} readers stay out (they read their own text)"
    return line


def _share(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _arms(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The variants, then the holdout when there is one."""
    holdout = figures["holdout"]
    return [*figures["variants"], *([holdout] if holdout is not None else [])]


def arm_cells(arm: dict[str, Any]) -> list[str]:
    """One arm's row of the full table, in the order of ARM_HEADERS."""
    low, high = arm["interval"]
    guardrails = arm["guardrails"]
    return [arm["key"], f"{arm['sends']:,}", f"{arm['pending']:,}", f"{arm['conversions']:,}",
            _share(arm["rate"]), f"{low:.1%}–{high:.1%}", _share(arm["p_best"]),
            _share(arm["expected_loss"], 3), _share(arm["p_beats_holdout"]),
            f"{guardrails.get('unsubscribed', {}).get('count', 0):,}",
            f"{guardrails.get('paused', {}).get('count', 0):,}"]


def short_cells(arm: dict[str, Any]) -> list[str]:
    low, high = arm["interval"]
    return [arm["key"], f"{arm['sends']:,}", f"{arm['conversions']:,}",
            f"{arm['rate']:.1%} ({low:.1%}–{high:.1%})", _share(arm["p_best"])]


def heading(found: ExperimentReport) -> str:
    return (f"experiment {found.experiment.key} on {found.sequence.key}/{found.step.key}: "
            f"{found.status}")


def history_line(entry: HistoryEntry) -> str:
    return f"{entry.at:%Y-%m-%d %H:%M} UTC  {entry.kind}  {entry.variant}  {entry.reason}"


def _plain_table(headers: Seq[str], rows: Seq[Seq[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    return [indent + "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                               for i, (v, w) in enumerate(zip(line, widths, strict=True))).rstrip()
            for line in (headers, *rows)]


def _rich_table(title: str, headers: Seq[str], rows: Seq[Seq[str]]) -> Table:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", title_style="bold",
                  box=box.SIMPLE_HEAD, header_style="bold cyan")
    for index, header in enumerate(headers):
        table.add_column(escape(header), justify="left" if index == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def describe(found: ExperimentReport) -> list[str]:
    """The lines around the arms' table: what people get now, the metric, the rule's reason."""
    experiment = found.experiment
    return [f"  sending now: {found.sending}",
            f"  metric: {experiment.metric} within {window_text(experiment.window)}; promote "
            f"{experiment.promote}; running {found.running_for.total_seconds() / 86400:.1f} days"]


def print_reports(reports: Seq[ExperimentReport], *, terminal: bool) -> None:
    """Each experiment in full: the state, every arm's figures, the rule's reason, the history."""
    if not reports:
        say("(no experiment in the content)")
        return
    for found in reports:
        figures = found.as_dict()
        rows = [arm_cells(arm) for arm in _arms(figures)]
        if terminal:
            from rich.console import Console

            console = Console(highlight=False)
            console.print(_rich_table(heading(found), ARM_HEADERS, rows))
            for line in describe(found):
                console.print(line, markup=False)
        else:
            say(heading(found))
            for line in describe(found):
                say(line)
            for line in _plain_table(ARM_HEADERS, rows):
                say(line)
        say(f"  rule: {figures['reason']}")
        say("  history:" if found.history else "  history: (no decision yet)")
        for entry in found.history:
            say("    " + history_line(entry))
        say()


def print_variant_blocks(reports: Seq[ExperimentReport], *, terminal: bool) -> None:
    """Under `nurture stats`' step table: each experiment's variants, briefly."""
    for found in reports:
        figures = found.as_dict()
        rows = [short_cells(arm) for arm in _arms(figures)]
        title = f"{heading(found)} ({found.sending})"
        if terminal:
            from rich.console import Console

            Console(highlight=False).print(_rich_table(title, SHORT_HEADERS, rows))
            continue
        say()
        say(title)
        for line in _plain_table(SHORT_HEADERS, rows):
            say(line)


def cmd_experiments(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.cli.tables import for_a_person
    from nurture.services.experiments import judge_experiments, report
    from nurture.services.runtime import live_content
    from nurture.store.database import ensure_migrated, make_engine

    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    content = live_content(settings)
    now = args.at or utcnow()
    keys = set(args.experiment) or None
    known = {step.experiment.key for _, step in content.experiments if step.experiment is not None}
    if keys is not None and keys - known:
        raise CommandError(f"no experiment {', '.join(sorted(keys - known))} in the content "
                           f"(experiments: {', '.join(sorted(known)) or 'none'})")
    if args.judge:
        recorded = judge_experiments(engine, content, now)
        # With --json, stdout stays the one JSON document scripts read.
        write = sys.stderr.write if args.json else sys.stdout.write
        for entry in recorded:
            write(f"recorded: {entry.experiment_key} {history_line(entry)}\n")
        if not recorded:
            write("recorded: nothing new\n")
    reports = report(engine, content, now, keys)
    if args.json:
        say(json.dumps([found.as_dict() for found in reports], indent=2))
        return 0
    print_reports(reports, terminal=for_a_person())
    return 0


def register(commands: Commands) -> None:
    experiments = commands.add_parser("experiments", help="each experiment's figures per arm, "
                                      "its state and its decisions")
    experiments.add_argument("experiment", nargs="*", metavar="EXPERIMENT_KEY",
                             help="only these experiments (default: all of the content)")
    experiments.add_argument("--json", action="store_true")
    experiments.add_argument("--at", type=instant_argument, metavar="ISO",
                             help="judge the figures at this time instead of now, e.g. "
                             "2026-03-20T10:00:00Z")
    experiments.add_argument("--judge", action="store_true",
                             help="first record what the figures decide (winners, pins, removed "
                             "variants), as the scheduler does once a day")
    experiments.set_defaults(handler=cmd_experiments)
