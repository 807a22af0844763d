"""A batch's sending thread: messages go to the relay one after another on a thread of their own,
so that the dispatcher renders and records while the relay answers."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from nurture.ports import OutgoingMessage, SendErrorKind, SendResult, Transport


class Reply(NamedTuple):
    result: SendResult
    at: float
    """The sender's monotonic clock when the relay answered."""


class BatchSender:
    """A batch's sending thread. Once the relay is unreachable, or a stop is asked, it attempts
    nothing more: what was handed to it comes back unsent (None) for the batch to release."""

    def __init__(self, transport: Transport, stopping: Callable[[], bool],
                 monotonic: Callable[[], float]) -> None:
        self._transport = transport
        self._stopping = stopping
        self._monotonic = monotonic
        self._unreachable = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nurture-send")

    def submit(self, message: OutgoingMessage) -> Future[Reply | None]:
        return self._executor.submit(self._send, message)

    def _send(self, message: OutgoingMessage) -> Reply | None:
        if self._unreachable or self._stopping():
            return None
        result = self._transport.send(message)
        self._unreachable = result.error_kind is SendErrorKind.CONNECTION
        return Reply(result, self._monotonic())

    def __enter__(self) -> BatchSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True)
