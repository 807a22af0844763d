"""Benchmark 2, end to end: N queued deliveries through our Dispatcher into the bench SMTP server (a
separate process), against a raw smtplib blast of the same pre-built messages over the same number
of connections (one: a Dispatcher holds one SMTP connection) to the same server. The Dispatcher
sends as `nurture scheduler` does, through nurture.smtp.relay_process: the SMTP conversation runs in a
child process, which the measured time includes.

Deliveries are enrolled in bulk with SqlStore.enroll in a bench-only one-step sequence whose window
is the whole day. The two alternate, each on its own persistent connection, so that load from
elsewhere on the machine weighs on both alike: a raw chunk of TURN * BATCH messages, then one
Dispatcher `run` of up to TURN claims, as a scheduler tick makes them (each claim after the first
is made while the relay still has messages of the one before). The Dispatcher's ports and its
render/build calls are wrapped with timers, so the report says where our time per email goes (the
timers cost well under a microsecond per call).
"""

from __future__ import annotations

import smtplib
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

from bench.common import (
    BENCH_SEQUENCE,
    MESSAGE_ID_DOMAIN,
    SECRET_KEY,
    SENDER,
    Options,
    Stopwatch,
    backends_available,
    brand,
    database,
    enroll_people,
    fmt_rate,
    fmt_seconds,
    link_maker,
    make_bench_content,
    make_dispatcher,
    people,
    process_cpu_seconds,
    quiet_logging,
    result,
    row,
    scratch_dir,
)
from bench.smtp_server import ServerProcess

NAME = "e2e"
TARGET_FRACTION = 0.8
TARGET_RATE = 1000.0
BATCH = 200
"""The Dispatcher's default batch size."""
TURN = 5
"""Claims per Dispatcher turn; each raw chunk holds as many messages (TURN * BATCH)."""


