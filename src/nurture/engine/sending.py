"""A batch's sender: messages go to the relay one after another while the dispatcher renders and
records, through a transport that pipelines itself or else on a thread of their own."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple, Protocol

from nurture.engine.ports import (
    OutgoingMessage,
    PipelinedTransport,
    SendErrorKind,
    SendResult,
    Transport,
)


class Reply(NamedTuple):
    result: SendResult
    at: float
    """The monotonic clock when the relay's answer was seen."""


class PendingReply(Protocol):
    def result(self) -> Reply | None:
        """Wait for the reply; None when the message was not attempted."""
        ...


class BatchSender:
    """Sends a batch's messages in the order given. Once the relay is unreachable it attempts
    nothing more, and the messages handed over behind come back unsent (None) for the batch to
    release. The threaded way also skips them when a stop is asked; a pipelined transport has
    already passed them on, so they go out, and are recorded."""

    def __init__(self, transport: Transport, stopping: Callable[[], bool],
                 monotonic: Callable[[], float]) -> None:
        self._transport = transport
        self._stopping = stopping
        self._monotonic = monotonic
        self._unreachable = False
        self._pipelined = transport if isinstance(transport, PipelinedTransport) else None
        self._executor: ThreadPoolExecutor | None = None
        if self._pipelined is not None:
            self._pipelined.reset()
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nurture-send")

    def submit(self, message: OutgoingMessage) -> PendingReply:
        """Hand a message over; the replies must be collected in the order of submission."""
        if self._pipelined is not None:
            self._pipelined.begin(message)
            return _Piped(self._pipelined, self._monotonic)
        assert self._executor is not None
        return _Threaded(self._executor.submit(self._send, message))

    def _send(self, message: OutgoingMessage) -> Reply | None:
        if self._unreachable or self._stopping():
            return None
        result = self._transport.send(message)
        self._unreachable = result.error_kind is SendErrorKind.CONNECTION
        return Reply(result, self._monotonic())

    def __enter__(self) -> BatchSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


class _Threaded:
    def __init__(self, future: Future[Reply | None]) -> None:
        self._future = future

    def result(self) -> Reply | None:
        return self._future.result()


class _Piped:
    def __init__(self, transport: PipelinedTransport, monotonic: Callable[[], float]) -> None:
        self._transport, self._monotonic = transport, monotonic

    def result(self) -> Reply | None:
        answer = self._transport.finish()
        if answer is None:
            return None
        # The outcome may have waited in the socket while this thread rendered: date it by the
        # relay's reply, on this sender's clock.
        return Reply(answer.result, self._monotonic() - answer.age)
