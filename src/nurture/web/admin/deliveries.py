"""The deliveries page: counts by status and the latest deliveries, with masked addresses and SMTP
replies whose addresses are masked too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from nurture.engine.ports import DeliveryStatus
from nurture.store.admin_views import DeliveryRow, recent_deliveries
from nurture.web.admin.context import Admin, SignedIn, page
from nurture.web.admin.formatting import format_utc, mask_address, redact_addresses

router = APIRouter(prefix="/admin", include_in_schema=False)

RECENT_DEFAULT: Final = 50
RECENT_MAX: Final = 500


@dataclass(frozen=True)
class RecentDelivery:
    address: str
    """Masked: the page never shows a full address."""
    kind: str
    sequence: str
    step: str
    status: str
    due_at: str
    sent_at: str
    attempts: int
    smtp_code: str
    note: str

    @classmethod
    def of(cls, row: DeliveryRow) -> RecentDelivery:
        return cls(
            address=mask_address(row.email), kind=row.kind, sequence=row.sequence, step=row.step,
            status=row.status, due_at=format_utc(row.due_at), sent_at=format_utc(row.sent_at),
            attempts=row.attempts, smtp_code="" if row.smtp_code is None else str(row.smtp_code),
            note=redact_addresses(row.note),
        )


@router.api_route("/deliveries", methods=["GET", "HEAD"])
async def deliveries(request: Request, admin: Admin, user: SignedIn) -> Response:
    status = request.query_params.get("status") or None
    statuses = [item.value for item in DeliveryStatus]
    if status not in statuses:
        status = None
    try:
        limit = min(RECENT_MAX, max(1, int(request.query_params.get("limit", RECENT_DEFAULT))))
    except ValueError:
        limit = RECENT_DEFAULT
    counts = await run_in_threadpool(admin.runtime.store.counts_by_status)
    rows = await run_in_threadpool(recent_deliveries, admin.runtime.engine, status=status,
                                   limit=limit)
    return page(admin, request, "deliveries.html", user=user, section="deliveries",
                counts=[(name, counts.get(name, 0)) for name in statuses],
                total=sum(counts.values()), chosen_status=status or "",
                recent=[RecentDelivery.of(row) for row in rows], limit=limit,
                now=format_utc(admin.clock()))
