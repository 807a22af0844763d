"""Several connections to one relay behind one pipelined transport: each message goes to the
connection with the fewest messages in flight, and the answers come back in the order the
messages were handed over, so a remote relay's round trips overlap instead of adding up.

Every connection is a `PipelinedTransport` of its own (in production a `ProcessTransport`: a child
process holding one SMTP connection). A connection that answered CONNECTION is left out of the
sharing until `reset()`; while every connection is down, messages still go to one of them, whose
transport answers for them as it would alone (CONNECTION, or None: not attempted)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from nurture.engine.ports import (
    Answer,
    OutgoingMessage,
    PipelinedTransport,
    SendErrorKind,
    SendResult,
)

_UNREAD: Final = object()


@dataclass(eq=False)
class _Connection:
    transport: PipelinedTransport
    pending: deque[_Ticket] = field(default_factory=deque)
    """Messages begun on this connection whose answer is not read from it yet, in order."""
    down: bool = False
    """It answered CONNECTION: `begin` passes it over until `reset()`."""
    carried: int = 0
    """Messages begun on it since the pool was made (for benchmarks and tests)."""


@dataclass(eq=False)
class _Ticket:
    connection: _Connection
    answer: object = _UNREAD


class ConnectionPool:
    """A `PipelinedTransport` over `connections`, all to the same relay."""

    def __init__(self, connections: Sequence[PipelinedTransport]) -> None:
        if not connections:
            raise ValueError("at least one connection is needed")
        self._connections = [_Connection(transport) for transport in connections]
        # Every ticket begun and not finished, across connections, in the order of `begin`.
        self._order: deque[_Ticket] = deque()
        self._next = 0  # where the round robin starts looking, to break ties fairly

    @property
    def where(self) -> str:
        """The relay (host:port where the connections say it), and how many connections."""
        places = dict.fromkeys(str(getattr(connection.transport, "where", "?"))
                               for connection in self._connections)
        return f"{', '.join(places)} ({len(self._connections)} connections)"

    @property
    def carried(self) -> list[int]:
        """Messages begun on each connection so far, in the order the connections were given."""
        return [connection.carried for connection in self._connections]

    @property
    def down(self) -> list[bool]:
        """Which connections `begin` passes over until the next `reset()`."""
        return [connection.down for connection in self._connections]

    def send(self, message: OutgoingMessage) -> SendResult:
        if self._order:
            raise RuntimeError("send() while messages begun are not finished")
        connection = self._pick()
        # A plain send is attempted whatever happened before, as the transports' own send is;
        # their `begin` would skip it behind a connection failure not yet reset.
        result = connection.transport.send(message)
        connection.carried += 1
        self._learn(connection, result)
        return result

    def begin(self, message: OutgoingMessage) -> None:
        connection = self._pick()
        connection.transport.begin(message)
        connection.carried += 1
        ticket = _Ticket(connection)
        connection.pending.append(ticket)
        self._order.append(ticket)

    def finish(self) -> Answer | None:
        """The answer for the earliest message begun and not finished, whichever connection
        carried it; None when that connection did not attempt it (behind its own failure)."""
        if not self._order:
            raise RuntimeError("finish() without a message begun")
        ticket = self._order.popleft()
        connection = ticket.connection
        # A connection answers in the order it was given messages: any answer before this one
        # belongs to a ticket still waiting in `_order`, so it is kept on that ticket.
        while ticket.answer is _UNREAD:
            earlier = connection.pending.popleft()
            read = connection.transport.finish()
            earlier.answer = read
            if read is not None:
                self._learn(connection, read.result)
        answer = ticket.answer
        assert answer is None or isinstance(answer, Answer)
        return answer

    def reset(self) -> None:
        """A new batch: every connection with no answer outstanding is reset and shared again.
        One with answers outstanding is left alone, since resetting it would lose them."""
        for connection in self._connections:
            if not connection.pending:
                connection.transport.reset()
                connection.down = False

    def close(self) -> None:
        self._order.clear()
        for connection in self._connections:
            connection.pending.clear()
            connection.transport.close()

    def _pick(self) -> _Connection:
        """The working connection with the fewest messages in flight, the first from the round
        robin's place among equals; any connection at all when none works."""
        count = len(self._connections)
        rotation = [self._connections[(self._next + step) % count] for step in range(count)]
        candidates = [connection for connection in rotation if not connection.down] or rotation
        chosen = min(candidates, key=lambda connection: len(connection.pending))
        self._next = (self._connections.index(chosen) + 1) % count
        return chosen

    @staticmethod
    def _learn(connection: _Connection, result: SendResult) -> None:
        if result.error_kind is SendErrorKind.CONNECTION:
            connection.down = True
