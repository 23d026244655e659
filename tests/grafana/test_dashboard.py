"""The Grafana dashboard and the alert rules name only what the agent emits.

Names come from tests/support/catalog.py, which runs the metrics code and the record builder; the PromQL is
parsed with promql-parser (Prometheus' grammar), the LogQL with the small extractor below (no LogQL
parser exists for Python). Also: the dashboard JSON is what the grafana-foundation-sdk builder
produces, and the rule files have the shape Prometheus and Loki's ruler load."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import promql_parser
import pytest
import yaml

from otel_fim.export.metrics import STAGES
from otel_fim.export.record import SEVERITY_TEXT
from tests.support import catalog

GRAFANA = catalog.REPO / "examples/grafana"
DASHBOARD = GRAFANA / "otel-fim.json"
PROM_RULES = GRAFANA / "alerts/prometheus-rules.yaml"
LOKI_RULES = GRAFANA / "alerts/loki-rules.yaml"
# Grafana's built-in variables, as a value the query grammar accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__auto": "1m", "$__range": "1h"}


@pytest.fixture(scope="module")
def metrics() -> dict[str, catalog.MetricInfo]:
    return catalog.emitted_metrics()


@pytest.fixture(scope="module")
def series(metrics) -> dict[str, set[str]]:
    return catalog.prometheus_series(metrics)


def load_builder():
    spec = importlib.util.spec_from_file_location("otel_fim_dashboard", GRAFANA / "dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_queries() -> list[tuple[str, str]]:
    """(datasource type, expr) of every panel target and query variable in the JSON."""
    model = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            queries.append((target["datasource"]["type"], target["expr"]))
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            # Grafana's label_values(METRIC, LABEL) asks for the same as `count by (LABEL) (METRIC)`.
            metric, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]).groups()
            queries.append(("prometheus-variable", f"count by ({label}) ({metric})"))
    return queries


def substitute(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


# -- PromQL ---------------------------------------------------------------------------------------


@dataclass
class PromNames:
    metrics: set[str] = field(default_factory=set)
    matchers: list[tuple[str, str, bool, str]] = field(default_factory=list)  # metric, label, equal?, value
    grouping: set[str] = field(default_factory=set)


def prom_names(expr: str) -> PromNames:
    found = PromNames()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.metrics.add(node.name)
            for m in node.matchers.matchers:
                found.matchers.append((node.name, m.name, m.op == promql_parser.MatchOp.Equal, m.value))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            found.grouping |= set(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            if matching is not None:
                found.grouping |= set(matching.labels)

    promql_parser.walk(promql_parser.parse(substitute(expr)), visit)
    return found


def check_promql(expr: str, series: dict[str, set[str]], metrics) -> list[str]:
    """What in `expr` the agent does not emit (empty: all good)."""
    problems = []
    names = prom_names(expr)
    if not names.metrics:
        problems.append(f"no metric in {expr!r}")
    labels: set[str] = set()
    for metric in names.metrics:
        if metric not in series:
            problems.append(f"metric {metric!r} is not emitted (emitted: {sorted(series)})")
            continue
        labels |= series[metric]
    for metric, label, equal, value in names.matchers:
        if metric in series and label not in series[metric]:
            problems.append(f"{metric} has no label {label!r}")
        if label == "otel_fim_stage" and equal and value not in STAGES:
            problems.append(f"otel_fim_stage {value!r} is not a stage ({STAGES})")
        if label == "job" and equal and value != "otel-fim":
            problems.append(f"job is service.name, 'otel-fim', not {value!r}")
    for label in names.grouping - labels:
        problems.append(f"grouping by {label!r}: none of {sorted(names.metrics)} has it")
    return problems


# -- LogQL ----------------------------------------------------------------------------------------

_STREAM = re.compile(r"\{([^{}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_FILTER = re.compile(r'\|\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|==|=|>=|<=|>|<)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def check_logql(expr: str) -> list[str]:
    problems = []
    labels, metadata = catalog.loki_fields()
    expr = substitute(expr)
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        problems.append(f"unbalanced brackets in {expr!r}")
    streams = _STREAM.findall(expr)
    if len(streams) != 1:
        problems.append(f"expected one stream selector in {expr!r}")
    for selector in streams:
        for name, _, value in _MATCHER.findall(selector):
            if name not in labels:
                problems.append(f"stream label {name!r} is not an index label ({sorted(labels)})")
            if name == "service_name" and value != "otel-fim":
                problems.append(f"service_name is 'otel-fim', not {value!r}")
    filtered = _FILTER.findall(expr)
    for name, op, value in filtered:
        if name not in labels | metadata:
            problems.append(f"field {name!r} is not emitted")
        if name == "severity_text" and op == "=" and value not in SEVERITY_TEXT.values():
            problems.append(f"severity_text {value!r} is not one the agent writes")
    for group in _GROUPING.findall(expr):
        for name in (n.strip() for n in group.split(",")):
            if name not in labels | metadata:
                problems.append(f"grouping by {name!r}: not emitted")
    return problems


# -- the tests ------------------------------------------------------------------------------------


def test_catalog_covers_every_instrument(metrics):
    assert set(metrics) == catalog.created_instruments()


def test_dashboard_json_is_the_builders_output():
    assert DASHBOARD.read_text() == load_builder().render(), "run: python examples/grafana/dashboard.py"


def test_dashboard_has_the_panels_asked_for():
    titles = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    for wanted in ("rule and severity", "host and container", "Top processes", "Latest detections",
                   "Kernel filter", "Events by stage", "Lost", "Backlog", "Spool depth", "Spool drops",
                   "Plugin queue overflow", "Export failures"):  # fmt: skip
        assert any(wanted in t for t in titles), wanted


def test_every_dashboard_query_names_what_the_agent_emits(series, metrics):
    queries = dashboard_queries()
    assert {kind for kind, _ in queries} == {"loki", "prometheus", "prometheus-variable"}
    problems = []
    for kind, expr in queries:
        found = check_logql(expr) if kind == "loki" else check_promql(expr, series, metrics)
        problems += [f"{kind}: {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_latest_detections_table_columns_are_emitted():
    builder = load_builder()
    labels, metadata = catalog.loki_fields()
    assert set(builder.LATEST_COLUMNS) <= labels | metadata, set(builder.LATEST_COLUMNS) - labels - metadata
    assert "otel_fim_plugin_diff_unified" in builder.LATEST_COLUMNS


def test_the_checks_catch_wrong_names(series, metrics):
    assert check_promql('rate(otel_fim_event_total{job="otel-fim"}[5m])', series, metrics)
    assert check_promql('sum by (error_type) (otel_fim_spool_depth{job="otel-fim"})', series, metrics)
    assert check_promql('otel_fim_events_total{otel_fim_stage="kernel.dropped"}', series, metrics)
    assert check_logql('sum by (rule) (count_over_time({service_name="otel-fim"} [5m]))')
    assert check_logql('{service_name="otel-fim"} | severity_text = "FATAL"')
    assert check_logql('{host_name="x"}')  # structured metadata, not an index label


# -- alert rules ----------------------------------------------------------------------------------

RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
_TEMPLATE_LABEL = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")


def rules_of(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    assert set(doc) == {"groups"}, f"{path}: only `groups` at the top"
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names)), f"{path}: group names must be unique"
    rules = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.keys()
        if "interval" in group:
            promql_parser.parse_duration(group["interval"])
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS and {"alert", "expr"} <= set(rule), rule
            if "for" in rule:
                promql_parser.parse_duration(rule["for"])
            for mapping in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in rule.get(mapping, {}).values()), rule
            rules.append(rule)
    return rules


def grouped_labels(expr: str) -> set[str]:
    return {n.strip() for group in _GROUPING.findall(expr) for n in group.split(",")}


def test_prometheus_rules(series, metrics):
    rules = {r["alert"]: r for r in rules_of(PROM_RULES)}
    for wanted in ("OtelFimEventsLost", "OtelFimAgentAbsent", "OtelFimSpoolGrowing", "OtelFimExportFailing"):
        assert wanted in rules
    problems = []
    for name, rule in rules.items():
        problems += [f"{name}: {p}" for p in check_promql(rule["expr"], series, metrics)]
        available = grouped_labels(rule["expr"]) or set().union(
            *(series[m] for m in prom_names(rule["expr"]).metrics)
        )
        for used in _TEMPLATE_LABEL.findall(json.dumps(rule.get("annotations", {}))):
            if used not in available:
                problems.append(f"{name}: annotation uses $labels.{used}, the expression does not keep it")
    assert not problems, "\n".join(problems)


def test_loki_rules():
    rules = {r["alert"]: r for r in rules_of(LOKI_RULES)}
    critical = rules["OtelFimCriticalDetection"]
    assert not check_logql(critical["expr"]), check_logql(critical["expr"])
    assert f'severity_text = "{SEVERITY_TEXT["critical"]}"' in critical["expr"]
    for used in _TEMPLATE_LABEL.findall(json.dumps(critical["annotations"])):
        assert used in grouped_labels(critical["expr"])
