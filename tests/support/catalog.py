"""What the agent really emits, found by running its code, not by listing names by hand.

- metrics: `FimMetrics` with an `InMemoryMetricReader`, every source attached and every recording
  method called once; cross-checked against the instruments `metrics.py` creates (a new instrument
  that this catalog does not exercise fails `test_catalog_covers_every_instrument`);
- log attributes: `log_record()` on a synthetic event of every type, fully populated (process
  context, ancestry, container, matches with tags), plus the attributes the bundled plugins add
  (their own functions, run on a real file), under the plugin attribute prefix;
- resource attributes: `build_resource()`.

Backends rename on ingestion; `prometheus_series` and `loki_fields` apply their rules (Prometheus'
OTLP translation with suffixes, Loki's OTLP ingestion) so dashboards can be checked name by name.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.sdk.metrics.export import (
    Histogram,
    InMemoryMetricReader,
    Sum,
)

from otel_fim.event import EventType
from otel_fim.export import metrics as metrics_module
from otel_fim.export.attributes import PLUGIN_PREFIX as ATTRIBUTE_PREFIX
from otel_fim.export.endpoint import build_resource
from otel_fim.export.metrics import STAGES, FimMetrics
from otel_fim.export.record import SEVERITY_TEXT, log_record
from otel_fim.rules.match import Match
from tests.factories import full_event as synthetic_event

REPO = Path(__file__).parents[2]


@dataclass
class MetricInfo:
    name: str
    kind: str  # counter | updowncounter | histogram
    unit: str
    attributes: set[str] = field(default_factory=set)
    values: dict[str, set[str]] = field(default_factory=dict)  # attribute -> values seen


def created_instruments() -> set[str]:
    """The names `metrics.py` passes to `meter.create_*` (read from its syntax tree)."""
    tree = ast.parse(Path(metrics_module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("create_")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


def emitted_metrics() -> dict[str, MetricInfo]:
    reader = InMemoryMetricReader()
    m = FimMetrics.with_reader(reader)
    m.counters = lambda: {(stage, t.value): 1 for stage in STAGES for t in EventType}
    m.discarders = lambda: 3
    m.backlog = lambda: 2
    m.watch_spool(lambda: 5, lambda: 500, lambda: 1)
    # Every recording method, once; an instrument added later without a call here has no data and
    # fails `test_catalog_covers_every_instrument`.
    m.record_match("rule-a")
    m.record_latency(0.001)
    m.record_delivery_latency(0.5)
    m.record_export_failure("logs")
    m.record_spool_dropped(SEVERITY_TEXT["low"], 1, reason="spool_full")
    m.record_plugin_error("diff", "otel_fim_enrich")
    m.record_plugin_overflow(1)
    m.record_rejected(1, reason="rejected")
    m.canary_latency = lambda: 0.2
    m.coverage = lambda: 1
    data = reader.get_metrics_data()
    found: dict[str, MetricInfo] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                d = metric.data
                if isinstance(d, Histogram):
                    kind = "histogram"
                elif isinstance(d, Sum):
                    kind = "counter" if d.is_monotonic else "updowncounter"
                else:
                    kind = "gauge"
                info = found.setdefault(metric.name, MetricInfo(metric.name, kind, metric.unit or ""))
                for point in d.data_points:
                    for key, value in (point.attributes or {}).items():
                        info.attributes.add(key)
                        info.values.setdefault(key, set()).add(str(value))
    m.shutdown()
    return found


# -- log records -----------------------------------------------------------------------------------


MATCHES = [
    Match("rule-a", "critical", "desc", {"mitre": "T1098"}, "default", "persistence"),
    Match("rule-b", "low", "", {}, "default", ""),
]


def plugin_attributes() -> set[str]:
    """Attributes the bundled plugins add, from their own functions run on a real file."""
    from otel_fim_plugins import diff, hash  # the bundled plugins' package (plugins/)
    keys = {f"diff.{k}" for k in diff.describe("/etc/x", b"a\n", b"b\n")}
    keys |= {f"diff.{k}" for k in diff.describe("/etc/x", b"a\n", b"a\n")}
    limit = diff._settings["max_diff_bytes"]
    diff._settings["max_diff_bytes"] = 1  # a diff past the limit is cut and flagged
    try:
        keys |= {f"diff.{k}" for k in diff.describe("/etc/x", b"a\n", b"b\n")}
    finally:
        diff._settings["max_diff_bytes"] = limit
    keys |= {f"hash.{k}" for k in hash.file_digest(__file__, 1 << 20)}
    keys |= {f"hash.{k}" for k in hash.file_digest("/nonexistent/otel-fim", 1 << 20)}
    return {f"{ATTRIBUTE_PREFIX}{k}" for k in keys}


def namespaced_extras() -> set[str]:
    """Attributes the pipeline and the plugin stage add as `event.extra` namespaces: read from the
    dict literals that add them (`{NAMESPACE: {"key": ...}}`)."""
    from otel_fim import pipeline
    from otel_fim.export import attributes
    from otel_fim.plugin import stage

    found = set()
    for module in (pipeline, stage):
        for constant, key in re.findall(r"([A-Z_]+): \{\"(\w+)\":", Path(module.__file__).read_text()):
            namespace = getattr(module, constant, None) or getattr(attributes, constant)
            found.add(f"{namespace}.{key}")
    return found


def repeat_and_scan_events() -> list:
    """A coalesced repeat's closing record and a scan finding, made by their own code."""
    from otel_fim.kernel.coalescing import RepeatReporter, _Window
    from otel_fim.kernel.layout import FimRepeatKey
    from otel_fim.scan.baseline import Entry
    from otel_fim.scan.findings import to_event
    from otel_fim.scan.scanner import Change, Finding

    window = _Window(synthetic_event(EventType.OPEN), FimRepeatKey(), boot_ns=10, closes_at_ns=20)
    entry = Entry(ino=1, dev=2, size=3, mode=0o100644, uid=0, gid=0, mtime_ns=1, ctime_ns=1)
    finding = Finding(Change.MODIFIED, "/etc/x", entry, entry)
    return [RepeatReporter._summary(window, 5, 15), to_event(finding, "startup", (1, 2))]


