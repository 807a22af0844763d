"""Benchmark 2, end to end: N queued deliveries through our Dispatcher into a relay (a separate
process), against a raw smtplib blast of the same pre-built messages over the same number of
connections (one: a Dispatcher holds one SMTP connection) to the same relay. The Dispatcher sends as
`nurture scheduler` does, through nurture.smtp.relay_process: the SMTP conversation runs in a child
process, which the measured time includes.

The relay is Postfix's `smtp-sink` (bench/smtp_sink.py), a C server that is never what limits a
sender, so the ratio is the pipeline's own; without it those rows say "skipped" and how to install
it. The same runs are made against the aiosmtpd bench server (bench/smtp_server.py) as a second,
labelled set of rows: it spends about as much CPU per message as the pipeline, so there every
pipeline looks close to raw.

Deliveries are enrolled in bulk with SqlStore.enroll in a bench-only one-step sequence whose window
is the whole day. The two alternate, each on its own persistent connection, so that load from
elsewhere on the machine weighs on both alike: a raw chunk of TURN * BATCH messages, then one
Dispatcher `run` of up to TURN claims, as a scheduler tick makes them (each claim after the first
is made while the relay still has messages of the one before). The Dispatcher's ports and its
render/build calls are wrapped with timers, so the report says where our time per email goes (the
timers cost well under a microsecond per call).
"""

from __future__ import annotations

import math
import smtplib
import time
import uuid
from collections.abc import Iterator
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
from bench.smtp_sink import INSTALL_HINT, SinkProcess, sink_binary

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
    """Wraps the message_parts the dispatcher module imported (the headers made, the bodies left
    to the relay process), as the "build_message" phase, for the duration of one run."""
    import nurture.engine.decisions as dispatcher_module

    namespace = vars(dispatcher_module)
    original = namespace["message_parts"]

    def message_parts(*args: Any, **kwargs: Any) -> Any:
        with watch.phase("build_message"):
            return original(*args, **kwargs)

    namespace["message_parts"] = message_parts
    try:
        yield
    finally:
        namespace["message_parts"] = original


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


class SinkRelay:
    """smtp-sink, the default relay: counts what it accepts, keeps nothing."""

    name = "smtp-sink"
    label = SinkProcess.label

    def __init__(self, sink: SinkProcess) -> None:
        self.sink = sink

    @property
    def port(self) -> int:
        return self.sink.port

    def received(self) -> int:
        return self.sink.messages

    def wait_for(self, total: int, timeout: float) -> int:
        return self.sink.wait_for(total, timeout)

    def cpu_seconds(self) -> float:
        pid = self.sink.pid
        return process_cpu_seconds(pid) if pid is not None else math.nan

    def reset(self) -> None:
        """Nothing to forget: counts are taken as differences."""

    def extra(self) -> dict[str, Any]:
        return {}


class AiosmtpdRelay:
    """The aiosmtpd bench server: slower, but it also counts Message-IDs and connections."""

    name = "aiosmtpd"
    label = "aiosmtpd (Python)"

    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    @property
    def port(self) -> int:
        return self.server.smtp_port

    def received(self) -> int:
        return int(self.server.stats()["messages"])

    def wait_for(self, total: int, timeout: float) -> int:
        return int(self.server.wait_for(total, timeout)["messages"])

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.server.pid)

    def reset(self) -> None:
        self.server.reset()

    def extra(self) -> dict[str, Any]:
        stats = self.server.stats()
        return {"server_duplicates": stats["duplicates"], "server_connections": stats["connections"]}


Relay = SinkRelay | AiosmtpdRelay
RELAYS = ("smtp-sink", "aiosmtpd")
"""The relays the e2e rows run against, the default first."""


