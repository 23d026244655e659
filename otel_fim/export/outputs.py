"""Where matched events go. Every output takes the same log record (see `record.py`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from otel_fim.event import Event
from otel_fim.export.record import log_record
from otel_fim.rules.match import Match


class Output(Protocol):
    def emit(self, event: Event, matches: Sequence[Match], record: dict[str, Any]) -> None:
        """Hand one event over. `record` is `log_record(event, matches)`, built once for all outputs."""

    def end_batch(self) -> None:
        """The consumer handled what one poll read: write out what is buffered. Called at least
        every poll interval (100 ms) while the agent runs, so buffering never delays a record longer."""

    def close(self) -> None:
        """Flush and release; called once at shutdown."""


class ConsoleOutput:
    """One readable line per event on stdout."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout

    def emit(self, event: Event, matches: Sequence[Match], record: dict[str, Any]) -> None:
        self._stream.write(f"{record['severity_text']:<8} {record['body']}\n")
        self._stream.flush()

    def end_batch(self) -> None:
        pass  # every line is flushed as it is written

    def close(self) -> None:
        self._stream.flush()


class JsonlOutput:
    """One JSON object per line, shaped like the OTLP log record.

    Lines are buffered and written out at the end of each batch (`end_batch`), not one write(2)
    per record: during a burst that syscall was a tenth of the consumer's time per event."""

    BUFFER_BYTES = 256 * 1024

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab", buffering=self.BUFFER_BYTES)
        # One encoder for every record: json.dumps with options builds a new one per call.
        self._encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode

    def emit(self, event: Event, matches: Sequence[Match], record: dict[str, Any]) -> None:
        self._file.write((self._encode(record) + "\n").encode("utf-8"))

    def end_batch(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class OutputSpecError(ValueError):
    pass


def build_output(spec: str, **options: Any) -> Output:
    """`console`, `jsonl:PATH`, or `otlp` (options go to the OTLP output)."""
    kind, _, arg = spec.partition(":")
    if kind == "console" and not arg:
        return ConsoleOutput()
    if kind == "jsonl":
        if not arg:
            raise OutputSpecError("output 'jsonl' needs a path: --output jsonl:/var/log/otel-fim.jsonl")
        return JsonlOutput(arg)
    if kind == "otlp":
        from otel_fim.export.otlp import OtlpOutput  # imported lazily: pulls in grpc

        return OtlpOutput(**options)
    raise OutputSpecError(f"unknown output {spec!r}: expected console, jsonl:PATH or otlp")


def emit_all(outputs: Sequence[Output], event: Event, matches: Sequence[Match]) -> dict[str, Any]:
    record = log_record(event, matches)
    for output in outputs:
        output.emit(event, matches, record)
    return record
