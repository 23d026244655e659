"""A file as the process that wrote it sees it: opened in the writer's mount namespace and root.

An event's path is the path the process saw. For a process in a container (or a chroot), the
same path in the agent's own namespace is another file (`/etc/passwd` of the host, not of the
container), so a plugin that opened it would report the wrong content as evidence. Here a path is
opened through the writer's root, `/proc/<pid>/root`, with `openat2(RESOLVE_IN_ROOT)`: absolute
symlinks and `..` inside the container resolve inside the container, never to the host's files.

Whose root: the writer's while it lives (a reused pid is caught by checking that the process is
still in the event's container, or still in none); when it has exited, another live process of
the same container (same container id, found through /proc); when none is left, the content is
unavailable and the caller says so (`ContentUnavailable.reason`) instead of reading another file.
A host process that has exited is read at the path as given (the host's namespace), as before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from otel_fim.process.containers import from_cgroup_paths, parse_proc_cgroup

if TYPE_CHECKING:
    from otel_fim.event import Event

_SYS_OPENAT2 = 437  # the same number on x86_64 and arm64
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_CONTAINER_PID_TTL = 2.0  # seconds a found container process is reused before checking again


class ContentUnavailable(Exception):
    """The file cannot be read as its writer saw it; `reason` says why (for the record)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2_in_root(root_fd: int, path: str, flags: int) -> int:
    """Open `path` as if `root_fd` were `/` (symlinks and `..` stay below it); raises OSError."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    raw = os.fsencode(path)
    fd = _libc.syscall(_SYS_OPENAT2, root_fd, ctypes.c_char_p(raw), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _container_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    found = from_cgroup_paths(*parse_proc_cgroup(text))
    return found.id if found is not None else None


class _ContainerPids:
    """container id -> a live pid in it, found by scanning /proc (only for events whose writer
    has exited), remembered briefly."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def find(self, container_id: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            hit = self._found.get(container_id)
        if hit is not None and now - hit[1] < _CONTAINER_PID_TTL and _container_of(hit[0]) == container_id:
            return hit[0]
        for name in os.listdir("/proc"):
            if name.isdigit() and _container_of(int(name)) == container_id:
                with self._lock:
                    self._found[container_id] = (int(name), now)
                return int(name)
        return None


_container_pids = _ContainerPids()


def _root_fd(pid: int) -> int | None:
    try:
        return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


@contextmanager
def writer_root(event: Event) -> Iterator[int | None]:
    """A descriptor of the writer's root directory (closed on exit), or None: the host's `/`.
    Raises ContentUnavailable when the writer was in a container none of whose processes is left."""
    container = event.container.id if event.container is not None else None
    pid = event.process.pid
    fd = _root_fd(pid)
    if fd is not None and _container_of(pid) != container:
        os.close(fd)  # the pid now belongs to another process (in or out of a container)
        fd = None
    if fd is None and container is not None:
        other = _container_pids.find(container)
        fd = _root_fd(other) if other is not None else None
        if fd is None:
            raise ContentUnavailable(
                f"the writer (pid {pid}) exited and no process of container {container[:12]} is left: "
                "its files cannot be reached"
            )
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def open_as_writer(event: Event, path: str, flags: int = os.O_RDONLY) -> int:
    """Open `path` in the event writer's namespace and root; raises ContentUnavailable or OSError
    (FileNotFoundError, ELOOP for a final symlink with O_NOFOLLOW, ...)."""
    with writer_root(event) as root:
        if root is None:
            return os.open(path, flags | os.O_CLOEXEC)
        try:
            return openat2_in_root(root, path, flags)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:  # a kernel before 5.6
                raise ContentUnavailable("openat2 is not available to read inside the writer's root") from exc
            raise


def stat_as_writer(event: Event, path: str) -> os.stat_result:
    """`os.stat` (following a final symlink) of `path` as the writer sees it."""
    fd = open_as_writer(event, path, os.O_PATH)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)
