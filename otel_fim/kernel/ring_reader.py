"""A BPF ring buffer read through its mapped pages, the way libbpf's ring_buffer__consume reads it,
but without a C-to-Python callback per record.

Through bcc, every record costs a ctypes callback that must take the interpreter lock; at tens of
thousands of records a second that alone is a large share of a core, and while the consumer is
busy with the pipeline nothing frees the kernel's buffer. Here one pass copies every complete
record out (a slice per record) and hands the space back to the kernel at once, so the sensor can
keep the kernel's buffer empty and queue a burst in user space (see Sensor.poll).

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (ours to write), page 1 the
producer position, then the data pages, mapped twice in a row so a record that wraps around the
end reads as one slice. Each record starts with an 8-byte header: its length, with a busy bit
while the producer is still writing it and a discard bit when it gave it up.
"""

from __future__ import annotations

import mmap
import select
import struct
from collections.abc import Callable

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8

_u64 = struct.Struct("<Q")
_u32 = struct.Struct("<I")


class RingReader:
    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring buffer size must be a power-of-two number of pages, got {size}")
        page = mmap.PAGESIZE
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._pages = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = page  # the data pages' offset in self._pages
        self._mask = size - 1
        self._poller = select.poll()
        self._poller.register(map_fd, select.POLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Until the kernel signals new records, or timeout_ms."""
        self._poller.poll(timeout_ms)

    def pending_bytes(self) -> int:
        return _u64.unpack_from(self._pages, 0)[0] - _u64.unpack_from(self._consumer, 0)[0]

    def read(self, append: Callable[[bytes], None], max_bytes: int) -> int:
        """Copy complete records out, oldest first, until about max_bytes of them; their space goes
        back to the kernel. Returns the bytes read (records only, headers not counted)."""
        pages, unpack_len = self._pages, _u32.unpack_from
        consumer = _u64.unpack_from(self._consumer, 0)[0]
        producer = _u64.unpack_from(self._pages, 0)[0]
        read = 0
        while consumer < producer and read < max_bytes:
            at = self._data + (consumer & self._mask)
            length = unpack_len(pages, at)[0]
            if length & BUSY_BIT:
                break  # still being written: it and what follows are for the next pass
            size = length & ~(BUSY_BIT | DISCARD_BIT)
            if not length & DISCARD_BIT:
                append(pages[at + HEADER_SIZE : at + HEADER_SIZE + size])
                read += size
            consumer += (size + HEADER_SIZE + 7) & ~7
        _u64.pack_into(self._consumer, 0, consumer)  # after the copies: the kernel may reuse it now
        return read

    def close(self) -> None:
        self._poller = select.poll()
        self._consumer.close()
        self._pages.close()