@contextmanager
def open_relay(name: str) -> Iterator[Relay]:
    """A started relay of that name (one of RELAYS), stopped on exit."""
    if name == "smtp-sink":
        with SinkProcess() as sink:
            yield SinkRelay(sink)
    else:
        with ServerProcess() as server:
            yield AiosmtpdRelay(server)


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
                relay: Relay, assigner: Any = None) -> dict[str, Any]:
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
            options.say(f"e2e {backend} ({relay.name}): enrolled {enrolled:,} in "
                        f"{enroll_seconds:.1f} s")

            relay.reset()
            base = relay.received()
            watch = Stopwatch()
            timed_content = replace(holder.current, library=TimedLibrary(holder.current.library, watch))
            # What `nurture scheduler` sends through: the SMTP conversation in a child process.
            transport = ProcessTransport(parse_smtp_url(f"smtp://127.0.0.1:{relay.port}"),
                                         timeout=60)
            dispatcher = make_dispatcher(TimedStore(store, watch), lambda: timed_content,
                                         relay.port, batch_size=BATCH,
                                         transport=TimedTransport(transport, watch))
            dispatcher.links = TimedLinks(dispatcher.links, watch)
            dispatcher.assigner = assigner
            cpu0 = relay.cpu_seconds()
            with timed_build_message(watch):
                raw_seconds, ours_seconds, report = interleaved(dispatcher, messages,
                                                                relay.port, watch, utcnow())
            server_cpu = relay.cpu_seconds() - cpu0
            dispatcher.transport.close()
            received = relay.wait_for(base + 2 * n, 30) - base
            extra = relay.extra()
            options.say(f"e2e {backend} ({relay.name}): raw blast {n / raw_seconds:,.0f} emails/s, "
                        f"dispatcher {n / ours_seconds:,.0f} emails/s")
            statuses = store.counts_by_status()
        finally:
            engine.dispose()
    accounted = sum(watch.seconds.values())
    per_email = {name: seconds / n for name, seconds in sorted(watch.seconds.items())}
    per_email["other (dispatcher logic, planner, Python)"] = (ours_seconds - accounted) / n
    return {
        "backend": backend,
        "relay": relay.label,
        "emails": n,
        "enroll_seconds": enroll_seconds,
        "enroll_rate": n / enroll_seconds,
        "raw_seconds": raw_seconds,
        "raw_rate": n / raw_seconds,
        "ours_seconds": ours_seconds,
        "ours_rate": n / ours_seconds,
        "server_cpu_s_per_email": server_cpu / (2 * n),
        # The raw blast's n plus what the Dispatcher delivered.
        "server_received": received - n,
        **extra,
        "dispatch_report": report.as_dict(),
        "statuses": statuses,
        "ours_s_per_email_by_phase": per_email,
    }


def _with_experiment(options: Options, work: Any, persons: list[Any],
                     messages: list[tuple[str, bytes]], relay: Relay,
                     details: dict[str, Any]) -> dict[str, Any]:
    """The SQLite run again with the step under an experiment: its share of the raw blast
    against the plain run's share, each measured against its own interleaved blast."""
    from nurture.content.library import ContentHolder
    from nurture.engine.assignment import Assigner

    files = make_bench_content(work / "experiment")
    bench_file = files.sequences_dir / "bench.yaml"
    bench_file.write_text(bench_file.read_text() + EXPERIMENT_YAML)
    holder = ContentHolder(files.sequences_dir, files.templates_dir)
    outcome = run_backend("sqlite", options, work, files, holder, persons, messages, relay,
                          assigner=Assigner(SECRET_KEY))
    details["sqlite_with_experiment"] = outcome
    plain = details["sqlite"]["ours_rate"] / details["sqlite"]["raw_rate"]
    tested = outcome["ours_rate"] / outcome["raw_rate"]
    return row(f"e2e sqlite: {len(persons):,} emails under an experiment vs the plain run "
               f"({relay.name})",
               measured=f"{tested:.2f} of raw ({fmt_rate(outcome['ours_rate'])})",
               baseline=f"{plain:.2f} of raw", ratio=tested / plain, target="≥ 0.95×",
               met=tested / plain >= 0.95, measured_value=tested, baseline_value=plain,
               unit="share of raw")


TARGET_TEXT = f"≥ {TARGET_FRACTION:g}× and ≥ {TARGET_RATE:,.0f}/s"


def row_name(backend: str, relay_name: str, n: int) -> str:
    """smtp-sink, the default relay, is named at the end; the aiosmtpd rows say so up front."""
    if relay_name == "smtp-sink":
        return f"e2e {backend}: {n:,} emails, Dispatcher vs raw smtplib, 1 connection, smtp-sink"
    return f"e2e {backend} ({relay_name}): {n:,} emails, Dispatcher vs raw smtplib, 1 connection"


