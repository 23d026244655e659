"""bpf/events.h and its Python mirror (otel_fim/kernel/layout.py) agree: the same enums, and the
same struct sizes and offsets as the compiler lays them out for BPF."""

from __future__ import annotations

import ctypes
import os

import pytest

from otel_fim.kernel import headers, layout

pytestmark = pytest.mark.kernel

# (C expression, Python value)
FACTS = [
    ("sizeof(struct fim_event)", ctypes.sizeof(layout.FimEventHeader) + layout.FIM_DATA_MAX),
    ("offsetof(struct fim_event, data)", layout.DATA_OFFSET),
    ("offsetof(struct fim_event, file)", layout.FimEventHeader.file.offset),
    ("offsetof(struct fim_event, dest)", layout.FimEventHeader.dest.offset),
    ("offsetof(struct fim_event, comm)", layout.FimEventHeader.comm.offset),
    ("offsetof(struct fim_event, revision)", layout.FimEventHeader.revision.offset),
    ("sizeof(struct fim_file)", ctypes.sizeof(layout.FimFile)),
    ("offsetof(struct fim_file, path_len)", layout.FimFile.path_len.offset),
    ("sizeof(struct fim_policy)", ctypes.sizeof(layout.FimPolicy)),
    ("sizeof(struct fim_prefix_key)", ctypes.sizeof(layout.FimPrefixKey)),
    ("sizeof(struct fim_basename_key)", ctypes.sizeof(layout.FimBasenameKey)),
    ("sizeof(struct fim_inode_key)", ctypes.sizeof(layout.FimInodeKey)),
    ("sizeof(struct fim_discarder)", ctypes.sizeof(layout.FimDiscarder)),
    ("offsetof(struct fim_discarder, generation)", layout.FimDiscarder.generation.offset),
    ("sizeof(struct fim_inode_approver)", ctypes.sizeof(layout.FimInodeApprover)),
    ("sizeof(struct fim_verdict)", ctypes.sizeof(layout.FimVerdict)),
    ("offsetof(struct fim_event, coalesce)", layout.FimEventHeader.coalesce.offset),
    ("offsetof(struct fim_config, coalesce_ms)", layout.FimConfig.coalesce_ms.offset),
    ("sizeof(struct fim_repeat_key)", ctypes.sizeof(layout.FimRepeatKey)),
    ("sizeof(struct fim_repeat_count)", ctypes.sizeof(layout.FimRepeatCount)),
    ("FIM_CO_OPENED", layout.CO_OPENED),
    ("offsetof(struct fim_verdict, root_ino)", layout.FimVerdict.root_ino.offset),
    ("FIM_STATE_VERDICT_REVISION", layout.STATE_VERDICT_REVISION),
    ("FIM_STATE_VERDICT_RELOADS", layout.STATE_VERDICT_RELOADS),
    ("sizeof(struct fim_config)", ctypes.sizeof(layout.FimConfig)),
    ("FIM_PATH_MAX", layout.FIM_PATH_MAX),
    ("FIM_DATA_MAX", layout.FIM_DATA_MAX),
    ("FIM_BASENAME_KEY", layout.BASENAME_KEY),
    ("FIM_PREFIX_MAX", layout.PREFIX_MAX),
    ("FIM_TYPE_MAX", len(layout.EVENT_TYPES)),
    ("SC_MAX", len(layout.SYSCALLS)),
    ("FIM_COUNTER_MAX", len(layout.COUNTERS)),
    ("FIM_F_TRUNCATED", layout.F_TRUNCATED),
    ("FIM_F_JOINED", layout.F_JOINED),
    ("FIM_F_HAS_INODE", layout.F_HAS_INODE),
    ("FIM_POLICY_DENY", layout.POLICY_DENY),
    ("FIM_POLICY_DROP", layout.POLICY_DROP),
    ("FIM_STATE_REVISION", layout.STATE_REVISION),
]


def c_values() -> list[int]:
    from bcc import BPF

    stores = "\n".join(
        f"    k = {i}; v = (u64)({expr}); out.update(&k, &v);" for i, (expr, _) in enumerate(FACTS)
    )
    text = f"""
#include "events.h"
BPF_ARRAY(out, u64, {len(FACTS)});
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {{
    u32 k; u64 v;
{stores}
    return 0;
}}
"""
    headers.configure_bcc(headers.prepare())
    bpf = BPF(text=text.encode(), cflags=[f"-I{layout.BPF_DIR}"])
    try:
        os.getppid()
        table = bpf[b"out"]
        return [table[ctypes.c_int(i)].value for i in range(len(FACTS))]
    finally:
        bpf.cleanup()


def test_structs_and_constants_agree() -> None:
    got = c_values()
    mismatches = [
        f"{expr}: C {c} != Python {py}" for (expr, py), c in zip(FACTS, got, strict=True) if c != py
    ]
    assert not mismatches, "\n".join(mismatches)


def test_enum_orders_agree() -> None:
    assert [n.removeprefix("FIM_").lower() for n in layout.c_enum_names("fim_event_type")][:-1] == [
        t.value for t in layout.EVENT_TYPES
    ]
    assert [n.removeprefix("SC_").lower() for n in layout.c_enum_names("fim_syscall")][:-1] == list(
        layout.SYSCALLS
    )
    assert [n.removeprefix("FIM_C_").lower() for n in layout.c_enum_names("fim_counter")][:-1] == list(
        layout.COUNTERS
    )
