"""The process cache: pid -> what the kernel told about the process (exec, fork, exit), seeded from
/proc at start.

Records outlive their process: an exited one is kept `retention` seconds (and at most
`max_exited` of them), so file events still in flight -- and the descendants of the process --
find it. Each record keeps the image before its last execs (`previous`), so an event read after
its process exec'd again still gets the image that made the change.

Times are CLOCK_BOOTTIME ns, as the kernel stamps them; `start_boot_ns` compares processes that
share a pid (pid reuse), so an ancestor walk never climbs into a newer process with an old pid.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from otel_fim.process.containers import Container, from_cgroup_paths, parse_proc_cgroup

DEFAULT_RETENTION_S = 60.0
DEFAULT_MAX_EXITED = 16384
DEFAULT_MAX_DEPTH = 16  # ancestors reported per event
PREVIOUS_IMAGES = 3  # images kept per pid before the current one
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class ProcessRecord:
    pid: int
    ppid: int
    comm: str
    executable: str | None = None
    argv: list[str] | None = None
    args_truncated: bool = False
    uid: int = 0
    gid: int = 0
    euid: int = 0
    egid: int = 0
    start_boot_ns: int = 0  # 0: unknown
    exec_boot_ns: int = 0  # when the current image started (0: unknown, e.g. seeded/inherited)
    cgroup_v2: str = ""
    cgroup_v1: str = ""
    container: Container | None = None
    source: str = "exec"  # exec | fork | proc (seeded or looked up in /proc)
    exited_boot_ns: int | None = None
    exit_code: int | None = None
    exited_at: float | None = None  # monotonic, for retention
    previous: ProcessRecord | None = None

    @property
    def exited(self) -> bool:
        return self.exited_at is not None

    def image_at(self, boot_ns: int | None) -> ProcessRecord:
        """This record, or the earlier image that was running at `boot_ns`."""
        rec = self
        while boot_ns is not None and rec.previous is not None and rec.exec_boot_ns > boot_ns:
            rec = rec.previous
        return rec


def _trim(rec: ProcessRecord | None, keep: int) -> ProcessRecord | None:
    if rec is None:
        return None
    if keep <= 0:
        return None
    rec.previous = _trim(rec.previous, keep - 1)
    return rec


class ProcessCache:
    def __init__(
        self,
        retention: float = DEFAULT_RETENTION_S,
        max_exited: int = DEFAULT_MAX_EXITED,
        proc: str = "/proc",
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 30.0,
    ) -> None:
        self.retention = retention
        self.sweep_interval = sweep_interval
        self.max_exited = max_exited
        self.proc = proc
        self._clock = clock
        self._records: dict[int, ProcessRecord] = {}
        self._exited: OrderedDict[int, None] = OrderedDict()  # exit order, oldest first
        self._lock = threading.RLock()
        self._swept = clock()
        # Bumped by every change to what lookups and ancestor walks return: a consumer may keep
        # what it derived from the cache (ProcessContext's per-process snapshot) while it holds.
        self.generation = 0
        self.stats = {"exec": 0, "fork": 0, "exit": 0, "proc_lookups": 0, "expired": 0}

    # -- kernel events -------------------------------------------------------------------------
    def on_exec(self, rec: ProcessRecord) -> None:
        with self._lock:
            self.stats["exec"] += 1
            old = self._records.get(rec.pid)
            if old is not None and not old.exited and _same_process(old, rec):
                rec.previous = _trim(old, PREVIOUS_IMAGES)
                if not rec.start_boot_ns:
                    rec.start_boot_ns = old.start_boot_ns
            self._put(rec)

    def on_fork(self, child: ProcessRecord) -> None:
        """A new process: it runs its parent's image until it execs."""
        with self._lock:
            self.stats["fork"] += 1
            old = self._records.get(child.pid)
            if old is not None and old.start_boot_ns and child.start_boot_ns and _same_process(old, child):
                # The parent writes the fork record after the child runs: the child's exec (or
                # exit) record may come first, and /proc may have been read since. Those are newer.
                return
            parent = self._records.get(child.ppid)
            if parent is not None and not parent.exited:
                child.executable = parent.executable
                child.argv = parent.argv
                child.args_truncated = parent.args_truncated
            self._put(child)

    def on_exit(self, pid: int, boot_ns: int, exit_code: int | None = None, start_boot_ns: int = 0) -> None:
        with self._lock:
            self.stats["exit"] += 1
            rec = self._records.get(pid)
            if rec is None or rec.exited:
                return
            if start_boot_ns and rec.start_boot_ns and not _same_start(rec.start_boot_ns, start_boot_ns):
                return  # an exit of an older process with this pid, read late
            rec.exited_boot_ns = boot_ns
            rec.exit_code = exit_code
            rec.exited_at = self._clock()
            self.generation += 1
            self._exited[pid] = None
            self._exited.move_to_end(pid)
        self.prune()

    def _put(self, rec: ProcessRecord) -> None:
        self.generation += 1
        self._records[rec.pid] = rec
        self._exited.pop(rec.pid, None)

    # -- lookups -------------------------------------------------------------------------------
    def get(self, pid: int, at_boot_ns: int | None = None) -> ProcessRecord | None:
        """The record of `pid` as it was at `at_boot_ns` (None: now); a process that started
        after that time is not the one asked about."""
        with self._lock:
            rec = self._records.get(pid)
            if rec is None:
                return None
            if at_boot_ns is not None and rec.start_boot_ns and rec.start_boot_ns > at_boot_ns + _TICK_NS:
                return None  # the pid was reused since
            return rec.image_at(at_boot_ns)

    def lookup(self, pid: int, at_boot_ns: int | None = None) -> ProcessRecord | None:
        """`get`, falling back to /proc for a live process the kernel did not tell about."""
        rec = self.get(pid, at_boot_ns)
        if rec is not None:
            return rec
        with self._lock:
            if pid in self._records:
                return None  # known, but not the one asked about (pid reuse)
            found = read_proc(pid, self.proc)
            self.stats["proc_lookups"] += 1
            if found is None:
                return None
            self._put(found)
            return found

    def ancestors(self, rec: ProcessRecord, max_depth: int = DEFAULT_MAX_DEPTH) -> list[ProcessRecord]:
        """Parent first, as far as known and `max_depth` allow. Exited ancestors are included;
        a pid whose record started after its child (reused) ends the walk."""
        out: list[ProcessRecord] = []
        seen = {rec.pid}
        child = rec
        while len(out) < max_depth:
            ppid = child.ppid
            if ppid <= 0 or ppid in seen:
                break
            parent = self.lookup(ppid)
            if parent is None:
                break
            if _younger(parent, child):
                break  # the parent's pid now names a younger process
            out.append(parent)
            seen.add(ppid)
            child = parent
        return out

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, pid: int) -> bool:
        return pid in self._records

    def records(self) -> Iterator[ProcessRecord]:
        with self._lock:
            return iter(list(self._records.values()))

    # -- seeding and housekeeping --------------------------------------------------------------
    def seed_from_proc(self) -> int:
        """Add every live process not known yet (kernel records are newer: they win)."""
        added = 0
        for pid in _proc_pids(self.proc):
            if pid in self._records:
                continue
            rec = read_proc(pid, self.proc)
            if rec is None:
                continue
            with self._lock:
                if pid not in self._records:
                    self._put(rec)
                    added += 1
        return added

    def prune(self) -> None:
        """Forget exited records past retention (or beyond max_exited, oldest first); now and then,
        mark live records whose process is gone as exited (their exit event may have been lost)."""
        now = self._clock()
        with self._lock:
            while self._exited:
                pid = next(iter(self._exited))
                rec = self._records.get(pid)
                if rec is None or rec.exited_at is None:
                    self._exited.popitem(last=False)
                    continue
                if now - rec.exited_at < self.retention and len(self._exited) <= self.max_exited:
                    break
                self._exited.popitem(last=False)
                del self._records[pid]
                self.generation += 1
                self.stats["expired"] += 1
            if now - self._swept < self.sweep_interval:
                return
            self._swept = now
            live = [r for r in self._records.values() if not r.exited]
        for rec in live:
            if not os.path.exists(f"{self.proc}/{rec.pid}"):
                with self._lock:
                    if self._records.get(rec.pid) is rec and not rec.exited:
                        rec.exited_at = now
                        self.generation += 1
                        self._exited[rec.pid] = None


