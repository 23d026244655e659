"""The plugin stage: a bounded queue between the ring-buffer consumer and the plugins.

    consumer thread: Pipeline.handle -> rules -> PluginStage.submit(event, matches)   (cheap)
    plugin worker:   enrich -> Emitter.emit (outputs, on_emitted) -> notify -> actions

A slow plugin therefore never holds up the consumer, and the kernel never drops events because
of it. When the queue is full, `submit` waits briefly (`overflow_wait`, 50 ms by default) for the
worker; if it is still full, the detection is exported at once, on the consumer thread, without
enrichment, and marked `otel_fim.plugins.skipped = "queue_full"`; its notify hooks and actions do not
run. Every such event counts as `plugin_queue_overflow`. Once overflowing, `submit` stops waiting
until the queue is half empty again, and it waits at most once a second: a stuck or overloaded
plugin stalls the consumer for at most `overflow_wait` per second (5% with the defaults).

While the consumer finds the queue full (and for `OVERLOAD_HOLD` seconds after), the worker also
yields: it pauses after each event so that it uses at most `OVERLOAD_SHARE` of the time. Plugins
and the consumer share one interpreter lock; an enrichment takes far longer than exporting a bare
detection, so a worker running flat out during a burst would take the lock from the consumer, the
kernel's ring buffer would overflow, and detections -- not just their enrichment -- would be lost.

Why not drop, and why not block: for a security product the detection must be exported (dropping
loses it), and blocking the consumer moves the loss into the kernel's ring buffer, where nothing
is left to export at all. Enrichment, alerts and actions are the part we can afford to lose under
overload; the overflow counter and the record's marker say when that happened.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from otel_fim.event import Event
from otel_fim.export.attributes import PLUGINS_NAMESPACE
from otel_fim.rules.match import Match

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1024
DEFAULT_OVERFLOW_WAIT = 0.05  # seconds the consumer waits for room before exporting unenriched
WAIT_INTERVAL = 1.0  # ... at most once this often: a sustained overload never stalls it for long
OVERLOAD_SHARE = 0.2  # of the time the worker may use while the consumer overflows
OVERLOAD_HOLD = 0.5  # seconds after the last overflow that count as still overloaded
MAX_YIELD = 0.2  # the longest pause after one event
SKIPPED_NAMESPACE = PLUGINS_NAMESPACE

Emit = Callable[[Event, Sequence[Match]], "Mapping[str, Any] | None"]


class PluginHooks(Protocol):
    """The per-event hooks the worker calls (`manager.Plugins` implements them, each isolated)."""

    def enrich(self, event: Event, matches: Sequence[Match]) -> None: ...

    def notify(self, event: Event, matches: Sequence[Match], record: Mapping[str, Any]) -> None: ...

    def run_actions(self, event: Event, matches: Sequence[Match], record: Mapping[str, Any]) -> None: ...

    def shutdown(self) -> None: ...


_STOP = object()


class PluginStage:
    def __init__(
        self,
        plugins: PluginHooks,
        emit: Emit,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        overflow_wait: float = DEFAULT_OVERFLOW_WAIT,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.plugins = plugins
        self.emit = emit
        self.overflow_wait = overflow_wait
        self.on_overflow = on_overflow
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.overflowed = 0
        self.processed = 0
        self._overflowing = False
        self._next_wait = 0.0
        self._last_overflow = float("-inf")  # monotonic time of the last queue_full export
        self._last_warning = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="otel-fim-plugins", daemon=True)
        self._thread.start()

    # -- consumer thread ---------------------------------------------------------------------------

    def submit(self, event: Event, matches: Sequence[Match]) -> None:
        item = (event, tuple(matches))
        if self._stopping:
            self._overflow(event, matches, "stopping")
            return
        if self._overflowing and self.queue.qsize() <= self.queue.maxsize // 2:
            self._overflowing = False
        try:
            may_wait = not self._overflowing and time.monotonic() >= self._next_wait
            if may_wait and self.overflow_wait > 0:
                self.queue.put(item, timeout=self.overflow_wait)
            else:
                self.queue.put_nowait(item)
            return
        except queue.Full:
            self._last_overflow = time.monotonic()
            if not self._overflowing:
                self._overflowing = True
                self._next_wait = self._last_overflow + WAIT_INTERVAL
        self._overflow(event, matches, "queue_full")

    def _overflow(self, event: Event, matches: Sequence[Match], reason: str) -> None:
        self.overflowed += 1
        if self.on_overflow is not None:
            self.on_overflow()
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            self._last_warning = now
            log.warning(
                "plugin queue full (%d events): exporting matches without enrichment, alerts or "
                "actions (%d so far)",
                self.queue.maxsize,
                self.overflowed,
            )
        event.extra = {**event.extra, SKIPPED_NAMESPACE: {"skipped": reason}}
        self.emit(event, matches)

    # -- worker ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            started = time.thread_time()
            try:
                if item is _STOP:
                    return
                self._process(*item)
            except Exception:  # the stage itself must survive anything
                log.exception("plugin stage: unexpected error")
            finally:
                self.queue.task_done()
            self._yield_if_overloaded(started)

    def _yield_if_overloaded(self, started_cpu: float) -> None:
        """While overloaded, pause so that this event's CPU time (which is, but for system calls,
        time holding the interpreter lock) is at most OVERLOAD_SHARE of the worker's time. CPU
        time, not wall time: a plugin sleeping in `wait_for_writer` holds no lock."""
        if self._stopping or time.monotonic() - self._last_overflow >= OVERLOAD_HOLD:
            return
        used = time.thread_time() - started_cpu
        time.sleep(min(MAX_YIELD, used * (1.0 / OVERLOAD_SHARE - 1.0)))

    def _process(self, event: Event, matches: Sequence[Match]) -> None:
        self.plugins.enrich(event, matches)
        record = self.emit(event, matches)
        if record is None:
            return
        self.plugins.notify(event, matches, record)
        self.plugins.run_actions(event, matches, record)
        self.processed += 1

    # -- shutdown ----------------------------------------------------------------------------------

    def drain(self, timeout: float) -> bool:
        """Wait at most `timeout` s for the queue to empty; True if it did."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float) -> None:
        """Drain (bounded), stop the worker, run the plugins' shutdown hooks. Whatever is still
        queued after `timeout` is exported without enrichment rather than lost."""
        drained = self.drain(timeout)
        self._stopping = True
        if not drained:
            left = 0
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                self.queue.task_done()
                if item is not _STOP:
                    left += 1
                    event, matches = item
                    self._overflow(event, matches, "shutdown")
            log.warning("plugin stage: %d events exported without plugins at shutdown", left)
        self.queue.put(_STOP)
        self._thread.join(timeout=max(0.1, timeout))
        self.plugins.shutdown()
