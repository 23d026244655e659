"""The struct view of the event header reads exactly what the ctypes mirror reads."""

from __future__ import annotations

import ctypes
import os

from otel_fim.kernel import decoder
from otel_fim.kernel.layout import DATA_OFFSET, FimEventHeader, FimFile
from otel_fim.kernel.unpack import flat_layout


def _ctypes_value(struct: ctypes.Structure, dotted: str) -> object:
    value: object = struct
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def test_flat_layout_matches_ctypes_on_random_bytes() -> None:
    for struct_type in (FimEventHeader, FimFile):
        layout = flat_layout(struct_type)
        for _ in range(20):
            raw = os.urandom(ctypes.sizeof(struct_type))
            via_ctypes = struct_type.from_buffer_copy(raw)
            for name, value in zip(layout.names, layout.unpacker.unpack_from(raw), strict=True):
                expected = _ctypes_value(via_ctypes, name)
                if isinstance(value, bytes):  # c_char arrays: ctypes stops at the first NUL
                    assert value.split(b"\0", 1)[0] == expected
                else:
                    assert value == expected, name


def test_decode_bytes_equals_decode_at_address() -> None:
    h = FimEventHeader(type=0, syscall=1, pid=42, tid=43, ppid=1, open_flags=0o1101, mode=0o644)
    h.comm = b"writer"
    h.file.path_len = len(b"/var/tmp/x")
    h.file.flags = decoder.F_HAS_INODE
    h.file.ino, h.file.dev, h.file.mode, h.file.nlink = 7, (8 << 20) | 1, 0o100644, 1
    raw = bytes(h) + b"/var/tmp/x"
    buf = ctypes.create_string_buffer(raw, len(raw))
    d = decoder.Decoder()
    by_address = d.decode(ctypes.addressof(buf), len(raw))
    by_bytes = d.decode_bytes(raw)
    assert by_address == by_bytes
    assert by_bytes.file.path == "/var/tmp/x" and by_bytes.file.inode == 7
    assert by_bytes.file.dev == os.makedev(8, 1)
    assert by_bytes.process.comm == "writer" and by_bytes.process.pid == 42
    assert by_bytes.details is not None and by_bytes.details.flags == 0o1101
    assert len(raw) - DATA_OFFSET == h.file.path_len
