from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult

from otel_fim.export.endpoint import EndpointError, OtlpEndpoint, build_resource, resolve_protocol
from otel_fim.export.metrics import FailureCountingExporter, FimMetrics


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SERVICE_NAME",
    ):
        monkeypatch.delenv(var, raising=False)


def test_protocol_precedence(monkeypatch):
    assert resolve_protocol(None, "logs") == "http/protobuf"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert resolve_protocol(None, "logs") == "grpc"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    assert resolve_protocol(None, "metrics") == "http/protobuf"
    assert resolve_protocol("http/protobuf", "logs") == "http/protobuf"  # config wins
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(EndpointError, match="http/json"):
        resolve_protocol(None, "logs")


def test_exporter_kind_and_url():
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

    http = OtlpEndpoint("http://collector:4318/", "http/protobuf").log_exporter()
    assert isinstance(http, HttpLogs) and http._endpoint == "http://collector:4318/v1/logs"
    grpc = OtlpEndpoint("http://collector:4317", "grpc").log_exporter()
    assert isinstance(grpc, GrpcLogs) and grpc._endpoint == "collector:4317"
    grpc.shutdown()
    with pytest.raises(EndpointError):
        OtlpEndpoint("http://c:4318", "http/protobuf", compression="zstd").log_exporter()


def test_resource_defaults_and_env_override(monkeypatch):
    r = build_resource().attributes
    assert r["service.name"] == "otel-fim" and r["os.type"] == "linux"
    assert r["host.name"] and r["service.version"]
    monkeypatch.setenv("OTEL_SERVICE_NAME", "fim-prod")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.node.name=n1,service.name=ignored")
    r = build_resource().attributes
    assert r["service.name"] == "fim-prod"  # OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES, per spec
    assert r["k8s.node.name"] == "n1"


def collect(reader) -> dict:
    out = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    out[(m.name, tuple(sorted(p.attributes.items())))] = (m.unit, p)
    return out


def test_observable_counters_read_source_at_collection():
    counts = {("kernel.seen", "open"): 1}
    reader = InMemoryMetricReader()
    m = FimMetrics.with_reader(reader, lambda: counts, discarders=lambda: 2)
    first = collect(reader)
    seen_open = ("otel_fim.events", (("otel_fim.event.type", "open"), ("otel_fim.stage", "kernel.seen")))
    unit, point = first[seen_open]
    assert unit == "{event}" and point.value == 1
    counts[("kernel.seen", "open")] = 50
    counts[("kernel.lost", "unlink")] = 4
    second = collect(reader)
    assert (
        second[seen_open][1].value == 50
    )
    assert (
        second[("otel_fim.events", (("otel_fim.event.type", "unlink"), ("otel_fim.stage", "kernel.lost")))][1]
        .value
        == 4
    )
    assert second[("otel_fim.discarder.count", ())][1].value == 2
    m.shutdown()


def test_push_instruments_and_late_sources():
    reader = InMemoryMetricReader()
    m = FimMetrics.with_reader(reader)
    assert not any(k[0] == "otel_fim.events" for k in collect(reader))  # no source yet: no points
    m.counters = lambda: {("user.matched", "open"): 3}
    m.record_match("r1")
    m.record_match("r1")
    m.record_latency(0.004)
    m.record_export_failure("metrics")
    m.watch_spool(lambda: 9, lambda: 900)
    got = collect(reader)
    assert got[("otel_fim.rule.matches", (("security_rule.name", "r1"),))][1].value == 2
    assert got[("otel_fim.event.duration", ())][0] == "s"
    assert got[("otel_fim.event.duration", ())][1].count == 1
    assert got[("otel_fim.export.failures", (("otel_fim.signal", "metrics"),))][1].value == 1
    assert got[("otel_fim.spool.depth", ())][1].value == 9
    assert got[("otel_fim.spool.size", ())][0] == "By"


def test_broken_source_does_not_break_collection(caplog):
    reader = InMemoryMetricReader()
    FimMetrics.with_reader(reader, lambda: 1 / 0).record_match("r")
    assert ("otel_fim.rule.matches", (("security_rule.name", "r"),)) in collect(reader)
    collect(reader)
    assert caplog.text.count("reading events failed") == 1


def test_failure_counting_exporter():
    class Down:
        _preferred_temporality = {}
        _preferred_aggregation = {}

        def export(self, data, timeout_millis=0, **kw):
            raise ConnectionError

    seen = []
    exporter = FailureCountingExporter(Down(), lambda: seen.append(1))
    assert exporter.export(None) is MetricExportResult.FAILURE
    assert exporter.failures == 1 and seen == [1]
