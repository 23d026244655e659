"""The plugin manager and stage on synthetic events: isolation, namespacing, queue, actions, fields."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_fim.event import EventType
from otel_fim.export.metrics import FimMetrics
from otel_fim.pipeline import Emitter, Pipeline
from otel_fim.plugin.manager import PluginError, load_plugins
from otel_fim.plugin_api import ActionSchema, Param, PluginField, hookimpl
from otel_fim.rules.errors import PolicyError
from otel_fim.rules.ruleset import RuleSet
from tests.factories import agent_event
from tests.support.plugins import Recorder, agent_config, with_plugins

RULE = """
version: 1
rules:
  - id: watched
    expression: open.file.path == "/etc/fim-test/x"
    severity: high
"""


class Enricher:
    @hookimpl
    def otel_fim_enrich(self, event, matches):
        return {"owner": "team-a", "rules": [m.rule_id for m in matches], "nothing": None, "obj": object}


class Boom:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def otel_fim_enrich(self, event):
        self.calls += 1
        raise RuntimeError("boom")

    @hookimpl
    def otel_fim_notify(self, record):
        raise RuntimeError("boom too")


def setup(tmp_path, *plugins, rules=RULE, **config):
    loaded = load_plugins(
        agent_config(tmp_path, **config), bundled=False, entry_points=False, extra=list(plugins)
    )
    ruleset = RuleSet.from_text(rules, known_actions=loaded.known_actions(), fields=loaded.fields)
    out = Recorder()
    pipeline = Pipeline(Emitter([out]), ruleset)
    return loaded, pipeline, out


def test_enricher_attributes_are_namespaced_and_reach_the_outputs(tmp_path):
    plugins, pipeline, out = setup(tmp_path, ("owners", Enricher()))
    pipeline = with_plugins(plugins, pipeline)
    pipeline.handle(agent_event())
    pipeline.handle(agent_event("/not/watched"))
    assert pipeline.flush(5)
    pipeline.close()
    assert len(out.records) == 1
    attrs = out.records[0]["attributes"]
    assert attrs["otel_fim.plugin.owners.owner"] == "team-a"
    assert attrs["otel_fim.plugin.owners.rules"] == ["watched"]
    assert "otel_fim.plugin.owners.nothing" not in attrs
    assert attrs["otel_fim.plugin.owners.obj"] == str(object)
    assert out.closed


def test_a_raising_hook_is_counted_and_the_others_and_the_agent_keep_going(tmp_path):
    reader = InMemoryMetricReader()
    metrics = FimMetrics.with_reader(reader)
    boom = Boom()
    plugins, pipeline, out = setup(tmp_path, ("boom", boom), ("owners", Enricher()))
    pipeline = with_plugins(plugins, pipeline, metrics)
    for _ in range(5):
        pipeline.handle(agent_event())
    assert pipeline.flush(5)
    assert boom.calls == 5
    assert len(out.records) == 5
    assert all(r["attributes"]["otel_fim.plugin.owners.owner"] == "team-a" for r in out.records)
    assert plugins.counters.errors[("boom", "otel_fim_enrich")] == 5
    assert plugins.counters.errors[("boom", "otel_fim_notify")] == 5
    assert pipeline.counters.plugin_errors == 10
    points = {
        (p.attributes["otel_fim.plugin.name"], p.attributes["otel_fim.plugin.hook"]): p.value
        for m in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        if m.name == "otel_fim.plugin.errors"
        for p in m.data.data_points
    }
    assert points == {("boom", "otel_fim_enrich"): 5, ("boom", "otel_fim_notify"): 5}
    pipeline.close()


def test_startup_failure_unloads_the_plugin_only(tmp_path):
    class BadStartup:
        @hookimpl
        def otel_fim_startup(self, plugin_config):
            raise ValueError(f"bad setting {plugin_config}")

        @hookimpl
        def otel_fim_enrich(self):
            return {"x": 1}

    plugins, pipeline, out = setup(
        tmp_path, ("bad", BadStartup()), ("owners", Enricher()), config={"bad": {"level": 11}}
    )
    assert plugins.infos["bad"].status.startswith("failed: startup: bad setting {'level': 11}")
    assert plugins.loaded() == ["owners"]
    pipeline = with_plugins(plugins, pipeline)
    assert pipeline.counters.plugin_errors == 1
    pipeline.handle(agent_event())
    pipeline.close()
    assert not any(k.startswith("otel_fim.plugin.bad") for k in out.records[0]["attributes"])


def test_unknown_hook_name_is_a_registration_failure(tmp_path):
    class Typo:
        @hookimpl
        def otel_fim_enrch(self, event):
            return {}

    plugins, _, _ = setup(tmp_path, ("typo", Typo()))
    assert plugins.infos["typo"].status.startswith("failed: register")
    assert "otel_fim_enrch" in plugins.infos["typo"].status


def test_enable_and_disable_choose_by_name(tmp_path):
    plugins, _, _ = setup(tmp_path, ("a", Enricher()), ("b", Enricher()), disable=["b"])
    assert plugins.loaded() == ["a"]
    plugins, _, _ = setup(tmp_path, ("a", Enricher()), ("b", Enricher()), enable=["b"])
    assert plugins.loaded() == ["b"]


def test_bad_plugins_config_is_an_error(tmp_path):
    with pytest.raises(PluginError):
        setup(tmp_path, config={"stage": {"queue_sise": 3}})
    with pytest.raises(PluginError):
        setup(tmp_path, config={"hash": [1, 2]})


# -- actions -------------------------------------------------------------------------------------


class Pager:
    def __init__(self) -> None:
        self.runs: list[tuple] = []

    @hookimpl
    def otel_fim_rule_actions(self):
        return {
            "page": ActionSchema(
                {
                    "team": Param(str, required=True),
                    "urgency": Param(int, default=3, check=lambda v: None if 1 <= v <= 5 else "1..5"),
                }
            )
        }

    @hookimpl
    def otel_fim_run_action(self, action, params, match, record):
        self.runs.append((action, params, match.rule_id, record["attributes"]["file.path"]))


def test_unknown_action_is_a_load_error_with_file_and_line(tmp_path):
    plugins, _, _ = setup(tmp_path, ("pager", Pager()))
    text = RULE + "    actions: [{pagee: {team: sec}}]\n"
    with pytest.raises(PolicyError) as err:
        RuleSet.from_text(text, filename="p.yaml", known_actions=plugins.known_actions())
    message = err.value.render()
    assert "p.yaml:7:16:" in message
    assert "unknown action 'pagee' (did you mean 'page'?)" in message


@pytest.mark.parametrize(
    "params, problem",
    [
        ("{}", "parameter 'team' is required"),
        ("{team: sec, colour: red}", "unknown parameter 'colour'"),
        ("{team: sec, urgency: high}", "parameter 'urgency': expected an integer"),
        ("{team: sec, urgency: 9}", "parameter 'urgency': 1..5"),
    ],
)
def test_action_parameters_are_checked_at_load_time(tmp_path, params, problem):
    plugins, _, _ = setup(tmp_path, ("pager", Pager()))
    text = RULE + f"    actions: [{{page: {params}}}]\n"
    with pytest.raises(PolicyError) as err:
        RuleSet.from_text(text, known_actions=plugins.known_actions(), fields=plugins.fields)
    assert problem in err.value.render()


def test_actions_run_only_for_rules_that_list_them_with_defaults_filled_in(tmp_path):
    pager = Pager()
    rules = (
        RULE
        + """    actions: [{page: {team: sec}}]
  - id: quiet
    expression: open.file.path == "/etc/fim-test/y"
