"""Against a real OTLP receiver (rotel-agent), over gRPC and HTTP/protobuf, with synthetic events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from otel_fim.export.endpoint import OtlpEndpoint
from otel_fim.export.metrics import FimMetrics
from otel_fim.export.otlp import OtlpOutput
from otel_fim.export.outputs import emit_all
from tests.factories import MATCHES, numbered_event
from tests.support.otlp_receiver import Rotel

PROTOCOLS = ["grpc", "http/protobuf"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_logs_arrive_with_name_severity_attributes_resource(rotel, tmp_path, protocol, monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,host.name=from-env")
    out = OtlpOutput(endpoint=rotel.endpoint(protocol), protocol=protocol, state_dir=tmp_path / "state")
    record = emit_all([out], numbered_event(7), MATCHES)
    assert out.flush(20), "receiver did not acknowledge"
    out.close()
    logs = rotel.wait_logs(lambda logs: logs)
    assert len(logs) == 1
    got = logs[0]
    assert got.event_name == "otel_fim.file.open"
    assert (got.severity_number, got.severity_text) == (17, "high")
    assert got.timestamp == record["timestamp"]
    assert got.body == record["body"]
    assert got.scope == "otel_fim"
    a = got.attributes
    assert a["file.path"] == "/etc/fim-test/file-7"
    assert a["process.pid"] == 4242 and a["process.executable.name"] == "vim"
    assert a["container.id"] == "abc123"
    assert a["security_rule.name"] == "etc-write"
    assert a["security_rule.description"] == "write under /etc"
    assert a["security_rule.ruleset.name"] == "baseline"
    assert a["security_rule.category"] == "impact"
    assert a["otel_fim.rule.ids"] == ["etc-write", "any-open"]
    assert a["otel_fim.rule.tags.mitre"] == "T1565"
    assert a["otel_fim.syscall"] == "openat" and a["otel_fim.retval"] == 3
    assert a == {k: v for k, v in record["attributes"].items()}  # nothing lost or added on the wire
    r = got.resource
    assert r["service.name"] == "otel-fim"
    assert r["os.type"] == "linux"
    assert r["service.version"]
    assert r["host.name"] == "from-env"  # OTEL_RESOURCE_ATTRIBUTES wins over the detected value
    assert r["deployment.environment.name"] == "test"
    if Path("/etc/machine-id").exists():
        assert r["host.id"] == Path("/etc/machine-id").read_text().strip()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_from_environment(rotel, tmp_path, protocol, monkeypatch):
    """`OTEL_EXPORTER_OTLP_PROTOCOL` and `OTEL_EXPORTER_OTLP_ENDPOINT` alone configure the exporter."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.endpoint(protocol))
    out = OtlpOutput(state_dir=tmp_path / "state")
    emit_all([out], numbered_event(1), MATCHES)
    assert out.flush(20)
    out.close()
    assert len(rotel.wait_logs(lambda logs: logs)) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metrics_arrive_with_counters(rotel, protocol):
    counters = {
        ("kernel.seen", "open"): 120,
        ("kernel.discarder_dropped", "open"): 80,
        ("user.matched", "open"): 3,
    }
    metrics = FimMetrics.otlp(
        OtlpEndpoint(rotel.endpoint(protocol), protocol),
        lambda: counters,
        discarders=lambda: 5,
        interval=3600,
    )
    metrics.record_match("etc-write")
    metrics.record_latency(0.003)
    metrics.shutdown()  # a final collect + export
    points = rotel.wait_metrics(lambda ps: any(p.metric == "otel_fim.events" for p in ps))
    events = {
        (p.attributes["otel_fim.stage"], p.attributes["otel_fim.event.type"]): p.value
        for p in points
        if p.metric == "otel_fim.events"
    }
    assert events == {k: float(v) for k, v in counters.items()}
    by_name = {p.metric: p for p in points}
    assert by_name["otel_fim.events"].unit == "{event}"
    assert by_name["otel_fim.rule.matches"].attributes == {"security_rule.name": "etc-write"}
    assert by_name["otel_fim.discarder.count"].value == 5
    assert by_name["otel_fim.event.duration"].count == 1 and by_name["otel_fim.event.duration"].unit == "s"
    assert by_name["otel_fim.events"].resource["service.name"] == "otel-fim"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_receiver_down_then_up_delivers_everything(tmp_path, protocol):
    receiver = Rotel(tmp_path)  # ports chosen, not started yet
    out = OtlpOutput(
        endpoint=receiver.endpoint(protocol),
        protocol=protocol,
        timeout=1,
        state_dir=tmp_path / "state",
        backoff_initial=0.1,
        backoff_max=0.5,
        batch_size=7,
    )
    n = 40
    try:
        for i in range(n // 2):
            emit_all([out], numbered_event(i), MATCHES)
        time.sleep(1.0)
        assert out.export_failures >= 1
        assert out.spool.depth() == n // 2
        receiver.start()
        for i in range(n // 2, n):
            emit_all([out], numbered_event(i), MATCHES)
        assert out.flush(30), f"{out.spool.depth()} records still spooled"
    finally:
        out.close()
    try:
        logs = receiver.wait_logs(lambda logs: len({lg.attributes["file.path"] for lg in logs}) >= n)
    finally:
        receiver.stop()
    assert {lg.attributes["file.path"] for lg in logs} == {f"/etc/fim-test/file-{i}" for i in range(n)}


_WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from otel_fim.export.otlp import OtlpOutput
    from otel_fim.export.outputs import emit_all
    from tests.factories import MATCHES, numbered_event

    out = OtlpOutput(endpoint={endpoint!r}, protocol={protocol!r}, timeout=1, state_dir={state!r},
                     backoff_initial=0.2, backoff_max=0.5)
    for i in range({n}):
        emit_all([out], numbered_event(i), MATCHES)
    open({ready!r}, "w").write("ok")
    time.sleep(600)  # holding undelivered events until SIGKILL
    """
)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sigkill_with_undelivered_events_then_restart_delivers(tmp_path, protocol):
    receiver = Rotel(tmp_path)
    state, ready, n = tmp_path / "state", tmp_path / "ready", 25
    script = _WRITER.format(
        root=str(Path(__file__).parents[2]),
        endpoint=receiver.endpoint(protocol),
        protocol=protocol,
        state=str(state),
        ready=str(ready),
        n=n,
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, "writer died"
            assert time.monotonic() < deadline, "writer never got ready"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    receiver.start()
    try:
        restarted = OtlpOutput(endpoint=receiver.endpoint(protocol), protocol=protocol, state_dir=state)
        assert restarted.spool.depth() == n
        assert restarted.flush(30)
        restarted.close()
        logs = receiver.wait_logs(lambda logs: len({lg.attributes["file.path"] for lg in logs}) >= n)
    finally:
        receiver.stop()
    assert {lg.attributes["file.path"] for lg in logs} == {f"/etc/fim-test/file-{i}" for i in range(n)}
    assert all(lg.resource["service.name"] == "otel-fim" for lg in logs)
