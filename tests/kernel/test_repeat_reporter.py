"""The user-space half of coalescing (otel_fim/kernel/coalescing.py) against a map of its own:
windows are reported once closed (or all at exit), with their counts and times, and removed."""

from __future__ import annotations

import time

from otel_fim.kernel.coalescing import CLOSE_MARGIN_NS, RepeatReporter, opened_window
from otel_fim.kernel.layout import CO_OPENED, FimEventHeader, FimRepeatCount, FimRepeatKey
from tests.factories import make_event


class CountsMap(dict):
    """Stands in for bcc's repeat_counts table: ctypes keys compared by their fields."""

    @staticmethod
    def _k(key: FimRepeatKey) -> tuple[int, int]:
        return (key.ts_boot_ns, key.pid_tgid)

    def __getitem__(self, key: FimRepeatKey) -> FimRepeatCount:
        return super().__getitem__(self._k(key))

    def __delitem__(self, key: FimRepeatKey) -> None:
        super().__delitem__(self._k(key))


def record(boot_ns: int, opened: bool = True) -> bytes:
    h = FimEventHeader(ts_boot_ns=boot_ns, coalesce=CO_OPENED if opened else 0)
    return bytes(h)


def test_a_closed_window_is_reported_once_with_its_count_and_times() -> None:
    now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    start = now - 10 * CLOSE_MARGIN_NS  # closed long ago (window 0 ms)
    counts = CountsMap({(start, (7 << 32) | 8): FimRepeatCount(last_ns=start + 5_000, count=41)})
    delivered = []
    reporter = RepeatReporter(counts, 0, delivered.append)
    event = make_event("open", "/etc/x", pid=7, tid=8, timestamp_ns=1_000_000)
    raw = record(start)
    assert opened_window(raw) and not opened_window(record(start, opened=False))
    reporter.opened(raw, event)
    assert reporter.flush() == 1
    (summary,) = delivered
    repeat = summary.extra["otel_fim.repeat"]
    assert repeat == {"count": 41, "first_time_unix_nano": 1_000_000, "last_time_unix_nano": 1_005_000}
    assert summary.timestamp_ns == 1_005_000 and summary.file.path == "/etc/x"
    assert not counts, "the entry is removed: the kernel opens a new window on the next repeat"
    assert reporter.flush() == 0 and reporter.stats.repeats == 41


def test_an_open_window_waits_unless_forced_and_no_repeats_report_nothing() -> None:
    now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    counts = CountsMap(
        {
            (now, 1 << 32 | 1): FimRepeatCount(last_ns=now, count=3),
            (now + 1, 1 << 32 | 1): FimRepeatCount(last_ns=now + 1, count=0),
        }
    )
    delivered = []
    reporter = RepeatReporter(counts, 60_000, delivered.append)
    for ts in (now, now + 1):
        reporter.opened(record(ts), make_event("open", "/etc/x", pid=1, tid=1))
    assert reporter.flush() == 0 and reporter.pending == 2
    assert reporter.flush(force=True) == 1  # at exit: what was counted so far
    assert [e.extra["otel_fim.repeat"]["count"] for e in delivered] == [3]
    assert not counts and reporter.pending == 0


def test_a_missing_entry_is_counted_not_invented() -> None:
    delivered = []
    reporter = RepeatReporter(CountsMap(), 0, delivered.append)
    reporter.opened(record(1), make_event("open", "/etc/x"))
    assert reporter.flush() == 0 and delivered == [] and reporter.stats.missing == 1
