"""Operator endpoints of the web app: Prometheus /metrics and the /readyz readiness check."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from nurture.metrics import queue_metrics
from nurture.store.database import DatabaseNotMigrated, ensure_migrated
from nurture.wiring import Runtime

log = logging.getLogger(__name__)


def ops_router(runtime: Runtime, *, clock: Callable[[], datetime]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def metrics() -> Response:
        body = await run_in_threadpool(queue_metrics, runtime.engine, clock())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @router.get("/readyz")
    async def readyz() -> Response:
        # Ready means: the database answers at the latest migration and content is loaded.
        try:
            await run_in_threadpool(ensure_migrated, runtime.engine)
        except DatabaseNotMigrated:
            return JSONResponse({"status": "not migrated"}, status_code=503)
        except Exception:
            log.exception("readiness check failed")
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "content_version": runtime.content.current.version})

    return router
