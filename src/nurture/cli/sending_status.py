"""The sending part of `nurture status`, in lines (store.sending gathers it): per relay its
breaker and what its daily cap leaves today; the deliveries held back by limits or pacing, and
until when; the destination groups being paced."""

from __future__ import annotations

import sys
from typing import Any


def write_sending(report: dict[str, Any]) -> None:
    for name, relay in report["relays"].items():
        if not relay["breaker"] and "limits" not in relay:
            continue  # one relay and no limits: the lines above say all there is
        breakers = sorted(set(relay["breaker"].values()))
        parts = [f"breaker {'/'.join(breakers)}" if breakers else "no scheduler running"]
        if "limits" in relay:
            parts.append(f"limits {relay['limits']}")
        if "day_cap" in relay:
            parts.append(f"today {relay['sent_today']} of {relay['day_cap']} sent, "
                         f"{relay['left_today']} left")
        if "resumes_at" in relay:
            parts.append(f"its daily cap is reached: it sends again at {relay['resumes_at']}")
        sys.stdout.write(f"relay {name}: " + "; ".join(parts) + "\n")
    for kind, label in (("relays", "waiting for a relay's limits"),
                        ("pacing", "held by destination pacing")):
        held = report["held"].get(kind)
        if held:
            sys.stdout.write(f"{label}: {held['count']} deliveries, the first due again at "
                             f"{held['until']} ({held['why']})\n")
    for view in report["destinations_paced"]:
        held_for = f", held {view['held_for']:g} s more" if view["held_for"] else ""
        sys.stdout.write(f"destination {view['group']} (paced by {view['owner']}): "
                         f"{view['window']} of {view['concurrency']} at once{held_for}; "
                         f"{view['deferrals']} deferrals, last: {view['last_reply']}\n")
