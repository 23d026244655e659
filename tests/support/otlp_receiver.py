"""A real OTLP receiver for tests: `rotel-agent` (PyPI `rotel`) printing what it receives.

Its `--debug-log ... --debug-log-verbosity detailed` output is the Collector's debug-exporter text;
`parse_logs` / `parse_metrics` turn it back into dicts to assert on.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def rotel_binary() -> Path | None:
    found = shutil.which("rotel-agent")
    if found:
        return Path(found)
    try:
        import rotel
    except ImportError:
        return None
    path = Path(rotel.__file__).parent / "rotel-agent"
    return path if path.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class ReceivedLog:
    resource: dict[str, Any]
    scope: str
    timestamp: int
    observed_timestamp: int
    severity_text: str
    severity_number: int
    event_name: str
    body: Any
    attributes: dict[str, Any]


@dataclass
class ReceivedPoint:
    metric: str
    unit: str
    resource: dict[str, Any]
    attributes: dict[str, Any] = field(default_factory=dict)
    value: float | None = None  # sums and gauges
    count: int | None = None  # histograms


class Rotel:
    """One rotel-agent process on free ports; `stop()`/`start()` again keep the same ports."""

    def __init__(self, workdir: Path, grpc_port: int | None = None, http_port: int | None = None) -> None:
        binary = rotel_binary()
        if binary is None:
            raise RuntimeError("rotel-agent not found: pip install rotel")
        self.binary = binary
        self.workdir = workdir
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.output = workdir / "rotel.out"
        self._proc: subprocess.Popen | None = None
        self._runs = 0

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def endpoint(self, protocol: str) -> str:
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint

    def start(self) -> Rotel:
        self._runs += 1
        out = self.output.open("a")
        self._proc = subprocess.Popen(
            [
                str(self.binary), "start",
                "--exporter", "blackhole",
                "--debug-log", "logs", "--debug-log", "metrics",
                "--debug-log-verbosity", "detailed",
                "--batch-timeout", "50ms",
                "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
                "--pid-file", str(self.workdir / f"rotel-{self._runs}.pid"),
                "--log-file", str(self.workdir / "rotel.log"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        out.close()
        deadline = time.monotonic() + 15
        while not (port_open(self.grpc_port) and port_open(self.http_port)):
            if self._proc.poll() is not None:
                raise RuntimeError(f"rotel-agent exited: {self.output.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("rotel-agent did not open its ports")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def text(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def logs(self) -> list[ReceivedLog]:
        return parse_logs(self.text())

    def metrics(self) -> list[ReceivedPoint]:
        return parse_metrics(self.text())

    def wait_logs(self, predicate, timeout: float = 20.0) -> list[ReceivedLog]:
        """Poll until `predicate(logs)` is true; returns the logs (asserting on timeout is the caller's)."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.logs()
            if predicate(logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.1)

    def wait_metrics(self, predicate, timeout: float = 20.0) -> list[ReceivedPoint]:
        deadline = time.monotonic() + timeout
        while True:
            points = self.metrics()
            if predicate(points) or time.monotonic() > deadline:
                return points
            time.sleep(0.1)


# -- the debug exporter's text format ------------------------------------------------------------

_ATTR = re.compile(r"^\s+-> ([^:]+): (.*)$")
_TYPED = re.compile(r"^(Str|Int|Bool|Double|Bytes|Slice|Map|Empty)\((.*)\)$", re.S)


def parse_value(text: str) -> Any:
    m = _TYPED.match(text.strip())
    if not m:
        return text
    kind, inner = m.groups()
    if kind == "Str":
        return inner
    if kind == "Int":
        return int(inner)
    if kind == "Double":
        return float(inner)
    if kind == "Bool":
        return inner == "true"
    if kind == "Slice":
        return [parse_value(item) for item in _split_items(inner)]
    return inner


def _split_items(inner: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:i].strip())
            start = i + 1
    if inner[start:].strip():
        items.append(inner[start:].strip())
    return items


def _attributes(lines: list[str], i: int) -> tuple[dict[str, Any], int]:
    attrs: dict[str, Any] = {}
    while i < len(lines) and (m := _ATTR.match(lines[i])):
        attrs[m.group(1)] = parse_value(m.group(2))
        i += 1
    return attrs, i


def parse_logs(text: str) -> list[ReceivedLog]:
    lines = text.splitlines()
    out: list[ReceivedLog] = []
    resource: dict[str, Any] = {}
    scope = ""
    cur: dict[str, Any] | None = None
    in_logs = False

    def finish() -> None:
        nonlocal cur
        if cur is not None:
            out.append(ReceivedLog(resource=resource, scope=scope, **cur))
            cur = None

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("ResourceLog #"):
            finish()
            in_logs, resource = True, {}
        elif line.startswith(("ResourceMetrics #", "ResourceSpans #")):
            finish()
            in_logs = False
        elif not in_logs:
            pass
        elif line == "Resource attributes:":
            resource, i = _attributes(lines, i + 1)
            continue
        elif line.startswith("InstrumentationScope "):
            scope = line.split(" ", 2)[1]
        elif line.startswith("LogRecord #"):
            finish()
            cur = {
                "timestamp": 0, "observed_timestamp": 0, "severity_text": "", "severity_number": 0,
                "event_name": "", "body": None, "attributes": {},
            }  # fmt: skip
        elif cur is not None:
            key, _, value = line.partition(": ")
            if key == "Timestamp":
                cur["timestamp"] = int(value)
            elif key == "ObservedTimestamp":
                cur["observed_timestamp"] = int(value)
            elif key == "SeverityText":
                cur["severity_text"] = value
            elif key == "SeverityNumber":
                cur["severity_number"] = int(re.search(r"\((\d+)\)", value).group(1))
            elif key == "EventName":
                cur["event_name"] = value
            elif key == "Body":
                cur["body"] = parse_value(value)
            elif line == "Attributes:":
                cur["attributes"], i = _attributes(lines, i + 1)
                continue
        i += 1
    finish()
    return out


def parse_metrics(text: str) -> list[ReceivedPoint]:
    lines = text.splitlines()
    out: list[ReceivedPoint] = []
    resource: dict[str, Any] = {}
    name = unit = ""
    point: ReceivedPoint | None = None
    in_metrics = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("ResourceMetrics #"):
            in_metrics, resource, point = True, {}, None
        elif line.startswith(("ResourceLog #", "ResourceSpans #")):
            in_metrics, point = False, None
        elif not in_metrics:
            pass
        elif line == "Resource attributes:":
            resource, i = _attributes(lines, i + 1)
            continue
        elif (m := _ATTR.match(line)) and m.group(1) == "Name":
            name, point = m.group(2), None
        elif (m := _ATTR.match(line)) and m.group(1) == "Unit":
            unit = m.group(2)
        elif line.startswith(("NumberDataPoints #", "HistogramDataPoints #")):
            point = ReceivedPoint(metric=name, unit=unit, resource=resource)
            out.append(point)
        elif point is not None and line == "Data point attributes:":
            point.attributes, i = _attributes(lines, i + 1)
            continue
        elif point is not None and line.startswith("Value: "):
            point.value = float(line.split(": ", 1)[1])
        elif point is not None and line.startswith("Count: "):
            point.count = int(line.split(": ", 1)[1])
        i += 1
    return out
