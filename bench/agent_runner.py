"""Run the otel-fim agent as a separate process: wait until it is attached, sample its CPU time from
/proc, stop it with SIGTERM and read back its stats file and jsonl output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_RULES = REPO / "bench/rules/bench.yaml"
DEFAULT_RULES = REPO / "rules/default.yaml"
BENCH_RULE_ID = "bench_watched_modified"
CLK_TCK = os.sysconf("SC_CLK_TCK")
COUNTERS = ("seen", "approver_dropped", "discarder_dropped", "sent", "lost")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid` (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # comm may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def foreign_tracers(exclude: Iterable[int] = ()) -> list[int]:
    """Processes holding BPF programs other than `exclude` (and us): other agents or kernel tests
    whose tracepoint programs slow every file syscall, with or without our agent."""
    skip = {os.getpid(), *exclude}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in skip:
            continue
        try:
            if any(os.readlink(fd) == "anon_inode:bpf-prog" for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:  # exited or not ours to read
            continue
    return pids


def wait_for_no_tracers(timeout: float) -> bool:
    """Wait up to `timeout` seconds for no foreign BPF tracers; True if there are none."""
    deadline = time.monotonic() + timeout
    while foreign_tracers():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@dataclass(frozen=True)
class AgentConfig:
    """One way of running the agent; `label` names it in the report."""

    label: str
    rules: tuple[Path, ...]
    kernel_filter: bool = True
    ringbuf_pages: int | None = None  # None: the agent's default


@dataclass
class AgentResult:
    stats: dict[str, Any]
    cpu_s: float  # CPU used between "ready" and just before SIGTERM
    records: Path
    peak_rss_mib: float = 0.0  # the agent's peak resident memory (VmHWM), read before SIGTERM

    def kernel_total(self, counter: str) -> int:
        return sum(c.get(counter, 0) for c in self.stats.get("kernel", {}).values())

    @property
    def dropped_fraction(self) -> float:
        seen = self.kernel_total("seen")
        dropped = self.kernel_total("approver_dropped") + self.kernel_total("discarder_dropped")
        return dropped / seen if seen else 0.0

    @property
    def rule_matches(self) -> dict[str, int]:
        return dict(self.stats.get("user", {}).get("rule_matches", {}))


def count_records(jsonl: Path, rule_id: str = BENCH_RULE_ID) -> int:
    """Calls the agent's jsonl records that `rule_id` matched stand for: one per record, or for a
    record reporting coalesced repeats, their count (`otel_fim.repeat.count`)."""
    if not jsonl.exists():
        return 0
    needle = f'"{rule_id}"'.encode()
    count = 0
    with jsonl.open("rb") as f:
        for line in f:
            if needle not in line:
                continue
            attrs = json.loads(line)["attributes"]
            if rule_id in attrs.get("otel_fim.rule.ids", ()):
                count += int(attrs.get("otel_fim.repeat.count", 1))
    return count


@dataclass
class Agent:
    """`with Agent(config, workdir) as agent: ...; result = agent.stop()`."""

    config: AgentConfig
    workdir: Path
    agent_root: Path = REPO
    ready_timeout: float = 120.0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    cpu_at_ready: float = field(default=0.0, init=False)

    @property
    def records(self) -> Path:
        return self.workdir / "records.jsonl"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "otel_fim", "run", "--status-interval", "0"]
        for rules in self.config.rules:
            cmd += ["--rules", str(rules)]
        cmd += [
            "--output",
            f"jsonl:{self.records}",
            "--ready-file",
            str(self.workdir / "ready"),
            "--stats-file",
            str(self.workdir / "stats.json"),
        ]
        if not self.config.kernel_filter:
            cmd.append("--no-kernel-filter")
        if self.config.ringbuf_pages is not None:
            cmd += ["--ringbuf-pages", str(self.config.ringbuf_pages)]
        return cmd

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("ready", "stats.json", "records.jsonl", "agent.log"):
            (self.workdir / name).unlink(missing_ok=True)
        log = (self.workdir / "agent.log").open("wb")
        # cwd: `-m otel_fim` imports the agent from agent_root (the tree being measured)
        self.proc = subprocess.Popen(self.command(), cwd=self.agent_root, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + self.ready_timeout
        while not (self.workdir / "ready").exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent not ready after {self.ready_timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.cpu_at_ready = self.cpu_seconds()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_idle(self, timeout: float = 15.0, busy: float = 0.2) -> None:
        """Let the agent drain its ring buffer: return once it uses less than `busy` of a core over
        half a second. (With --no-kernel-filter it also handles the rest of the machine's events.)"""
        deadline = time.monotonic() + timeout
        previous = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.cpu_seconds()
            if current - previous < 0.5 * busy:
                return
            previous = current

    def stop(self, timeout: float = 60.0) -> AgentResult:
        assert self.proc is not None
        cpu = self.cpu_seconds() - self.cpu_at_ready
        peak_rss = peak_rss_mib(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"agent did not stop within {timeout}s:\n{self.log_tail()}") from None
        stats_file = self.workdir / "stats.json"
        if self.proc.returncode != 0 or not stats_file.exists():
            raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log_tail()}")
        return AgentResult(json.loads(stats_file.read_text()), cpu, self.records, peak_rss)

    def log_tail(self, lines: int = 20) -> str:
        text = (self.workdir / "agent.log").read_text(errors="replace").splitlines()
        kept = [line for line in text if not line.startswith(";")]  # skip BPF verifier dumps
        return "\n".join(kept[-lines:]) or "(no output)"