class TimedStore:
    """The DeliveryStore port with each call timed."""

    def __init__(self, store: Any, watch: Stopwatch) -> None:
        self._store, self._watch = store, watch

    def claim_due(self, **kwargs: Any) -> Any:
        with self._watch.phase("claim"):
            return self._store.claim_due(**kwargs)

    def record(self, outcomes: Any, **kwargs: Any) -> None:
        with self._watch.phase("record"):
            self._store.record(outcomes, **kwargs)

    def release(self, ids: Any, **kwargs: Any) -> None:
        with self._watch.phase("release"):
            self._store.release(ids, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class TimedTransport:
    """The pipelined transport with its hand-over and its wait for the relay timed."""

    def __init__(self, transport: Any, watch: Stopwatch) -> None:
        self._transport, self._watch = transport, watch

    def send(self, message: Any) -> Any:
        with self._watch.phase("smtp"):
            return self._transport.send(message)

    def begin(self, message: Any) -> None:
        with self._watch.phase("hand-over to the relay process"):
            self._transport.begin(message)

    def finish(self) -> Any:
        with self._watch.phase("waiting for the relay"):
            return self._transport.finish()

    def reset(self) -> None:
        self._transport.reset()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class TimedLibrary:
    def __init__(self, library: Any, watch: Stopwatch) -> None:
        self._library, self._watch = library, watch

    def render(self, *args: Any, **kwargs: Any) -> Any:
        with self._watch.phase("render"):
            return self._library.render(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._library, name)


class TimedLinks:
    def __init__(self, links: Any, watch: Stopwatch) -> None:
        self._links, self._watch = links, watch

    def for_subscriber(self, subscriber_id: Any) -> Any:
        with self._watch.phase("links"):
            return self._links.for_subscriber(subscriber_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._links, name)


@contextmanager
def timed_build_message(watch: Stopwatch) -> Any:
    """Wraps the build_message the dispatcher module imported, for the duration of one run."""
    import nurture.engine.decisions as dispatcher_module

    namespace = vars(dispatcher_module)
    original = namespace["build_message"]

    def build_message(*args: Any, **kwargs: Any) -> bytes:
        with watch.phase("build_message"):
            data: bytes = original(*args, **kwargs)
            return data

    namespace["build_message"] = build_message
    try:
        yield
    finally:
        namespace["build_message"] = original


def prebuild(content: Any, persons: list[Any], now: Any) -> list[tuple[str, bytes]]:
    """The messages the Dispatcher will send, built ahead: same step, people, link and id shapes."""
    from nurture.domain.model import Profile
    from nurture.engine.decisions import message_id_for
    from nurture.rendering.mime import build_message
    from nurture.rendering.types import Recipient

    sequence = content.sequences[BENCH_SEQUENCE]
    step = sequence.steps[0]
    maker, the_brand = link_maker(), brand()
    out = []
    for person in persons:
        links = maker.for_subscriber(uuid.uuid4())
        profile = Profile(time_zone=person.time_zone, hesitations=person.hesitations,
                          discreet=person.discreet, locale=person.locale)
        rendered = content.library.render(sequence, step,
                                          Recipient(person.email, person.first_name, profile),
                                          links, the_brand)
        message_id = message_id_for(uuid.uuid4(), MESSAGE_ID_DOMAIN)
        out.append((person.email, build_message(rendered, to=person.email, message_id=message_id,
                                                links=links, date=now)))
    return out


def interleaved(dispatcher: Any, messages: list[tuple[str, bytes]], port: int, watch: Stopwatch,
                now: Any) -> tuple[float, float, Any]:
    """Alternates a raw smtplib blast of TURN * BATCH pre-built messages (one persistent connection)
    with one Dispatcher run of up to TURN claims (its own persistent connection), so that whatever
    else the machine does weighs on both alike. Returns (raw seconds, dispatcher seconds, the
    dispatcher's report)."""
    from email.utils import parseaddr

    from nurture.engine.dispatch_run import DispatchReport

    sender = parseaddr(SENDER)[1]
    raw_seconds = ours_seconds = 0.0
    total = DispatchReport()
    position = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo()
        while True:
            chunk = messages[position:position + TURN * BATCH]
            position += len(chunk)
            started = time.perf_counter()
            for to, data in chunk:
                smtp.sendmail(sender, [to], data)
            raw_seconds += time.perf_counter() - started
            started = time.perf_counter()
            report = dispatcher.run(now, max_batches=TURN)
            ours_seconds += time.perf_counter() - started
            total.add(report)
            if not chunk and report.claimed == 0:
                break
            if dispatcher.stopping:
                break
    return raw_seconds, ours_seconds, total


EXPERIMENT_YAML = """\
    experiment:
      key: bench-subject
      variants:
        - key: a
        - key: b
          subject: Another note for this week
"""
"""Appended to the bench step: two subjects, arms drawn and recorded on every claimed row."""


def run_backend(backend: str, options: Options, work: Any, content: Any, holder: Any,
                persons: list[Any], messages: list[tuple[str, bytes]],
                server: ServerProcess, assigner: Any = None) -> dict[str, Any]:
    from nurture.clock import utcnow
    from nurture.setting_values import parse_smtp_url
    from nurture.smtp.relay_process import ProcessTransport
    from nurture.store.database import make_engine
    from nurture.store.sql.store import SqlStore

    n = len(persons)
    with database(backend, options, work) as url:
        engine = make_engine(url)
        try:
            store = SqlStore(engine)
            now = utcnow()
            started = time.perf_counter()
            enrolled = enroll_people(store, holder.current, BENCH_SEQUENCE, persons,
                                     now=now - timedelta(minutes=1))
            enroll_seconds = time.perf_counter() - started
            options.say(f"e2e {backend}: enrolled {enrolled:,} in {enroll_seconds:.1f} s")

            server.reset()
            watch = Stopwatch()
            timed_content = replace(holder.current, library=TimedLibrary(holder.current.library, watch))
            # What `nurture scheduler` sends through: the SMTP conversation in a child process.
            transport = ProcessTransport(parse_smtp_url(server.url), timeout=60)
            dispatcher = make_dispatcher(TimedStore(store, watch), lambda: timed_content,
                                         server.smtp_port, batch_size=BATCH,
                                         transport=TimedTransport(transport, watch))
            dispatcher.links = TimedLinks(dispatcher.links, watch)
            dispatcher.assigner = assigner
            cpu0 = process_cpu_seconds(server.pid)
            with timed_build_message(watch):
                raw_seconds, ours_seconds, report = interleaved(dispatcher, messages,
                                                                server.smtp_port, watch, utcnow())
            server_cpu = process_cpu_seconds(server.pid) - cpu0
            dispatcher.transport.close()
            stats = server.wait_for(2 * n, 30)
            options.say(f"e2e {backend}: raw blast {n / raw_seconds:,.0f} emails/s, "
                        f"dispatcher {n / ours_seconds:,.0f} emails/s")
            statuses = store.counts_by_status()
        finally:
            engine.dispose()
    accounted = sum(watch.seconds.values())
    per_email = {name: seconds / n for name, seconds in sorted(watch.seconds.items())}
    per_email["other (dispatcher logic, planner, Python)"] = (ours_seconds - accounted) / n
    return {
        "backend": backend,
        "emails": n,
        "enroll_seconds": enroll_seconds,
        "enroll_rate": n / enroll_seconds,
        "raw_seconds": raw_seconds,
        "raw_rate": n / raw_seconds,
        "ours_seconds": ours_seconds,
        "ours_rate": n / ours_seconds,
        "server_cpu_s_per_email": server_cpu / (2 * n),
        "server_received": stats["messages"] - n,
        "server_duplicates": stats["duplicates"],
        "server_connections": stats["connections"],
        "dispatch_report": report.as_dict(),
        "statuses": statuses,
        "ours_s_per_email_by_phase": per_email,
    }


def _with_experiment(options: Options, work: Any, persons: list[Any],
                     messages: list[tuple[str, bytes]], server: ServerProcess,
                     details: dict[str, Any]) -> dict[str, Any]:
    """The SQLite run again with the step under an experiment: its share of the raw blast
    against the plain run's share, each measured against its own interleaved blast."""
    from nurture.content.library import ContentHolder
    from nurture.engine.assignment import Assigner

    files = make_bench_content(work / "experiment")
    bench_file = files.sequences_dir / "bench.yaml"
    bench_file.write_text(bench_file.read_text() + EXPERIMENT_YAML)
    holder = ContentHolder(files.sequences_dir, files.templates_dir)
    outcome = run_backend("sqlite", options, work, files, holder, persons, messages, server,
                          assigner=Assigner(SECRET_KEY))
    details["sqlite_with_experiment"] = outcome
    plain = details["sqlite"]["ours_rate"] / details["sqlite"]["raw_rate"]
    tested = outcome["ours_rate"] / outcome["raw_rate"]
    return row(f"e2e sqlite: {len(persons):,} emails under an experiment vs the plain run",
               measured=f"{tested:.2f} of raw ({fmt_rate(outcome['ours_rate'])})",
               baseline=f"{plain:.2f} of raw", ratio=tested / plain, target="≥ 0.95×",
               met=tested / plain >= 0.95, measured_value=tested, baseline_value=plain,
               unit="share of raw")


def run(options: Options) -> dict[str, Any]:
    from nurture.clock import utcnow
    from nurture.content.library import ContentHolder

    quiet_logging()
    n = options.emails or options.pick(20_000, 2_000)
    backends, skipped = backends_available(options)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"emails": n, "connections": 1, "skipped_backends": skipped}
    notes: list[str] = []
    with scratch_dir() as work, ServerProcess() as server:
        files = make_bench_content(work)
        holder = ContentHolder(files.sequences_dir, files.templates_dir)
        persons = people(n)
        started = time.perf_counter()
        messages = prebuild(holder.current, persons, utcnow())
        details["prebuild_s_per_email"] = (time.perf_counter() - started) / n
        details["message_bytes_mean"] = sum(len(m) for _, m in messages) / n
        options.say(f"e2e: pre-built {n:,} messages ({details['message_bytes_mean']:,.0f} bytes "
                    f"mean) in {time.perf_counter() - started:.1f} s")
        for backend in backends:
            outcome = run_backend(backend, options, work, files, holder, persons, messages, server)
            details[backend] = outcome
            rate, raw = outcome["ours_rate"], outcome["raw_rate"]
            ratio = rate / raw
            delivered = outcome["server_received"] == n and outcome["statuses"].get("sent") == n
            rows.append(row(
                f"e2e {backend}: {n:,} emails, Dispatcher vs raw smtplib (1 connection)",
                measured=fmt_rate(rate), baseline=f"{fmt_rate(raw)} raw", ratio=ratio,
                target=f"≥ {TARGET_FRACTION:g}× and ≥ {TARGET_RATE:,.0f}/s",
                met=ratio >= TARGET_FRACTION and rate >= TARGET_RATE and delivered,
                measured_value=rate, baseline_value=raw, unit="emails/s",
                note="" if delivered else "not every delivery arrived"))
            phases = outcome["ours_s_per_email_by_phase"]
            notes.append(f"{backend}: per email " + ", ".join(
                f"{name} {fmt_seconds(seconds)}" for name, seconds in phases.items())
                + f"; server CPU {fmt_seconds(outcome['server_cpu_s_per_email'])}/email; "
                f"enroll {outcome['enroll_rate']:,.0f}/s")
            if not delivered:
                notes.append(f"{backend}: server received {outcome['server_received']:,} of {n:,}, "
                             f"statuses {outcome['statuses']}")
        if "sqlite" in backends:
            rows.append(_with_experiment(options, work, persons, messages, server, details))
    for backend, why in skipped.items():
        rows.append(row(f"e2e {backend}: skipped", measured=why[:100], baseline="—", ratio=None,
                        target=f"≥ {TARGET_FRACTION:g}× and ≥ {TARGET_RATE:,.0f}/s", met=None))
    raws = [details[b]["raw_rate"] for b in backends]
    if raws and max(raws) < TARGET_RATE:
        notes.append(f"the raw blast itself reaches only {max(raws):,.0f} emails/s here: this SMTP "
                     f"server on this machine cannot take {TARGET_RATE:,.0f}/s on one connection, "
                     "so that absolute target is out of reach whatever the pipeline does")
    return result(NAME, rows, details, notes)
