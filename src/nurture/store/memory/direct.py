"""What a test reads or sets directly in the in-memory store, where with SQL it would run a
statement: a subscriber's status, one delivery, one more step queued, a confirmation queued."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime

from nurture.engine.ports import DeliveryKind, DeliveryStatus, SubscriberStatus
from nurture.store.memory.tables import Tables
from nurture.store.views import DeliveryView


class DirectAccess:
    """Mixed into MemoryStore: each method holds its lock, as every store method does."""

    _lock: threading.Lock
    _tables: Tables

    def subscriber_status(self, email: str) -> SubscriberStatus | None:
        with self._lock:
            subscriber = self._tables.subscriber_by_email(email)
            return None if subscriber is None else SubscriberStatus(subscriber.status)

    def set_subscriber_status(self, email: str, status: SubscriberStatus) -> None:
        """Change only the subscriber row, as an unsubscribe landing between two sends does."""
        with self._lock:
            subscriber = self._tables.subscriber_by_email(email)
            if subscriber is None:
                raise KeyError(email)
            subscriber.status = status.value

    def delivery(self, delivery_id: uuid.UUID) -> DeliveryView | None:
        with self._lock:
            row = self._tables.deliveries.get(delivery_id)
            return None if row is None else self._tables.delivery_view(row)

    def add_step_delivery(
        self, enrollment_id: uuid.UUID, step_key: str, *, due_at: datetime, now: datetime
    ) -> uuid.UUID:
        """Queue one more step of an enrollment, as a test would INSERT a row; a step the
        enrollment already has is refused (ValueError), as the unique key would."""
        with self._lock:
            enrollment = self._tables.enrollments[enrollment_id]
            delivery_id = uuid.uuid4()
            self._tables.insert_delivery(
                {
                    "id": delivery_id,
                    "kind": DeliveryKind.STEP.value,
                    "subscriber_id": enrollment.subscriber_id,
                    "enrollment_id": enrollment_id,
                    "step_key": step_key,
                    "status": DeliveryStatus.QUEUED.value,
                    "due_at": due_at,
                    "attempts": 0,
                    "created_at": now,
                }
            )
        return delivery_id

    def queue_confirmation(self, email: str, *, now: datetime) -> uuid.UUID:
        """A pending subscriber (created with default answers when new) and a queued
        confirmation email for them, as a signup through the web form leaves them."""
        with self._lock:
            subscriber = self._tables.subscriber_by_email(email)
            if subscriber is None:
                self._tables.insert_subscriber(
                    {
                        "id": uuid.uuid4(), "email": email, "first_name": None, "locale": "en",
                        "time_zone": "UTC", "hesitations": [], "discreet": False,
                        "status": SubscriberStatus.PENDING.value, "created_at": now,
                        "confirmed_at": None, "updated_at": now,
                    }
                )
                subscriber = self._tables.subscriber_by_email(email)
                assert subscriber is not None
            delivery_id = uuid.uuid4()
            self._tables.insert_delivery(
                {
                    "id": delivery_id, "kind": DeliveryKind.CONFIRMATION.value,
                    "subscriber_id": subscriber.id, "enrollment_id": None, "step_key": None,
                    "status": DeliveryStatus.QUEUED.value, "due_at": now, "created_at": now,
                }
            )
        return delivery_id