def _younger(parent: ProcessRecord, child: ProcessRecord) -> bool:
    if not parent.start_boot_ns or not child.start_boot_ns:
        return False
    return parent.start_boot_ns > child.start_boot_ns + _TICK_NS


def _same_start(a: int, b: int) -> bool:
    return abs(a - b) <= _TICK_NS  # /proc gives ticks, the kernel ns


def _same_process(old: ProcessRecord, new: ProcessRecord) -> bool:
    return not old.start_boot_ns or not new.start_boot_ns or _same_start(old.start_boot_ns, new.start_boot_ns)


def _proc_pids(proc: str) -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    except OSError:
        return []


def read_proc(pid: int, proc: str = "/proc") -> ProcessRecord | None:
    """What /proc tells of a live process; None when it is gone (or is a kernel thread's view
    we cannot read)."""
    base = f"{proc}/{pid}"
    try:
        with open(f"{base}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "surrogateescape")
        with open(f"{base}/status", "rb") as f:
            status = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    lpar, rpar = stat.find("("), stat.rfind(")")
    comm = stat[lpar + 1 : rpar]
    fields = stat[rpar + 2 :].split()
    try:
        ppid = int(fields[1])
        start_ticks = int(fields[19])
    except (IndexError, ValueError):
        return None
    ids: dict[str, list[int]] = {}
    tgid = pid
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = [int(v) for v in value.split()]
        elif key == "Tgid":
            tgid = int(value)
    if tgid != pid:
        return None  # a thread id: not a process
    uid, euid = (ids.get("Uid", [0, 0]) + [0, 0])[:2]
    gid, egid = (ids.get("Gid", [0, 0]) + [0, 0])[:2]
    argv: list[str] | None = None
    try:
        with open(f"{base}/cmdline", "rb") as f:
            raw = f.read()
        argv = split_argv(raw) if raw else None
    except OSError:
        pass
    try:
        link = os.readlink(f"{base}/exe")
        exe: str | None = link.removesuffix(" (deleted)")
    except OSError:
        exe = None  # kernel thread, or no permission
    v2 = v1 = ""
    try:
        with open(f"{base}/cgroup", "rb") as f:
            v2, v1 = parse_proc_cgroup(f.read().decode("utf-8", "surrogateescape"))
    except OSError:
        pass
    return ProcessRecord(
        pid=pid,
        ppid=ppid,
        comm=comm,
        executable=exe,
        argv=argv,
        uid=uid,
        gid=gid,
        euid=euid,
        egid=egid,
        start_boot_ns=start_ticks * _TICK_NS,
        cgroup_v2=v2,
        cgroup_v1=v1,
        container=from_cgroup_paths(v2, v1),
        source="proc",
    )


def split_argv(raw: bytes) -> list[str]:
    """The NUL-separated argv area -> its strings (a final NUL is the terminator, not an empty
    argument)."""
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")]
