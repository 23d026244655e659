"""File attribute flags (`chattr`/`lsattr`): the FS_*_FL namespace rules and outputs use, and the
translation from the two other namespaces the kernel hands us.

* FS_IOC_SETFLAGS passes FS_*_FL flags as they are;
* FS_IOC_FSSETXATTR passes FS_XFLAG_* (the XFS-born namespace) in `fsx_xflags`;
* the inode's VFS `i_flags` (read before the call: the old flags) mirror only the flags the VFS
  itself enforces (S_IMMUTABLE, S_APPEND, S_SYNC, ...); filesystem-private ones (nodump, extents)
  are not there, so `old_flags` is partial. Values: include/uapi/linux/fs.h and include/linux/fs.h
  (S_* are #defines, absent from BTF; they have been stable since 2.6).
"""

from __future__ import annotations

FS_FLAGS: dict[str, int] = {
    "FS_SECRM_FL": 0x1,
    "FS_UNRM_FL": 0x2,
    "FS_COMPR_FL": 0x4,
    "FS_SYNC_FL": 0x8,
    "FS_IMMUTABLE_FL": 0x10,
    "FS_APPEND_FL": 0x20,
    "FS_NODUMP_FL": 0x40,
    "FS_NOATIME_FL": 0x80,
    "FS_ENCRYPT_FL": 0x800,
    "FS_JOURNAL_DATA_FL": 0x4000,
    "FS_DIRSYNC_FL": 0x10000,
    "FS_TOPDIR_FL": 0x20000,
    "FS_EXTENT_FL": 0x80000,
    "FS_VERITY_FL": 0x100000,
    "FS_NOCOW_FL": 0x800000,
    "FS_DAX_FL": 0x2000000,
    "FS_PROJINHERIT_FL": 0x20000000,
    "FS_CASEFOLD_FL": 0x40000000,
}
FS_IMMUTABLE_FL = FS_FLAGS["FS_IMMUTABLE_FL"]
FS_APPEND_FL = FS_FLAGS["FS_APPEND_FL"]

IOCTL_NAMES = {0x40086602: "FS_IOC_SETFLAGS", 0x401C5820: "FS_IOC_FSSETXATTR"}
FS_IOC_FSSETXATTR = 0x401C5820

# FS_XFLAG_* -> FS_*_FL (the flags both namespaces have)
_XFLAGS = {
    0x8: FS_FLAGS["FS_IMMUTABLE_FL"],
    0x10: FS_FLAGS["FS_APPEND_FL"],
    0x20: FS_FLAGS["FS_SYNC_FL"],
    0x40: FS_FLAGS["FS_NOATIME_FL"],
    0x80: FS_FLAGS["FS_NODUMP_FL"],
    0x200: FS_FLAGS["FS_PROJINHERIT_FL"],
    0x8000: FS_FLAGS["FS_DAX_FL"],
}
# inode->i_flags S_* -> FS_*_FL
_IFLAGS = {
    1 << 0: FS_FLAGS["FS_SYNC_FL"],
    1 << 1: FS_FLAGS["FS_NOATIME_FL"],
    1 << 2: FS_FLAGS["FS_APPEND_FL"],
    1 << 3: FS_FLAGS["FS_IMMUTABLE_FL"],
    1 << 6: FS_FLAGS["FS_DIRSYNC_FL"],
    1 << 13: FS_FLAGS["FS_DAX_FL"],
    1 << 14: FS_FLAGS["FS_ENCRYPT_FL"],
    1 << 15: FS_FLAGS["FS_CASEFOLD_FL"],
    1 << 16: FS_FLAGS["FS_VERITY_FL"],
}

# lsattr's letters, for the human-readable text
_LETTERS = {
    "FS_SECRM_FL": "s", "FS_UNRM_FL": "u", "FS_COMPR_FL": "c", "FS_SYNC_FL": "S",
    "FS_IMMUTABLE_FL": "i", "FS_APPEND_FL": "a", "FS_NODUMP_FL": "d", "FS_NOATIME_FL": "A",
    "FS_ENCRYPT_FL": "E", "FS_JOURNAL_DATA_FL": "j", "FS_DIRSYNC_FL": "D", "FS_TOPDIR_FL": "T",
    "FS_EXTENT_FL": "e", "FS_VERITY_FL": "V", "FS_NOCOW_FL": "C", "FS_DAX_FL": "x",
    "FS_PROJINHERIT_FL": "P", "FS_CASEFOLD_FL": "F",
}  # fmt: skip


def _translate(value: int, table: dict[int, int]) -> int:
    return sum(fl for bit, fl in table.items() if value & bit)


def requested_flags(cmd: int, raw: int) -> int:
    """The flags an ioctl asked for, as FS_*_FL."""
    return _translate(raw, _XFLAGS) if cmd == FS_IOC_FSSETXATTR else raw


def inode_flags(i_flags: int) -> int:
    """The FS_*_FL flags an inode's VFS i_flags show (a subset: see the module doc)."""
    return _translate(i_flags, _IFLAGS)


def flags_text(flags: int) -> str:
    """lsattr-style letters, e.g. `ia` for immutable + append-only ('-' when none)."""
    return "".join(letter for name, letter in _LETTERS.items() if flags & FS_FLAGS[name]) or "-"
