from __future__ import annotations

import json
import threading

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_fim.export.metrics import FimMetrics
from otel_fim.export.otlp import OtlpOutput, otlp_value
from otel_fim.export.outputs import JsonlOutput, build_output, emit_all
from tests.factories import MATCHES, numbered_event


class FlakyExporter(LogRecordExporter):
    """Fails the first `fail` exports (or raises), then accepts; keeps what it accepted."""

    def __init__(self, fail: int = 0, raise_instead: bool = False) -> None:
        self.fail = fail
        self.raise_instead = raise_instead
        self.calls = 0
        self.accepted = []
        self.lock = threading.Lock()
        self.shut = False

    def export(self, batch):
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail:
                if self.raise_instead:
                    raise ConnectionError("collector down")
                return LogRecordExportResult.FAILURE
            self.accepted.extend(batch)
            return LogRecordExportResult.SUCCESS

    def shutdown(self):
        self.shut = True

    def force_flush(self, timeout_millis=30000):
        return True


def as_record(sdk_record) -> dict:
    lr = sdk_record.log_record
    return {
        "timestamp": lr.timestamp,
        "event_name": lr.event_name,
        "severity_number": lr.severity_number.value,
        "severity_text": lr.severity_text,
        "body": lr.body,
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in lr.attributes.items()},
    }


def test_otlp_record_equals_jsonl_record(tmp_path):
    exporter = FlakyExporter()
    otlp = OtlpOutput(exporter=exporter, state_dir=tmp_path)
    jsonl = JsonlOutput(tmp_path / "out.jsonl")
    sent = [emit_all([otlp, jsonl], numbered_event(i), MATCHES) for i in range(3)]
    assert otlp.flush(10)
    otlp.close()
    jsonl.close()
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    received = [as_record(r) for r in exporter.accepted]
    assert received == lines == json.loads(json.dumps(sent))
    first = exporter.accepted[0]
    assert first.log_record.event_name == "otel_fim.file.open"
    assert first.log_record.severity_text == "high" and first.log_record.severity_number.value == 17
    assert first.instrumentation_scope.name == "otel_fim"
    assert first.resource.attributes["service.name"] == "otel-fim"
    assert first.log_record.observed_timestamp >= first.log_record.timestamp


def test_failures_retry_with_backoff_and_delete_only_on_success(tmp_path):
    exporter = FlakyExporter(fail=3)
    reader = InMemoryMetricReader()
    metrics = FimMetrics.with_reader(reader)
    out = OtlpOutput(
        exporter=exporter, state_dir=tmp_path, backoff_initial=0.01, backoff_max=0.02, metrics=metrics
    )
    for i in range(5):
        emit_all([out], numbered_event(i), MATCHES)
    assert out.flush(10)
    assert exporter.calls >= 4
    assert out.export_failures == 3
    assert sorted(r.log_record.attributes["file.path"] for r in exporter.accepted) == [
        f"/etc/fim-test/file-{i}" for i in range(5)
    ]
    assert out.spool.depth() == 0
    out.close()
    points = {
        (m.name, tuple(sorted(p.attributes.items()))): p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    }
    assert points[("otel_fim.export.failures", (("otel_fim.signal", "logs"),))].value == 3
    assert points[("otel_fim.export.duration", ())].count == 5


def test_exporter_exception_is_a_failure_not_a_dead_thread(tmp_path):
    exporter = FlakyExporter(fail=2, raise_instead=True)
    out = OtlpOutput(exporter=exporter, state_dir=tmp_path, backoff_initial=0.01, backoff_max=0.01)
    emit_all([out], numbered_event(1), MATCHES)
    assert out.flush(10)
    assert len(exporter.accepted) == 1
    out.close()


