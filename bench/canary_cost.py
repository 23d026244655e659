"""The liveness canary's cost: the idle agent with the canary every second, and without it.

    .venv/bin/python -m bench.canary_cost [--seconds 30] [--rounds 2]

Each run is the real CLI (`python -m otel_fim run`) with the bench rule, no scans, idle for
`--seconds` after it is ready; its CPU is utime + stime of the agent and of its reaped children
(the canary's writer is a child process) from /proc/PID/stat, between ready and SIGTERM. Rounds
alternate the two configurations; the per-canary cost is the difference divided by the canaries
written. The default interval is 60 s, so the default cost is 1/60 of the 1 s figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "bench" / "rules" / "bench.yaml"


def cpu_with_children(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def run(seconds: float, canary: bool) -> dict:
    with tempfile.TemporaryDirectory() as work:
        w = Path(work)
        config = w / "config.yaml"
        config.write_text("canary: {interval: 1, deadline: 5}\n")
        cmd = [sys.executable, "-m", "otel_fim", "run", "--rules", str(RULES), "--config", str(config),
               "--output", f"jsonl:{w / 'out.jsonl'}", "--state-dir", str(w / "state"), "--no-scan",
               "--status-interval", "0", "--ready-file", str(w / "ready"),
               "--stats-file", str(w / "stats.json")]  # fmt: skip
        if not canary:
            cmd.append("--no-canary")
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (w / "ready").exists():
            if proc.poll() is not None:
                raise RuntimeError("agent exited")
            time.sleep(0.05)
        before = cpu_with_children(proc.pid)
        time.sleep(seconds)
        cpu = cpu_with_children(proc.pid) - before
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        stats = json.loads((w / "stats.json").read_text())
        return {"cpu": cpu, "canary": stats.get("canary")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    off, on = [], []
    for _ in range(args.rounds):
        off.append(run(args.seconds, canary=False))
        on.append(run(args.seconds, canary=True))
    cpu_off = sum(r["cpu"] for r in off) / len(off)
    cpu_on = sum(r["cpu"] for r in on) / len(on)
    beats = sum(r["canary"]["beats"] for r in on) / len(on)
    latencies = [r["canary"]["latency_s"] for r in on if r["canary"]["latency_s"] is not None]
    failures = sum(r["canary"]["failures"] for r in on)
    print(f"idle agent, {args.seconds:.0f} s per run, {args.rounds} round(s), canary every 1 s\n")
    print(
        "| Configuration | Agent CPU (+ children) | Share of one core | Canaries | Last latency | Failures |"
    )
    print("|---|---|---|---|---|---|")
    print(f"| no canary | {cpu_off:.3f} s | {cpu_off / args.seconds:.2%} | - | - | - |")
    print(
        f"| canary every 1 s | {cpu_on:.3f} s | {cpu_on / args.seconds:.2%} | {beats:.0f} | "
        f"{max(latencies) * 1000:.0f} ms (worst run) | {failures} |"
    )
    per = (cpu_on - cpu_off) / beats if beats else float("nan")
    print(f"\nper canary: {per * 1000:.1f} ms CPU; at the default 60 s interval: {per / 60:.3%} of one core")


if __name__ == "__main__":
    main()
