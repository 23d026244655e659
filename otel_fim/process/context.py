"""`ProcessContext.enrich(event)`: a file event's process, its ancestors and its container.

Wiring: add `ctx.module` to the Sensor's modules, and call `ctx.enrich(event)` on each event
before rules are evaluated (on the polling thread). See README.md#process-and-container-context.

An event's pid is looked up in this order: (1) the cache, after draining the process ring buffer
(the exec record of a process is always written before its file syscalls, so a process the kernel
saw is found even when its file event was polled first); (2) /proc, for a live process the
kernel did not report (started before the agent and missed by the seed); (3) nothing: the event
keeps what the file record carries (pid, ppid, comm, ids).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from otel_fim.event import AncestorInfo, ContainerInfo, Event
from otel_fim.kernel.decoder import boot_to_epoch_offset_ns
from otel_fim.process.cache import DEFAULT_MAX_DEPTH, ProcessCache, ProcessRecord
from otel_fim.process.kernel_module import ProcessModule
from otel_fim.process.users import ContainerUserNames, UserNames

# Snapshots kept at most (one per process image that had a file event since the last change).
MAX_SNAPSHOTS = 4096


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What `enrich` derived from one cache record: valid while the cache's generation and the
    boot->epoch offset it was built with hold. Walking the ancestors and building their
    AncestorInfo is most of enrich's cost; events of one process in a burst share the result."""

    rec: ProcessRecord
    generation: int
    offset: int
    start_time_ns: int | None
    ancestors: tuple[AncestorInfo, ...]  # frozen: events share them


class ProcessContext:
    def __init__(
        self,
        cache: ProcessCache | None = None,
        users: UserNames | None = None,
        module: ProcessModule | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.cache = cache if cache is not None else ProcessCache()
        self.users = users if users is not None else UserNames()
        self.container_users = ContainerUserNames()
        self.module = module if module is not None else ProcessModule(self.cache)
        self.max_depth = max_depth
        self._epoch_offset = boot_to_epoch_offset_ns()
        self._offset_at = time.monotonic()
        self._pruned = time.monotonic()
        self._snapshots: dict[int, _Snapshot] = {}
        # False when the caller drains the process ring buffer itself before handing events over
        # (the agent: once per sensor poll, see Sensor.before_delivery); else once per event.
        self.drain_each_event = True

    def _offset(self) -> int:
        now = time.monotonic()
        if now - self._offset_at > 10:  # wall-clock steps move it (same policy as the decoder)
            self._epoch_offset = boot_to_epoch_offset_ns()
            self._offset_at = now
        return self._epoch_offset

    def enrich(self, event: Event) -> Event:
        """Fill `event.process` (executable, argv, start time, names, ancestors) and
        `event.container` from the cache. Returns the event."""
        if self.drain_each_event:
            self.module.drain()
        offset = self._offset()
        p = event.process
        rec = self.cache.lookup(p.pid, event.timestamp_ns - offset)
        if rec is not None:
            snap = self._snapshot(rec, offset)
            p.executable = rec.executable
            p.argv = list(rec.argv) if rec.argv is not None else None
            p.args_truncated = rec.args_truncated
            if snap.start_time_ns is not None:
                p.start_time_ns = snap.start_time_ns
            p.ancestors = list(snap.ancestors)
            if event.container is None and rec.container is not None:
                event.container = ContainerInfo(rec.container.id, rec.container.runtime)
        elif p.ppid > 0:
            parent = self.cache.lookup(p.ppid)
            if parent is not None:
                chain = [parent, *self.cache.ancestors(parent, self.max_depth - 1)]
                p.ancestors = [self._ancestor(a, offset) for a in chain]
        if event.container is None:
            p.user_name = self.users.user(p.euid)
            p.group_name = self.users.group(p.gid)
            # The file's owner by the host's names; in a container they would be someone else's.
            event.file.owner_name = self.users.user(event.file.uid)
            event.file.group_name = self.users.group(event.file.gid)
        else:  # the container's own names, or none: the host's would be someone else's
            p.user_name, p.group_name = self.container_users.names(event)
        now = time.monotonic()
        if now - self._pruned > 1.0:
            self._pruned = now
            self.cache.prune()
        return event

    def _snapshot(self, rec: ProcessRecord, offset: int) -> _Snapshot:
        generation = self.cache.generation
        snap = self._snapshots.get(rec.pid)
        if snap is not None and snap.rec is rec and snap.generation == generation and snap.offset == offset:
            return snap
        if len(self._snapshots) >= MAX_SNAPSHOTS:
            self._snapshots.clear()
        ancestors = tuple(self._ancestor(a, offset) for a in self.cache.ancestors(rec, self.max_depth))
        start = rec.start_boot_ns + offset if rec.start_boot_ns else None
        snap = self._snapshots[rec.pid] = _Snapshot(rec, generation, offset, start, ancestors)
        return snap

    @staticmethod
    def _ancestor(rec: ProcessRecord, offset: int) -> AncestorInfo:
        return AncestorInfo(
            pid=rec.pid,
            ppid=rec.ppid,
            comm=rec.comm,
            executable=rec.executable,
            argv=list(rec.argv) if rec.argv is not None else None,
            start_time_ns=rec.start_boot_ns + offset if rec.start_boot_ns else None,
            exited=rec.exited,
        )
