"""Raw ring-buffer records (struct fim_event) -> `Event`."""

from __future__ import annotations

import ctypes
import os
import posixpath
import time
from collections import namedtuple

from otel_fim.constants import OPEN_FLAGS
from otel_fim.event import (
    ChmodDetails,
    ChownDetails,
    DestinationDetails,
    Details,
    Event,
    EventType,
    FileInfo,
    OpenDetails,
    ProcessInfo,
    TruncateDetails,
    XattrDetails,
)
from otel_fim.kernel.layout import (
    DATA_OFFSET,
    EVENT_TYPES,
    F_HAS_INODE,
    F_HOST_ROOT,
    F_JOINED,
    F_TRUNCATED,
    FOLLOWS_LAST,
    SYSCALLS,
    FimEventHeader,
    FimFile,
)
from otel_fim.kernel.unpack import flat_layout

_NO_ID = 0xFFFFFFFF  # chown's "leave unchanged"

# The header as one flat tuple (see unpack.py): `h.file_path_len` is `header.file.path_len`.
_LAYOUT = flat_layout(FimEventHeader)
_Header = namedtuple("_Header", [name.replace(".", "_") for name in _LAYOUT.names])  # type: ignore[misc]
_unpack_header = _LAYOUT.unpacker.unpack_from
_FileFields = namedtuple("_FileFields", flat_layout(FimFile).names)  # type: ignore[misc]
_FILE = slice(_LAYOUT.index("file.ino"), _LAYOUT.index("file.generation") + 1)
_DEST = slice(_LAYOUT.index("dest.ino"), _LAYOUT.index("dest.generation") + 1)
_FILE_FIELD_NAMES: tuple[str, ...] = _FileFields._fields
if _LAYOUT.names[_FILE] != tuple(f"file.{name}" for name in _FILE_FIELD_NAMES):
    raise ImportError("decoder: struct fim_file members are not contiguous in FimEventHeader")