"""
    )
    plugins, pipeline, out = setup(tmp_path, ("pager", pager), rules=rules)
    pipeline = with_plugins(plugins, pipeline)
    pipeline.handle(agent_event("/etc/fim-test/x"))
    pipeline.handle(agent_event("/etc/fim-test/y"))
    pipeline.close()
    assert len(out.records) == 2
    assert pager.runs == [("page", {"team": "sec", "urgency": 3}, "watched", "/etc/fim-test/x")]
    assert plugins.counters.actions[("page", "ok")] == 1


def test_two_plugins_registering_one_action_keep_the_first(tmp_path):
    plugins, _, _ = setup(tmp_path, ("pager", Pager()), ("pager2", Pager()))
    assert set(plugins.known_actions()) == {"page"}
    assert plugins.counters.total_errors == 1


# -- the queue -----------------------------------------------------------------------------------


class Slow:
    def __init__(self) -> None:
        self.release = threading.Event()

    @hookimpl
    def otel_fim_enrich(self, event):
        self.release.wait(10)
        return {"done": True}


def test_full_queue_exports_unenriched_and_counts_the_overflow(tmp_path):
    slow = Slow()
    plugins, pipeline, out = setup(
        tmp_path, ("slow", slow), config={"stage": {"queue_size": 2, "overflow_wait": 0.01}}
    )
    pipeline = with_plugins(plugins, pipeline)
    started = time.monotonic()
    for _ in range(10):
        pipeline.handle(agent_event())
    # One wait, not one per event: the consumer is not held up by a stuck plugin.
    assert time.monotonic() - started < 0.5
    overflowed = pipeline.counters.plugin_queue_overflow
    assert overflowed >= 7  # 1 in the worker, 2 queued
    skipped = [r for r in out.records if r["attributes"].get("otel_fim.plugins.skipped") == "queue_full"]
    assert len(skipped) == overflowed
    slow.release.set()
    assert pipeline.flush(5)
    pipeline.close()
    assert len(out.records) == 10  # every detection exported
    enriched = [r for r in out.records if r["attributes"].get("otel_fim.plugin.slow.done")]
    assert len(enriched) == 10 - overflowed


def test_close_drains_the_queue_before_the_outputs_close(tmp_path):
    class Lazy:
        @hookimpl
        def otel_fim_enrich(self):
            time.sleep(0.02)
            return {"ok": 1}

    plugins, pipeline, out = setup(tmp_path, ("lazy", Lazy()))
    pipeline = with_plugins(plugins, pipeline)
    for _ in range(20):
        pipeline.handle(agent_event())
    pipeline.close()
    assert out.closed
    assert len(out.records) == 20
    assert all(r["attributes"]["otel_fim.plugin.lazy.ok"] == 1 for r in out.records)


def test_close_with_a_stuck_plugin_still_exports_what_is_queued(tmp_path):
    slow = Slow()
    plugins, pipeline, out = setup(tmp_path, ("slow", slow))
    pipeline = with_plugins(plugins, pipeline)
    for _ in range(3):
        pipeline.handle(agent_event())
    pipeline.close(timeout=0.2)
    slow.release.set()
    reasons = [r["attributes"].get("otel_fim.plugins.skipped") for r in out.records]
    assert reasons.count("shutdown") == 2  # the third is in the stuck enricher's hands


# -- fields --------------------------------------------------------------------------------------


class FieldPlugin:
    @hookimpl
    def otel_fim_rule_fields(self):
        return [
            PluginField("myplugin.field", "str", lambda e: e.process.comm.upper()),
            PluginField("myplugin.broken", "int", lambda e: 1 // 0),
            PluginField("process.comm", "str", lambda e: "shadowed"),
        ]


def test_plugin_fields_are_usable_and_keep_the_kernel_filter_sound(tmp_path):
    rules = """
