"""Start-up scan cost: 10,000 watched files compared with the baseline (otel_fim.scan).

    .venv/bin/python -m bench.scan_startup [--files 10000] [--size 4096] [--dir /var/tmp/otel-fim-bench/scan]

Runs the scanner the agent runs, on one thread, with the agent's default rate limits and without
them, in the situations a start-up meets:

* first run: no baseline yet, every file is hashed and recorded;
* restart, nothing changed: every file is lstat()ed, none is read (ctime, size, mtime and inode
  equal the baseline's);
* restart after 1 % of the files were rewritten (same size): those are hashed and reported.

Reports wall time, CPU time (user + system, this process), files/s, bytes read by the scan (its
own count) and the process's `rchar`/`read_bytes` from /proc/self/io (`read_bytes` is what came
from the disk rather than the page cache; the files were just written, so it is mostly 0 here).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from otel_fim.scan.baseline import BaselineStore
from otel_fim.scan.scanner import Scan
from otel_fim.scan.settings import ScanConfig
from otel_fim.scan.throttle import Throttle
from otel_fim.scan.watched import WatchedSet


@dataclass
class Row:
    case: str
    limits: str
    wall: float
    cpu: float
    files: int
    hashed: int
    bytes_read: int
    findings: int
    rchar: int
    read_bytes: int
    throttled: float


def io_counters() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = int(value)
    return out


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def prepare(directory: Path, files: int, size: int) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    for i in range(files):
        sub = directory / f"d{i // 500:03d}"  # 500 files a directory, like a real tree
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}").write_bytes(os.urandom(size))


def measure(
    case: str, limits: str, store: BaselineStore, watched: WatchedSet, config: ScanConfig, report: bool
) -> Row:
    throttle = Throttle(config.bytes_per_s, config.files_per_s) if limits == "default" else Throttle(0, 0)
    scan = Scan(store, watched, throttle, config.hash_max_bytes, report=report)
    io0, cpu0, t0 = io_counters(), cpu_seconds(), time.monotonic()
    findings = sum(1 for _ in scan.run())
    wall, cpu, io1 = time.monotonic() - t0, cpu_seconds() - cpu0, io_counters()
    s = scan.stats
    return Row(
        case, limits, wall, cpu, s.files, s.hashed, s.bytes_read, findings,
        io1["rchar"] - io0["rchar"], io1["read_bytes"] - io0["read_bytes"], throttle.slept,
    )  # fmt: skip


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def rewrite(directory: Path, every: int) -> int:
    n = 0
    for i, path in enumerate(sorted(directory.rglob("f*"))):
        if i % every == 0:
            path.write_bytes(os.urandom(path.stat().st_size))
            n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=4096, help="bytes per file")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/otel-fim-bench/scan"))
    args = parser.parse_args(argv)
    config = ScanConfig()
    prepare(args.dir, args.files, args.size)
    watched = WatchedSet(ancestor_dirs=frozenset({str(args.dir)}))
    rows = []
    for limits in ("none", "default"):
        with tempfile.TemporaryDirectory() as state:
            store = BaselineStore(state)
            rows.append(measure("first run (baseline)", limits, store, watched, config, report=False))
            rows.append(measure("restart, nothing changed", limits, store, watched, config, report=True))
            changed = rewrite(args.dir, 100)
            rows.append(measure(f"restart, {changed} files rewritten", limits, store, watched, config, True))
            db_bytes = sum(p.stat().st_size for p in Path(state).iterdir())
            store.close()
    print(
        f"{args.files} files of {args.size} B in {args.files // 500 + 1} directories; default limits: "
        f"{config.files_per_s} files/s, {config.bytes_per_s // 2**20} MiB/s; "
        f"baseline file {db_bytes / 2**20:.1f} MiB\n"
    )
    header = ["Case", "Rate limits", "Wall", "CPU", "Files/s (wall)", "Hashed", "Read by the scan", "rchar"]
    header += ["read_bytes (disk)", "Throttled", "Findings"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r.case, r.limits, f"{r.wall:.2f} s", f"{r.cpu:.2f} s", f"{r.files / r.wall:,.0f}"]
        cells += [f"{r.hashed:,}", mib(r.bytes_read), mib(r.rchar), mib(r.read_bytes), f"{r.throttled:.2f} s"]
        cells += [str(r.findings)]
        print("| " + " | ".join(cells) + " |")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
