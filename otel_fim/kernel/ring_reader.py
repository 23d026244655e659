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

import ctypes
import mmap
import os
import select
from collections.abc import Callable

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _map(fd: int, length: int, prot: int, offset: int) -> int:
    addr = _libc.mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
    if addr in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"cannot map the ring buffer: {os.strerror(err)}")
    return addr


class RingReader:
    """Positions are read and written as whole aligned 64-bit words (ctypes), never byte by byte as
    `struct` with an explicit byte order does: the kernel reads the consumer position while we
    write it, and a torn value would make it see the buffer full (or, read torn from the producer
    position, make us read past what was written)."""

    def __init__(self, map_fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring buffer size must be a power-of-two number of pages, got {size}")
        page = mmap.PAGESIZE
        self._maps = [
            (_map(map_fd, page, mmap.PROT_READ | mmap.PROT_WRITE, 0), page),
            (_map(map_fd, page + 2 * size, mmap.PROT_READ, page), page + 2 * size),
        ]
        consumer_page, producer_page = (addr for addr, _ in self._maps)
        self._consumer = ctypes.c_uint64.from_address(consumer_page)
        self._producer = ctypes.c_uint64.from_address(producer_page)
        self._data = producer_page + page  # the data pages, twice
        self._lengths = (ctypes.c_uint32 * (size // 4)).from_address(self._data)  # headers: 8-aligned
        self._mask = size - 1
        self._poller = select.poll()
        self._poller.register(map_fd, select.POLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Until the kernel signals new records, or timeout_ms."""
        self._poller.poll(timeout_ms)

    def pending_bytes(self) -> int:
        return self._producer.value - self._consumer.value

    def read(self, append: Callable[[bytes], None], max_bytes: int) -> int:
        """Copy complete records out, oldest first, until about max_bytes of them; their space goes
        back to the kernel. Returns the bytes read (records only, headers not counted)."""
        lengths, string_at, data, mask = self._lengths, ctypes.string_at, self._data, self._mask
        consumer = self._consumer.value
        producer = self._producer.value
        read = 0
        while consumer < producer and read < max_bytes:
            at = consumer & mask
            length = lengths[at >> 2]
            if length & BUSY_BIT:
                break  # still being written: it and what follows are for the next pass
            size = length & ~(BUSY_BIT | DISCARD_BIT)
            if not length & DISCARD_BIT:
                append(string_at(data + at + HEADER_SIZE, size))
                read += size
            consumer += (size + HEADER_SIZE + 7) & ~7
        self._consumer.value = consumer  # after the copies: the kernel may reuse the space now
        return read

    def close(self) -> None:
        self._poller = select.poll()
        for addr, length in self._maps:
            _libc.munmap(addr, length)
        self._maps = []
