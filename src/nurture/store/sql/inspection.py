"""What operators and tests read of the SQL store: deliveries per status, and one subscriber's
deliveries and enrollments."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from nurture.engine.ports import DeliveryKind, DeliveryStatus, EnrollmentStatus
from nurture.store.models import Delivery, Enrollment, Subscriber
from nurture.store.views import DeliveryView, EnrollmentView


class Inspection:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def counts_by_status(self) -> dict[str, int]:
        """Deliveries per status, with every status present (zero when none)."""
        counts = {status.value: 0 for status in DeliveryStatus}
        with self._engine.connect() as conn:
            for status, count in conn.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            ):
                counts[status] = count
        return counts

    def deliveries_for(self, email: str) -> list[DeliveryView]:
        """Every delivery of the subscriber with this (normalized) address, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    Delivery.id,
                    Delivery.kind,
                    Enrollment.sequence_key,
                    Delivery.step_key,
                    Delivery.status,
                    Delivery.due_at,
                    Delivery.attempts,
                    Delivery.lease_owner,
                    Delivery.lease_expires_at,
                    Delivery.sent_at,
                    Delivery.message_id,
                    Delivery.smtp_code,
                    Delivery.last_error,
                    Delivery.skip_reason,
                    Delivery.content_version,
                    Delivery.variant,
                    Delivery.relay,
                )
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .outerjoin(Enrollment, Enrollment.id == Delivery.enrollment_id)
                .where(Subscriber.email == email)
                .order_by(Delivery.due_at, Delivery.created_at, Delivery.step_key)
            ).all()
        return [
            DeliveryView(
                id=row.id,
                kind=DeliveryKind(row.kind),
                sequence_key=row.sequence_key,
                step_key=row.step_key,
                status=DeliveryStatus(row.status),
                due_at=row.due_at,
                attempts=row.attempts,
                lease_owner=row.lease_owner,
                lease_expires_at=row.lease_expires_at,
                sent_at=row.sent_at,
                message_id=row.message_id,
                smtp_code=row.smtp_code,
                last_error=row.last_error,
                skip_reason=row.skip_reason,
                content_version=row.content_version,
                variant=row.variant,
                relay=row.relay,
            )
            for row in rows
        ]

    def enrollments_for(self, email: str) -> list[EnrollmentView]:
        """Every enrollment of the subscriber with this (normalized) address, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    Enrollment.id,
                    Enrollment.sequence_key,
                    Enrollment.status,
                    Enrollment.last_step_key,
                    Enrollment.last_sent_at,
                    Enrollment.enrolled_at,
                    Enrollment.ended_at,
                    Enrollment.end_reason,
                )
                .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
                .where(Subscriber.email == email)
                .order_by(Enrollment.enrolled_at, Enrollment.sequence_key)
            ).all()
        return [
            EnrollmentView(
                id=row.id,
                sequence_key=row.sequence_key,
                status=EnrollmentStatus(row.status),
                last_step_key=row.last_step_key,
                last_sent_at=row.last_sent_at,
                enrolled_at=row.enrolled_at,
                ended_at=row.ended_at,
                end_reason=row.end_reason,
            )
            for row in rows
        ]
