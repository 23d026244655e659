"""Every syscall family through the real sensor: a child process makes the raw syscall, the test
checks the event the kernel produced (type, syscall, path, pid, comm, retval, type fields)."""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_fim.event import (
    ChmodDetails,
    ChownDetails,
    DestinationDetails,
    EventType,
    OpenDetails,
    TruncateDetails,
    XattrDetails,
)
from tests.support.kernel_harness import EventCollector, in_child, libc, syscall

pytestmark = pytest.mark.kernel
libc.syscall.restype = ctypes.c_long

# x86-64 syscall numbers
NR = {
    "open": 2, "creat": 85, "truncate": 76, "ftruncate": 77, "unlink": 87, "unlinkat": 263,
    "rename": 82, "renameat": 264, "renameat2": 316, "mkdir": 83, "mkdirat": 258, "rmdir": 84,
    "link": 86, "linkat": 265, "symlink": 88, "symlinkat": 266, "chmod": 90, "fchmod": 91,
    "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
    "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198,
    "fremovexattr": 199, "utime": 132, "utimes": 235, "utimensat": 280, "futimesat": 261,
    "openat": 257, "openat2": 437,
}  # fmt: skip
AT_FDCWD = -100
AT_REMOVEDIR = 0x200
O_WRONLY, O_CREAT, O_TRUNC, O_RDONLY = os.O_WRONLY, os.O_CREAT, os.O_TRUNC, os.O_RDONLY


@dataclass
class Case:
    syscall: str
    etype: EventType
    call: Callable[[Path], int]  # runs in the child; returns the raw result
    target: str  # expected file path relative to the test dir
    check: Callable[[object, Path], None] = lambda event, d: None
    setup: Callable[[Path], None] = lambda d: None


def b(path: Path | str) -> bytes:
    return os.fsencode(str(path))


def make_file(d: Path, name: str = "f") -> None:
    (d / name).write_text("hello\n")


def open_fd(path: Path) -> int:
    return os.open(path, os.O_RDWR)


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(d: Path) -> int:
    how = OpenHow(O_WRONLY | O_CREAT, 0o640, 0)
    return syscall(NR["openat2"], AT_FDCWD, b(d / "f"), ctypes.byref(how), ctypes.sizeof(how))


def expect_open(flags: int, mode: int | None = None) -> Callable[[object, Path], None]:
    def check(event, d: Path) -> None:
        assert isinstance(event.details, OpenDetails)
        assert event.details.flags & 0o3 == flags & 0o3
        assert event.details.flags & flags == flags
        if mode is not None:
            assert event.details.mode == mode
        assert event.file.inode == os.stat(d / "f").st_ino
        assert event.file.dev == os.stat(d / "f").st_dev

    return check


def expect_dest(name: str) -> Callable[[object, Path], None]:
    def check(event, d: Path) -> None:
        assert isinstance(event.details, DestinationDetails)
        assert event.details.destination.path == str(d / name)

    return check


def expect_mode(mode: int) -> Callable[[object, Path], None]:
    def check(event, d: Path) -> None:
        assert isinstance(event.details, ChmodDetails) and event.details.mode == mode

    return check


def expect_owner(uid: int, gid: int) -> Callable[[object, Path], None]:
    def check(event, d: Path) -> None:
        assert isinstance(event.details, ChownDetails)
        assert (event.details.uid, event.details.gid) == (uid, gid)

    return check


def expect_xattr(event, d: Path) -> None:
    assert isinstance(event.details, XattrDetails) and event.details.name == "user.fim"


def expect_inode(event, d: Path) -> None:
    st = os.stat(d / "f")
    assert event.file.inode == st.st_ino and event.file.mode == st.st_mode
    assert (event.file.uid, event.file.gid) == (st.st_uid, st.st_gid)


def with_xattr(d: Path) -> None:
    make_file(d)
    os.setxattr(d / "f", "user.fim", b"1")


def two_files(d: Path) -> None:
    make_file(d)
    (d / "sub").mkdir()