def test_close_keeps_undelivered_and_next_start_delivers(tmp_path):
    down = FlakyExporter(fail=10**9)
    first = OtlpOutput(
        exporter=down, state_dir=tmp_path, backoff_initial=0.01, backoff_max=0.05, close_timeout=0.2
    )
    for i in range(4):
        emit_all([first], numbered_event(i), MATCHES)
    assert not first.flush(0.3)
    first.close()
    assert down.shut and not down.accepted
    up = FlakyExporter()
    second = OtlpOutput(exporter=up, state_dir=tmp_path)
    assert second.flush(10)
    second.close()
    assert len(up.accepted) == 4


def test_corrupt_row_is_dropped_and_counted_not_blocking(tmp_path):
    exporter = FlakyExporter(fail=10**9)
    out = OtlpOutput(exporter=exporter, state_dir=tmp_path, close_timeout=0.1)
    out.close()
    from otel_fim.export.spool import Spool

    spool = Spool(tmp_path / "spool.db")
    spool.put("{not json", severity=9, observed_ns=1)
    spool.close()
    reader = InMemoryMetricReader()
    good = FlakyExporter()
    out = OtlpOutput(exporter=good, state_dir=tmp_path, metrics=FimMetrics.with_reader(reader))
    emit_all([out], numbered_event(1), MATCHES)
    assert out.flush(10)
    out.close()
    assert len(good.accepted) == 1
    dropped = [
        p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "otel_fim.spool.dropped"
        for p in m.data.data_points
    ]
    assert [(dict(p.attributes)["error.type"], p.value) for p in dropped] == [("corrupt", 1)]


def test_full_spool_drops_are_counted_and_logged(tmp_path, caplog):
    reader = InMemoryMetricReader()
    metrics = FimMetrics.with_reader(reader)
    out = OtlpOutput(
        exporter=FlakyExporter(fail=10**9),
        state_dir=tmp_path,
        spool_max_records=3,
        backoff_initial=5,
        backoff_max=5,
        close_timeout=0.1,
        metrics=metrics,
    )
    for i in range(5):
        emit_all([out], numbered_event(i), MATCHES if i == 0 else MATCHES[1:])  # 1 high, 4 low
    assert out.spool.depth() == 3
    data = reader.get_metrics_data()
    out.close()
    points = {
        m.name: p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    }
    assert points["otel_fim.spool.dropped"].value == 2
    assert dict(points["otel_fim.spool.dropped"].attributes) == {
        "otel_fim.severity": "low",
        "error.type": "spool_full",
    }
    assert points["otel_fim.spool.depth"].value == 3
    assert "spool full" in caplog.text


def test_build_output_otlp(tmp_path):
    out = build_output("otlp", exporter=FlakyExporter(), state_dir=tmp_path)
    assert isinstance(out, OtlpOutput)
    out.close()


def test_otlp_value_never_fails_encoding():
    assert otlp_value(2**70) == str(2**70)
    assert otlp_value([1, None, "a"]) == [1, "a"]
    assert otlp_value({"k": object}) == {"k": str(object)}
    assert otlp_value(("x",)) == ["x"]


def test_build_export_from_config(tmp_path):
    from otel_fim.config import AgentConfig, OtlpConfig
    from otel_fim.export.outputs import JsonlOutput
    from otel_fim.wiring import build_export

    assert build_export(AgentConfig(outputs=["console"])).metrics is None
    config = AgentConfig(
        outputs=["otlp", f"jsonl:{tmp_path / 'e.jsonl'}"],
        state_dir=str(tmp_path / "state"),
        otlp=OtlpConfig(endpoint="http://127.0.0.1:9", protocol="grpc", timeout=0.2, close_timeout=0.1),
    )
    export = build_export(config)
    try:
        otlp = export.outputs[0]
        assert isinstance(otlp, OtlpOutput) and otlp.spool.path == tmp_path / "state" / "spool.db"
        assert export.metrics is not None
        assert any(isinstance(o, JsonlOutput) for o in export.outputs)
    finally:
        for output in export.outputs:
            output.close()
        export.metrics.meter_provider.shutdown(timeout_millis=100)
