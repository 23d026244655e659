"""The scan service: one thread that owns the baseline, runs scans and follows live events.

    scans = ScanService(config.scan, config.state_dir)
    scans.start(ruleset)                         # start-up scan: changes made while we were down
    pipeline.on_emitted / on_unmatched -> scans.observe(event)   # live events keep it in step
    each poll: scans.kernel_lost(total_lost); scans.deliver(pipeline)
    scans.stop()

Threads: scans and baseline writes happen on the service's thread (I/O, rate-limited); findings
cross to the polling thread through a bounded queue and are evaluated there by `Pipeline.report`,
like any event. Only `observe`, `kernel_lost`, `deliver` and `request` are called from elsewhere.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otel_fim.constants import OPEN_WRITE_MASK
from otel_fim.event import Event, EventType
from otel_fim.export.record import agent_record
from otel_fim.scan.baseline import BaselineStore
from otel_fim.scan.findings import is_scan, iso, to_event
from otel_fim.scan.scanner import Scan, ScanStats, read_entry
from otel_fim.scan.settings import ScanConfig
from otel_fim.scan.throttle import Throttle
from otel_fim.scan.watched import CHANGING_TYPES, WatchedSet, covered_by_dirs

log = logging.getLogger(__name__)

HEARTBEAT_S = 10.0  # how often "the agent was running at" is recorded (the next start's window)
SETTLE_S = 1.0  # a live event's file is read again this long after the event (the writer finishes)
MAX_DIRTY = 65536  # files waiting for that; more: a full scan instead (never a silent miss)
GAP_DEBOUNCE_S = 2.0  # a repair scan starts once the kernel stopped losing events for this long
QUEUE_SIZE = 1024  # findings waiting for the polling thread (the scan waits when it is full)
DELIVER_BUDGET = 256  # findings evaluated per poll at most
IDLE_WAIT_S = 30.0  # a repair scan waits at most this long for the backlog to be reported
_CHANGING = frozenset(CHANGING_TYPES)


@dataclass
class Gap:
    """A time the kernel lost events: when (first and last loss noticed) and how many."""

    start_ns: int  # the last check that saw no new loss: the gap began after it
    end_ns: int
    lost: int
    noticed: float = field(default_factory=time.monotonic)


@dataclass
class Request:
    reason: str  # startup | repair | periodic | reload | resync
    since_ns: int | None
    gap: Gap | None = None


@dataclass
class ScanCounters:
    scans: int = 0
    findings: int = 0
    gaps: int = 0
    files_last: int = 0
    seconds_last: float = 0.0
    bytes_read: int = 0
    live_refreshes: int = 0
    dirty_overflows: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class ScanService:
    def __init__(
        self, config: ScanConfig, state_dir: str, pipeline_idle: Callable[[], bool] | None = None
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.counters = ScanCounters()
        self.findings: queue.Queue[Event | dict[str, Any]] = queue.Queue(maxsize=QUEUE_SIZE)
        self.idle = threading.Event()  # no scan running or queued, nothing undelivered (tests)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._dirty: dict[str, float] = {}
        self._watched = WatchedSet()
        self._new_watched: WatchedSet | None = None
        self._store: BaselineStore | None = None
        self._thread: threading.Thread | None = None
        self._lost_seen: int | None = None
        self._lost_checked_ns = time.time_ns()
        self._gap: Gap | None = None
        self._next_periodic = float("inf")
        self._last_scan_end_ns: int | None = None
        self._late: list[Event | dict[str, Any]] = []  # found while stopping
        # Set by the agent: True when no event read from the kernel is still waiting to be
        # reported. A repair scan waits for it, so what the backlog still holds is reported live
        # (and refreshed in the baseline) rather than twice.
        self.pipeline_idle = pipeline_idle

    # -- life cycle (polling thread) ---------------------------------------------------------------
    def start(self, ruleset: Any) -> None:
        self._watched = WatchedSet.from_rules(ruleset)
        if self._watched.uncovered:
            log.info(
                "scan: rules on %s name files only by basename or pattern; those are not in the baseline",
                ", ".join(self._watched.uncovered),
            )
        if not self._watched.roots():
            log.info("scan: the rules name no file by path; no baseline is kept")
            return
        try:
            self._store = BaselineStore(self.state_dir)
        except (OSError, sqlite3.Error) as exc:  # live detection goes on without the baseline
            log.error("scan: cannot open the baseline in %s (%s); no scans this run", self.state_dir, exc)
            return
        last_seen = self._store.meta("last_seen_ns")
        first = self._store.meta("generation") is None
        self.request("baseline" if first else "startup", last_seen)
        if self.config.interval > 0:
            self._next_periodic = time.monotonic() + self.config.interval
        self._thread = threading.Thread(target=self._run, name="otel-fim-scan", daemon=True)
        self._thread.start()

    def rules_changed(self, ruleset: Any) -> None:
        """A reload: scan the new watched set (files new to it are added quietly)."""
        with self._lock:
            self._new_watched = WatchedSet.from_rules(ruleset)
        self.request("reload", self._last_scan_end_ns)

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt a scan, read the files live events touched, record when we stopped."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        store = self._store
        if store is not None and (self._thread is None or not self._thread.is_alive()):
            self._refresh_dirty(force=True)
            store.set_meta("last_seen_ns", time.time_ns())
            store.close()
            self._store = None

    # -- from other threads ------------------------------------------------------------------------
    def request(self, reason: str, since_ns: int | None, gap: Gap | None = None) -> None:
        with self._lock:
            if not any(r.reason == reason and r.gap is None and gap is None for r in self._requests):
                self._requests.append(Request(reason, since_ns, gap))
            self.idle.clear()
        self._wake.set()

    def observe(self, event: Event, *_: object) -> None:
        """A live event (matched or not): its file is read again once the writer is done, so the
        baseline follows what the sensor reported. Cheap: runs on the polling thread."""
        if event.type not in _CHANGING or not event.succeeded or is_scan(event):
            return
        if event.type is EventType.OPEN and not getattr(event.details, "flags", 0) & OPEN_WRITE_MASK:
            return  # read-only: nothing changed
        paths = [event.file.path]
        dest = getattr(event.details, "destination", None)
        if dest is not None:
            paths.append(dest.path)
        due = time.monotonic() + SETTLE_S
        watched = self._watched
        for path in paths:
            if path in watched.paths or covered_by_dirs(path, watched.parent_dirs, watched.ancestor_dirs):
                with self._lock:
                    if len(self._dirty) >= MAX_DIRTY and path not in self._dirty:
                        self.counters.dirty_overflows += 1
                        self._dirty.clear()
                        self._requests.append(Request("resync", self._last_scan_end_ns))
                    self._dirty[path] = due

    def kernel_lost(self, total: int) -> None:
        """Called with the kernel's `lost` total (every second or so): a rise is a coverage gap."""
        now = time.time_ns()
        if self._lost_seen is not None and total > self._lost_seen:
            with self._lock:
                if self._gap is None:
                    self._gap = Gap(self._lost_checked_ns, now, total - self._lost_seen)
                    self._gap_started(self._gap)
                else:
                    self._gap.end_ns, self._gap.noticed = now, time.monotonic()
                    self._gap.lost += total - self._lost_seen
                self.idle.clear()
            self._wake.set()
        self._lost_seen = total
        self._lost_checked_ns = now

    def _gap_started(self, gap: Gap) -> None:
        """Say so at once (an alert should not wait for the losses to stop); the record with the
        gap's end and length follows when the repair scan starts. Never blocks the caller."""
        log.warning("coverage gap: the kernel is losing events (%d so far); a repair scan follows", gap.lost)
        try:
            self.findings.put_nowait(gap_record(gap, ended=False))
        except queue.Full:
            pass  # the record at the repair still says it

    def deliver(
        self, report: Callable[[Event], object], emit_record: Callable[[dict[str, Any]], object]
    ) -> int:
        """Polling thread: evaluate queued findings through the rules (and emit agent records)."""
        n = 0
        while n < DELIVER_BUDGET:
            try:
                item = self.findings.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Event):
                report(item)
            else:
                emit_record(item)
            n += 1
        if n == 0 and self._quiet():
            self.idle.set()
        return n

    def drain(
        self, report: Callable[[Event], object], emit_record: Callable[[dict[str, Any]], object]
    ) -> int:
        """At exit, after `stop`: deliver every finding still queued (their rows are in the
        baseline: undelivered, they would never be reported)."""
        n = 0
        while self.deliver(report, emit_record):
            n += 1
        late, self._late = self._late, []
        for item in late:
            report(item) if isinstance(item, Event) else emit_record(item)
        return n + len(late)

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {
            "scans": c.scans, "findings": c.findings, "gaps": c.gaps, "files_last": c.files_last,
            "seconds_last": round(c.seconds_last, 3), "bytes_read": c.bytes_read,
            "live_refreshes": c.live_refreshes, "dirty_overflows": c.dirty_overflows,
            "by_reason": dict(c.by_reason),
        }  # fmt: skip

    def _quiet(self) -> bool:
        with self._lock:
            return not self._requests and self._gap is None and not self._scanning and self.findings.empty()

    # -- the service's thread ----------------------------------------------------------------------
    _scanning = False

    def _run(self) -> None:
        next_beat = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                self._take_gap()
                request = self._next_request()
                if request is not None:
                    self._scan(request)
                self._refresh_dirty()
                now = time.monotonic()
                if now >= self._next_periodic:
                    self._next_periodic = now + self.config.interval
                    self.request("periodic", self._last_scan_end_ns)
                if now >= next_beat and self._store is not None:
                    self._store.set_meta("last_seen_ns", time.time_ns())
                    next_beat = now + HEARTBEAT_S
            except Exception:  # a scan failure must not end live monitoring
                log.exception("scan: failed; the baseline stays as it was")
                self._scanning = False

    def _take_gap(self) -> None:
        with self._lock:
            gap = self._gap
            if gap is None or time.monotonic() - gap.noticed < GAP_DEBOUNCE_S:
                return
            self._gap = None
            self._requests.insert(0, Request("repair", gap.start_ns, gap))

    def _next_request(self) -> Request | None:
        with self._lock:
            if not self._requests:
                return None
            self._scanning = True
            if self._new_watched is not None:
                self._watched, self._new_watched = self._new_watched, None
            return self._requests.pop(0)

    def _scan(self, request: Request) -> None:
        assert self._store is not None
        if request.gap is not None:
            self._wait_pipeline_idle(IDLE_WAIT_S)
        started, started_ns = time.monotonic(), time.time_ns()
        self._refresh_dirty(force=True)  # what live events reported is not a finding
        if request.gap is not None:
            self._put(gap_record(request.gap))
            self.counters.gaps += 1
        throttle = Throttle(self.config.bytes_per_s, self.config.files_per_s, self._stop)
        scan = Scan(
            self._store, self._watched, throttle, self.config.hash_max_bytes,
            report=request.reason != "baseline",
            verify_content=self.config.verify_content and request.reason == "periodic",
            before_commit=self._wait_delivered,
        )  # fmt: skip
        window = (request.since_ns, started_ns)
        for finding in scan.run():
            self._put(to_event(finding, request.reason, window))
        stats = scan.stats
        seconds = time.monotonic() - started
        c = self.counters
        c.scans += 1
        c.findings += stats.findings
        c.files_last, c.seconds_last, c.bytes_read = stats.files, seconds, c.bytes_read + stats.bytes_read
        c.by_reason[request.reason] = c.by_reason.get(request.reason, 0) + 1
        self._last_scan_end_ns = time.time_ns()
        log.info(
            "scan (%s): %d files, %d hashed (%.1f MiB), %d findings, %d new to the baseline, %.2fs "
            "(%.2fs throttled)",
            request.reason, stats.files, stats.hashed, stats.bytes_read / 2**20, stats.findings,
            stats.added_quietly, seconds, throttle.slept,
        )  # fmt: skip
        if request.reason in ("startup", "repair", "resync"):  # the first run has nothing to say
            self._put(summary_record(request, stats, seconds, window))
        with self._lock:
            self._scanning = False

    def _put(self, item: Event | dict[str, Any]) -> None:
        while not self._stop.is_set():
            try:
                self.findings.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        self._late.append(item)  # stopping: `drain` still delivers it (its row may be committed)

    def _wait_pipeline_idle(self, seconds: float) -> None:
        idle = self.pipeline_idle
        deadline = time.monotonic() + seconds
        while idle is not None and not idle() and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(0.1)

    def _wait_delivered(self) -> None:
        """Until the polling thread took every finding queued so far (or we stop)."""
        while not self.findings.empty() and not self._stop.is_set():
            self._stop.wait(0.02)

    def _refresh_dirty(self, force: bool = False) -> None:
        store = self._store
        if store is None:
            return
        now = time.monotonic()
        with self._lock:
            due = [p for p, t in self._dirty.items() if force or t <= now]
            for p in due:
                del self._dirty[p]
        if not due:
            return
        throttle = Throttle(0, 0)  # live files are few and were just written: read them now
        stats = ScanStats()
        store.begin()
        for path in due:
            entry = read_entry(path, throttle, self.config.hash_max_bytes, stats)
            if entry is None:
                store.delete(path)
            else:
                store.put(path, entry)
            self.counters.live_refreshes += 1
        store.commit()