CASES = [
    Case("open", EventType.OPEN, lambda d: syscall(NR["open"], b(d / "f"), O_WRONLY | O_CREAT, 0o600), "f",
         expect_open(O_WRONLY | O_CREAT, 0o600)),
    Case("openat", EventType.OPEN, lambda d: syscall(NR["openat"], AT_FDCWD, b(d / "f"), O_WRONLY | O_CREAT | O_TRUNC,
         0o644), "f", expect_open(O_WRONLY | O_CREAT | O_TRUNC, 0o644)),
    Case("openat2", EventType.OPEN, openat2, "f", expect_open(O_WRONLY | O_CREAT, 0o640)),
    Case("creat", EventType.OPEN, lambda d: syscall(NR["creat"], b(d / "f"), 0o600), "f",
         expect_open(O_WRONLY | O_CREAT | O_TRUNC, 0o600)),
    Case("truncate", EventType.TRUNCATE, lambda d: syscall(NR["truncate"], b(d / "f"), 2), "f",
         lambda e, d: (isinstance(e.details, TruncateDetails) and e.details.length == 2) or pytest.fail("length"),
         make_file),
    Case("ftruncate", EventType.TRUNCATE, lambda d: syscall(NR["ftruncate"], open_fd(d / "f"), 3), "f",
         lambda e, d: (expect_inode(e, d), e.details.length == 3 or pytest.fail("length")), make_file),
    Case("unlink", EventType.UNLINK, lambda d: syscall(NR["unlink"], b(d / "f")), "f", setup=make_file),
    Case("unlinkat", EventType.UNLINK, lambda d: syscall(NR["unlinkat"], AT_FDCWD, b(d / "f"), 0), "f",
         setup=make_file),
    Case("unlinkat", EventType.RMDIR, lambda d: syscall(NR["unlinkat"], AT_FDCWD, b(d / "sub"), AT_REMOVEDIR), "sub",
         setup=lambda d: (d / "sub").mkdir()),
    Case("rename", EventType.RENAME, lambda d: syscall(NR["rename"], b(d / "f"), b(d / "g")), "f",
         expect_dest("g"), make_file),
    Case("renameat", EventType.RENAME, lambda d: syscall(NR["renameat"], AT_FDCWD, b(d / "f"), AT_FDCWD,
         b(d / "sub/g")), "f", expect_dest("sub/g"), two_files),
    Case("renameat2", EventType.RENAME, lambda d: syscall(NR["renameat2"], AT_FDCWD, b(d / "f"), AT_FDCWD,
         b(d / "g"), 1), "f", expect_dest("g"), make_file),
    Case("mkdir", EventType.MKDIR, lambda d: syscall(NR["mkdir"], b(d / "sub"), 0o750), "sub", expect_mode(0o750)),
    Case("mkdirat", EventType.MKDIR, lambda d: syscall(NR["mkdirat"], AT_FDCWD, b(d / "sub"), 0o700), "sub",
         expect_mode(0o700)),
    Case("rmdir", EventType.RMDIR, lambda d: syscall(NR["rmdir"], b(d / "sub")), "sub",
         setup=lambda d: (d / "sub").mkdir()),
    Case("link", EventType.LINK, lambda d: syscall(NR["link"], b(d / "f"), b(d / "hard")), "f",
         expect_dest("hard"), make_file),
    Case("linkat", EventType.LINK, lambda d: syscall(NR["linkat"], AT_FDCWD, b(d / "f"), AT_FDCWD, b(d / "hard"), 0),
         "f", expect_dest("hard"), make_file),
    Case("symlink", EventType.SYMLINK, lambda d: syscall(NR["symlink"], b"../target", b(d / "ln")), "ln",
         lambda e, d: e.details.destination.path == "../target" or pytest.fail("target")),
    Case("symlinkat", EventType.SYMLINK, lambda d: syscall(NR["symlinkat"], b"/etc/passwd", AT_FDCWD, b(d / "ln")),
         "ln", lambda e, d: e.details.destination.path == "/etc/passwd" or pytest.fail("target")),
    Case("chmod", EventType.CHMOD, lambda d: syscall(NR["chmod"], b(d / "f"), 0o600), "f", expect_mode(0o600),
         make_file),
    Case("fchmod", EventType.CHMOD, lambda d: syscall(NR["fchmod"], open_fd(d / "f"), 0o640), "f",
         lambda e, d: (expect_mode(0o640)(e, d), expect_inode(e, d)), make_file),
    Case("fchmodat", EventType.CHMOD, lambda d: syscall(NR["fchmodat"], AT_FDCWD, b(d / "f"), 0o604), "f",
         expect_mode(0o604), make_file),
    Case("fchmodat2", EventType.CHMOD, lambda d: syscall(NR["fchmodat2"], AT_FDCWD, b(d / "f"), 0o611, 0), "f",
         expect_mode(0o611), make_file),
    Case("chown", EventType.CHOWN, lambda d: syscall(NR["chown"], b(d / "f"), 1234, 5678), "f",
         expect_owner(1234, 5678), make_file),
    Case("fchown", EventType.CHOWN, lambda d: syscall(NR["fchown"], open_fd(d / "f"), 1, 2), "f",
         lambda e, d: (expect_owner(1, 2)(e, d), expect_inode(e, d)), make_file),
    Case("lchown", EventType.CHOWN, lambda d: syscall(NR["lchown"], b(d / "f"), 3, -1), "f",
         expect_owner(3, -1), make_file),
    Case("fchownat", EventType.CHOWN, lambda d: syscall(NR["fchownat"], AT_FDCWD, b(d / "f"), 7, 8, 0), "f",
         expect_owner(7, 8), make_file),
    Case("setxattr", EventType.SETXATTR, lambda d: syscall(NR["setxattr"], b(d / "f"), b"user.fim", b"v", 1, 0),
         "f", expect_xattr, make_file),
    Case("lsetxattr", EventType.SETXATTR, lambda d: syscall(NR["lsetxattr"], b(d / "f"), b"user.fim", b"v", 1, 0),
         "f", expect_xattr, make_file),
    Case("fsetxattr", EventType.SETXATTR, lambda d: syscall(NR["fsetxattr"], open_fd(d / "f"), b"user.fim", b"v", 1,
         0), "f", expect_xattr, make_file),
    Case("removexattr", EventType.REMOVEXATTR, lambda d: syscall(NR["removexattr"], b(d / "f"), b"user.fim"), "f",
         expect_xattr, with_xattr),
    Case("lremovexattr", EventType.REMOVEXATTR, lambda d: syscall(NR["lremovexattr"], b(d / "f"), b"user.fim"), "f",
         expect_xattr, with_xattr),
    Case("fremovexattr", EventType.REMOVEXATTR, lambda d: syscall(NR["fremovexattr"], open_fd(d / "f"),
         b"user.fim"), "f", expect_xattr, with_xattr),
    Case("utime", EventType.UTIMES, lambda d: syscall(NR["utime"], b(d / "f"), None), "f", setup=make_file),
    Case("utimes", EventType.UTIMES, lambda d: syscall(NR["utimes"], b(d / "f"), None), "f", setup=make_file),
    Case("utimensat", EventType.UTIMES, lambda d: syscall(NR["utimensat"], AT_FDCWD, b(d / "f"), None, 0), "f",
         setup=make_file),
    Case("futimesat", EventType.UTIMES, lambda d: syscall(NR["futimesat"], AT_FDCWD, b(d / "f"), None), "f",
         setup=make_file),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.syscall}-{c.etype.value}")
