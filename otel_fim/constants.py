"""Linux flag and mode constants, shared by the rule language, the decoder and the outputs.

Values are the x86-64 / generic ones from the kernel's uapi headers (asm-generic/fcntl.h, stat.h).
"""

from __future__ import annotations

OPEN_FLAGS: dict[str, int] = {
    "O_RDONLY": 0o0,
    "O_WRONLY": 0o1,
    "O_RDWR": 0o2,
    "O_CREAT": 0o100,
    "O_EXCL": 0o200,
    "O_NOCTTY": 0o400,
    "O_TRUNC": 0o1000,
    "O_APPEND": 0o2000,
    "O_NONBLOCK": 0o4000,
    "O_DSYNC": 0o10000,
    "O_ASYNC": 0o20000,
    "O_DIRECT": 0o40000,
    "O_LARGEFILE": 0o100000,
    "O_DIRECTORY": 0o200000,
    "O_NOFOLLOW": 0o400000,
    "O_NOATIME": 0o1000000,
    "O_CLOEXEC": 0o2000000,
    "O_SYNC": 0o4010000,
    "O_PATH": 0o10000000,
    "O_TMPFILE": 0o20200000,
}
O_ACCMODE = 0o3

# Opens that can change a file: any of these bits set (O_TMPFILE includes O_DIRECTORY's bit, so it
# is tested as a whole elsewhere).
OPEN_WRITE_MASK = (
    OPEN_FLAGS["O_WRONLY"]
    | OPEN_FLAGS["O_RDWR"]
    | OPEN_FLAGS["O_CREAT"]
    | OPEN_FLAGS["O_TRUNC"]
    | OPEN_FLAGS["O_APPEND"]
)

MODE_BITS: dict[str, int] = {
    "S_IFMT": 0o170000,
    "S_IFSOCK": 0o140000,
    "S_IFLNK": 0o120000,
    "S_IFREG": 0o100000,
    "S_IFBLK": 0o060000,
    "S_IFDIR": 0o040000,
    "S_IFCHR": 0o020000,
    "S_IFIFO": 0o010000,
    "S_ISUID": 0o4000,
    "S_ISGID": 0o2000,
    "S_ISVTX": 0o1000,
    "S_IRWXU": 0o700,
    "S_IRUSR": 0o400,
    "S_IWUSR": 0o200,
    "S_IXUSR": 0o100,
    "S_IRWXG": 0o070,
    "S_IRGRP": 0o040,
    "S_IWGRP": 0o020,
    "S_IXGRP": 0o010,
    "S_IRWXO": 0o007,
    "S_IROTH": 0o004,
    "S_IWOTH": 0o002,
    "S_IXOTH": 0o001,
}

# ---- file attribute flags (chattr / lsattr) -----------------------------------------------------
# The FS_*_FL namespace rules and outputs use, and the translation from the two other namespaces
# the kernel hands us:
# * FS_IOC_SETFLAGS passes FS_*_FL flags as they are;
# * FS_IOC_FSSETXATTR passes FS_XFLAG_* (the XFS-born namespace) in `fsx_xflags`;
# * the inode's VFS `i_flags` (read before the call: the old flags) mirror only the flags the VFS
#   itself enforces (S_IMMUTABLE, S_APPEND, S_SYNC, ...); filesystem-private ones (nodump, extents)
#   are not there, so `old_flags` is partial. Values: include/uapi/linux/fs.h and include/linux/fs.h
#   (S_* are #defines, absent from BTF; they have been stable since 2.6).
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


def attr_flags_text(flags: int) -> str:
    """lsattr-style letters, e.g. `ia` for immutable + append-only ('-' when none)."""
    return "".join(letter for name, letter in _LETTERS.items() if flags & FS_FLAGS[name]) or "-"


ALL_CONSTANTS: dict[str, int] = {**OPEN_FLAGS, **MODE_BITS, **FS_FLAGS}


def open_flags_text(flags: int) -> str:
    """`O_WRONLY|O_CREAT|O_TRUNC` style rendering; unknown bits are kept as octal."""
    names = [("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE?")[flags & O_ACCMODE]]
    rest = flags & ~O_ACCMODE
    if rest & OPEN_FLAGS["O_TMPFILE"] == OPEN_FLAGS["O_TMPFILE"]:
        names.append("O_TMPFILE")
        rest &= ~OPEN_FLAGS["O_TMPFILE"]
    if rest & OPEN_FLAGS["O_SYNC"] == OPEN_FLAGS["O_SYNC"]:
        names.append("O_SYNC")
        rest &= ~OPEN_FLAGS["O_SYNC"]
    for name, bit in OPEN_FLAGS.items():
        if bit and bit & (bit - 1) == 0 and rest & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(oct(rest))
    return "|".join(names)
