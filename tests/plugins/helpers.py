from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from otel_fim.config import AgentConfig, PluginsConfig
from otel_fim.event import Event, EventType, FileInfo, OpenDetails, ProcessInfo
from otel_fim.rules.match import Match


def make_event(path: str = "/etc/fim-test/x", *, kind: EventType = EventType.OPEN, flags: int = 0o1101,
               pid: int = 4242) -> Event:  # fmt: skip
    return Event(
        type=kind,
        syscall="openat" if kind is EventType.OPEN else kind.value,
        timestamp_ns=time.time_ns(),
        retval=3,
        process=ProcessInfo(pid=pid, tid=pid, ppid=1, uid=0, gid=0, euid=0, comm="vim"),
        file=FileInfo(path, inode=1, mode=0o100644, uid=0, gid=0),
        details=OpenDetails(flags=flags, mode=0o644) if kind is EventType.OPEN else None,
    )


class Recorder:
    """An output that keeps what it got."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.closed = False

    def emit(self, event: Event, matches: Sequence[Match], record: dict[str, Any]) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


def agent_config(tmp_path, **plugins: Any) -> AgentConfig:
    return AgentConfig(state_dir=str(tmp_path / "state"), plugins=PluginsConfig(**plugins))


# -- the real agent --------------------------------------------------------------------------------

import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).parents[2]


def start_agent(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, Path]:
    """`otel-fim run` as a subprocess writing jsonl; returns once it is attached."""
    ready = tmp_path / "ready"
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "otel_fim", "run", "--output", f"jsonl:{out}", "--ready-file", str(ready),
            "--stats-file", str(tmp_path / "stats.json"), "--state-dir", str(tmp_path / "state"),
            "--status-interval", "0", *extra,
        ],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"agent did not become ready: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    return proc, out


def stop_agent(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"agent did not stop: {err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    return err


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_records(path: Path, predicate, count: int = 1, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in records(path) if predicate(r)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
