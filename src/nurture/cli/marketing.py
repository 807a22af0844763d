"""Marketers' commands: preview, timeline, send-test (each of a step as written or as one variant
of its experiment) and stats (with the experiments of the sequences shown)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import json
import sys
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nurture.cli.arguments import EXIT_USAGE, CommandError, Commands, say
from nurture.clock import parse_instant, utcnow
from nurture.config import Settings
from nurture.content.library import Content
from nurture.content.personas import Persona, PersonaInvalid, parse_persona
from nurture.domain.experiments import HOLDOUT
from nurture.domain.model import Sequence, Step
from nurture.engine.ports import OutgoingMessage
from nurture.services.previews import VariantUnknown, as_variant, render_step

if TYPE_CHECKING:
    from nurture.engine.planner import TimelineEntry
    from nurture.services.experiments import ExperimentReport


def _content(settings: Settings) -> Content:
    from nurture.services.runtime import live_content

    return live_content(settings)


def _persona(args: argparse.Namespace) -> Persona:
    try:
        return parse_persona(args.persona, discreet=args.discreet, locale=args.locale,
                             time_zone=getattr(args, "time_zone", None))
    except PersonaInvalid as error:
        raise CommandError(str(error)) from None


def _steps(sequence: Sequence, key: str | None) -> list[Step]:
    if key is None:
        return list(sequence.steps)
    step = sequence.step(key)
    if step is None:
        known = ", ".join(s.key for s in sequence.steps)
        raise CommandError(f"sequence '{sequence.key}' has no step '{key}' (steps: {known})")
    return [step]


def _variant(sequence: Sequence, steps: list[Step], key: str | None, *,
             holdout: bool = False) -> list[Step]:
    return steps if key is None else as_variant(sequence, steps, key, holdout=holdout)


def _usage(error: VariantUnknown) -> int:
    sys.stderr.write(f"nurture: {error}\n")
    return EXIT_USAGE


def cmd_preview(settings: Settings, args: argparse.Namespace) -> int:
    content = _content(settings)
    sequence = content.sequence(args.sequence)
    persona = _persona(args)
    try:
        steps = _variant(sequence, _steps(sequence, args.step), args.variant)
    except VariantUnknown as error:
        return _usage(error)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for step in steps:
        if step.when is not None and not step.when.matches(persona.profile):
            rows.append((step.key, "(skipped for this persona: " + step.when.describe() + ")"))
            say(f"{step.key}: skipped for this persona ({step.when.describe()})")
            continue
        data, subject, body_html, text = render_step(settings, content, sequence, step, persona,
                                                     to=persona.email, now=utcnow())
        name = step.key if step.variant is None else f"{step.key}-{step.variant}"
        (out / f"{name}.html").write_text(body_html, encoding="utf-8")
        (out / f"{name}.txt").write_text(text, encoding="utf-8")
        (out / f"{name}.eml").write_bytes(data)
        rows.append((name, subject))
        say(f"{name}: {subject}  ->  {out / name}.html|.txt|.eml")
    items = "\n".join(
        f'<li><a href="{html.escape(key)}.html">{html.escape(key)}</a>: {html.escape(subject)} '
        f'(<a href="{html.escape(key)}.txt">text</a>, <a href="{html.escape(key)}.eml">.eml</a>)</li>'
        for key, subject in rows)
    (out / "index.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>{html.escape(sequence.name)}</title>"
        f"<h1>{html.escape(sequence.name)}</h1><p>{html.escape(persona.label())}</p><ul>{items}</ul>",
        encoding="utf-8")
    if args.serve:
        _serve(out, args.port)
    return 0


def _serve(directory: Path, port: int) -> None:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        say(f"previews at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


def _timeline_rows(entries: list[TimelineEntry], start: datetime, time_zone: str,
                   variants: dict[str, Step]) -> list[dict[str, Any]]:
    """One row per step; `variants` holds the tested steps as the variant asked for, the holdout
    skipped: its delay still elapses, so the next step keeps its time."""
    from zoneinfo import ZoneInfo

    rows: list[dict[str, Any]] = []
    start_offset = start.astimezone(ZoneInfo(time_zone)).utcoffset()
    for entry in entries:
        notes, skipped = [], entry.skipped_reason
        tested = variants.get(entry.step_key)
        if tested is not None and skipped is None and tested.variant is None:
            assert tested.experiment is not None
            skipped = f"{HOLDOUT} of experiment {tested.experiment.key}"
        if skipped:
            notes.append("skipped: " + skipped)
        elif tested is not None:
            notes.append(f"variant {tested.variant}: '{tested.subject}'")
        if entry.immediate:
            notes.append("at once after confirming")
        if entry.moved_by_window:
            notes.append("moved into the send window")
        if entry.due_at_local.utcoffset() != start_offset:
            notes.append(f"DST: UTC offset {entry.due_at_local.strftime('%z')} "
                         "differs from the start")
        rows.append({"step": entry.step_key,
                     "local": entry.due_at_local.strftime("%a %Y-%m-%d %H:%M %Z"),
                     "utc": entry.due_at_utc.strftime("%Y-%m-%d %H:%M UTC"),
                     "sent": skipped is None, "note": "; ".join(notes)}
                    | ({"variant": tested.variant or HOLDOUT} if tested is not None else {}))
    return rows


def cmd_timeline(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.engine.planner import timeline

    content = _content(settings)
    sequence = content.sequence(args.sequence)
    try:
        tested = _variant(sequence, [s for s in sequence.steps if s.experiment is not None]
                          or list(sequence.steps), args.variant, holdout=True)
    except VariantUnknown as error:
        return _usage(error)
    persona = _persona(args)
    start = args.start
    if start.tzinfo is None:
        from zoneinfo import ZoneInfo

        start = start.replace(tzinfo=ZoneInfo(persona.profile.time_zone))
    joined_by = args.joined_by or ("confirming" if sequence.key in content.confirmation_starts
                                   else "operator")
    entries = timeline(sequence, persona.profile, start=start,
                       at_confirmation=joined_by == "confirming")
    variants = {s.key: s for s in tested if s.experiment is not None} if args.variant else {}
    rows = _timeline_rows(entries, start, persona.profile.time_zone, variants)
    if args.json:
        say(json.dumps(rows, indent=2))
        return 0
    say(f"{sequence.name} for {persona.label()} in {persona.profile.time_zone}, "
           f"starting {start.isoformat()}"
        + (" by confirming their address" if joined_by == "confirming" else " (enrolled by an "
           "operator or an import)"))
    width = max((len(r["step"]) for r in rows), default=4)
    for row in rows:
        local = row["local"] if row["sent"] else "-"
        say(f"  {row['step']:<{width}}  {local:<26} {row['utc'] if row['sent'] else '':<21} "
               f"{row['note']}")
    return 0


def cmd_send_test(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.domain.people import PersonInvalid, normalize_email
    from nurture.smtp.factory import transport_from_settings

    try:
        to = normalize_email(args.to)
    except PersonInvalid as error:
        raise CommandError(str(error)) from None
    content = _content(settings)
    sequence = content.sequence(args.sequence)
    try:
        [step] = _variant(sequence, _steps(sequence, args.step), args.variant)
    except VariantUnknown as error:
        return _usage(error)
    persona = _persona(args)
    data, subject, _, _ = render_step(settings, content, sequence, step, persona, to=to,
                                      now=utcnow(), subject_prefix="[TEST] ")
    transport = transport_from_settings(settings)
    try:
        result = transport.send(OutgoingMessage(envelope_from=parseaddr(settings.sender)[1],
                                                recipients=(to,), data=data))
    finally:
        transport.close()
    if not result.ok:
        raise CommandError(f"the SMTP server refused the test email: {result.code} "
                             f"{result.message}")
    say(f"sent test email '{subject}' ({len(data)} bytes); it is not recorded in the results")
    return 0


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.store.database import ensure_migrated, make_engine
    from nurture.store.stats import DELIVERY_COLUMNS, ordered, step_stats, step_stats_by_locale

    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    content = _content(settings)
    if args.sequence:
        content.sequence(args.sequence)
    order = {key: [s.key for s in seq.steps] for key, seq in content.sequences.items()}
    since = parse_instant(args.since) if args.since else None
    if args.by_locale:
        found = step_stats_by_locale(engine, sequence=args.sequence, since=since)
        rows = ordered(found if args.locale is None else
                       {k: v for k, v in found.items() if v.locale == args.locale}, order)
    else:
        rows = ordered(step_stats(engine, sequence=args.sequence, since=since,
                                  locale=args.locale), order)
    from nurture.services.experiments import report

    tested = [found for found in report(engine, content, utcnow())
              if args.sequence in (None, found.sequence.key)]
    if args.json:
        say(json.dumps([_with_experiments(r.as_dict(), r.sequence, r.step, tested) for r in rows],
                       indent=2))
        return 0
    from nurture.cli.experiments import print_variant_blocks
    from nurture.cli.tables import for_a_person, print_stats

    if for_a_person():
        # One table per sequence and locale: each locale's funnel on its own.
        print_stats([dataclasses.replace(r, sequence=f"{r.sequence} ({r.locale})")
                     for r in sorted(rows, key=lambda r: (r.sequence, r.locale or ""))]
                    if args.by_locale else rows)
        print_variant_blocks(tested, terminal=True)
        return 0
    by = ["locale"] if args.by_locale else []
    headers = ["sequence", "step", *by, *DELIVERY_COLUMNS, "unsubscribed", "paused", "converted"]
    table = [[r.sequence, r.step, *([r.locale or ""] if args.by_locale else []),
              *(str(r.counts.get(c, 0)) for c in DELIVERY_COLUMNS),
              str(r.unsubscribed_after), str(r.paused_after), str(r.converted_after)]
             for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h)
              for i, h in enumerate(headers)]
    say("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in table:
        say("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not table:
        say("(no deliveries yet)")
    print_variant_blocks(tested, terminal=False)
    return 0


def _with_experiments(row: dict[str, Any], sequence: str, step: str,
                      tested: list[ExperimentReport]) -> dict[str, Any]:
    """A tested step's row gains its experiment's figures; the rows stay the list scripts read."""
    found = [r.as_dict() for r in tested if (r.sequence.key, r.step.key) == (sequence, step)]
    return row | {"experiments": found} if found else row


def _persona_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--persona", action="append", metavar="KEY=VALUE",
                        help="reasons=stigma,fear_of_blame name=Asha locale=en-IN discreet=true")
    parser.add_argument("--discreet", action="store_true", help="preview discreet mode")
    parser.add_argument("--locale", help="e.g. en-IN or hi-IN: the texts and locale data of that "
                        "locale (falling back as a subscriber's would)")


def _variant_option(parser: argparse.ArgumentParser, *, holdout: bool = False) -> None:
    parser.add_argument("--variant", metavar="KEY",
                        help="the step under an experiment as this variant of it, e.g. b"
                        + (" (holdout: the step skipped)" if holdout else ""))


def register(commands: Commands) -> None:
    preview = commands.add_parser("preview", help="render each step to HTML, text and .eml files")
    preview.add_argument("sequence")
    preview.add_argument("step", nargs="?")
    _persona_options(preview)
    _variant_option(preview)
    preview.add_argument("--out", default="var/preview", help="folder for the files")
    preview.add_argument("--serve", action="store_true", help="serve the folder on localhost")
    preview.add_argument("--port", type=int, default=8030)
    preview.set_defaults(handler=cmd_preview)

    timeline = commands.add_parser("timeline", help="when each step would go out for a persona")
    timeline.add_argument("sequence")
    _persona_options(timeline)
    timeline.add_argument("--start", required=True, type=_local_instant,
                          help="enrollment time, e.g. 2026-03-06T20:00 (local to --time-zone)")
    timeline.add_argument("--time-zone", help="IANA zone, e.g. America/New_York")
    timeline.add_argument("--joined-by", choices=("confirming", "operator"),
                          help="how the person joins: by confirming their address (the default "
                          "for sequences a confirmation starts; an immediate first step goes at "
                          "once), or by `nurture enroll` or an import (the first step keeps the "
                          "send window)")
    timeline.add_argument("--json", action="store_true")
    _variant_option(timeline, holdout=True)
    timeline.set_defaults(handler=cmd_timeline)

    send_test = commands.add_parser("send-test", help="send one step to an address, marked as a "
                                    "test and left out of the results")
    send_test.add_argument("sequence")
    send_test.add_argument("step")
    send_test.add_argument("--to", required=True)
    _persona_options(send_test)
    _variant_option(send_test)
    send_test.set_defaults(handler=cmd_send_test)

    stats = commands.add_parser("stats", help="per-step results")
    stats.add_argument("sequence", nargs="?")
    stats.add_argument("--since", help="only enrollments and deliveries since this date")
    stats.add_argument("--json", action="store_true")
    stats.add_argument("--locale", help="only subscribers in this locale, e.g. hi-IN")
    stats.add_argument("--by-locale", action="store_true",
                       help="a row per step and subscribers' locale")
    stats.set_defaults(handler=cmd_stats)


def _local_instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not an ISO 8601 time; write e.g. 2026-03-06T20:00") from None
