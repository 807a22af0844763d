"""Benchmark 1, render: the naive path against ours, over the shipped sequences and a persona matrix.

naive: TemplateLibrary.render_naive (Jinja with the real values, premailer.transform every time)
       then build_message_reference (the standard library's EmailMessage, to bytes).
ours:  TemplateLibrary.render (cached inlined structure, escaped values filled in) then build_message.
Both must give the same HTML and text, and equivalent messages: parsed back, the same headers (the
random MIME boundary aside) and the same text and HTML parts. Ours is timed with a warm cache (a
cold pass is reported apart) and fresh links on every pass; naive has no cache.
"""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    BASE_URL,
    ROOT,
    TRICKY_NAME,
    Options,
    brand,
    fmt_seconds,
    median,
    quiet_logging,
    result,
    row,
)

NAME = "render"
TARGET_RATIO = 20.0
_BOUNDARY = re.compile(rb"=_[0-9a-f]{32}")
DATE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def persona_matrix() -> list[Any]:
    """Every single hesitation, all of them and none; discreet or not; no name, a name, a name
    full of markup; two locales (the same matrix as the fast-path equivalence test)."""
    from nurture.domain.model import Profile
    from nurture.domain.reasons import KNOWN_REASONS
    from nurture.rendering.types import Recipient

    reason_sets = [frozenset({reason}) for reason in sorted(KNOWN_REASONS)]
    reason_sets += [frozenset(KNOWN_REASONS), frozenset()]
    recipients = []
    for index, (reasons, discreet, name, locale) in enumerate(
        itertools.product(reason_sets, (False, True), (None, "Asha", TRICKY_NAME), ("en", "en-IN"))
    ):
        profile = Profile(hesitations=reasons, discreet=discreet, locale=locale)
        recipients.append(Recipient(email=f"p{index}@example.org", first_name=name, profile=profile))
    return recipients


def links_for(index: int, run: int = 0) -> Any:
    from nurture.rendering.types import Links

    # Distinct per person, so a cached structure can never carry someone else's values, and per
    # run: real links are unique per subscriber, so no cache keyed on a link may help a warm pass.
    token = f"t{index}r{run}"
    return Links(
        unsubscribe_url=f"{BASE_URL}/u/{token}_x-y.z?a=1&b={index}",
        preferences_url=f"{BASE_URL}/p/{token}",
        unsubscribe_mailto=f"mailto:unsubscribe@bench.test?subject=unsubscribe%20{token}",
        action_url=f"{BASE_URL}/confirm/{token}",
    )


def shipped_steps() -> tuple[list[tuple[Any, Any]], list[str], Any]:
    """(sequence, step) for every step of sequences/ that validates; problems of the others."""
    from nurture.content.library import check_content
    from nurture.domain.problems import Severity

    sequences, library, problems = check_content(ROOT / "sequences", ROOT / "templates")
    if library is None:
        raise RuntimeError("templates/ cannot be loaded: " + "; ".join(str(p) for p in problems))
    usable: list[tuple[Any, Any]] = []
    skipped: list[str] = []
    for key in sorted(sequences):
        sequence = sequences[key]
        for step in sequence.steps:
            errors = [p for p in library.check_step(sequence, step) if p.severity is Severity.ERROR]
            if errors:
                skipped.append(f"{key}/{step.key}: {errors[0].message}")
            else:
                usable.append((sequence, step))
    return usable, skipped, library


def _normalized(data: bytes) -> bytes:
    return _BOUNDARY.sub(b"=_BOUNDARY", data)


def _parsed(data: bytes) -> tuple[list[tuple[str, str]], str, str]:
    """Headers (the boundary parameter aside), text part and HTML part of a message."""
    from email import message_from_bytes, policy

    message: Any = message_from_bytes(data, policy=policy.default)
    headers = [(name.lower(), " ".join(str(value).split())) for name, value in message.items()
               if name.lower() != "content-type"]
    headers.append(("content-type", message.get_content_type()))
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    return headers, text.get_content() if text else "", html.get_content() if html else ""


def equivalent(ours: bytes, naive: bytes) -> bool:
    """The same message, whatever the builders' choices of folding or boundary."""
    return _normalized(ours) == _normalized(naive) or _parsed(ours) == _parsed(naive)


def builders() -> tuple[Any, Any]:
    """(ours, naive) message builders: the naive one is the standard library's EmailMessage."""
    from nurture.rendering import mime as rendering

    return rendering.build_message, getattr(rendering, "build_message_reference",
                                            rendering.build_message)


def _timed(render: Any, build: Any, job: tuple[Any, ...],
           the_brand: Any) -> tuple[Any, bytes, float, float]:
    """One email of `job` through `render` then `build`: (rendered, message, render s, build s)."""
    sequence, step, recipient, links, message_id = job
    t0 = time.perf_counter()
    rendered = render(sequence, step, recipient, links, the_brand)
    t1 = time.perf_counter()
    data: bytes = build(rendered, to=recipient.email, message_id=message_id, links=links, date=DATE)
    return rendered, data, t1 - t0, time.perf_counter() - t1


