"""Builds examples/grafana/otel-fim.json with grafana-foundation-sdk (typed Grafana models).

    python examples/grafana/dashboard.py            # rewrites otel-fim.json next to this file

Detections come from Loki (OTLP ingestion: resource attributes service.name and service.instance.id
are index labels, every other attribute is structured metadata with `.` replaced by `_`); otel-fim's
own metrics from Prometheus or Mimir (OTLP: `otel_fim.events` -> `otel_fim_events_total`, `job` =
service.name, `instance` = service.instance.id). tests/grafana/test_dashboard.py checks that every
name used below is one the agent emits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, loki, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueGraphMode, LegendDisplayMode, StackingMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, DataTransformerConfig, VariableRefresh

OUTPUT = Path(__file__).with_name("otel-fim.json")
LOKI = DataSourceRef(type_val="loki", uid="${loki}")
PROM = DataSourceRef(type_val="prometheus", uid="${prometheus}")

# A detection is a record with a rule name; `$host` picks hosts (structured metadata host_name).
DETECTIONS = '{service_name="otel-fim"} | security_rule_name != "" | host_name =~ "$host"'
# Metrics of the selected agents.
AGENTS = 'job="otel-fim", instance=~"$instance"'

LOKI_PANELS: dict[str, str] = {
    "Detections by rule and severity": (
        f"sum by (security_rule_name, severity_text) (count_over_time({DETECTIONS} [$__auto]))"
    ),
    "Detections by host and container": (
        f"sum by (host_name, container_id) (count_over_time({DETECTIONS} [$__auto]))"
    ),
    "Top processes (executable)": (
        f"topk(10, sum by (process_executable_path) (count_over_time({DETECTIONS} [$__range])))"
    ),
    "Critical detections": f'sum(count_over_time({DETECTIONS} | severity_text = "critical" [$__range]))',
}
# The table: newest first, one row per detection with what changed (the diff plugin's unified diff).
LATEST = DETECTIONS
LATEST_COLUMNS = [
    "host_name", "severity_text", "security_rule_name", "file_path", "process_executable_path",
    "process_command_line", "user_name", "container_id", "otel_fim_plugin_diff_status",
    "otel_fim_plugin_diff_unified",
]  # fmt: skip

PROM_PANELS: dict[str, tuple[str, str]] = {  # title -> (expr, legend)
    "Kernel filter: share of file events dropped in the kernel": (
        f'1 - sum(rate(otel_fim_events_total{{{AGENTS}, otel_fim_stage="kernel.sent"}}[$__rate_interval]))'
        f' / sum(rate(otel_fim_events_total{{{AGENTS}, otel_fim_stage="kernel.seen"}}[$__rate_interval]))',
        "dropped in kernel",
    ),
    "Events by stage": (
        f"sum by (otel_fim_stage) (rate(otel_fim_events_total{{{AGENTS}}}[$__rate_interval]))",
        "{{otel_fim_stage}}",
    ),
    "Lost in the kernel (ring buffer full)": (
        f'sum by (instance) (increase(otel_fim_events_total{{{AGENTS}, otel_fim_stage="kernel.lost"}}'
        f"[$__rate_interval]))",
        "{{instance}}",
    ),
    "Backlog (records read, not yet handled)": (
        f"max by (instance) (otel_fim_backlog_depth{{{AGENTS}}})",
        "{{instance}}",
    ),
    "Spool depth (records not yet acknowledged)": (
        f"max by (instance) (otel_fim_spool_depth{{{AGENTS}}})",
        "{{instance}}",
    ),
    "Spool drops": (
        f"sum by (instance, error_type) (increase(otel_fim_spool_dropped_total{{{AGENTS}}}"
        f"[$__rate_interval]))",
        "{{instance}} {{error_type}}",
    ),
    "Plugin queue overflow and errors": (
        f"sum by (instance) (increase(otel_fim_plugin_queue_overflow_total{{{AGENTS}}}[$__rate_interval]))"
        f" or sum by (instance, otel_fim_plugin_name) (increase(otel_fim_plugin_errors_total{{{AGENTS}}}"
        f"[$__rate_interval]))",
        "{{instance}} {{otel_fim_plugin_name}}",
    ),
    "Export failures": (
        f"sum by (instance, otel_fim_signal) (increase(otel_fim_export_failures_total{{{AGENTS}}}"
        f"[$__rate_interval]))",
        "{{instance}} {{otel_fim_signal}}",
    ),
    "Kernel to outputs latency (p99)": (
        f"histogram_quantile(0.99, sum by (le) (rate(otel_fim_event_duration_seconds_bucket{{{AGENTS}}}"
        f"[$__rate_interval])))",
        "p99",
    ),
}
VARIABLE_QUERIES = {
    "instance": "label_values(otel_fim_events_total, instance)",
}


def loki_query(expr: str, *, instant: bool = False) -> loki.Dataquery:
    q = loki.Dataquery().expr(expr).datasource(LOKI)
    return q.instant(True) if instant else q.range(True)


def build() -> dashboard.Dashboard:
    d = (
        dashboard.Dashboard("otel-fim: file integrity detections and agent health")
        .uid("otel-fim")
        .tags(["otel-fim", "security", "fim"])
        .refresh("1m")
        .time("now-6h", "now")
        .with_variable(dashboard.DatasourceVariable("loki").label("Loki").type("loki"))
        .with_variable(dashboard.DatasourceVariable("prometheus").label("Prometheus").type("prometheus"))
        .with_variable(dashboard.TextBoxVariable("host").label("host (regex)").default_value(".*"))
        .with_variable(
            dashboard.QueryVariable("instance")
            .label("agent (service.instance.id)")
            .datasource(PROM)
            .query(VARIABLE_QUERIES["instance"])
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
        )
        .with_row(dashboard.Row("Detections (Loki)"))
    )
    titles = list(LOKI_PANELS)
    for title in titles[:2]:
        d = d.with_panel(
            timeseries.Panel()
            .title(title)
            .datasource(LOKI)
            .with_target(loki_query(LOKI_PANELS[title]))
            .stacking(_stacked())
            .legend(_table_legend())
            .height(8)
            .span(12)
        )
    d = d.with_panel(
        table.Panel()
        .title(titles[2])
        .datasource(LOKI)
        .with_target(loki_query(LOKI_PANELS[titles[2]], instant=True))
        .height(8)
        .span(16)
    )
    d = d.with_panel(
        stat.Panel()
        .title(titles[3])
        .datasource(LOKI)
        .with_target(loki_query(LOKI_PANELS[titles[3]], instant=True))
        .graph_mode(BigValueGraphMode.NONE)
        .height(8)
        .span(8)
    )
    d = d.with_panel(
        table.Panel()
        .title("Latest detections (with the diff)")
        .description("Newest first; the diff column is the diff plugin's unified diff of a text file.")
        .datasource(LOKI)
        .with_target(loki_query(LATEST).max_lines(200))
        # Loki hands structured metadata over as a `labels` object: one column per chosen field.
        .with_transformation(DataTransformerConfig(id_val="extractFields", options={"source": "labels"}))
        .with_transformation(
            DataTransformerConfig(
                id_val="organize",
                options={
                    "includeByName": {name: True for name in ["Time", *LATEST_COLUMNS]},
                    "indexByName": {name: i for i, name in enumerate(["Time", *LATEST_COLUMNS])},
                },
            )
        )
        .height(14)
        .span(24)
    )
    d = d.with_row(dashboard.Row("Agent health (Prometheus / Mimir)"))
    for title, (expr, legend) in PROM_PANELS.items():
        d = d.with_panel(
            timeseries.Panel()
            .title(title)
            .datasource(PROM)
            .with_target(prometheus.Dataquery().expr(expr).legend_format(legend).datasource(PROM))
            .unit("percentunit" if "share" in title else ("s" if "latency" in title else "short"))
            .height(8)
            .span(12)
        )
    return d


def _stacked():
    from grafana_foundation_sdk.builders.common import StackingConfig

    return StackingConfig().mode(StackingMode.NORMAL)


def _table_legend():
    from grafana_foundation_sdk.builders.common import VizLegendOptions

    return VizLegendOptions().display_mode(LegendDisplayMode.TABLE).show_legend(True).calcs(["sum"])


def render() -> str:
    model = json.loads(JSONEncoder(sort_keys=True).encode(build().build()))
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    sys.stdout.write(f"wrote {OUTPUT}\n")
