"""Several relays behind one pipelined transport: each message goes to a healthy relay (the first,
or by weight), each relay has its own circuit breaker, and a message a relay could not take (a
lost connection, a 421) moves to the next healthy relay at once, in the order it was handed over.

A refusal of the recipient (5xx) is an answer about the address and is never tried elsewhere; any
other 4xx is left to the dispatcher's retries, and a destination's request to slow down (4.7.x)
to its pacing. A relay whose breaker opened gets one trial message after its cooldown, and is
used again once that trial goes through.

A relay with limits takes its tokens from the deployment's budget before each message: a short
wait (its rate) is waited for; a long one (an hourly or daily budget spent) passes the message to
the next relay, and when no relay may take it, its answer is LIMITED, with when one may."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from nurture.engine.ports import (
    Answer,
    OutgoingMessage,
    PipelinedTransport,
    SendErrorKind,
    SendResult,
    Transport,
)
from nurture.engine.relay_limits import HELD_BY_RELAYS, NOW, SHORT_WAIT, Availability, Budget
from nurture.engine.replies import destination_deferral
from nurture.engine.throttle import BreakerState, CircuitBreaker
from nurture.relay_settings import Strategy

log = logging.getLogger(__name__)

CLOSING: Final = 421
"""The relay is closing the session: nothing was decided about the message."""
_PENDING: Final = object()


def relay_trouble(result: SendResult) -> bool:
    """The relay, not the message, failed: the message may go to another relay. A 4.7.x is the
    destination's request to slow down, which another relay would hear too."""
    return result.error_kind is SendErrorKind.CONNECTION or (
        result.code == CLOSING and not destination_deferral(result))


@dataclass(eq=False)
class Relay:
    """One relay: its name, its transport (pipelined), its weight and its breaker."""

    name: str
    transport: PipelinedTransport
    breaker: CircuitBreaker
    weight: float = 1.0
    pending: deque[_Ticket] = field(default_factory=deque)
    """Messages begun on this relay whose answer is not read yet, in order."""
    needs_reset: bool = False
    """It lost a connection: the next message begun on it starts a new session."""
    credit: float = 0.0
    """For weighted shares (smooth weighted round robin)."""
    sent: int = 0
    failed_over: int = 0
    budget: Budget | None = None
    """Its limits, kept for the whole deployment; None: none."""
    limited: str = ""
    """Why it last could not take a message (a spent budget), for status."""


@dataclass(eq=False)
class _Ticket:
    message: OutgoingMessage
    relay: Relay | None
    tried: set[str] = field(default_factory=set)
    answer: object = _PENDING
    held: Availability | None = None
    """No relay's limits let it through: how long until one may."""


