"""The user-space matched-event path on one core, without the kernel: ring-buffer records (bytes,
as the sensor copies them out) of distinct watched-file modifications go through decoding, rules,
process context, the plugin stage (default plugins) and a jsonl output.

    .venv/bin/python -m bench.pipeline [--events N] [--profile]

Prints events/s (best of --rounds) and with --profile the top functions by own time (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

from bench.agent_runner import BENCH_RULES, DEFAULT_RULES
from otel_fim.config import AgentConfig
from otel_fim.kernel.layout import EVENT_TYPES, F_FROM_DENTRY, F_HAS_INODE, SYSCALLS, FimEventHeader
from otel_fim.wiring import build_data_path

WATCHED = Path("/var/tmp/otel-fim-bench/watched")


def records(n: int) -> list[bytes]:
    """`n` open(O_WRONLY|O_CREAT|O_TRUNC) records of distinct watched files, by this process."""
    out = []
    pid = os.getpid()
    for i in range(n):
        path = f"{WATCHED}/b{i:06d}".encode()
        h = FimEventHeader()
        h.ts_boot_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME) + i
        h.type = EVENT_TYPES.index(EVENT_TYPES[0])  # open
        h.syscall = SYSCALLS.index("openat")
        h.pid = h.tid = pid
        h.ppid = os.getppid()
        h.open_flags = 0o1101
        h.mode = 0o644
        h.comm = b"workload"
        h.file.ino = 1_000_000 + i
        h.file.dev = 0xFE00001
        h.file.mnt_id = 27
        h.file.mode = 0o100644
        h.file.flags = F_HAS_INODE | F_FROM_DENTRY
        h.file.path_len = len(path)
        h.file.nlink = 1
        out.append(bytes(h) + path)
    return out


def run(n: int, profile: bool) -> float:
    out = Path(tempfile.mkdtemp(prefix="otel-fim-pipeline-")) / "events.jsonl"
    config = AgentConfig(rules=[str(DEFAULT_RULES), str(BENCH_RULES)], outputs=[f"jsonl:{out}"])
    config.state_dir = str(out.parent / "state")
    path = build_data_path(config)
    raws = records(n)
    deliver = path.sensor._deliver
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    for i, raw in enumerate(raws):
        deliver(raw)
        if i % 2048 == 2047:
            path.pipeline.end_batch()
    path.finish()
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    path.close()
    written = sum(1 for _ in out.open("rb"))
    if written != n:
        print(f"warning: {written} of {n} records written", file=sys.stderr)
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    WATCHED.mkdir(parents=True, exist_ok=True)
    ctypes.CDLL(None)  # (nothing to set up for the kernel: no BPF is loaded here)
    rates = [run(args.events, args.profile and r == 0) for r in range(args.rounds)]
    print(f"{args.events:,} matched events: {max(rates):,.0f} events/s (best of {args.rounds}, one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
