"""What a scheduler process tells `nurture status` of its sending, with each heartbeat: its
relays' breakers and what their limits leave, and the destination groups it is pacing."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from nurture.engine.destinations import DestinationPacer
from nurture.engine.ports import Transport
from nurture.smtp.failover import FailoverTransport


def sending_state(transport: Transport, pacer: DestinationPacer) -> str:
    """JSON: {"relays": [...], "destinations": [...]} (only the groups slowed down)."""
    relays: list[dict[str, Any]] = []
    if isinstance(transport, FailoverTransport):
        relays = [{"name": relay.name, "breaker": relay.breaker.state.value,
                   "retry_in": round(relay.breaker.retry_in(), 1), "limited": relay.limited,
                   "left_today": relay.budget.left_today if relay.budget is not None else None}
                  for relay in transport.relays]
    destinations = [asdict(view) for view in pacer.view(time.monotonic())
                    if view.held_for > 0 or view.window < view.concurrency]
    return json.dumps({"relays": relays, "destinations": destinations})