class FailoverTransport:
    """A `PipelinedTransport` over named relays, with `strategy` between them."""

    def __init__(self, relays: Sequence[Relay], strategy: Strategy, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not relays:
            raise ValueError("at least one relay is needed")
        self.relays = list(relays)
        self.strategy = strategy
        self._order: deque[_Ticket] = deque()
        self._sleep = sleep
        self._clock = clock

    @property
    def where(self) -> str:
        return ", ".join(relay.name for relay in self.relays)

    def send(self, message: OutgoingMessage) -> SendResult:
        if self._order:
            raise RuntimeError("send() while messages begun are not finished")
        self.begin(message)
        answer = self.finish()
        assert answer is not None, "a failover ticket always has an answer"
        return answer.result

    def begin(self, message: OutgoingMessage) -> None:
        ticket = _Ticket(message, None)
        self._order.append(ticket)
        self._hand_to(ticket, self._pick(ticket))

    def finish(self) -> Answer | None:
        """The answer for the earliest message begun, after whatever moves between relays it
        took; a CONNECTION result only when no healthy relay took it."""
        if not self._order:
            raise RuntimeError("finish() without a message begun")
        ticket = self._order.popleft()
        while True:
            relay = ticket.relay
            if relay is None:
                return Answer(_nowhere(ticket) if ticket.held is None
                              else _held(ticket.held, self._at(ticket)), 0.0)
            answer = self._read(ticket, relay)
            if answer is not None and not relay_trouble(answer.result):
                relay.breaker.record_success()
                relay.sent += answer.result.ok
                return Answer(replace(answer.result, relay=relay.name), answer.age)
            self._down(relay, answer)
            following = self._pick(ticket)
            if following is None:
                result = answer.result if answer is not None else _nowhere(ticket)
                return Answer(replace(result, relay=relay.name),
                              answer.age if answer is not None else 0.0)
            relay.failed_over += 1
            log.warning("message moved to another relay",
                        extra={"from_relay": relay.name, "to_relay": following.name})
            self._hand_to(ticket, following)

    def reset(self) -> None:
        for relay in self.relays:
            if not relay.pending:
                relay.transport.reset()
                relay.needs_reset = False

    def close(self) -> None:
        self._order.clear()
        for relay in self.relays:
            relay.pending.clear()
            relay.transport.close()

    def _hand_to(self, ticket: _Ticket, relay: Relay | None) -> None:
        ticket.relay, ticket.answer = relay, _PENDING
        if relay is None:
            return
        ticket.tried.add(relay.name)
        if relay.needs_reset and not relay.pending:
            relay.transport.reset()
            relay.needs_reset = False
        relay.transport.begin(ticket.message)
        relay.pending.append(ticket)

    @staticmethod
    def _read(ticket: _Ticket, relay: Relay) -> Answer | None:
        """The relay's answer for `ticket`, reading (and keeping) those of the messages begun on
        it before: answers come back in the order the relay was given the messages."""
        while ticket.answer is _PENDING:
            relay.pending.popleft().answer = relay.transport.finish()
        answer = ticket.answer
        assert answer is None or isinstance(answer, Answer)
        return answer

    def _down(self, relay: Relay, answer: Answer | None) -> None:
        if answer is None:
            return  # not attempted behind a failure this relay already reported
        relay.needs_reset = True
        if relay.breaker.state is not BreakerState.OPEN:
            relay.breaker.record_failure()

    def _at(self, ticket: _Ticket) -> datetime:
        return ticket.message.at or self._clock()

    def _pick(self, ticket: _Ticket) -> Relay | None:
        """The relay for the message, in order of preference (`_preferred`), among those whose
        limits let it through: one whose rate asks a short wait is waited for; one whose budget
        is spent for longer is passed over. None: no relay may take it (`ticket.held` says when
        one may, if limits are why)."""
        at = self._at(ticket)
        held: list[tuple[float, str]] = []
        for relay in self._preferred(ticket.tried):
            available = self._admits(relay, at)
            if available.wait > 0:
                held.append((available.wait, f"{relay.name}: {available.why}"))
            elif relay.breaker.allow():
                return relay
        if held:
            ticket.held = Availability(min(wait for wait, _ in held),
                                       "; ".join(why for _, why in held))
        return None

    def _admits(self, relay: Relay, at: datetime) -> Availability:
        """NOW (a token taken) when the relay's limits let a message through, after waiting for
        its rate if that is short; else how long until they would."""
        if relay.budget is None:
            return NOW
        while True:
            available = relay.budget.take(at)
            if available.wait <= 0 or available.wait > SHORT_WAIT:
                relay.limited = available.why
                return available
            self._sleep(available.wait)

    def _preferred(self, tried: set[str]) -> list[Relay]:
        """The healthy relays not tried for this message: in order (failover), or the one whose
        turn it is by weight first; a relay past its cooldown is among them for its trial."""
        healthy = [relay for relay in self.relays if relay.name not in tried
                   and relay.breaker.ready()]
        if not healthy:
            return []
        if self.strategy is Strategy.WEIGHTED:
            total = sum(relay.weight for relay in healthy)
            for relay in healthy:
                relay.credit += relay.weight
            chosen = max(healthy, key=lambda relay: relay.credit)
            chosen.credit -= total
            healthy = [chosen, *[relay for relay in healthy if relay is not chosen]]
        return healthy


def _held(held: Availability, at: datetime) -> SendResult:
    until = (at + timedelta(seconds=held.wait)).astimezone(UTC)
    return SendResult(ok=False, message=f"{HELD_BY_RELAYS}{until:%Y-%m-%d %H:%M:%S} UTC: no relay may "
                      f"take it before ({held.why})", error_kind=SendErrorKind.LIMITED,
                      retry_in=held.wait)


def _nowhere(ticket: _Ticket) -> SendResult:
    tried = ", ".join(sorted(ticket.tried)) or "none"
    return SendResult(ok=False, code=None, message=f"no relay could take the message (tried: {tried})",
                      error_kind=SendErrorKind.CONNECTION)


def as_pipelined(transport: Transport) -> PipelinedTransport:
    """A pipelined transport as it is, or a plain one that sends at `begin`."""
    if isinstance(transport, PipelinedTransport):
        return transport
    return _SendAtBegin(transport)


class _SendAtBegin:
    """`begin` sends at once and `finish` hands the answers back in order."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._answers: deque[Answer] = deque()

    def send(self, message: OutgoingMessage) -> SendResult:
        return self._transport.send(message)

    def begin(self, message: OutgoingMessage) -> None:
        self._answers.append(Answer(self._transport.send(message), 0.0))

    def finish(self) -> Answer | None:
        return self._answers.popleft()

    def reset(self) -> None:
        self._answers.clear()

    def close(self) -> None:
        self._transport.close()
