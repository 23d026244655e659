"""Load-time check of the kernel/user contract: the maps bcc compiled against layout.MAPS.

The layout test compares events.h with layout.py as gcc lays them out for the host; this compares
what clang actually built for BPF with the ctypes mirrors user space reads and writes, so a header
changed without its mirror fails at start with the map named instead of corrupting values later
(Tetragon's alignchecker idea).

The sizes are the ones libbcc reports for the compiled maps (the sizes the kernel maps were created
with), not those of the ctypes types bcc decodes for `table.Key`/`table.Leaf`: bcc cannot decode
every value (building the table object of `proc_scratch`, a per-CPU map of a struct with a 2-D
char array, raises IndexError), and the maps themselves are what the kernel reads and writes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from typing import Any

from otel_fim.kernel import layout


def map_mismatches(bpf: Any, sources: Iterable[str]) -> list[str]:
    """One sentence per disagreement between the loaded object `bpf` and layout.MAPS, for the
    maps of the compiled `sources` (file names under bpf/)."""
    compiled = set(sources)
    problems: list[str] = []
    for mirror in layout.MAPS:  # read at call time: the test swaps in a wrong mirror
        if mirror.source in compiled:
            problems += _check(bpf, mirror)
    return problems


def _check(bpf: Any, mirror: layout.MapMirror) -> list[str]:
    lib = _libbcc()
    name = mirror.name.encode()
    if lib.bpf_table_fd(bpf.module, name) < 0:
        return [f"map {mirror.name}: not in the object compiled from {mirror.source}"]
    map_id = lib.bpf_table_id(bpf.module, name)
    problems = []
    for part, compiled, mirror_type in (
        ("key", lib.bpf_table_key_size_id(bpf.module, map_id), mirror.key),
        ("value", lib.bpf_table_leaf_size_id(bpf.module, map_id), mirror.value),
    ):
        if compiled != ctypes.sizeof(mirror_type):
            problems.append(
                f"map {mirror.name}: {part} is {compiled} bytes in the BPF object, "
                f"{ctypes.sizeof(mirror_type)} bytes in its mirror {mirror_type.__name__}"
            )
    entries = lib.bpf_table_max_entries_id(bpf.module, map_id)
    if mirror.entries is not None and entries != mirror.entries:
        problems.append(
            f"map {mirror.name}: {entries} entries in the BPF object, "
            f"{mirror.entries} expected from its index enum"
        )
    return problems


def _libbcc() -> Any:
    from bcc.libbcc import lib  # imported here: only Debian's python3 has it

    # bcc's bindings leave these two undeclared: without argtypes the module pointer would be
    # passed as a C int.
    for fn in (lib.bpf_table_key_size_id, lib.bpf_table_leaf_size_id):
        fn.restype = ctypes.c_size_t
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib
