"""What an experiment costs per email: drawing the arm and rendering the variant against rendering
the step as written (the sample's `next-steps`, every persona), and a claim that assigns (reading
earlier arms, writing the arm) against a plain claim of the same rows, on SQLite."""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, Options, brand, fmt_seconds, median, quiet_logging, result, row
from bench.render import DATE, links_for, persona_matrix

NAME = "experiments"
TARGET = 1.05
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _render_pass(library: Any, build: Any, jobs: list[tuple[Any, ...]], assign: Any) -> float:
    started = time.perf_counter()
    for sequence, step, recipient, links, message_id, subscriber_id in jobs:
        version = assign(step, subscriber_id)
        rendered = library.render(sequence, version, recipient, links, brand())
        build(rendered, to=recipient.email, message_id=message_id, links=links, date=DATE)
    return time.perf_counter() - started


def _render(options: Options) -> tuple[float, float, float, int]:
    """Seconds per email: the step as written, its variant b (a different email, as costly to
    render as any), and drawing the arm and picking the version; and the emails per pass."""
    from nurture.content.library import load_content
    from nurture.engine.assignment import Assigner
    from nurture.rendering.mime import build_message

    content = load_content(ROOT / "sequences", ROOT / "templates")
    sequence, step = next((s, st) for s, st in content.experiments if s.key == "sample")
    assert step.experiment is not None
    experiment, assigner = step.experiment, Assigner("bench-secret-key")
    recipients = persona_matrix()[: options.personas] if options.personas else persona_matrix()
    jobs = [(sequence, step, recipient, links_for(index), f"<x{index}@bench.test>", uuid.UUID(int=index))
            for index, recipient in enumerate(recipients)] * options.pick(8, 3)

    def as_written(step: Any, subscriber_id: uuid.UUID) -> Any:
        return step

    def as_b(step: Any, subscriber_id: uuid.UUID) -> Any:
        return step.with_variant("b")

    library = content.library
    _render_pass(library, build_message, jobs, as_b)  # warm the variant's structures too
    plain, variant, draws = [], [], []
    for _ in range(options.pick(7, 3)):  # alternated, so drift hits both alike
        plain.append(_render_pass(library, build_message, jobs, as_written))
        variant.append(_render_pass(library, build_message, jobs, as_b))
        started = time.perf_counter()
        for _, tested, _, _, _, subscriber_id in jobs:
            tested.with_variant(assigner.arm(subscriber_id, experiment))
        draws.append(time.perf_counter() - started)
    count = len(jobs)
    return median(plain) / count, median(variant) / count, median(draws) / count, count


def _tested_welcome(folder: Path) -> tuple[Path, Path]:
    """The shipped content with the sample's experiment moved onto its first step, so that every
    claimed row is under an experiment: the claim's worst case."""
    import shutil

    sequences, templates = folder / "sequences", folder / "templates"
    shutil.copytree(ROOT / "sequences", sequences)
    shutil.copytree(ROOT / "templates", templates)
    path = sequences / "sample.yaml"
    text = path.read_text()
    start = text.index("    experiment:\n")
    block = text[start:].split("\n\n", 1)[0].rstrip("\n") + "\n"
    text = text.replace(block, "")
    anchor = "    discreet_preheader: A short hello and how to change your settings\n"
    path.write_text(text.replace(anchor, anchor + block, 1))
    return sequences, templates


def forget_arms(engine: Any) -> None:
    from sqlalchemy import update

    from nurture.store.models import delivery_table

    with engine.begin() as conn:
        conn.execute(update(delivery_table).values(experiment_key=None, variant=None,
                                                   assigned_by=None))


