"""Give back the memory compiling the BPF programs left behind, once they are loaded.

bcc compiles in-process with clang/LLVM: afterwards the agent holds ~100 MiB of LLVM and clang code
pages it touched (file-backed: they stay resident until reclaimed) and tens of MiB of freed heap
that glibc keeps for reuse. Neither is needed again until the next compile (a restart), so:

* `MADV_DONTNEED` on the compiler libraries' read-only file mappings that hold no private
  (anonymous, copy-on-write) page unmaps their pages from this process: a page needed again is
  faulted back in from the same file, unchanged, so nothing can be lost. A mapping with private
  pages (relocated read-only data: RELRO) is left alone -- DONTNEED would revert it to the file's
  unrelocated bytes. The page cache itself stays (shared with other processes, reclaimable).
* `malloc_trim(0)` returns free heap at the top of every arena and unused pages inside them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MADV_DONTNEED = 4
# The compiler's libraries: used while compiling, not after (bcc's own runtime calls fault back in).
COMPILER_LIBRARIES = re.compile(r"/lib(LLVM|clang|clang-cpp|bcc)[^/]*\.so")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.malloc_trim.argtypes = [ctypes.c_size_t]


@dataclass
class Released:
    mappings: int = 0
    bytes_advised: int = 0
    rss_before_kib: int = 0
    rss_after_kib: int = 0


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def compiler_mappings(smaps_text: str) -> list[tuple[int, int]]:
    """(start, end) of every read-only file mapping of a compiler library in /proc/self/smaps that
    holds no anonymous (copy-on-write) page."""
    out = []
    current: tuple[int, int] | None = None
    for line in smaps_text.splitlines():
        fields = line.split(maxsplit=5)
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            current = None
            if len(fields) == 6 and "w" not in fields[1] and COMPILER_LIBRARIES.search(fields[5]):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                current = (start, end)
        elif current is not None and fields[:1] == ["Anonymous:"] and fields[1] == "0":
            out.append(current)
    return out


def release_compiler_memory() -> Released:
    result = Released(rss_before_kib=rss_kib())
    for start, end in compiler_mappings(Path("/proc/self/smaps").read_text()):
        if _libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            result.mappings += 1
            result.bytes_advised += end - start
    _libc.malloc_trim(0)
    result.rss_after_kib = rss_kib()
    before, after = result.rss_before_kib // 1024, result.rss_after_kib // 1024
    log.info("released compiler memory: RSS %d -> %d MiB", before, after)
    return result