def test_syscall_family(case: Case, sensor_events: EventCollector, tmp_path: Path) -> None:
    case.setup(tmp_path)
    results: list[int] = []

    def child() -> None:
        ret = case.call(tmp_path)
        if ret < 0:
            raise OSError(-ret, f"{case.syscall} failed")
        results.append(ret)

    comm = f"fim-{case.syscall}"[:15]
    pid = in_child(child, comm=comm)
    event = sensor_events.wait_type(pid, case.etype, case.syscall, str(tmp_path / case.target))
    assert event.process.pid == pid and event.process.tid == pid
    assert event.process.ppid == os.getpid()
    assert event.process.comm == comm
    assert event.process.uid == 0 and event.process.euid == 0
    assert event.retval >= 0
    assert not event.file.truncated
    case.check(event, tmp_path)


def test_failed_call_carries_errno(sensor_events: EventCollector, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    pid = in_child(lambda: syscall(NR["unlink"], b(missing)) == -2 or os._exit(3))
    event = sensor_events.wait_type(pid, EventType.UNLINK, "unlink", str(missing))
    assert event.retval == -2  # -ENOENT
    assert not event.succeeded


def test_failed_open_reports_the_name(sensor_events: EventCollector, tmp_path: Path) -> None:
    target = tmp_path / "nodir" / "f"
    pid = in_child(lambda: syscall(NR["openat"], AT_FDCWD, b(target), O_WRONLY | O_CREAT, 0o600))
    event = sensor_events.wait_type(pid, EventType.OPEN, "openat", str(target))
    assert event.retval == -2
    assert event.file.inode == 0 and event.file.mode is None  # no file: no inode facts


def test_mode_of_existing_file(sensor_events: EventCollector, tmp_path: Path) -> None:
    make_file(tmp_path)
    os.chmod(tmp_path / "f", 0o640)
    pid = in_child(lambda: os.close(os.open(tmp_path / "f", os.O_WRONLY)))
    event = sensor_events.wait_type(pid, EventType.OPEN, path=str(tmp_path / "f"))
    assert stat.S_IMODE(event.file.mode) == 0o640 and stat.S_ISREG(event.file.mode)