def _claims(options: Options) -> tuple[float, float, int]:
    """(plain, assigning) seconds per claimed row, every row under an experiment: claim the same
    rows, release, again; the assigning claim draws and writes the arms each time."""
    from nurture.content.library import load_content
    from nurture.domain.people import make_person
    from nurture.engine.assignment import Assigner
    from nurture.engine.enrollment import enroll
    from nurture.engine.ports import ConsentRecord
    from nurture.store.database import make_engine, upgrade
    from nurture.store.sql.store import SqlStore

    count = options.pick(2000, 500)
    with tempfile.TemporaryDirectory() as folder:
        content = load_content(*_tested_welcome(Path(folder)))
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        store = SqlStore(make_engine(url))
        people = [make_person(f"b{index}@example.org", time_zone="UTC") for index in range(count)]
        enroll(store, content, people, "sample", ConsentRecord(kind="operator", source="bench"),
               NOW - timedelta(days=1))
        assign = Assigner("bench-secret-key").for_claims(content, {})
        plain, assigning = [], []
        for _ in range(options.pick(7, 3)):
            for hook, times in ((None, plain), (assign, assigning)):
                started = time.perf_counter()
                claimed = store.claim_due(now=NOW, owner="bench", limit=count,
                                          lease=timedelta(minutes=5), assign=hook)
                times.append(time.perf_counter() - started)
                store.release([claim.id for claim in claimed], owner="bench")
                if hook is not None:  # unassigned again, so every round draws and writes
                    forget_arms(store.engine)
    return median(plain) / count, median(assigning) / count, count


def _judging(options: Options) -> tuple[float, float]:
    """Seconds per judge() of two and of four variants, each with a holdout."""
    from nurture.domain.experiments import StoppingRule
    from nurture.engine.judging import ArmCounts, judge

    two = [ArmCounts("a", 3000, 150, 10, 3), ArmCounts("b", 3000, 170, 12, 2)]
    four = [*two, ArmCounts("c", 3000, 160, 9, 4), ArmCounts("d", 3000, 140, 15, 1)]
    holdout, rounds = ArmCounts("holdout", 500, 20), options.pick(200, 50)
    timings = []
    for arms in (two, four):
        started = time.perf_counter()
        for _ in range(rounds):
            judge(arms, holdout, StoppingRule(), timedelta(days=30))
        timings.append((time.perf_counter() - started) / rounds)
    return timings[0], timings[1]


def run(options: Options) -> dict[str, Any]:
    quiet_logging()
    plain, variant, draw, emails = _render(options)
    tested = variant + draw
    claim_plain, claim_assigning, rows = _claims(options)
    judge_two, judge_four = _judging(options)
    render_ratio, claim_ratio = tested / plain, claim_assigning / claim_plain
    details = {"render_s_per_email": plain, "render_variant_s_per_email": variant,
               "draw_s_per_email": draw,
               "claim_s_per_row": claim_plain, "claim_assigning_s_per_row": claim_assigning,
               "emails_per_pass": emails, "claimed_rows": rows,
               "judge_two_variants_s": judge_two, "judge_four_variants_s": judge_four}
    rows_out = [
        row("experiments: draw the arm + render the variant, per email",
            measured=f"{fmt_seconds(tested)} ({fmt_seconds(draw)} drawing)",
            baseline=f"{fmt_seconds(plain)} as written", ratio=render_ratio, target=f"≤ {TARGET:g}×",
            met=render_ratio <= TARGET, measured_value=tested, baseline_value=plain, unit="s/email"),
        row("experiments: a claim that assigns, per row under an experiment (SQLite)",
            measured=fmt_seconds(claim_assigning), baseline=f"{fmt_seconds(claim_plain)} plain",
            ratio=claim_ratio, target="tracked (e2e shows it per email)", met=None,
            measured_value=claim_assigning, baseline_value=claim_plain, unit="s/row"),
    ]
    notes = [f"judge(): {fmt_seconds(judge_two)} for two variants and a holdout, "
             f"{fmt_seconds(judge_four)} for four (once a day per experiment)",
             f"render: the sample's next-steps for {emails} persona renders a pass, alternated; "
             f"claims: {rows} rows claimed and released, alternated"]
    return result(NAME, rows_out, details, notes)