def emitted_log_attributes() -> set[str]:
    keys: set[str] = set()
    for kind in EventType:
        for matches in ((), MATCHES):
            keys |= set(log_record(synthetic_event(kind), matches)["attributes"])
    for event in repeat_and_scan_events():
        keys |= set(log_record(event, MATCHES)["attributes"])
    from otel_fim.export.otlp import INCOMPLETE_KEY  # set on a record sent before its plugins finished

    return keys | plugin_attributes() | namespaced_extras() | {INCOMPLETE_KEY}


def log_record_fields() -> set[str]:
    return set(log_record(synthetic_event(EventType.OPEN), MATCHES)) - {"attributes"}


def resource_attributes() -> set[str]:
    return set(build_resource().attributes)


# -- backend naming ----------------------------------------------------------------------------------

_UNIT_SUFFIX = {"s": "seconds", "By": "bytes", "ms": "milliseconds", "1": "ratio"}


def prometheus_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_:]", "_", name)


def prometheus_series(metrics: dict[str, MetricInfo]) -> dict[str, set[str]]:
    """Prometheus' OTLP translation (UnderscoreEscapingWithSuffixes, its default): dots become
    underscores, a unit becomes a suffix (`{annotations}` are dropped), counters get `_total`,
    histograms `_bucket`/`_sum`/`_count`. Every series also has `job` and `instance` (from
    service.name and service.instance.id); resource attributes go to `target_info`."""
    series: dict[str, set[str]] = {}
    for info in metrics.values():
        base = prometheus_name(info.name)
        suffix = _UNIT_SUFFIX.get(info.unit, "")
        if suffix and not base.endswith(suffix):
            base += "_" + suffix
        labels = {prometheus_name(a) for a in info.attributes} | {"job", "instance"}
        if info.kind == "counter":
            series[base + "_total"] = labels
        elif info.kind == "histogram":
            for part in ("_bucket", "_sum", "_count"):
                series[base + part] = labels | ({"le"} if part == "_bucket" else set())
        else:
            series[base] = labels
    series["target_info"] = {prometheus_name(a) for a in resource_attributes()} | {"job", "instance"}
    return series


# Loki's default OTLP index labels among our resource attributes; the rest of the resource and every
# log attribute become structured metadata. Both are queried by their underscored names.
LOKI_INDEX_LABELS = {"service.name", "service.namespace", "service.instance.id", "deployment.environment"}


def loki_fields() -> tuple[set[str], set[str]]:
    """(index labels, structured metadata / parsed fields) as Loki names them."""
    resource = resource_attributes() | {"k8s.node.name"}  # the DaemonSet sets it
    labels = {prometheus_name(a) for a in resource & LOKI_INDEX_LABELS}
    metadata = {prometheus_name(a) for a in (resource - LOKI_INDEX_LABELS) | emitted_log_attributes()}
    # The record's own fields Loki keeps as structured metadata.
    metadata |= {"severity_text", "severity_number", "detected_level"}
    return labels, metadata
