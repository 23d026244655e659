"""The process-tracking kernel module: bpf/process_events.c -> ProcessCache.

Exec, fork and exit records come through their own ring buffer, `proc_events`. File events come
through `events`, and one poll does not order the two: a file event can be read before the exec
record of its process. So the module also has a second consumer of `proc_events` of its own, and
`drain()` empties it on demand -- `ProcessContext.enrich` calls it before it looks a pid up. A
process's exec record is written before any of its file syscalls, so draining after reading a file
event always finds it. Both consumers run on the polling thread (never at the same time); the ring
buffer's consumer position is shared, so each record is handled once.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from typing import Any

from otel_fim.kernel.btf import Btf
from otel_fim.kernel.layout import (
    FIM_CG_LEVELS,
    PF_ARGS_TRUNCATED,
    PROC_ARGS_OFFSET,
    PROC_COUNTERS,
    PROC_EVENT_TYPES,
    PROC_EXIT_SIZE,
    FimCgroupPath,
    FimProcEventHeader,
)
from otel_fim.process.cache import ProcessCache, ProcessRecord, split_argv
from otel_fim.process.containers import from_cgroup_paths

log = logging.getLogger(__name__)

DEFAULT_PROC_RINGBUF_PAGES = 256  # 1 MiB: ~400 exec records of full argv, far more typical ones

# C constant -> (struct, member path); the kernfs parent is `__parent` since 6.15, `parent` before.
MEMBERS: dict[str, tuple[str, str]] = {
    "OFF_TASK_PID": ("task_struct", "pid"),
    "OFF_TASK_GROUP_LEADER": ("task_struct", "group_leader"),
    "OFF_TASK_START_BOOTTIME": ("task_struct", "start_boottime"),
    "OFF_TASK_COMM": ("task_struct", "comm"),
    "OFF_TASK_MM": ("task_struct", "mm"),
    "OFF_TASK_CGROUPS": ("task_struct", "cgroups"),
    "OFF_TASK_CHILDREN": ("task_struct", "children"),
    "OFF_TASK_SIBLING": ("task_struct", "sibling"),
    "OFF_TASK_EXIT_CODE": ("task_struct", "exit_code"),
    "OFF_CRED_UID": ("cred", "uid"),
    "OFF_CRED_GID": ("cred", "gid"),
    "OFF_CRED_EGID": ("cred", "egid"),
    "OFF_MM_ARG_START": ("mm_struct", "arg_start"),
    "OFF_MM_ARG_END": ("mm_struct", "arg_end"),
    "OFF_CSS_SET_DFL_CGRP": ("css_set", "dfl_cgrp"),
    "OFF_CSS_SET_SUBSYS": ("css_set", "subsys"),
    "OFF_CSS_CGROUP": ("cgroup_subsys_state", "cgroup"),
    "OFF_CGROUP_KN": ("cgroup", "kn"),
    "OFF_CGROUP_LEVEL": ("cgroup", "level"),
    "OFF_CGROUP_ROOT": ("cgroup", "root"),
    "OFF_CGROUP_ROOT_HIERARCHY_ID": ("cgroup_root", "hierarchy_id"),
    "OFF_KERNFS_NODE_NAME": ("kernfs_node", "name"),
}


@functools.lru_cache(maxsize=4)
def _btf(path: str) -> Btf:
    return Btf.load(path)


def members_for(btf: Btf) -> dict[str, tuple[str, str]]:
    members = dict(MEMBERS)
    parent = "__parent" if btf.has_member("kernfs_node", "__parent") else "parent"
    members["OFF_KERNFS_NODE_PARENT"] = ("kernfs_node", parent)
    return members


def cgroup_path(cg: FimCgroupPath) -> str:
    """Leaf-first names -> "/a/b/c"; a path deeper than the kernel keeps starts with "/..."."""
    kept = min(cg.level, FIM_CG_LEVELS)
    names = [cg.names[i].value.decode("utf-8", "surrogateescape") for i in range(kept)]
    path = "/" + "/".join(reversed(names))
    if cg.level > FIM_CG_LEVELS:
        path = "/..." + path
    return path


class ProcessModule:
    name = "process"
    source = "process_events.c"

    def __init__(
        self,
        cache: ProcessCache | None = None,
        ringbuf_pages: int = DEFAULT_PROC_RINGBUF_PAGES,
        btf_path: str = "/sys/kernel/btf/vmlinux",
        seed: bool = True,
    ) -> None:
        if ringbuf_pages & (ringbuf_pages - 1):
            raise ValueError(f"ring buffer pages must be a power of two, got {ringbuf_pages}")
        self.cache = cache if cache is not None else ProcessCache()
        self.ringbuf_pages = ringbuf_pages
        self.btf_path = btf_path
        self.seed = seed
        self.decode_errors = 0
        self._bpf: Any = None
        self._drain_mgr: int | None = None
        self._drain_cb: Any = None
        self._draining = False

    # -- KernelModule ------------------------------------------------------------------------
    def members(self) -> dict[str, tuple[str, str]]:
        return members_for(_btf(self.btf_path))

    def cflags(self) -> list[str]:
        btf = _btf(self.btf_path)
        subsys = btf.member("css_set", "subsys").size // 8  # CGROUP_SUBSYS_COUNT pointers
        return [f"-DPROC_RINGBUF_PAGES={self.ringbuf_pages}", f"-DFIM_CG_SUBSYS_COUNT={subsys}"]

    def attach(self, bpf: Any) -> None:
        from bcc.libbcc import _RINGBUF_CB_TYPE, lib

        self._bpf = bpf
        table = bpf[b"proc_events"]
        table.open_ring_buffer(self._on_record)
        self._drain_cb = _RINGBUF_CB_TYPE(self._on_raw)
        mgr = lib.bpf_new_ringbuf(table.map_fd, self._drain_cb, None)
        if not mgr:
            raise RuntimeError("cannot open a second consumer of the proc_events ring buffer")
        self._drain_mgr = mgr
        if self.seed:
            # After attaching: a process started since is in the ring buffer, and records from
            # the kernel win over what /proc said.
            added = self.cache.seed_from_proc()
            log.info("process cache seeded from /proc: %d processes", added)

    def detach(self) -> None:
        if self._drain_mgr is not None:
            from bcc.libbcc import lib

            lib.bpf_free_ringbuf(self._drain_mgr)
            self._drain_mgr = None
        self._bpf = None

    # -- reading -----------------------------------------------------------------------------
    def drain(self) -> None:
        """Handle every process record written so far (call on the thread that polls)."""
        if self._drain_mgr is None or self._draining:
            return
        from bcc.libbcc import lib

        self._draining = True
        try:
            lib.bpf_consume_ringbuf(self._drain_mgr)
        finally:
            self._draining = False

    def counters(self) -> dict[str, dict[str, int]]:
        """Kernel counters: event type -> {"sent": n, "lost": n} (enum fim_proc_counter)."""
        if self._bpf is None:
            return {}
        table = self._bpf[b"proc_counters"]
        out: dict[str, dict[str, int]] = {}
        for i, etype in enumerate(PROC_EVENT_TYPES):
            out[etype] = {
                name: sum(table[ctypes.c_int(i * len(PROC_COUNTERS) + c)])
                for c, name in enumerate(PROC_COUNTERS)
            }
        return out

    def _on_record(self, _ctx: int, data: int, size: int) -> int:
        return self._on_raw(_ctx, data, size)

    def _on_raw(self, _ctx: Any, data: int, size: int) -> int:
        try:
            self.handle(ctypes.string_at(data, size))
        except Exception:  # a bad record must not stop the sensor
            self.decode_errors += 1
            log.exception("cannot decode a %d-byte process record", size)
        return 0

    def handle(self, raw: bytes) -> None:
        if len(raw) < PROC_EXIT_SIZE:
            raise ValueError(f"process record of {len(raw)} bytes is shorter than {PROC_EXIT_SIZE}")
        h = FimProcEventHeader.from_buffer_copy(raw[:PROC_ARGS_OFFSET].ljust(PROC_ARGS_OFFSET, b"\0"))
        etype = PROC_EVENT_TYPES[h.type]
        if etype == "exit":
            self.cache.on_exit(h.pid, h.ts_boot_ns, h.exit_code, h.start_boot_ns)
            return
        rec = decode_record(h, raw[PROC_ARGS_OFFSET : PROC_ARGS_OFFSET + h.args_len])
        if etype == "exec":
            self.cache.on_exec(rec)
        else:
            self.cache.on_fork(rec)


def decode_record(h: FimProcEventHeader, args: bytes) -> ProcessRecord:
    etype = PROC_EVENT_TYPES[h.type]
    v2, v1 = cgroup_path(h.cg2), cgroup_path(h.cg1) if h.cg1.hierarchy_id else ""
    executable: str | None = None
    argv: list[str] | None = None
    if etype == "exec":
        executable = h.filename.decode("utf-8", "surrogateescape") or None
        if executable and not executable.startswith("/"):
            executable = _absolute_exe(h.pid, executable)
        argv = split_argv(args) if args else None
    return ProcessRecord(
        pid=h.pid,
        ppid=h.ppid,
        comm=h.comm.decode("utf-8", "surrogateescape"),
        executable=executable,
        argv=argv,
        args_truncated=bool(h.flags & PF_ARGS_TRUNCATED),
        uid=h.uid,
        gid=h.gid,
        euid=h.euid,
        egid=h.egid,
        start_boot_ns=h.start_boot_ns,
        exec_boot_ns=h.ts_boot_ns if etype == "exec" else 0,
        cgroup_v2=v2,
        cgroup_v1=v1,
        container=from_cgroup_paths(v2, v1),
        source=etype,
    )


def _absolute_exe(pid: int, name: str) -> str:
    """A relative execve name (`./tool`): the kernel's /proc/<pid>/exe while the process lives,
    else the name as passed."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return name
    return exe.removesuffix(" (deleted)")