def gap_record(gap: Gap, ended: bool = True) -> dict[str, Any]:
    """`ended`: the losses stopped (the repair scan starts); else the gap was just noticed."""
    seconds = (gap.end_ns - gap.start_ns) / 1e9
    if ended:
        body = (
            f"coverage gap: the kernel lost {gap.lost} events between {iso(gap.start_ns)} and "
            f"{iso(gap.end_ns)} ({seconds:.1f}s); a repair scan of the watched files follows"
        )
    else:
        body = (
            f"coverage gap: the kernel is losing events since {iso(gap.start_ns)} ({gap.lost} so far); "
            "a repair scan of the watched files follows once it stops"
        )
    return agent_record(
        "otel_fim.coverage.gap", "high", body,
        {
            "otel_fim.gap.start": iso(gap.start_ns), "otel_fim.gap.end": iso(gap.end_ns),
            "otel_fim.gap.duration_s": round(seconds, 3), "otel_fim.gap.lost": gap.lost,
            "otel_fim.gap.reason": "kernel_lost", "otel_fim.gap.state": "ended" if ended else "ongoing",
        },
    )  # fmt: skip


def summary_record(
    request: Request, stats: ScanStats, seconds: float, window: tuple[int | None, int]
) -> dict[str, Any]:
    since = iso(window[0]) if window[0] is not None else "an unknown time"
    body = (
        f"{request.reason} scan: {stats.files} watched files compared with the baseline for changes "
        f"between {since} and {iso(window[1])}: {stats.findings} found"
    )
    if stats.interrupted:
        body += "; interrupted by the agent's stop (the next start compares the rest)"
    attrs: dict[str, Any] = {
        "otel_fim.scan.reason": request.reason, "otel_fim.scan.files": stats.files,
        "otel_fim.scan.findings": stats.findings, "otel_fim.scan.duration_s": round(seconds, 3),
        "otel_fim.scan.window.end": iso(window[1]),
    }  # fmt: skip
    if window[0] is not None:
        attrs["otel_fim.scan.window.start"] = iso(window[0])
    if stats.interrupted:
        attrs["otel_fim.scan.interrupted"] = True
    return agent_record("otel_fim.scan.completed", "info", body, attrs)