def run(options: Options) -> dict[str, Any]:
    from nurture.rendering.library import TemplateLibrary

    quiet_logging()
    build_message, build_naive = builders()
    steps, skipped, _ = shipped_steps()
    if not steps:
        raise RuntimeError("no step of the shipped sequences validates: " + "; ".join(skipped))
    recipients = persona_matrix()
    if options.personas is not None:
        recipients = recipients[: options.personas]
    the_brand = brand()
    jobs = [(sequence, step, recipient, links_for(index), f"<bench{index}-{step.key}@bench.test>")
            for sequence, step in steps for index, recipient in enumerate(recipients)]
    options.say(f"render: {len(steps)} step(s) x {len(recipients)} personas = {len(jobs)} emails")

    # Naive: one pass, no cache to warm (Jinja compiles each template once, in both paths).
    naive_library = TemplateLibrary(ROOT / "templates")
    naive_render = naive_build = 0.0
    naive_messages: list[bytes] = []
    naive_rendered: list[Any] = []
    for job in jobs:
        rendered, data, render_s, build_s = _timed(naive_library.render_naive, build_naive, job,
                                                   the_brand)
        naive_render += render_s
        naive_build += build_s
        naive_rendered.append(rendered)
        naive_messages.append(data)
    naive_per_email = (naive_render + naive_build) / len(jobs)

    # Ours: a cold pass fills the structure cache (premailer once per structure), then warm passes.
    library = TemplateLibrary(ROOT / "templates")
    passes = options.pick(5, 3)
    cold = 0.0
    warm_totals: list[float] = []
    warm_render: list[float] = []
    warm_build: list[float] = []
    mismatches: list[str] = []
    identical_bytes = 0
    for number in range(passes + 1):
        render_time = build_time = 0.0
        # Pass 0 uses the naive path's links (to compare the messages), later passes fresh ones.
        run_jobs = jobs if number == 0 else [
            (sequence, step, recipient, links_for(index % len(recipients), number), message_id)
            for index, (sequence, step, recipient, _, message_id) in enumerate(jobs)]
        for index, job in enumerate(run_jobs):
            rendered, data, render_s, build_s = _timed(library.render, build_message, job,
                                                       the_brand)
            render_time += render_s
            build_time += build_s
            if number == 0:
                naive = naive_rendered[index]
                if _normalized(data) == _normalized(naive_messages[index]):
                    identical_bytes += 1
                if rendered != naive or not equivalent(data, naive_messages[index]):
                    what = "html" if rendered.html != naive.html else "text" \
                        if rendered.text != naive.text else "subject or sender" \
                        if rendered != naive else "message headers or parts"
                    sequence, step = job[0], job[1]
                    mismatches.append(f"{sequence.key}/{step.key} persona {index % len(recipients)}: "
                                      f"{what} differ")
        if number == 0:
            cold = render_time + build_time
        else:
            warm_totals.append(render_time + build_time)
            warm_render.append(render_time)
            warm_build.append(build_time)
    ours_per_email = median(warm_totals) / len(jobs)
    ratio = naive_per_email / ours_per_email
    stats = library.cache_stats()
    sizes = [len(m) for m in naive_messages]
    render_ratio = (naive_render / len(jobs)) / (median(warm_render) / len(jobs))

    details = {
        "steps": [f"{sequence.key}/{step.key}" for sequence, step in steps],
        "skipped_steps": skipped,
        "personas": len(recipients),
        "emails": len(jobs),
        "warm_passes": passes,
        "naive_render_s_per_email": naive_render / len(jobs),
        "naive_build_s_per_email": naive_build / len(jobs),
        "naive_s_per_email": naive_per_email,
        "ours_render_s_per_email": median(warm_render) / len(jobs),
        "ours_build_s_per_email": median(warm_build) / len(jobs),
        "ours_s_per_email": ours_per_email,
        "ours_cold_pass_s_per_email": cold / len(jobs),
        "render_only_ratio": render_ratio,
        "build_share_of_ours": median(warm_build) / median(warm_totals),
        "cache": {"hits": stats.hits, "misses": stats.misses, "size": stats.size},
        "message_bytes_mean": sum(sizes) / len(sizes),
        "message_bytes_max": max(sizes),
        "mismatches": len(mismatches),
        "byte_identical_messages": identical_bytes,
        "naive_builder": build_naive.__name__,
        "mismatch_examples": mismatches[:10],
    }
    rows = [
        row("render: ours vs naive, per email (render + MIME bytes)",
            measured=f"{fmt_seconds(ours_per_email)}/email",
            baseline=f"{fmt_seconds(naive_per_email)}/email",
            ratio=ratio, target=f"≥ {TARGET_RATIO:g}×", met=ratio >= TARGET_RATIO,
            measured_value=ours_per_email, baseline_value=naive_per_email, unit="s/email"),
        row("render: same HTML and text, equivalent messages",
            measured=f"{len(jobs) - len(mismatches)}/{len(jobs)} equal",
            baseline="naive path", ratio=None, target="all equal", met=not mismatches,
            measured_value=float(len(jobs) - len(mismatches)), baseline_value=float(len(jobs)),
            unit="emails"),
    ]
    notes = [
        f"naive = render_naive + {build_naive.__name__}, ours = render + build_message; "
        f"{identical_bytes}/{len(jobs)} messages byte-identical (boundary aside), the rest equal "
        "once parsed",
        f"render alone: ours {fmt_seconds(details['ours_render_s_per_email'])} vs naive "
        f"{fmt_seconds(details['naive_render_s_per_email'])} ({render_ratio:,.0f}×); "
        f"build_message {fmt_seconds(details['ours_build_s_per_email'])} is "
        f"{details['build_share_of_ours']:.0%} of our per-email time",
        f"cold pass (premailer once per structure, {stats.misses} structures): "
        f"{fmt_seconds(cold / len(jobs))}/email",
        f"messages: mean {details['message_bytes_mean']:,.0f} bytes, max {max(sizes):,} bytes",
    ]
    if skipped:
        notes.append(f"{len(skipped)} step(s) skipped because they do not validate: "
                     + "; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""))
    return result(NAME, rows, details, notes)
