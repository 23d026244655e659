"""The canary: the agent proves, periodically, that it can still see and report a file change.

Every `interval` seconds a child process (the agent's own pid is dropped in the kernel) rewrites
a private file, `<state_dir>/canary/otel-fim-canary-beat`, which a built-in rule
(`otel_fim_canary`, severity info) watches. The change must come back through everything a
detection goes through -- the kernel programs and filter, the ring buffer, the consumer, the
rules, the plugin stage, every output -- within `deadline` seconds; with an OTLP output, the
exporter must also have delivered something since then (or have nothing left to deliver). So a
detached probe, a stalled consumer, a stuck plugin, a broken output and a wedged exporter all show
up the same way: no proof in time.

The result: `latency` (seconds from the write to the outputs) and `coverage` (1: the last canary
made it, 0: it did not), exported as the metrics `otel_fim.canary.duration` and `otel_fim.coverage`.
A failure logs an error, adds a warning to the status line and emits a high-severity record
(`otel_fim.canary.failed`); the next success emits `otel_fim.canary.recovered`. The checks run
on the canary's own thread: a stalled consumer cannot stall its own alarm.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from otel_fim.canary.settings import CanaryConfig
from otel_fim.export.record import agent_record

log = logging.getLogger(__name__)

RULE_ID = "otel_fim_canary"
NOT_SEEN = "the canary's file change did not reach the outputs (probe, ring, consumer, plugins or output)"
NOT_DELIVERED = "the exporter delivered nothing since the canary was written (wedged or unreachable)"
WRITER = ["/bin/sh", "-c", 'printf "%s\\n" "$2" > "$1"', "otel-fim-canary"]


class Delivering(Protocol):
    """An output that delivers later (OTLP): has it delivered since `since_ns`, or has it nothing
    left to deliver?"""

    def delivering(self, since_ns: int) -> bool: ...


@dataclass
class Beat:
    seq: int
    written_ns: int  # wall clock, before the write: the kernel's timestamp is later
    written: float  # monotonic
    arrived: float | None = None


def beat_path(state_dir: str | Path) -> Path:
    # A name no other file has: the kernel lets every file with a watched basename through.
    return Path(state_dir) / "canary" / "otel-fim-canary-beat"


def write_policy(state_dir: str | Path) -> Path:
    """Write the built-in rule's policy file (loaded with the user's rules) and return it."""
    path = beat_path(state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    policy = path.parent / "canary.yaml"
    quoted = str(path).replace("\\", "\\\\").replace('"', '\\"')  # a rule-language string literal
    rule = {
        "id": RULE_ID,
        "description": "The agent's liveness canary (its own private file); proves detection works.",
        "expression": f'open.file.path == "{quoted}" && open.flags & O_TRUNC != 0',
        "severity": "info",
        "tags": {"category": "agent_health"},
    }
    policy.write_text(yaml.safe_dump({"version": 1, "rules": [rule]}, sort_keys=False))
    return policy


class Canary:
    def __init__(
        self,
        config: CanaryConfig,
        state_dir: str | Path,
        emit_record: Callable[[dict[str, Any]], object],
        delivering: list[Delivering] | None = None,
    ) -> None:
        self.config = config
        self.beat_path = beat_path(state_dir)
        self.emit_record = emit_record
        self.delivering = delivering or []
        self.latency: float | None = None  # of the last canary that arrived
        self.coverage = 1  # 0 from a failed canary until one arrives again
        self.failures = 0
        self.beats = 0
        self.problem: str | None = None  # the current failure, for the status line
        self._beat: Beat | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- set-up ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-fim-canary", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    # -- the pipeline's on_emitted hook (consumer or plugin worker thread) -------------------------
    def arrived(self, event: Any, matches: Any = (), record: Any = None) -> None:
        if event is None or event.file.path != str(self.beat_path):
            return
        with self._lock:
            beat = self._beat
            if beat is not None and beat.arrived is None and event.timestamp_ns >= beat.written_ns:
                beat.arrived = time.monotonic()

    # -- the canary's thread -----------------------------------------------------------------------
    def _run(self) -> None:
        next_beat = time.monotonic() + self.config.interval
        while not self._stop.wait(0.1):
            now = time.monotonic()
            if self._beat is not None:
                self._check(now)
            if now >= next_beat and self._beat is None:
                self._write()
                next_beat = now + self.config.interval

    def _write(self) -> None:
        self.beats += 1
        beat = Beat(self.beats, time.time_ns(), time.monotonic())
        with self._lock:
            self._beat = beat
        try:  # a child: the kernel drops the agent's own syscalls
            subprocess.run(
                [*WRITER, str(self.beat_path), str(beat.seq)], timeout=self.config.deadline, check=True
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("canary: could not write %s: %s", self.beat_path, exc)

    def _check(self, now: float) -> None:
        beat = self._beat
        assert beat is not None
        arrived = beat.arrived
        if arrived is not None:
            pending = [d for d in self.delivering if not d.delivering(beat.written_ns)]
            if not pending:
                self._passed(arrived - beat.written)
                return
            problem = NOT_DELIVERED
        else:
            problem = NOT_SEEN
        if now - beat.written >= self.config.deadline:
            self._failed(problem, beat)

    def _passed(self, latency: float) -> None:
        with self._lock:
            self._beat = None
        self.latency = latency
        if self.coverage == 0:
            log.warning("canary: detection works again (%.3fs)", latency)
            self._alarm(
                "otel_fim.canary.recovered",
                "medium",
                f"canary recovered: detection works again ({latency:.3f}s)",
                {},
            )
        self.coverage, self.problem = 1, None

    def _failed(self, problem: str, beat: Beat) -> None:
        with self._lock:
            self._beat = None
        self.failures += 1
        first = self.coverage == 1
        self.coverage, self.problem = 0, problem
        log.error("canary: no proof of detection within %.0fs: %s", self.config.deadline, problem)
        if first:
            deadline = self.config.deadline
            body = f"canary failed: {problem} (deadline {deadline:.0f}s); file changes may go unreported"
            self._alarm("otel_fim.canary.failed", "high", body, {"otel_fim.canary.problem": problem})

    def _alarm(self, name: str, severity: str, body: str, attributes: dict[str, Any]) -> None:
        record = agent_record(
            name,
            severity,
            body,
            {
                **attributes,
                "otel_fim.canary.path": str(self.beat_path),
                "otel_fim.canary.failures": self.failures,
            },
        )
        # On its own thread: a wedged output must not stop the canary from checking again.
        threading.Thread(target=self._emit, args=(record,), name="otel-fim-canary-alarm", daemon=True).start()

    def _emit(self, record: dict[str, Any]) -> None:
        try:
            self.emit_record(record)
        except Exception:
            log.exception("canary: the alarm record could not be emitted")

    # -- reporting ---------------------------------------------------------------------------------
    def warning(self) -> str:
        """A suffix for the status line while the canary fails."""
        return f" | WARNING canary failing: {self.problem}" if self.problem else ""

    def snapshot(self) -> dict[str, Any]:
        return {
            "beats": self.beats,
            "failures": self.failures,
            "coverage": self.coverage,
            "latency_s": None if self.latency is None else round(self.latency, 4),
        }
