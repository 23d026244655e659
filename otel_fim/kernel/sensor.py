"""The kernel sensor: compiles the programs in bpf/, attaches them, and reads the ring buffer.

Use as a context manager: everything attached is detached on exit, whatever the exit.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
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
from otel_fim.kernel.layout import BPF_DIR, COUNTERS, EVENT_TYPES, FimConfig
from otel_fim.kernel.module import KernelModule
from otel_fim.kernel.offsets import MEMBERS, cflags, name_lookup_constants, read_offsets
from otel_fim.kernel.tracefs import TracefsError

log = logging.getLogger(__name__)

# 16 MiB: at ~300 B a typical event, about 50,000 events of slack while user space catches up.
# Measured (bench, burst): 4 MiB loses events above 5,000 relevant events/s, 16 MiB holds 10,000/s.
DEFAULT_RINGBUF_PAGES = 4096


# Index in the `tail_calls` program array -> program (TAIL_* in file_syscalls.c).
TAIL_PROGRAMS = ("complete_call", "walk_path", "finish_path", "lookup_name")


# lookup_counters indexes (enum lk_counter in bpf/name_lookup.h).
LOOKUP_COUNTERS = ("cache_hit", "scan_hit", "partial")

# Records handed over per poll() call at most (see Sensor.poll).
POLL_BUDGET = 2048


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
        self._bpf = None
        self._decoder = Decoder()
        self.offsets: dict[str, int] = {}
        self.name_lookup: dict[str, int] = {}  # FIM_NAME_LOOKUP and, when 1, its constants
        self.filter: KernelFilter | None = None
        self.decode_errors = 0
        self._budget = self._left = POLL_BUDGET
        self.handler_errors = 0
        self._batch: list[bytes] = []  # raw records of the current poll (at most its budget)
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
        if opts.ringbuf_pages & (opts.ringbuf_pages - 1):
            raise SensorError(f"ring buffer pages must be a power of two, got {opts.ringbuf_pages}")
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
        try:
            tail_calls = self._bpf[b"tail_calls"]
            for index, name in enumerate(TAIL_PROGRAMS):
                fn = self._bpf.load_func(name.encode(), BPF.TRACEPOINT)
                tail_calls[ctypes.c_int(index)] = ctypes.c_int(fn.fd)
            self._bpf[b"config"][ctypes.c_int(0)] = config
            self._bpf[b"events"].open_ring_buffer(self._handle)
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
            bpf.cleanup()

    # -- reading ----------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 100, max_events: int = POLL_BUDGET) -> int:
        """Deliver up to `max_events` records to `on_event`, waiting up to timeout_ms for the first.

        Bounded: libbpf keeps consuming while producers keep writing, so without a budget a busy
        host would never let the caller look at its stop flag. Returns the records delivered.

        The ring-buffer callback only copies each record out (a few hundred bytes, at most
        `max_events` of them); decoding and the pipeline run after libbpf returns. The kernel's
        buffer is freed as fast as it can be read, and the callback, which libbpf calls from C,
        takes the GIL only for a moment each time instead of for the whole pipeline."""
        if self._bpf is None:
            raise SensorError("sensor is not started")
        self._budget = self._left = max_events
        try:
            self._bpf.ring_buffer_poll(timeout_ms)
        finally:
            batch, self._batch = self._batch, []
        if batch:
            for hook in self.before_delivery:
                hook()
            for raw in batch:
                self._deliver(raw)
        return len(batch)

    def _handle(self, _ctx: int, data: int, size: int) -> int:
        self._left -= 1
        self._batch.append(ctypes.string_at(data, size))
        return -1 if self._left <= 0 else 0  # negative: libbpf stops after this (consumed) record

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
        """How the kernel's name lookups went (LKC_* in bpf/name_lookup.h), summed over CPUs."""
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
