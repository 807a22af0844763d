"""Writes a run's outcomes on a thread of its own, so that the dispatcher renders and hands over
the next messages while the database commits the last ones. What was handed over and is not yet
written is counted: the dispatcher keeps it, with the messages at the relay, within its window."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from nurture.engine.ports import Outcome


class OutcomeWriter:
    """One thread, one write at a time; outcomes handed over while a write runs go together in
    the next. A write that fails (after the caller's own retries) is raised at the next call."""

    def __init__(self, write: Callable[[list[Outcome]], None]) -> None:
        self._write = write
        self._changed = threading.Condition()
        self._waiting: list[Outcome] = []
        self._pending = 0
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="outcome writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Outcomes handed over and not yet written."""
        with self._changed:
            return self._pending

    def write(self, outcomes: list[Outcome]) -> None:
        """Hand `outcomes` over to be written, without waiting."""
        with self._changed:
            self._raise_error()
            self._waiting.extend(outcomes)
            self._pending += len(outcomes)
            self._changed.notify_all()

    def wait_below(self, count: int) -> None:
        """Wait until fewer than `count` outcomes are waiting to be written."""
        with self._changed:
            while self._pending >= max(count, 1) and self._error is None:
                self._changed.wait()
            self._raise_error()

    def flush(self) -> None:
        """Wait until everything handed over is written."""
        self.wait_below(1)

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def __enter__(self) -> OutcomeWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closing:
                    self._changed.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting, []
            try:
                self._write(batch)
            except BaseException as error:  # raised in the dispatcher's thread, at its next call
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            with self._changed:
                self._pending -= len(batch)
                self._changed.notify_all()
