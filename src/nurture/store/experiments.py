"""What experiments read and write in the database: conversion events, the people exposed to each
arm and what they did within the window, the declared winners and the decision history."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from nurture.engine.decisions import HOLDOUT_REASON
from nurture.engine.ports import AssignedBy, DeliveryStatus
from nurture.store.models import (
    ClickCount,
    ConsentEvent,
    ContentVersion,
    ConversionEvent,
    Delivery,
    ExperimentHistory,
    content_version_table,
    conversion_event_table,
    experiment_history_table,
)

WINNER = "winner"
PINNED = "pinned"
VARIANT_REMOVED = "variant_removed"
GUARDRAIL_KINDS = {"unsubscribe": "unsubscribed", "pause": "paused"}
"""Consent event kinds an experiment watches, and the guardrail each counts for."""


@dataclass
class ArmTally:
    """One arm's people: judged once their window has passed, pending until then."""

    exposed: int = 0
    converted: int = 0
    unsubscribed: int = 0
    paused: int = 0
    pending: int = 0
    clicked: int = 0
    """Judged people whose email had a counted click within the window (NURTURE_CLICK_COUNTING)."""
    first_exposed_at: datetime | None = None


@dataclass(frozen=True)
class HistoryEntry:
    experiment_key: str
    sequence_key: str
    step_key: str
    kind: str
    variant: str
    at: datetime
    content_version: str
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment_key, "sequence": self.sequence_key,
                "step": self.step_key, "kind": self.kind, "variant": self.variant,
                "at": self.at.isoformat(), "content_version": self.content_version,
                "reason": self.reason, "figures": self.figures}


def record_conversion(engine: Engine, subscriber_id: uuid.UUID, event: str, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(conversion_event_table.insert().values(
            id=uuid.uuid4(), subscriber_id=subscriber_id, event=event, at=now))


def _exposures(experiment_key: str) -> Any:
    """The chance-assigned deliveries of an experiment that reached their person: sent, or
    skipped as the holdout. A winner given after the decision is not part of the test."""
    d = Delivery
    return (
        select(d.id, d.subscriber_id, d.variant, func.coalesce(d.sent_at, d.due_at).label("at"))
        .where(d.experiment_key == experiment_key, d.assigned_by == AssignedBy.CHANCE.value,
               or_(d.status == DeliveryStatus.SENT.value,
                   and_(d.status == DeliveryStatus.SKIPPED.value,
                        d.skip_reason.like(f"{HOLDOUT_REASON}%"))))
    )


def arm_tallies(engine: Engine, experiment_key: str, *, metric: str, window: timedelta,
                now: datetime) -> dict[str, ArmTally]:
    """By arm (variant key or holdout): the people judged (their window over by `now`), those
    who converted on `metric` within it, and the guardrails within it."""
    exposures = _exposures(experiment_key).subquery()
    with engine.connect() as conn:
        people = conn.execute(select(exposures)).all()
        conversions = conn.execute(
            select(exposures.c.id, ConversionEvent.at)
            .join(ConversionEvent, ConversionEvent.subscriber_id == exposures.c.subscriber_id)
            .where(ConversionEvent.event == metric, ConversionEvent.at >= exposures.c.at)
        ).all()
        guardrails = conn.execute(
            select(exposures.c.id, ConsentEvent.kind, ConsentEvent.at)
            .join(ConsentEvent, ConsentEvent.subscriber_id == exposures.c.subscriber_id)
            .where(ConsentEvent.kind.in_(list(GUARDRAIL_KINDS)), ConsentEvent.at >= exposures.c.at)
        ).all()
        clicks = conn.execute(
            select(exposures.c.id, ClickCount.first_at)
            .join(ClickCount, ClickCount.delivery_id == exposures.c.id)
            .where(ClickCount.first_at >= exposures.c.at)
        ).all()
    exposed_at = {row.id: row.at for row in people}
    within: dict[uuid.UUID, set[str]] = defaultdict(set)
    for delivery_id, at in conversions:
        if at < exposed_at[delivery_id] + window:
            within[delivery_id].add("converted")
    for delivery_id, kind, at in guardrails:
        if at < exposed_at[delivery_id] + window:
            within[delivery_id].add(GUARDRAIL_KINDS[kind])
    for delivery_id, at in clicks:
        if at < exposed_at[delivery_id] + window:
            within[delivery_id].add("clicked")
    tallies: dict[str, ArmTally] = defaultdict(ArmTally)
    for row in people:
        tally = tallies[row.variant]
        first = tally.first_exposed_at
        tally.first_exposed_at = row.at if first is None or row.at < first else first
        if row.at + window > now:
            tally.pending += 1
            continue
        tally.exposed += 1
        seen = within.get(row.id, set())
        tally.converted += "converted" in seen
        tally.unsubscribed += "unsubscribed" in seen
        tally.paused += "paused" in seen
        tally.clicked += "clicked" in seen
    return dict(tallies)


def assigned_arms(engine: Engine, experiment_key: str) -> set[str]:
    """Every arm recorded for the experiment, whoever assigned it."""
    with engine.connect() as conn:
        return set(conn.scalars(select(Delivery.variant).distinct()
                                .where(Delivery.experiment_key == experiment_key,
                                       Delivery.variant.is_not(None))))


def declared_winners(engine: Engine) -> dict[str, str]:
    """Experiment key to its declared winner (the figures said so; a pin lives in the file)."""
    with engine.connect() as conn:
        rows = conn.execute(select(ExperimentHistory.experiment_key, ExperimentHistory.variant)
                            .where(ExperimentHistory.kind == WINNER)).all()
    return {key: variant for key, variant in rows}


def record_history(engine: Engine, entry: HistoryEntry) -> bool:
    """Insert the entry once; False when it was there already (another scheduler was first).
    A removed variant is also noted on its content version's record."""
    try:
        with engine.begin() as conn:
            conn.execute(experiment_history_table.insert().values(
                id=uuid.uuid4(), experiment_key=entry.experiment_key,
                sequence_key=entry.sequence_key, step_key=entry.step_key, kind=entry.kind,
                variant=entry.variant, at=entry.at, content_version=entry.content_version,
                reason=entry.reason, figures=entry.figures))
            if entry.kind == VARIANT_REMOVED:
                _note_version(conn, entry.content_version, entry.reason)
    except IntegrityError:
        return False
    return True


def _note_version(conn: Any, version: str, note: str) -> None:
    notes = conn.scalar(select(ContentVersion.notes).where(ContentVersion.id == version))
    if notes is not None:
        conn.execute(content_version_table.update().where(content_version_table.c.id == version)
                     .values(notes=[*notes, note]))


def history(engine: Engine, experiment_keys: Iterable[str] | None = None) -> list[HistoryEntry]:
    """The history of these experiments (all when None), oldest first."""
    h = ExperimentHistory
    query = select(h.experiment_key, h.sequence_key, h.step_key, h.kind, h.variant, h.at,
                   h.content_version, h.reason, h.figures).order_by(h.at, h.kind)
    if experiment_keys is not None:
        query = query.where(h.experiment_key.in_(list(experiment_keys)))
    with engine.connect() as conn:
        return [HistoryEntry(*row[:8], figures=dict(row[8] or {})) for row in conn.execute(query)]
