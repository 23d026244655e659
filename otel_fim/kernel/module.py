"""Extension point of the sensor: a kernel module is one C source in bpf/ compiled into the same
BPF object as the file-syscall programs, plus what to do once it is loaded.

The file-syscall tracepoints are the backend that works on every kernel we target; a module can
add other instrumentation (process tracking) or, on kernels that allow them, fentry/LSM programs
that write the same `struct fim_event` into the same ring buffer.
"""

from __future__ import annotations

from typing import Any, Protocol


class KernelModule(Protocol):
    name: str
    source: str  # file name under bpf/

    def members(self) -> dict[str, tuple[str, str]]:
        """BTF offsets it needs: C constant -> (struct, member path). Merged with the sensor's."""

    def cflags(self) -> list[str]:
        """Extra compiler flags (feature switches, sizes)."""

    def attach(self, bpf: Any) -> None:
        """Called once the object is loaded: open ring buffers, fill maps, install tail calls."""

    def detach(self) -> None:
        """Called before the object is unloaded."""
