"""struct fim_proc_event in bpf/events.h and its ctypes mirror agree (compiled with gcc)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from otel_fim.kernel import layout

PROGRAM = """
#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>
#include "events.h"
#define P(f) printf("%s %zu\\n", #f, offsetof(struct fim_proc_event, f));
int main(void) {
    P(ts_boot_ns) P(start_boot_ns) P(cgroup_id) P(type) P(pid) P(tid) P(ppid) P(uid) P(gid)
    P(euid) P(egid) P(exit_code) P(flags) P(args_len) P(comm) P(filename) P(cg2) P(cg1) P(args)
    printf("sizeof %zu\\n", sizeof(struct fim_proc_event));
    printf("cg_sizeof %zu\\n", sizeof(struct fim_cgroup_path));
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_proc_event_layout(tmp_path: Path) -> None:
    src = tmp_path / "layout.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "layout"
    subprocess.run(["gcc", f"-I{layout.BPF_DIR}", "-o", str(exe), str(src)], check=True)
    c = dict(
        line.split()
        for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    )
    h = layout.FimProcEventHeader
    for name, _ in h._fields_:
        assert int(c[name]) == getattr(h, name).offset, name
    assert int(c["args"]) == layout.PROC_ARGS_OFFSET
    assert int(c["sizeof"]) == layout.PROC_ARGS_OFFSET + layout.FIM_PROC_ARGS_MAX
    assert int(c["cg_sizeof"]) == ctypes_sizeof(layout.FimCgroupPath)


def ctypes_sizeof(t: type) -> int:
    import ctypes

    return ctypes.sizeof(t)


def test_proc_enum_and_constants() -> None:
    assert layout.c_enum_names("fim_proc_event_type") == [
        f"FIM_PROC_{t.upper()}" for t in layout.PROC_EVENT_TYPES
    ] + ["FIM_PROC_TYPE_MAX"]
    text = (layout.BPF_DIR / "events.h").read_text()
    for name in ("FIM_PROC_PATH_MAX", "FIM_PROC_ARGS_MAX", "FIM_CG_LEVELS", "FIM_CG_NAME_MAX"):
        assert f"#define {name} {getattr(layout, name)} " in text
    assert f"#define FIM_PF_ARGS_TRUNCATED 0x{layout.PF_ARGS_TRUNCATED:02x}" in text
