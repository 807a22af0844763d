"""What `nurture status` reads of sending from the database: the deliveries held back by the
relays' limits or by a destination's pacing, the relays' counts of the day, and the schedulers'
last word on their relays and destinations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from nurture.engine.destinations import HELD_BY_PACING
from nurture.engine.ports import DeliveryStatus
from nurture.engine.relay_limits import HELD_BY_RELAYS, day_counter, next_day, relay_key
from nurture.relay_settings import RelayPlan
from nurture.store.models import Delivery, SchedulerHeartbeat
from nurture.store.sql.tokens import day_counts

LIVE_WITHIN = timedelta(minutes=2)
"""A scheduler that beat within this is taken to be running."""


@dataclass(frozen=True)
class Held:
    count: int
    until: datetime | None
    """The earliest of their due times."""
    why: str
    """The latest reason given, as recorded on one of them."""


def held_deliveries(engine: Engine, now: datetime) -> dict[str, Held]:
    """"relays" and "pacing": the deliveries waiting, unattempted, for a relay's limits or a
    destination's pacing (only those found when they were due)."""
    found: dict[str, Held] = {}
    with engine.connect() as conn:
        for kind, prefix in (("relays", HELD_BY_RELAYS), ("pacing", HELD_BY_PACING)):
            waiting = (Delivery.status == DeliveryStatus.QUEUED.value,
                       Delivery.due_at > now, Delivery.last_error.startswith(prefix))
            count, until = conn.execute(select(func.count(), func.min(Delivery.due_at))
                                        .where(*waiting)).one()
            if count:
                why = conn.execute(select(Delivery.last_error).where(*waiting)
                                   .order_by(Delivery.due_at.desc()).limit(1)).scalar_one()
                found[kind] = Held(int(count), until, str(why))
    return found


def sent_today(engine: Engine, counters: dict[str, str], day: int) -> dict[str, int]:
    """By relay, the sends its daily cap counted on the day numbered `day` (`counters`: relay
    name to its counter's name)."""
    counts = day_counts(engine, list(counters.values()))
    return {relay: counts[name][0] if name in counts and counts[name][1] == day else 0
            for relay, name in counters.items()}


def live_sending_states(engine: Engine, now: datetime) -> dict[str, dict[str, Any]]:
    """By running scheduler (owner), what it last said of its relays and destinations."""
    with engine.connect() as conn:
        rows = conn.execute(select(SchedulerHeartbeat.owner, SchedulerHeartbeat.sending_state)
                            .where(SchedulerHeartbeat.stopped_at.is_(None),
                                   SchedulerHeartbeat.last_tick_at >= now - LIVE_WITHIN,
                                   SchedulerHeartbeat.sending_state.is_not(None))).all()
    return {str(owner): json.loads(str(state)) for owner, state in rows}


def sending_report(plan: RelayPlan, engine: Engine, now: datetime) -> dict[str, Any]:
    """Plain data, for `status --json` as it is and for the lines status prints."""
    today = now.astimezone(UTC).date()
    capped = {relay.name: relay.limits.day_cap(today) for relay in plan.relays
              if relay.limits.capped}
    counted = sent_today(engine, {name: day_counter(relay_key(name)) for name in capped},
                         today.toordinal())
    states = live_sending_states(engine, now)
    relays: dict[str, Any] = {}
    for relay in plan.relays:
        seen = {owner: state for owner, state in (
            (owner, next((r for r in report.get("relays", []) if r["name"] == relay.name), None))
            for owner, report in states.items()) if state is not None}
        entry: dict[str, Any] = {"breaker": {owner: state["breaker"] for owner, state in seen.items()}}
        if relay.limits.any:
            entry["limits"] = relay.limits.describe()
        cap = capped.get(relay.name)
        if cap is not None:
            entry.update(day_cap=cap, sent_today=counted[relay.name],
                         left_today=max(0, cap - counted[relay.name]))
            if entry["left_today"] == 0:
                entry["resumes_at"] = next_day(now).isoformat()
        relays[relay.name] = entry
    held = {kind: {"count": h.count, "until": h.until.isoformat() if h.until else None,
                   "why": h.why} for kind, h in held_deliveries(engine, now).items()}
    paced = [dict(view, owner=owner) for owner, report in states.items()
             for view in report.get("destinations", [])]
    return {"relays": relays, "held": held, "destinations_paced": paced}
