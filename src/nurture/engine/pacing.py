"""Send-ahead pacing: the relay's time per message, learnt from its replies, and how many messages
may wait for it behind the one it is taking."""

from __future__ import annotations

SEND_AHEAD_LIMIT = 64
"""At most this many messages are with the relay, or accepted by it and not yet marked on their
rows: what a crash can send twice."""
MARK_EVERY = 32
"""Acceptances marked on their rows together (`DeliveryStore.mark_accepted`). A mark costs about
2 ms of the dispatcher's time on PostgreSQL, whatever its size: one per 32 replies cost no
measurable throughput, one per 16 cost 7-10% (a dispatcher sending 4,000 emails into smtp-sink,
runs alternated with the code before marks)."""
MARK_WITHIN = 0.05
"""Seconds an acceptance waits for its mark at most, should fewer than MARK_EVERY come."""
IN_FLIGHT_LIMIT = SEND_AHEAD_LIMIT - MARK_EVERY
"""Messages waiting in the sender behind the one the relay is taking: with fewer than MARK_EVERY
acceptances unmarked, the two stay within SEND_AHEAD_LIMIT."""


class Pace:
    """The relay's time per message, from its replies: how many messages may wait for it."""

    def __init__(self) -> None:
        self._last_reply: float | None = None
        self.per_message: float | None = None

    def replied(self, handed_at: float, at: float) -> None:
        if self._last_reply is not None:
            # The relay took this message up when it had answered the one before or when the
            # message was handed over, whichever came later: a wait for the database between
            # batches is not the relay's time.
            took = max(at - max(self._last_reply, handed_at), 0.0)
            previous = self.per_message
            self.per_message = took if previous is None else 0.8 * previous + 0.2 * took
        self._last_reply = at

    def window(self, seconds: float) -> int:
        """Messages the relay gets through in `seconds`: at least one, at most IN_FLIGHT_LIMIT;
        one until the relay's pace is known."""
        if self.per_message is None:
            return 1
        if self.per_message * IN_FLIGHT_LIMIT <= seconds:
            return IN_FLIGHT_LIMIT
        return max(1, int(seconds / self.per_message + 1e-9))  # 0.1 / 0.02 is 4.999...
