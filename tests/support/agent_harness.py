"""`otel-fim run` as a subprocess, the way users and supervisors run it, for end-to-end tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
# Every agent a test started: the conftest kills those still running after the test, so a failed
# assertion does not leave an agent tracing the host for the rest of the run.
STARTED: list[subprocess.Popen] = []


def start_agent(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, Path]:
    """Start the agent and return (process, jsonl path) once every program is attached.

    Each agent gets its own state directory (spool) and, unless only a --config sets the outputs,
    a jsonl output in tmp_path; agents running at the same time never share anything."""
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)  # left behind by an agent that was SIGKILLed
    out = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "otel_fim", "run", "--ready-file", str(ready), "--status-interval", "0",
           "--stats-file", str(tmp_path / "stats.json")]  # fmt: skip
    if "--config" not in extra or "--output" in extra:  # flags' outputs replace the file's
        cmd += ["--output", f"jsonl:{out}"]
    if "--state-dir" not in extra:
        cmd += ["--state-dir", str(tmp_path / "state")]
    proc = subprocess.Popen(
        [*cmd, *extra], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    STARTED.append(proc)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"agent did not become ready (exit {proc.poll()}): {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    return proc, out


def stop_agent(proc: subprocess.Popen) -> str:
    """SIGTERM, as a supervisor stops it; the agent must exit 0. Returns its stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"agent did not stop on SIGTERM: {err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    return err


def kill_leftovers() -> None:
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def records(path: Path) -> list[dict]:
    """The complete records so far (the agent may be halfway through writing the last line)."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def wait_records(
    path: Path, predicate: Callable[[dict], bool], count: int = 1, timeout: float = 10.0
) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in records(path) if predicate(r)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