version: 1
rules:
  - id: either
    expression: open.file.path == "/x" || myplugin.field == "VIM"
"""
    plugins, pipeline, _ = setup(tmp_path, ("myplugin", FieldPlugin()), rules=rules)
    assert plugins.infos["myplugin"].fields == ["myplugin.field", "myplugin.broken"]
    assert plugins.counters.errors[("myplugin", "otel_fim_rule_fields")] == 1  # process.comm is taken
    ruleset = pipeline.ruleset
    approvers = ruleset.approvers(EventType.OPEN)
    assert approvers.accept_all  # the plugin field constrains nothing the kernel could check
    assert not ruleset.is_discarder(EventType.OPEN, "file.path", "/elsewhere")
    assert not ruleset.is_discarder(EventType.OPEN, "file.name", "elsewhere")
    assert ruleset.evaluate(agent_event("/elsewhere"))  # matched through the plugin field


def test_a_raising_field_getter_is_none_and_counted(tmp_path):
    rules = """
version: 1
rules:
  - id: broken
    expression: open.file.path == "/x" && myplugin.broken == 1
  - id: fine
    expression: open.file.path == "/x"
"""
    plugins, pipeline, _ = setup(tmp_path, ("myplugin", FieldPlugin()), rules=rules)
    pipeline = with_plugins(plugins, pipeline)
    matches = pipeline.ruleset.evaluate(agent_event("/x"))
    assert [m.rule_id for m in matches] == ["fine"]
    assert plugins.counters.errors[("myplugin", "field:myplugin.broken")] == 1
    pipeline.close()
