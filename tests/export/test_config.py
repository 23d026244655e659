from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from otel_fim.commands.run import add_config_arguments, merge_cli
from otel_fim.config import AgentConfig, ConfigError, load_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "config.yaml"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "otel-fim.yaml"
    path.write_text(text)
    return path


def test_full_file(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """
rules: [/etc/otel-fim/rules, extra.yaml]
outputs: [otlp, "jsonl:/var/log/otel-fim.jsonl"]
duration: 30
state_dir: /tmp/fim-state
kernel_filter: false
otlp:
  endpoint: http://collector:4317
  protocol: grpc
  headers: {x-api-key: secret}
  timeout: 5
  insecure: true
  spool: {max_records: 1000, max_bytes: 1048576, sync: full}
  metrics_interval: 15
plugins:
  disable: [container]
  config:
    ancestry: {depth: 4}
""",
        )
    )
    assert cfg.rules == ["/etc/otel-fim/rules", "extra.yaml"]
    assert cfg.duration == 30.0 and isinstance(cfg.duration, float)
    assert cfg.kernel_filter is False
    assert cfg.otlp.headers == {"x-api-key": "secret"}
    assert cfg.otlp.spool.max_records == 1000 and cfg.otlp.spool.sync == "full"
    assert cfg.plugins.config == {"ancestry": {"depth": 4}}
    opts = cfg.otlp_output_options()
    assert opts["state_dir"] == "/tmp/fim-state" and opts["spool_sync"] == "FULL"
    assert opts["protocol"] == "grpc" and opts["spool_max_bytes"] == 1048576
    ep = cfg.otlp.endpoint_settings()
    assert ep.protocol_for("logs") == "grpc"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("rules: [a]\notlp:\n  endpiont: x\n", ":3:3:", "otlp.endpiont: unknown key"),
        ("duration: soon\n", ":1:11:", "duration: expected a number"),
        ("ringbuf_pages: 1000\n", ":1:16:", "ringbuf_pages: must be a power of two"),
        ("backlog_mib: 0\n", ":1:14:", "backlog_mib: must be > 0"),
        ("kernel_filter: 1\n", ":1:16:", "kernel_filter: expected true or false"),
        ("otlp:\n  protocol: udp\n", ":2:13:", "'udp' is not one of"),
        ("otlp:\n  spool:\n    max_records: -1\n", ":3:18:", "must be > 0"),
        ("rules: {a: 1}\n", ":1:8:", "rules: expected a list"),
        ("otlp: [1]\n", ":1:7:", "otlp: expected a mapping"),
        ("duration: 1\nduration: 2\n", ":2:1:", "duplicate key"),
        ("otlp: {headers: {a: [1]}}\n", ":1:21:", "otlp.headers.a: expected a str"),
        ("rules: [a\n", ":2:1:", "not valid YAML"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, text, where, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}{where}"), str(err.value)
    assert message in str(err.value)


def test_empty_file_is_defaults_and_single_rule_path(tmp_path):
    assert load_config(write(tmp_path, "")).state_dir == "/var/lib/otel-fim"
    assert load_config(write(tmp_path, "rules: /etc/rules\n")).rules == ["/etc/rules"]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", action="append")
    p.add_argument("--output", action="append")
    p.add_argument("--duration", type=float)
    p.add_argument("--no-kernel-filter", dest="kernel_filter", action="store_false", default=None)
    add_config_arguments(p)
    return p


def test_cli_overrides_file_and_leaves_the_rest(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            "rules: [a]\noutputs: [console]\nduration: 5\notlp: {endpoint: http://x:4318, headers: {a: b}}\n",
        )
    )
    args = parser().parse_args(
        [
            "--output",
            "otlp",
            "--otlp-protocol",
            "grpc",
            "--otlp-header",
            "k=v",
            "--no-kernel-filter",
            "--state-dir",
            "/s",
        ]
    )
    merged = merge_cli(cfg, args)
    assert merged.outputs == ["otlp"]
    assert merged.rules == ["a"] and merged.duration == 5.0
    assert merged.kernel_filter is False and merged.state_dir == "/s"
    assert merged.otlp.protocol == "grpc" and merged.otlp.endpoint == "http://x:4318"
    assert merged.otlp.headers == {"a": "b", "k": "v"}
    assert cfg.otlp.headers == {"a": "b"} and cfg.outputs == ["console"]  # the loaded config is untouched
    assert merge_cli(AgentConfig(), parser().parse_args([])) == AgentConfig()


def test_default_outputs(monkeypatch):
    for var in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ):
        monkeypatch.delenv(var, raising=False)
    assert AgentConfig().effective_outputs() == ["console"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert AgentConfig().effective_outputs() == ["otlp"]
    assert AgentConfig(outputs=["console", "otlp"]).effective_outputs() == ["console", "otlp"]


def test_example_config_loads():
    cfg = load_config(EXAMPLE)
    assert cfg.rules and cfg.otlp.endpoint


@pytest.mark.parametrize("name", ["loki.yaml", "elasticsearch.yaml"])
def test_collector_examples_wire_logs_and_metrics(name):
    import yaml

    doc = yaml.safe_load((EXAMPLE.parent / "collector" / name).read_text())
    pipelines = doc["service"]["pipelines"]
    for signal in ("logs", "metrics"):
        assert pipelines[signal]["receivers"] == ["otlp"]
        for exporter in pipelines[signal]["exporters"]:
            assert exporter in doc["exporters"]
        for processor in pipelines[signal]["processors"]:
            assert processor in doc["processors"]
    assert set(doc["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}


def test_buffer_sizes_from_the_file_and_the_flags(tmp_path):
    cfg = load_config(write(tmp_path, "ringbuf_pages: 2048\nbacklog_mib: 256\n"))
    assert (cfg.ringbuf_pages, cfg.backlog_mib) == (2048, 256)
    merged = merge_cli(cfg, argparse.Namespace(ringbuf_pages=None, backlog_mib=64))
    assert (merged.ringbuf_pages, merged.backlog_mib) == (2048, 64)
