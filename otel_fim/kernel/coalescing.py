"""User-space half of the in-kernel coalescing of identical repeats (bpf/coalesce.h).

The kernel sends the first event of a window (marked FIM_CO_OPENED) and counts the identical
repeats that follow within the window in `repeat_counts`, keyed by that record. Once the window
has closed, `RepeatReporter.flush` reads the count, removes the entry (so the kernel opens a new
window on the next repeat) and, when there were repeats, hands over one more event: the opening
event again, stamped with the last repeat's time and carrying `otel_fim.repeat.count` (repeats after
the first record), `otel_fim.repeat.first_time_unix_nano` and `otel_fim.repeat.last_time_unix_nano`. It goes
through the rules and plugins like any event, so hash/diff see the file as it is after the window.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otel_fim.event import Event
from otel_fim.kernel.layout import CO_OPENED, FimEventHeader, FimRepeatKey

DEFAULT_WINDOW_MS = 250
# The kernel decides "still open" with the time its event started; wait this much longer before
# reading a window's count, so no fold can land after the entry is gone.
CLOSE_MARGIN_NS = 50_000_000

_COALESCE_AT = FimEventHeader.coalesce.offset
_TS_AT = FimEventHeader.ts_boot_ns.offset


def opened_window(raw: bytes) -> bool:
    """Did this ring-buffer record open a coalescing window?"""
    return bool(int.from_bytes(raw[_COALESCE_AT : _COALESCE_AT + 2], "little") & CO_OPENED)


@dataclass
class RepeatStats:
    windows: int = 0  # windows opened that user space saw
    reported: int = 0  # windows that had repeats: one event each
    repeats: int = 0  # repeats those events carried
    missing: int = 0  # a window's entry was not there (never expected: the map is not LRU)


@dataclass
class _Window:
    event: Event
    key: FimRepeatKey
    boot_ns: int
    closes_at_ns: int


class RepeatReporter:
    def __init__(self, counts: Any, window_ms: int, deliver: Callable[[Event], None]) -> None:
        self._counts = counts  # bcc table: repeat_counts
        self._window_ns = window_ms * 1_000_000
        self._deliver = deliver
        self._open: deque[_Window] = deque()
        self.stats = RepeatStats()

    def opened(self, raw: bytes, event: Event) -> None:
        """`event` (decoded from `raw`) opened a window: report its repeats once it closes."""
        boot_ns = int.from_bytes(raw[_TS_AT : _TS_AT + 8], "little")
        key = FimRepeatKey(boot_ns, (event.process.pid << 32) | event.process.tid)
        self._open.append(_Window(event, key, boot_ns, boot_ns + self._window_ns + CLOSE_MARGIN_NS))
        self.stats.windows += 1

    @property
    def pending(self) -> int:
        return len(self._open)

    def flush(self, force: bool = False) -> int:
        """Report every closed window (every window with `force`, at exit). Returns events handed over.

        With bcc's table, one batch read of the whole map and one batch delete per call, however
        many windows closed: a host without rules opens a window for nearly every event."""
        now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        closed: list[_Window] = []
        while self._open and (force or self._open[0].closes_at_ns <= now):
            closed.append(self._open.popleft())
        if not closed:
            return 0
        counts = self._take(closed)
        handed = 0
        for window in closed:
            found = counts.get((window.key.ts_boot_ns, window.key.pid_tgid))
            if found is None:
                self.stats.missing += 1
                continue
            count, last_ns = found
            if count:
                self._deliver(self._summary(window, count, last_ns))
                self.stats.reported += 1
                self.stats.repeats += count
                handed += 1
        return handed

    def _take(self, closed: list[_Window]) -> dict[tuple[int, int], tuple[int, int]]:
        """(ts, pid_tgid) -> (count, last_ns) of the closed windows' entries, which are removed."""
        table = self._counts
        if not hasattr(table, "items_lookup_batch"):  # a plain mapping (tests)
            out = {}
            for window in closed:
                try:
                    entry = table[window.key]
                    out[(window.key.ts_boot_ns, window.key.pid_tgid)] = (int(entry.count), int(entry.last_ns))
                    del table[window.key]
                except KeyError:
                    continue
            return out
        wanted = {(w.key.ts_boot_ns, w.key.pid_tgid): w.key for w in closed}
        out = {}
        for key, value in table.items_lookup_batch():
            k = (key.ts_boot_ns, key.pid_tgid)
            if k in wanted:
                out[k] = (int(value.count), int(value.last_ns))
        for k in wanted.keys() - out.keys():  # a batch read may stop short while the kernel writes
            try:
                entry = table[wanted[k]]
            except KeyError:
                continue
            out[k] = (int(entry.count), int(entry.last_ns))
        if out:
            keys = (table.Key * len(out))()
            for i, (ts, pid_tgid) in enumerate(out):
                keys[i].ts_boot_ns, keys[i].pid_tgid = ts, pid_tgid
            table.items_delete_batch(keys)
        return out

    @staticmethod
    def _summary(window: _Window, count: int, last_boot_ns: int) -> Event:
        event = window.event
        epoch_offset = event.timestamp_ns - window.boot_ns
        repeat = {
            "count": count,
            "first_time_unix_nano": event.timestamp_ns,
            "last_time_unix_nano": last_boot_ns + epoch_offset,
        }
        return dataclasses.replace(
            event, timestamp_ns=last_boot_ns + epoch_offset, extra={**event.extra, "otel_fim.repeat": repeat}
        )
