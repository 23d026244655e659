"""A bounded memo for the event path: values derived from what repeats across events (a file's
escaped names, a process's attributes, a rule set's match attributes).

Cleared whole when full rather than evicting one entry at a time: no bookkeeping per hit, memory
stays bounded, and a working set that fits refills at once.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._values: dict[K, V] = {}
        self.get = self._values.get  # bound once: the hit path is one C call

    def put(self, key: K, value: V) -> V:
        if len(self._values) >= self.limit:
            self._values.clear()
        self._values[key] = value
        return value

    def clear(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)
