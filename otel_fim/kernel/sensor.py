"""The kernel sensor: compiles the programs in bpf/, attaches them, and reads the ring buffer.

Use as a context manager: everything attached is detached on exit, whatever the exit.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_fim.event import Event, EventType
from otel_fim.kernel import headers, tracefs
from otel_fim.kernel.btf import Btf, BtfError
from otel_fim.kernel.decoder import Decoder
from otel_fim.kernel.headers import HeadersError
from otel_fim.kernel.kernel_filter import KernelFilter
from otel_fim.kernel.layout import (
    BPF_DIR,
    COUNTERS,
    EVENT_TYPES,
    LOOKUP_COUNTERS,
    TAIL_PROGRAMS,
    FimConfig,
)
from otel_fim.kernel.map_check import map_mismatches
from otel_fim.kernel.module import KernelModule
from otel_fim.kernel.offsets import MEMBERS, cflags, name_lookup_constants, read_offsets
from otel_fim.kernel.ring_reader import RingReader
from otel_fim.kernel.tracefs import TracefsError

log = logging.getLogger(__name__)

# 4 MiB (locked kernel memory, reserved all the time): ~15,000 records of ~250 B. It only has to
# hold what arrives between two reads of the sensor (every REFILL_EVERY records handled, a few
# ms); bursts queue in the user-space backlog. Measured (bench, burst): 50,000/s for 10 s, 0 lost.
DEFAULT_RINGBUF_PAGES = 1024

# Records handed over per poll() call at most (see Sensor.poll).
POLL_BUDGET = 2048

# The user-space backlog: records copied out of the kernel's ring buffer, waiting for the pipeline.
# A burst the pipeline cannot keep up with queues here (pageable memory, used only while it lasts)
# instead of overflowing the kernel's buffer (locked memory, reserved all the time). At ~250 B a
# record (about 15 % more as Python objects), 128 MiB hold ~500,000 records: a 50,000/s burst for
# 10 s peaked at ~315,000 (bench). When full, reading stops: the kernel's buffer fills next, and
# what it then drops is counted `lost`.
DEFAULT_BACKLOG_MIB = 128
REFILL_EVERY = 256  # records handled between two reads of the kernel's buffer


class SensorError(RuntimeError):
    pass


def _root_hint() -> str:
    return "" if os.geteuid() == 0 else " (the sensor needs root: it loads eBPF programs and reads tracefs)"


def host_root_mount_id() -> int:
    """The mount id of our root (the agent runs in the host's mount namespace and root)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        if fields[4] == "/":
            mount_id = int(fields[0])  # the last "/" line is the one on top
    return mount_id


def detach_all(bpf: Any) -> None:
    """Detach every tracepoint at once. On recent kernels each syscall-tracepoint detach waits for
    an RCU-tasks grace period; one after the other that is seconds (measured: 5.9 s for 72 here),
    in parallel the waits overlap (0.1 s)."""
    from bcc.libbcc import lib

    fds = list(bpf.tracepoint_fds.values())
    if fds:
        with ThreadPoolExecutor(max_workers=len(fds), thread_name_prefix="detach") as pool:
            list(pool.map(lib.bpf_close_perf_event_fd, fds))
    bpf.tracepoint_fds.clear()


_LOCAL_INCLUDE = re.compile(r'^#include "([^"]+)"\s*$', re.M)


def inline_local_includes(path: Path, seen: set[Path] | None = None) -> str:
    """The source with our own `#include "x.h"` replaced by the header's text (once each).

    bcc rewrites map calls (`m.lookup(...)`) only in the text it is given, not in included
    headers, so headers that touch maps must arrive inline."""
    seen = set() if seen is None else seen

    def expand(match: re.Match[str]) -> str:
        header = (path.parent / match.group(1)).resolve()
        if header in seen:
            return ""
        seen.add(header)
        return inline_local_includes(header, seen)

    return _LOCAL_INCLUDE.sub(expand, path.read_text())


@dataclass
class SensorOptions:
    bpf_dir: Path = BPF_DIR
    ringbuf_pages: int = DEFAULT_RINGBUF_PAGES
    btf_path: str = "/sys/kernel/btf/vmlinux"
    agent_pid: int = os.getpid()
    kernel_filter: bool = True  # False: every event goes to user space (--no-kernel-filter)
    backlog_mib: int = DEFAULT_BACKLOG_MIB  # records read from the kernel, not yet handled


class Sensor:
    def __init__(
        self,
        on_event: Callable[[Event], None],
        options: SensorOptions | None = None,
        modules: Sequence[KernelModule] = (),
    ) -> None:
        self.options = options or SensorOptions()
        self.modules = list(modules)
        self._on_event = on_event
        self._bpf: Any = None  # bcc.BPF once started (bcc ships no type information)
        self._decoder = Decoder()
        self.offsets: dict[str, int] = {}
        self.name_lookup: dict[str, int] = {}  # FIM_NAME_LOOKUP and, when 1, its constants
        self.filter: KernelFilter | None = None
        self.decode_errors = 0
        self.handler_errors = 0
        self._ring: RingReader | None = None
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self.backlog_peak = 0  # records
        # Run after a poll read its records, before they are handed over (ProcessContext drains
        # the process ring buffer here: once per batch instead of once per event).
        self.before_delivery: list[Callable[[], None]] = []

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> Sensor:
        if self._bpf is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        opts = self.options
        if opts.ringbuf_pages < 1 or opts.ringbuf_pages & (opts.ringbuf_pages - 1):
            raise SensorError(f"ring buffer pages must be a power of two, got {opts.ringbuf_pages}")
        if opts.backlog_mib < 1:
            raise SensorError(f"the backlog needs at least 1 MiB, got {opts.backlog_mib}")
        members = dict(MEMBERS)
        for module in self.modules:
            members.update(module.members())
        try:
            headers.configure_bcc(headers.prepare())
            tracefs.ensure_mounted()
            btf = Btf.load(opts.btf_path)
            self.offsets = read_offsets(btf, members)
            self.name_lookup = name_lookup_constants(btf)
        except (HeadersError, TracefsError, BtfError, OSError) as exc:
            raise SensorError(f"cannot prepare the kernel sensor: {exc}{_root_hint()}") from exc
        sources = ["file_syscalls.c", *(m.source for m in self.modules)]
        source = "\n".join(inline_local_includes(opts.bpf_dir / name) for name in sources)
        flags = [f"-I{opts.bpf_dir}", f"-DRINGBUF_PAGES={opts.ringbuf_pages}", *cflags(self.offsets)]
        flags += cflags(self.name_lookup)
        for module in self.modules:
            flags += module.cflags()
        # Written once the tail-call programs are in place: bcc attaches the tracepoints while
        # loading, and until the config is armed they track nothing (no half-finished chain).
        config = FimConfig(agent_tgid=opts.agent_pid, host_root_mnt_id=host_root_mount_id(), armed=1)
        from bcc import BPF  # imported here: only Debian's python3 has it

        try:
            # Loading attaches every TRACEPOINT_PROBE.
            self._bpf = BPF(text=source.encode(), cflags=flags)
        except Exception as exc:
            raise SensorError(
                f"cannot load the BPF programs from {opts.bpf_dir}: {exc}{_root_hint()}"
            ) from exc
        mismatches = map_mismatches(self._bpf, sources)
        if mismatches:
            self.stop()
            raise SensorError(
                "bpf/events.h and otel_fim/kernel/layout.py disagree: " + "; ".join(mismatches)
            )
        try:
            tail_calls = self._bpf[b"tail_calls"]
            for index, name in enumerate(TAIL_PROGRAMS):
                fn = self._bpf.load_func(name.encode(), BPF.TRACEPOINT)
                tail_calls[ctypes.c_int(index)] = ctypes.c_int(fn.fd)
            self._bpf[b"config"][ctypes.c_int(0)] = config
            events = self._bpf[b"events"]
            self._ring = RingReader(events.map_fd, opts.ringbuf_pages * mmap.PAGESIZE)
            self.filter = KernelFilter(self._bpf, enabled=opts.kernel_filter)
            for module in self.modules:
                module.attach(self._bpf)
        except Exception:
            self.stop()
            raise
        log.info("sensor attached: %d tracepoints", self.attached_count())

    def stop(self) -> None:
        if self._bpf is not None:
            bpf, self._bpf = self._bpf, None
            for module in self.modules:
                try:
                    module.detach()
                except Exception:  # detaching the rest matters more
                    log.exception("detaching module %s failed", module.name)
            self.filter = None
            detach_all(bpf)
            if self._ring is not None:
                self._ring.close()
                self._ring = None
            bpf.cleanup()

    # -- reading ----------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 100, max_events: int = POLL_BUDGET) -> int:
        """Hand up to `max_events` records to `on_event`, waiting up to timeout_ms when none is
        queued. Returns the records handed over.

        Records are copied out of the kernel's ring buffer into the backlog in bulk, before and
        every REFILL_EVERY records during the handling, so the kernel's buffer stays nearly empty
        while the pipeline works through a burst. Bounded (max_events), so the caller gets to look
        at its stop flag on a busy host."""
        if self._bpf is None or self._ring is None:
            raise SensorError("sensor is not started")
        if not self._backlog:
            self._ring.wait(timeout_ms)
        self._refill()
        handled = 0
        while self._backlog and handled < max_events:
            raw = self._backlog.popleft()
            self._backlog_bytes -= len(raw)
            self._deliver(raw)
            handled += 1
            if handled % REFILL_EVERY == 0:
                self._refill()
        return handled

    @property
    def backlog(self) -> int:
        """Records read from the kernel and not handled yet."""
        return len(self._backlog)

    def _refill(self) -> None:
        assert self._bpf is not None and self._ring is not None
        room = self.options.backlog_mib * 1024 * 1024 - self._backlog_bytes
        if room > 0:
            self._backlog_bytes += self._ring.read(self._backlog.append, room)
            self.backlog_peak = max(self.backlog_peak, len(self._backlog))
        if self._bpf._ringbuf_manager:  # the modules' ring buffers (bcc's), e.g. proc_events
            self._bpf.ring_buffer_consume()
        # After the copy: every process record written before these file records is handled first.
        for hook in self.before_delivery:
            hook()

    def _deliver(self, raw: bytes) -> None:
        try:
            event = self._decoder.decode_bytes(raw)
        except Exception:  # a decoder bug must not stop the sensor: count it and go on
            self.decode_errors += 1
            log.exception("cannot decode a %d-byte event", len(raw))
            return
        try:
            self._on_event(event)
        except Exception:  # nor may one event stop the rest of its batch
            self.handler_errors += 1
            log.exception("handling a %s event failed", event.type.value)

    def lookup_counters(self) -> dict[str, int]:
        """How the kernel's name lookups went (enum fim_lookup_counter in bpf/events.h), summed over CPUs."""
        if self._bpf is None or not self.name_lookup.get("FIM_NAME_LOOKUP"):
            return {}
        table = self._bpf[b"lookup_counters"]
        return {name: sum(table[ctypes.c_int(i)]) for i, name in enumerate(LOOKUP_COUNTERS)}

    def discarder_count(self) -> int:
        return self.filter.discarder_count() if self.filter else 0

    def attached_count(self) -> int:
        return 0 if self._bpf is None else self._bpf.num_open_tracepoints()

    def counters(self) -> dict[tuple[str, EventType], int]:
        """Cumulative kernel counters: (counter, event type) -> sum over CPUs."""
        if self._bpf is None:
            return {}
        table = self._bpf[b"counters"]
        out: dict[tuple[str, EventType], int] = {}
        for t_index, etype in enumerate(EVENT_TYPES):
            for c_index, name in enumerate(COUNTERS):
                values = table[ctypes.c_int(t_index * len(COUNTERS) + c_index)]
                out[(name, etype)] = sum(values)
        return out

    @property
    def tracepoints(self) -> Iterable[str]:
        return [] if self._bpf is None else [tp.decode() for tp in self._bpf.tracepoint_fds]
