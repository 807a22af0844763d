"""Pacing per destination: recipients' domains in groups (gmail.com with googlemail.com, Yahoo's,
Microsoft's, and the operator's own), each with at most so many messages with the relay at once,
and an adaptive slowdown when the destination defers us (421 or 4.7.x), for that group alone.

Postfix's per-destination concurrency is the model: a deferral drops the group's window of
messages in flight to one and holds the group for a backoff that doubles while it keeps
deferring; its waiting deliveries are moved past the hold, so the rest of the queue moves on.
After the hold, each acceptance widens the window by one, back to the group's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nurture.engine.pacing import SEND_AHEAD_LIMIT
from nurture.engine.ports import SendErrorKind, SendResult
from nurture.engine.relay_limits import Budget
from nurture.engine.replies import destination_deferral, without_addresses
from nurture.setting_values import DEFAULT_GROUPS, DomainGroup

HELD_BY_PACING = "held: "
"""How the error of a delivery begins when its destination group holds it."""
MIN_BACKOFF = 1.0
MAX_BACKOFF = 300.0
"""Seconds a deferring group is held: from the first, doubling, to at most this (Postfix's
minimal_backoff_time is 300 s)."""


@dataclass
class _Pace:
    group: DomainGroup
    window: float
    in_flight: int = 0
    held_until: float = 0.0
    backoff: float = MIN_BACKOFF
    deferrals: int = 0
    last_reply: str = ""


@dataclass(frozen=True)
class PaceView:
    """One group's pacing as it stands, for status and metrics."""

    group: str
    window: int
    concurrency: int
    in_flight: int
    held_for: float
    """Seconds it stays held (0: not held)."""
    deferrals: int
    last_reply: str


@dataclass
class DestinationPacer:
    """One process's pacing, on its monotonic clock (times are the caller's). The groups' rates
    are `budgets` (by group name) in the deployment's token store; the backoff and the windows
    are this process's, learnt from the replies it reads."""

    groups: tuple[DomainGroup, ...] = DEFAULT_GROUPS
    budgets: dict[str, Budget] = field(default_factory=dict)
    _by_domain: dict[str, DomainGroup] = field(init=False, default_factory=dict)
    _paces: dict[str, _Pace] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._by_domain = {domain: group for group in self.groups for domain in group.domains}

    def group_of(self, address: str) -> DomainGroup:
        """The recipient's group: a configured one, or its own domain's."""
        domain = address.rpartition("@")[2].lower()
        found = self._by_domain.get(domain)
        return found if found is not None else DomainGroup(domain, frozenset({domain}))

    def _pace(self, group: DomainGroup) -> _Pace:
        pace = self._paces.get(group.name)
        if pace is None:
            pace = self._paces[group.name] = _Pace(group, float(_concurrency(group)))
        return pace

    def backing_off(self, group: DomainGroup, now: float) -> float:
        """Seconds the group stays held after deferring us (0: not held)."""
        pace = self._paces.get(group.name)
        return max(0.0, pace.held_until - now) if pace is not None else 0.0

    def held_for(self, group: DomainGroup, now: float, at: datetime) -> tuple[float, str]:
        """Seconds a message to the group must wait, and why: the backoff after a deferral, or
        the group's rate (a token is taken when it need not wait). (0, "") : send it."""
        backoff = self.backing_off(group, now)
        if backoff > 0:
            return backoff, f"{group.name} asked us to slow down"
        budget = self.budgets.get(group.name)
        if budget is not None:
            available = budget.take(at)
            if available.wait > 0:
                return available.wait, f"{group.name}'s rate of {group.per_second:g}/s"
        return 0.0, ""

    def full(self, group: DomainGroup) -> bool:
        """As many messages to the group are with the relay as its window allows."""
        pace = self._paces.get(group.name)
        return pace is not None and pace.in_flight >= max(1, int(pace.window))

    def handed_over(self, group: DomainGroup) -> None:
        self._pace(group).in_flight += 1

    def answered(self, group: DomainGroup, result: SendResult | None, now: float) -> float | None:
        """A reply for a message to the group (None: it was not attempted). When it begins a
        hold: the moment the hold ends."""
        pace = self._pace(group)
        pace.in_flight = max(0, pace.in_flight - 1)
        if result is None:
            return None
        if destination_deferral(result):
            pace.deferrals += 1
            # A reply may quote the recipient: what status shows keeps no address.
            pace.last_reply = without_addresses(result.message)[:120]
            pace.window = 1.0
            # Every reply of a burst in flight says the same: hold once per backoff, not per reply.
            if pace.held_until <= now:
                pace.held_until = now + pace.backoff
                pace.backoff = min(MAX_BACKOFF, pace.backoff * 2)
                return pace.held_until
        elif result.ok or result.error_kind is SendErrorKind.PERMANENT:
            pace.backoff = MIN_BACKOFF
            pace.window = min(float(_concurrency(pace.group)), pace.window + 1)
        return None

    def view(self, now: float) -> list[PaceView]:
        """The groups that have been sent to, slowed ones first."""
        views = [PaceView(p.group.name, max(1, int(p.window)), _concurrency(p.group), p.in_flight,
                          round(max(0.0, p.held_until - now), 1), p.deferrals, p.last_reply)
                 # A copy: the metrics thread reads while the dispatcher adds groups.
                 for p in list(self._paces.values())]
        return sorted(views, key=lambda v: (v.window >= v.concurrency, v.group))


def _concurrency(group: DomainGroup) -> int:
    """The group's own cap, or as many as the sender holds."""
    return group.concurrency if group.concurrency is not None else SEND_AHEAD_LIMIT