def boot_to_epoch_offset_ns() -> int:
    """Add to a CLOCK_BOOTTIME reading to get wall-clock ns since the epoch."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def kernel_dev_to_user(dev: int) -> int:
    """Kernel dev_t (major << 20 | minor) -> the st_dev encoding os.stat() reports."""
    return os.makedev(dev >> 20, dev & 0xFFFFF)


def _decode_name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def complete_joined_path(path: str, host_root: bool, follow_last: bool = False) -> str:
    """Finish a path the kernel built as <base dir from a dentry>/<name as passed>.

    The kernel resolved the base from a dentry; the name may still hold `.`, `..` and symlinks.
    When the process shares the host's root, resolve them through the filesystem -- the parent
    directory, and the file itself for calls that follow a final symlink; otherwise (a chroot, a
    container) normalise lexically."""
    parent, name = posixpath.split(path)
    if name in ("", ".", ".."):
        return posixpath.normpath(path)
    if not host_root:
        return posixpath.normpath(path)
    if follow_last and os.path.islink(path):
        return os.path.realpath(path)
    real_parent = resolve_directory(parent)
    return posixpath.join(real_parent, name) if real_parent else posixpath.normpath(path)


def resolve_directory(path: str) -> str | None:
    """The directory's real path, symlinks and `..` resolved by the kernel itself: open it with
    O_PATH and read the link in /proc/self/fd (3 syscalls at any depth; realpath() needs one
    lstat per component). None when it is gone."""
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if real.endswith(" (deleted)") else real


class Decoder:
    def __init__(self) -> None:
        self._epoch_offset = boot_to_epoch_offset_ns()
        self._refreshed = time.monotonic()

    def decode(self, address: int, size: int) -> Event:
        """The record at `address` (a ring-buffer callback's pointer)."""
        return self.decode_bytes(ctypes.string_at(address, size))

    def decode_bytes(self, raw: bytes) -> Event:
        if len(raw) < DATA_OFFSET:
            raise ValueError(f"event of {len(raw)} bytes is shorter than its header ({DATA_OFFSET})")
        return self.from_parts(_Header._make(_unpack_header(raw)), raw[DATA_OFFSET:])

    def from_parts(self, h: _Header, data: bytes) -> Event:
        self._maybe_refresh_clock()
        etype = EVENT_TYPES[h.type]
        file_len = h.file_path_len
        dest_len = h.dest_path_len
        syscall = SYSCALLS[h.syscall]
        file = self._file(_FileFields._make(h[_FILE]), data[:file_len], syscall in FOLLOWS_LAST)
        process = ProcessInfo(
            pid=h.pid,
            tid=h.tid,
            ppid=h.ppid,
            uid=h.uid,
            gid=h.gid,
            euid=h.euid,
            comm=_decode_name(h.comm.split(b"\0", 1)[0]),
            cgroup_id=h.cgroup_id,
        )
        return Event(
            type=etype,
            syscall=syscall,
            timestamp_ns=h.ts_boot_ns + self._epoch_offset,
            retval=h.retval,
            process=process,
            file=file,
            details=self._details(etype, h, data, file_len, dest_len),
            filter_revision=h.revision,
        )

    def _file(self, f: _FileFields, raw: bytes, follow_last: bool = False) -> FileInfo:
        path = _decode_name(raw)
        flags = f.flags
        if flags & F_JOINED and not flags & F_TRUNCATED:
            path = complete_joined_path(path, bool(flags & F_HOST_ROOT), follow_last)
        if not flags & F_HAS_INODE:
            return FileInfo(path=path, mount_id=f.mnt_id, truncated=bool(flags & F_TRUNCATED))
        return FileInfo(
            path=path,
            inode=f.ino,
            dev=kernel_dev_to_user(f.dev),
            mount_id=f.mnt_id,
            mode=f.mode,
            uid=f.uid,
            gid=f.gid,
            truncated=bool(flags & F_TRUNCATED),
            nlink=f.nlink,
            generation=f.generation,
            parent_inode=f.parent_ino,
        )

    def _details(self, etype: EventType, h: _Header, data: bytes, file_len: int, dest_len: int) -> Details:
        if etype is EventType.OPEN:
            return OpenDetails(flags=h.open_flags, mode=h.mode if _creates(h.open_flags) else 0)
        if etype is EventType.MKDIR:
            return ChmodDetails(mode=h.mode)
        if etype is EventType.CHMOD:
            return ChmodDetails(mode=h.mode)
        if etype is EventType.CHOWN:
            return ChownDetails(uid=_id(h.new_uid), gid=_id(h.new_gid))
        dest = data[file_len : file_len + dest_len]
        if etype in (EventType.RENAME, EventType.LINK):
            return DestinationDetails(self._file(_FileFields._make(h[_DEST]), dest))
        if etype is EventType.SYMLINK:
            target = FileInfo(path=_decode_name(dest), truncated=bool(h.dest_flags & F_TRUNCATED))
            return DestinationDetails(target)
        if etype in (EventType.SETXATTR, EventType.REMOVEXATTR):
            start = file_len + dest_len
            return XattrDetails(name=_decode_name(data[start : start + h.xattr_len]))
        if etype is EventType.TRUNCATE:
            return TruncateDetails(length=h.length)
        return None

    def _maybe_refresh_clock(self) -> None:
        # Wall-clock steps (NTP) move the boot->epoch offset; re-read it now and then.
        now = time.monotonic()
        if now - self._refreshed > 10:
            self._epoch_offset = boot_to_epoch_offset_ns()
            self._refreshed = now


_O_CREAT, _O_TMPFILE = OPEN_FLAGS["O_CREAT"], OPEN_FLAGS["O_TMPFILE"]


def _creates(flags: int) -> bool:
    return bool(flags & _O_CREAT) or flags & _O_TMPFILE == _O_TMPFILE


def _id(value: int) -> int:
    return -1 if value == _NO_ID else value
