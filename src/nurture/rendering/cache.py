"""The structure cache: an email's inlined HTML with slots for the personal values and its wrapped
text, kept in a thread-safe LRU cache keyed by everything the structure depends on."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from nurture.rendering.escaping import Context


@dataclass(frozen=True)
class Structure:
    html_literals: tuple[str, ...]
    html_slots: tuple[tuple[str, Context], ...]
    """(personal variable, where it sits): one between each pair of literals."""
    text_lines: tuple[tuple[bool, str], ...]
    """(has a placeholder, line); lines without one are already wrapped, and each run of them
    is one piece."""


class StructureCache:
    """Least recently used structures beyond `size` are dropped."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[tuple[Any, ...], Structure] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> Structure | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: Structure) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
