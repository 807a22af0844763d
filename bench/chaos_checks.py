"""The chaos soak's verdict: every delivery promise checked from the database and from what the relay
received, and the table."""

from __future__ import annotations

import itertools
import sys
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from bench.chaos_faults import CRASHES, SUBJECT_EDIT, Action, Fault

GRACE_SECONDS = 2.0
"""A message the relay accepts this long after an action completed may have been handed to the
relay process (the send-ahead) before it: only later ones count as violations."""
WINDOW_SLACK = timedelta(minutes=5)
"""A step decided inside its send window may reach the relay this much later (the rest of its
pass, a relay that stalls, a restarting database): later than that is a violation."""
SKEW_SECONDS = 3600.0
"""A copy dated this far ahead of its arrival was sent on the virtual clock."""
CRASH_SLACK_SECONDS = 5.0
"""A first copy may arrive this long after the crash that left it unrecorded (the orphaned SMTP
child drains what its socket already holds; a pg restart fails the record a moment later)."""


def delivery_id(message_id: str) -> UUID | None:
    try:
        return UUID(message_id.strip("<>").split("@", 1)[0])
    except ValueError:
        return None


def step_orders(content_dir: Any) -> dict[str, list[str]]:
    import yaml

    orders: dict[str, list[str]] = {}
    for path in sorted((content_dir / "sequences").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "key" in data and "steps" in data:
            orders[str(data["key"])] = [str(step["key"]) for step in data["steps"]]
    return orders


def exits_on_consult(content_dir: Any) -> set[str]:
    import yaml

    out = set()
    for path in sorted((content_dir / "sequences").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "consult_booked" in (data.get("exit_on") or []):
            out.add(str(data["key"]))
    return out


def send_windows(content_dir: Any) -> dict[str, Any]:
    """Each sequence's send window, from the content as it is at the end."""
    from nurture.content.library import load_content

    content = load_content(content_dir / "sequences", content_dir / "templates")
    return {key: sequence.window for key, sequence in content.sequences.items()}


def outside_window(row: Any, enrollment: Any, who: Any, windows: dict[str, Any]) -> str | None:
    """Why a first copy went out of its send window, or None: before it was due, or a step at a
    local time its sequence's window does not allow (the immediate first email excepted)."""
    from nurture.engine.planner import in_window

    if row.sent_at is None:
        return None
    if row.sent_at < row.due_at:
        return f"sent {row.sent_at} before due {row.due_at}"
    window = windows.get(enrollment.sequence_key) if enrollment is not None else None
    if window is None or who is None or row.immediate or row.kind != "step":
        return None
    if in_window(window, who.time_zone, row.sent_at) or \
            in_window(window, who.time_zone, row.sent_at - WINDOW_SLACK):
        return None
    local = row.sent_at.astimezone(ZoneInfo(who.time_zone))
    return f"sent {local:%a %H:%M} in {who.time_zone}, outside {enrollment.sequence_key}'s window"


def load_rows(engine: Any) -> tuple[dict[UUID, Any], dict[UUID, Any], dict[UUID, Any]]:
    from sqlalchemy import select

    from nurture.store.models import Delivery, Enrollment, Subscriber

    with engine.connect() as conn:
        deliveries = {r.id: r for r in conn.execute(select(
            Delivery.id, Delivery.subscriber_id, Delivery.enrollment_id, Delivery.step_key,
            Delivery.status, Delivery.due_at, Delivery.sent_at, Delivery.kind,
            Delivery.immediate))}
        enrollments = {r.id: r for r in conn.execute(select(
            Enrollment.id, Enrollment.sequence_key, Enrollment.enrolled_at, Enrollment.status))}
        subscribers = {r.id: r for r in conn.execute(select(
            Subscriber.id, Subscriber.email, Subscriber.locale, Subscriber.status,
            Subscriber.time_zone))}
    return deliveries, enrollments, subscribers


def attribute(duplicates: dict[str, list[float]], faults: list[Fault]) -> tuple[Counter[int], int]:
    """Each duplicate to the first crash between its first copy (less the slack) and its second;
    (duplicates per crash index, duplicates no crash explains)."""
    crashes = sorted((f.at, i) for i, f in enumerate(faults) if f.kind in CRASHES)
    per_crash: Counter[int] = Counter()
    unexplained = 0
    for times in duplicates.values():
        first, second = times[0], times[1]
        found = next((i for at, i in crashes if first - CRASH_SLACK_SECONDS <= at <= second), None)
        if found is None:
            unexplained += len(times) - 1
        else:
            per_crash[found] += len(times) - 1
    return per_crash, unexplained


def check(soak: Any, injector: Any, actor: Any, *, duration: float) -> dict[str, Any]:
    from nurture.engine.pacing import SEND_AHEAD_LIMIT

    received = list(soak.relay.messages)
    deliveries, enrollments, subscribers = load_rows(soak.engine)
    orders = step_orders(soak.content_dir)
    consult_exits = exits_on_consult(soak.content_dir)
    windows = send_windows(soak.content_dir)
    headings: dict[str, str] = soak.relay.headings
    arrivals: dict[str, list[float]] = defaultdict(list)
    first_of: dict[str, Any] = {}
    for item in sorted(received, key=lambda m: m.at):
        arrivals[item.message_id].append(item.at)
        first_of.setdefault(item.message_id, item)
    duplicates = {mid: times for mid, times in arrivals.items() if len(times) > 1}
    # A copy from a scheduler on the real clock and another from a pass on the virtual clock,
    # hours ahead: the pass saw the scheduler's lease as run out. One clock in production.
    clocks: dict[str, set[bool]] = defaultdict(set)
    for item in received:
        if item.message_id in duplicates:
            clocks[item.message_id].add(item.date_ahead > SKEW_SECONDS)
    skewed = {mid for mid, seen in clocks.items() if len(seen) > 1}
    per_crash, unexplained = attribute(
        {mid: times for mid, times in duplicates.items() if mid not in skewed}, injector.log)
    examples: dict[str, list[str]] = defaultdict(list)

    def note(kind: str, text: str) -> None:
        if len(examples[kind]) < 5:
            examples[kind].append(text)

    # Lost: sent rows the relay never received, and rows never finished.
    seen = {delivery_id(mid) for mid in first_of}
    lost_sent = [d for d in deliveries.values() if d.status == "sent" and d.id not in seen]
    # A row still waiting for a later day (the clock stopped before it) is not lost; one that
    # was due by the end, or is stuck leased or failed, is.
    unfinished = [d for d in deliveries.values()
                  if d.status in ("sending", "failed")
                  or (d.status in ("queued", "deferred") and d.due_at <= soak.virtual)]
    not_yet_due = sum(1 for d in deliveries.values()
                      if d.status in ("queued", "deferred") and d.due_at > soak.virtual)
    for d in lost_sent[:5]:
        note("lost", f"sent, never received: {d.id} {d.step_key}")
    for d in unfinished[:5]:
        note("lost", f"{d.status}: {d.id} {d.step_key} due {d.due_at}")
    unknown = [mid for mid in first_of if delivery_id(mid) not in deliveries]

    # Windows: never before due, nor outside the person's local send window; steps in order.
    window = 0
    by_enrollment: dict[UUID, list[tuple[float, int]]] = defaultdict(list)
    for mid, item in first_of.items():
        row = deliveries.get(delivery_id(mid))  # type: ignore[arg-type]
        if row is None:
            continue
        enrollment = enrollments.get(row.enrollment_id) if row.enrollment_id else None
        why = outside_window(row, enrollment, subscribers.get(row.subscriber_id), windows)
        if why is not None:
            window += 1
            note("window", f"{mid}: {why}")
        if enrollment is not None and row.step_key in orders.get(enrollment.sequence_key, []):
            by_enrollment[enrollment.id].append(
                (item.at, orders[enrollment.sequence_key].index(row.step_key)))
    order = 0
    for enrollment_id, steps in by_enrollment.items():
        indexes = [index for _, index in sorted(steps)]
        if any(b <= a for a, b in itertools.pairwise(indexes)):
            order += 1
            note("order", f"enrollment {enrollment_id}: steps arrived as {indexes}")

    # Consent: nothing after an unsubscribe, during a pause, or from a sequence left by converting.
    actions: dict[str, list[Action]] = defaultdict(list)
    for action in actor.actions:
        actions[action.email.lower()].append(action)
    consent: Counter[str] = Counter()
    for item in sorted(received, key=lambda m: m.at):
        row = deliveries.get(delivery_id(item.message_id))  # type: ignore[arg-type]
        for action in actions.get(item.recipient, []):
            if item.at <= action.done + GRACE_SECONDS or row is None:
                continue
            enrollment = enrollments.get(row.enrollment_id) if row.enrollment_id else None
            broken = False
            if action.kind == "unsubscribe":
                broken = True
            elif action.kind == "pause":
                until = action.started + 14 * 86400
                broken = row.sent_at is not None and row.sent_at.timestamp() < until
            elif action.kind == "consult_booked" and enrollment is not None:
                broken = (enrollment.sequence_key in consult_exits
                          and enrollment.enrolled_at.timestamp() < action.started)
            if broken:
                consent[action.kind] += 1
                note("consent", f"{action.kind} {item.recipient} done {action.done:.1f}: "
                                f"{row.step_key} arrived {item.at:.1f} (+{item.at - action.done:.1f} s)")

    # Every message: the crisis footer of the recipient's locale, List-Unsubscribe, the body link.
    footer = 0
    for mid, item in first_of.items():
        row = deliveries.get(delivery_id(mid))  # type: ignore[arg-type]
        who = subscribers.get(row.subscriber_id) if row is not None else None
        locale = who.locale if who is not None else "en"
        wanted = headings.get(locale) or headings.get(locale.split("-")[0]) or headings["en"]
        if item.crisis_heading != wanted or not item.list_unsubscribe or not item.unsubscribe_in_body:
            footer += 1
            note("footer", f"{mid} to {item.recipient} ({locale}): heading {item.crisis_heading!r},"
                           f" List-Unsubscribe {item.list_unsubscribe}, link {item.unsubscribe_in_body}")

    crash_count = sum(1 for f in injector.log if f.kind in CRASHES)
    worst = max(per_crash.values(), default=0)
    faults = dict(sorted(injector.counts().items()))
    passes = soak.pass_log
    table: dict[str, Any] = {
        "faults": faults,
        "fault_log": [{"kind": f.kind, "at": f.at, "detail": f.detail} for f in injector.log],
        "fault_errors": injector.errors,
        "web_actions": dict(Counter(a.kind for a in actor.actions)),
        "web_errors": actor.errors[:20],
        "people": len(subscribers),
        "deliveries": len(deliveries),
        "statuses": dict(Counter(d.status for d in deliveries.values())),
        "emails_received": len(received),
        "distinct_message_ids": len(first_of),
        "edited_subject_emails": sum(1 for m in first_of.values() if m.subject.startswith(SUBJECT_EDIT)),
        "duplicates": len(received) - len(first_of),
        "crashes": crash_count,
        "duplicates_per_crash": {f"{injector.log[i].kind}@{i}": n for i, n in sorted(per_crash.items())},
        "worst_per_crash": worst,
        "duplicates_unexplained": unexplained,
        "duplicates_clock_skew": sum(len(duplicates[mid]) - 1 for mid in skewed),
        "send_ahead_limit": SEND_AHEAD_LIMIT,
        "lost": len(lost_sent) + len(unfinished),
        "lost_sent_not_received": len(lost_sent),
        "unfinished_rows": len(unfinished),
        "not_yet_due": not_yet_due,
        "unknown_message_ids": len(unknown),
        "window_violations": window,
        "order_violations": order,
        "consent_violations": sum(consent.values()),
        "consent_by_kind": dict(consent),
        "footer_violations": footer,
        "relay": {"dropped": soak.relay.dropped, "refused_421": soak.relay.refused,
                  "stalled": soak.relay.stalled},
        "relay_parse_errors": soak.relay.parse_errors[:10],
        "dispatch_passes": len(passes),
        "passes_not_exit_0": sum(1 for p in passes if p["code"] != 0),
        "virtual_end": soak.virtual.isoformat(),
        "duration_s": round(duration, 1),
        "examples": dict(examples),
    }
    table["broken"] = bool(table["lost"] or worst > SEND_AHEAD_LIMIT or unexplained or window
                           or order or table["consent_violations"] or footer or unknown)
    return table


def print_table(table: dict[str, Any]) -> None:
    rows = [
        ("seed", table["seed"]),
        ("faults injected", ", ".join(f"{k} {v}" for k, v in table["faults"].items()) or "none"),
        ("web actions", ", ".join(f"{k} {v}" for k, v in table["web_actions"].items()) or "none"),
        ("people / deliveries", f"{table['people']:,} / {table['deliveries']:,}"),
        ("emails received (distinct)", f"{table['emails_received']:,} ({table['distinct_message_ids']:,})"),
        ("duplicates (total)", table["duplicates"]),
        ("duplicates worst per crash", f"{table['worst_per_crash']} (limit {table['send_ahead_limit']},"
                                       f" {table['crashes']} crashes)"),
        ("duplicates from the two clocks (real schedulers, virtual passes)",
         table["duplicates_clock_skew"]),
        ("duplicates explained by no crash", table["duplicates_unexplained"]),
        ("lost (sent not received + unfinished)",
         f"{table['lost']} ({table['lost_sent_not_received']} + {table['unfinished_rows']})"),
        ("still queued for after the last instant", table["not_yet_due"]),
        ("window violations (before due, or outside local hours)", table["window_violations"]),
        ("order violations", table["order_violations"]),
        ("consent violations", f"{table['consent_violations']} {table['consent_by_kind'] or ''}"),
        ("footer violations", table["footer_violations"]),
        ("unknown Message-IDs", table["unknown_message_ids"]),
        ("relay faults seen (drop/421/stall)", "{dropped}/{refused_421}/{stalled}".format(**table["relay"])),
        ("dispatch passes (not exit 0)", f"{table['dispatch_passes']} ({table['passes_not_exit_0']})"),
        ("emails with an edited subject", table["edited_subject_emails"]),
        ("duration", f"{table['duration_s']} s"),
        ("promise broken", "YES" if table["broken"] else "no"),
    ]
    width = max(len(name) for name, _ in rows)
    out = sys.stdout
    out.write(f"\n| {'check'.ljust(width)} | result |\n|{'-' * (width + 2)}|--------|\n")
    for name, value in rows:
        out.write(f"| {name.ljust(width)} | {value} |\n")
    for kind, lines in table["examples"].items():
        out.write(f"\n{kind} examples:\n" + "".join(f"  {line}\n" for line in lines))
    for label in ("fault_errors", "web_errors", "relay_parse_errors"):
        if table[label]:
            out.write(f"\n{label}:\n" + "".join(f"  {line}\n" for line in table[label][:10]))
    out.flush()
