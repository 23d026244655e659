"""The benchmark workload: a small C program (bench/workload.c) built on first use, its directory
layout, and a typed way to run it. The workload times itself and reports what it did as JSON."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("workload.c")
DEFAULT_ROOT = Path("/var/tmp/otel-fim-bench")
TREE_DIRS = 20
FILES_PER_DIR = 100
WATCHED_FILES = 64  # matches WATCHED_FILES in workload.c


@dataclass(frozen=True)
class BenchPaths:
    """Where the workload works. `watched` is what bench/rules/bench.yaml watches."""

    root: Path = DEFAULT_ROOT
    tmp: Path = Path("/tmp/otel-fim-bench")
    cache: Path = Path("/var/cache/otel-fim-bench")
    tree_files: int = TREE_DIRS * FILES_PER_DIR

    @property
    def watched(self) -> Path:
        return self.root / "watched"

    @property
    def openloop_file(self) -> Path:
        return self.cache / "openloop.dat"

    @property
    def binary_dir(self) -> Path:
        return self.root / "bin"


@dataclass(frozen=True)
class WorkloadSpec:
    mode: str  # mixed | openloop | burst
    ops: int = 0  # stop after this many operations (0: no limit)
    seconds: float = 0.0  # stop after this long (0: no limit)
    rate: float = 0.0  # monitored syscalls per second (0: as fast as possible)
    watched_every: int = 0  # mixed: one watched-file modification per N noise operations

    def args(self, paths: BenchPaths) -> list[str]:
        return [
            self.mode,
            f"-n{self.ops}",
            f"-d{self.seconds}",
            f"-r{self.rate}",
            f"-w{self.watched_every}",
            f"-R{paths.root}",
            f"-T{paths.tmp}",
            f"-C{paths.cache}",
            f"-f{paths.openloop_file}",
            f"-F{paths.tree_files}",
        ]


@dataclass(frozen=True)
class WorkloadResult:
    mode: str
    elapsed_s: float  # wall time
    cpu_s: float  # user + system time, BPF program time included
    ops: int
    syscalls: int  # monitored file syscalls the workload issued
    watched_writes: int
    errors: int

    @property
    def syscall_rate(self) -> float:
        return self.syscalls / self.elapsed_s if self.elapsed_s > 0 else 0.0


def build(paths: BenchPaths, cc: str = "gcc") -> Path:
    """Compile workload.c once per source version; returns the binary."""
    source = SOURCE.read_bytes()
    binary = paths.binary_dir / f"workload-{hashlib.sha256(source).hexdigest()[:12]}"
    if not binary.exists():
        if shutil.which(cc) is None:
            raise RuntimeError(f"{cc} not found: the benchmark workload is C (apt-get install gcc)")
        paths.binary_dir.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(".tmp")
        subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE)], check=True)
        tmp.replace(binary)
    return binary


def prepare(paths: BenchPaths) -> None:
    """Create the directories, the source tree the workload reads, and the watched files (so every
    watched modification, chmod included, hits an existing file)."""
    for d in (paths.watched, paths.root / "staging", paths.root / "tree/out", paths.tmp, paths.cache):
        d.mkdir(parents=True, exist_ok=True)
    for i in range(paths.tree_files):
        f = paths.root / f"tree/src/d{i // FILES_PER_DIR:02d}/f{i % FILES_PER_DIR:03d}.c"
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"int f%d(void) { return %d; }\n" % (i, i) * (1 + i % 64))
    for i in range(WATCHED_FILES):
        f = paths.watched / f"w{i:02d}.conf"
        if not f.exists():
            f.write_text("setting = 1\n")
    paths.openloop_file.touch()


def run(binary: Path, spec: WorkloadSpec, paths: BenchPaths) -> WorkloadResult:
    out = subprocess.run([str(binary), *spec.args(paths)], check=True, capture_output=True, text=True)
    data = json.loads(out.stdout)
    return WorkloadResult(**data)


def cleanup(paths: BenchPaths) -> None:
    """Remove everything the benchmark created (the compiled workload included)."""
    for d in (paths.root, paths.tmp, paths.cache):
        shutil.rmtree(d, ignore_errors=True)
