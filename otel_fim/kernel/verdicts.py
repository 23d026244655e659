"""User-space side of the kernel-learned verdicts (bpf/verdicts.h) for what the syscall
tracepoints do not see: io_uring renames, unlinks and links make every verdict stale too.

The io_uring tracepoints' records are read at the offsets their tracefs `format` files give (they
moved between kernel versions). A kernel without these tracepoints compiles the programs out, with
a warning: io_uring name changes would then not invalidate verdicts (a limit, in the README)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from otel_fim.kernel.tracefs import TRACEFS

log = logging.getLogger(__name__)

SUBMIT = "io_uring/io_uring_submit_req"
COMPLETE = "io_uring/io_uring_complete"
PROGRAMS = {SUBMIT: "verdict_uring_submit", COMPLETE: "verdict_uring_complete"}


def field_offsets(format_text: str) -> dict[str, int]:
    """`field:<type> <name>;\toffset:<n>;` lines of a tracepoint format -> name -> offset."""
    out = {}
    for m in re.finditer(r"field:[^;]*?(\w+)(\[[^\]]*\])?;\s*offset:(\d+);", format_text):
        out[m.group(1)] = int(m.group(3))
    return out


def uring_constants(tracefs: Path = TRACEFS) -> dict[str, int]:
    """-D constants for bpf/verdicts.h: FIM_URING_NAME_OPS=1 and the field offsets, or =0."""
    try:
        submit = field_offsets((tracefs / "events" / SUBMIT / "format").read_text())
        complete = field_offsets((tracefs / "events" / COMPLETE / "format").read_text())
        consts = {
            "FIM_URING_SUBMIT_OPCODE": submit["opcode"],
            "FIM_URING_SUBMIT_REQ": submit["req"],
            "FIM_URING_COMPLETE_REQ": complete["req"],
        }
    except (OSError, KeyError):
        log.warning("no io_uring tracepoints: io_uring renames would not invalidate kernel verdicts")
        return {"FIM_URING_NAME_OPS": 0}
    return {"FIM_URING_NAME_OPS": 1, **consts}


def attach_uring(bpf: Any, constants: dict[str, int]) -> int:
    """Attach the io_uring programs when compiled in; returns how many were attached."""
    if not constants.get("FIM_URING_NAME_OPS"):
        return 0
    from bcc import BPF
    from bcc.libbcc import lib

    for tracepoint, program in PROGRAMS.items():
        # Not bpf.attach_tracepoint: bcc keys its fds by tracepoint name, and the io_uring module
        # (bpf/io_uring.c) has programs on the same tracepoints; a second entry under that name
        # would drop the first fd from bcc's table, and it would never be detached.
        category, name = tracepoint.split("/")
        fn = bpf.load_func(program.encode(), BPF.TRACEPOINT)
        fd = lib.bpf_attach_tracepoint(fn.fd, category.encode(), name.encode())
        if fd < 0:
            raise OSError(f"cannot attach {program} to {category}:{name}")
        bpf.tracepoint_fds[f"{category}:{name}#verdicts".encode()] = fd  # closed by detach_all
    return len(PROGRAMS)