def run(options: Options) -> dict[str, Any]:
    from nurture.clock import utcnow
    from nurture.content.library import ContentHolder

    quiet_logging()
    n = options.emails or options.pick(20_000, 2_000)
    backends, skipped = backends_available(options)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {"emails": n, "connections": 1, "skipped_backends": skipped,
                               "relays": {}}
    notes: list[str] = []
    relays = [name for name in RELAYS if name != "smtp-sink" or sink_binary() is not None]
    if "smtp-sink" not in relays:
        details["relays"]["smtp-sink"] = {"skipped": INSTALL_HINT}
        notes.append(f"smtp-sink rows skipped: {INSTALL_HINT}")
        rows += [row(f"e2e {backend}: skipped (no smtp-sink)", measured="smtp-sink not installed",
                     baseline="—", ratio=None, target=TARGET_TEXT, met=None, note=INSTALL_HINT)
                 for backend in backends]
    with scratch_dir() as work:
        files = make_bench_content(work)
        holder = ContentHolder(files.sequences_dir, files.templates_dir)
        persons = people(n)
        started = time.perf_counter()
        messages = prebuild(holder.current, persons, utcnow())
        details["prebuild_s_per_email"] = (time.perf_counter() - started) / n
        details["message_bytes_mean"] = sum(len(m) for _, m in messages) / n
        options.say(f"e2e: pre-built {n:,} messages ({details['message_bytes_mean']:,.0f} bytes "
                    f"mean) in {time.perf_counter() - started:.1f} s")
        for index, relay_name in enumerate(relays):
            # The default relay's outcomes stay at details[backend]; the others' under their name.
            where = details if index == 0 else details.setdefault(relay_name, {})
            with open_relay(relay_name) as relay:
                details["relays"][relay_name] = relay.label
                for backend in backends:
                    outcome = run_backend(backend, options, work, files, holder, persons,
                                          messages, relay)
                    where[backend] = outcome
                    rows.append(_row(backend, relay, outcome, n))
                    notes += _notes(backend, relay, outcome, n)
                if index == 0 and "sqlite" in backends:
                    rows.append(_with_experiment(options, work, persons, messages, relay, where))
            raws = [where[b]["raw_rate"] for b in backends]
            if relay_name == "aiosmtpd" and raws and max(raws) < TARGET_RATE:
                notes.append(f"the raw blast into aiosmtpd reaches only {max(raws):,.0f} emails/s "
                             f"here: that server cannot take {TARGET_RATE:,.0f}/s on one "
                             "connection on this machine, whatever the pipeline does")
    for backend, why in skipped.items():
        rows.append(row(f"e2e {backend}: skipped", measured=why[:100], baseline="—", ratio=None,
                        target=TARGET_TEXT, met=None))
    return result(NAME, rows, details, notes)


def _row(backend: str, relay: Relay, outcome: dict[str, Any], n: int) -> dict[str, Any]:
    rate, raw = outcome["ours_rate"], outcome["raw_rate"]
    ratio = rate / raw
    delivered = outcome["server_received"] == n and outcome["statuses"].get("sent") == n
    return row(row_name(backend, relay.name, n),
               measured=fmt_rate(rate), baseline=f"{fmt_rate(raw)} raw", ratio=ratio,
               target=TARGET_TEXT,
               met=ratio >= TARGET_FRACTION and rate >= TARGET_RATE and delivered,
               measured_value=rate, baseline_value=raw, unit="emails/s",
               note="" if delivered else "not every delivery arrived")


def _notes(backend: str, relay: Relay, outcome: dict[str, Any], n: int) -> list[str]:
    phases = outcome["ours_s_per_email_by_phase"]
    notes = [f"{backend} ({relay.name}): per email " + ", ".join(
        f"{name} {fmt_seconds(seconds)}" for name, seconds in phases.items())
        + f"; relay CPU {fmt_seconds(outcome['server_cpu_s_per_email'])}/email; "
        f"enroll {outcome['enroll_rate']:,.0f}/s"]
    if outcome["server_received"] != n or outcome["statuses"].get("sent") != n:
        notes.append(f"{backend} ({relay.name}): relay received {outcome['server_received']:,} "
                     f"of {n:,}, statuses {outcome['statuses']}")
    return notes
