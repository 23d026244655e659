"""Linux flag and mode constants, shared by the rule language, the decoder and the outputs.

Values are the x86-64 / generic ones from the kernel's uapi headers (asm-generic/fcntl.h, stat.h).
"""

from __future__ import annotations

from otel_fim.attr_flags import FS_FLAGS

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
