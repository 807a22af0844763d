"""Operator endpoints of the web app: /healthz, /metrics, /readyz and the signed bounce/complaint
webhook."""

from __future__ import annotations

import logging
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from nurture.engine.feedback import apply_feedback
from nurture.engine.feedback_webhooks import events_from_webhook, verify_webhook_signature
from nurture.services.metrics import queue_metrics
from nurture.store.database import DatabaseNotMigrated, database_answers, ensure_migrated
from nurture.web.dependencies import Web

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Nurture-Signature"

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz(web: Web) -> Response:
    try:
        await run_in_threadpool(database_answers, web.runtime.engine)
    except Exception:
        log.exception("health check failed")
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
async def metrics(web: Web) -> Response:
    body = await run_in_threadpool(queue_metrics, web.runtime.engine, web.clock())
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz")
async def readyz(web: Web) -> Response:
    # Ready means: the database answers at the latest migration and content is loaded.
    runtime = web.runtime
    try:
        await run_in_threadpool(ensure_migrated, runtime.engine)
    except DatabaseNotMigrated:
        return JSONResponse({"status": "not migrated"}, status_code=503)
    except Exception:
        log.exception("readiness check failed")
        return JSONResponse({"status": "database unavailable"}, status_code=503)
    return JSONResponse({"status": "ready", "content_version": runtime.content.current.version})


@router.post("/api/v1/feedback")
async def feedback(request: Request, web: Web) -> Response:
    """Bounces and complaints pushed by a relay, signed with NURTURE_FEEDBACK_WEBHOOK_SECRET."""
    settings = web.runtime.settings
    if not settings.feedback_webhook_secret:
        return JSONResponse({"detail": "the feedback webhook is not configured"}, status_code=404)
    body = await request.body()
    if not verify_webhook_signature(settings.feedback_webhook_secret, body,
                                    request.headers.get(SIGNATURE_HEADER),
                                    now=web.clock().timestamp()):
        return JSONResponse({"detail": f"missing or wrong {SIGNATURE_HEADER}"}, status_code=401)
    try:
        events = events_from_webhook(body)
    except ValueError as error:
        return JSONResponse({"detail": str(error)}, status_code=400)
    counts = await run_in_threadpool(apply_feedback, web.runtime.store, events, now=web.clock(),
                                     message_id_domain=settings.sender_domain)
    return JSONResponse(counts.as_dict(), status_code=202)
