"""`wiring.build_data_path`: the agent's data path from a config, before anything is attached.

A synthetic event handed to the pipeline must come out of the configured output with the plugin
stage's enrichment, through the rules and fields the config chose (the kernel side is exercised by
the agent's end-to-end tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otel_fim.config import AgentConfig, PluginsConfig
from otel_fim.event import Event, EventType
from otel_fim.rules.errors import PolicyError
from otel_fim.wiring import build_data_path
from tests.factories import agent_event


def event(path: Path) -> Event:
    return agent_event(str(path))


def test_one_config_builds_rules_plugins_and_outputs_into_one_path(tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.write_text("content\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(f'rules: [{{id: w, expression: fim.write.file.path == "{watched}"}}]\n')
    out = tmp_path / "out.jsonl"
    config = AgentConfig(
        rules=[str(rules)],
        outputs=[f"jsonl:{out}"],
        state_dir=str(tmp_path / "state"),
        plugins=PluginsConfig(enable=["hash"], config={"hash": {"settle_seconds": 0}}),
    )
    path = build_data_path(config)
    try:
        assert path.sensor.filter is None  # nothing attached yet
        assert path.plugins.loaded() == ["hash"]
        path.pipeline.handle(event(watched))
        path.pipeline.handle(event(tmp_path / "not-watched"))
        path.finish()
    finally:
        path.close()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["attributes"]["file.path"] for r in records] == [str(watched)]
    attrs = records[0]["attributes"]
    assert attrs["security_rule.name"] == "w"
    assert len(attrs["otel_fim.plugin.hash.sha256"]) == 64  # enriched by the plugin stage
    assert path.pipeline.counters.evaluated[EventType.OPEN] == 2
    assert path.pipeline.counters.matched[EventType.OPEN] == 1


def test_plugin_fields_stay_in_the_agent_that_loaded_them(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text('rules: [{id: p, expression: open.retval >= 0 && package.name == "x"}]\n')
    base = {"rules": [str(rules)], "outputs": ["console"], "state_dir": str(tmp_path / "s")}
    with_package = build_data_path(AgentConfig(**base, plugins=PluginsConfig(enable=["package"])))
    with_package.close()
    assert with_package.plugins.fields.lookup("package.name") is not None
    with pytest.raises(PolicyError, match="unknown field 'package.name'"):
        build_data_path(AgentConfig(**base, plugins=PluginsConfig(enable=["hash"])))
