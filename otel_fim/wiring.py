"""The one place the data path is wired: kernel -> rules -> pipeline -> plugins -> outputs.

    path = build_data_path(config)   # plugins, rules, outputs, pipeline, sensor (not attached yet)
    path.start()                     # attach the sensor, load the kernel filter, feed the metrics
    ... path.sensor.poll() ...       # the agent's loop (otel_fim.agent)
    path.finish(); path.close()

Every collaborator is chosen here from the `AgentConfig` and handed to its user's constructor, so
the engines below (`kernel`, `rules`, `pipeline`, `plugin`, `export`, `process`) never read the
config or know about each other beyond the protocols they declare.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otel_fim.config import AgentConfig
from otel_fim.export.metrics import FimMetrics, agent_counters
from otel_fim.export.outputs import Output, build_output
from otel_fim.export.telemetry import Export
from otel_fim.kernel.feedback import FilterFeedback
from otel_fim.kernel.sensor import Sensor, SensorOptions
from otel_fim.pipeline import Emitter, Pipeline, UserCounters
from otel_fim.plugin.api import ActionSchema
from otel_fim.plugin.manager import Plugins, load_plugins
from otel_fim.process.context import ProcessContext
from otel_fim.rules.fields import FieldRegistry
from otel_fim.rules.ruleset import RuleSet

log = logging.getLogger(__name__)


def load_rules(
    paths: Sequence[str],
    known_actions: dict[str, ActionSchema] | None = None,
    fields: FieldRegistry | None = None,
) -> RuleSet | None:
    """The rules, or None without policy files (every event is then reported)."""
    return RuleSet.load(paths, known_actions, fields) if paths else None


def build_export(config: AgentConfig) -> Export:
    """The outputs `config` asks for, and the OTLP metrics when OTLP is one of them."""
    specs = config.effective_outputs()
    metrics = None
    if "otlp" in specs and config.otlp.metrics:
        metrics = FimMetrics.otlp(config.otlp.endpoint_settings(), interval=config.otlp.metrics_interval)
    outputs: list[Output] = []
    try:
        for spec in specs:
            options = config.otlp_output_options(metrics) if spec == "otlp" else {}
            outputs.append(build_output(spec, **options))
    except BaseException:
        for output in outputs:
            output.close()
        if metrics is not None:
            metrics.shutdown()
        raise
    return Export(outputs, metrics)


@dataclass
class DataPath:
    config: AgentConfig
    plugins: Plugins
    ruleset: RuleSet | None
    export: Export
    pipeline: Pipeline
    sensor: Sensor
    feedback: FilterFeedback

    def start(self) -> None:
        """Attach the sensor (raises SensorError), then load the rules into the kernel filter and
        point the metrics at the kernel's counters."""
        self.sensor.start()
        kernel_filter = self.sensor.filter
        assert kernel_filter is not None
        kernel_filter.apply(self.ruleset)
        self.feedback.bind(kernel_filter)
        for line in kernel_filter.describe():
            log.debug("kernel filter: %s", line)
        if self.export.metrics is not None:
            self.export.metrics.counters = agent_counters(self.sensor.counters, self.pipeline.counters)
            self.export.metrics.discarders = self.sensor.discarder_count
            self.export.metrics.backlog = lambda: self.sensor.backlog

    def reload_rules(self) -> RuleSet:
        """Load the policy files again and put them in force everywhere (raises RuleError, OSError,
        ValueError: the caller keeps the old rules). Rebuilding the kernel filter makes every
        discarder stale."""
        ruleset = load_rules(self.config.rules, self.plugins.known_actions(), self.plugins.fields)
        assert ruleset is not None
        self.ruleset = ruleset
        self.pipeline.ruleset = ruleset
        if self.sensor.filter is not None:
            self.sensor.filter.apply(ruleset)
        self.plugins.rules_loaded(ruleset)
        return ruleset

    def finish(self) -> None:
        """The plugin stage hands what it holds to the outputs, which write out their buffers."""
        self.pipeline.flush()
        self.pipeline.end_batch()

    def close(self) -> None:
        """Final metrics (while the BPF maps are still readable), then the plugin stage and the
        outputs; the sensor is detached by its own context manager."""
        self.export.shutdown_metrics()
        self.pipeline.close()


def build_data_path(config: AgentConfig) -> DataPath:
    """Everything from the config, nothing attached yet. Raises for bad input (OutputSpecError,
    RuleError, PluginError, OSError, ValueError) after closing what it had built."""
    plugins = load_plugins(config)  # before the rules: plugins add rule fields and actions
    try:
        ruleset = load_rules(config.rules, plugins.known_actions(), plugins.fields)
        export = build_export(config)
    except BaseException:
        plugins.shutdown()
        raise
    counters = UserCounters()
    on_emitted: list[Any] = [export.metrics.on_emitted] if export.metrics is not None else []
    emitter = Emitter(export.outputs, on_emitted=on_emitted, counters=counters)
    stage = plugins.start(emitter, ruleset, export.metrics)  # pipeline.close() drains and stops it
    process_context = ProcessContext()
    feedback = FilterFeedback()
    pipeline = Pipeline(emitter, ruleset, stage=stage, enrich=process_context.enrich, feedback=feedback)
    sensor = Sensor(
        pipeline.handle,
        SensorOptions(
            ringbuf_pages=config.ringbuf_pages,
            kernel_filter=config.kernel_filter,
            backlog_mib=config.backlog_mib,
        ),
        modules=[process_context.module],
    )
    # One drain of the process ring buffer per poll, after the file records were read and before
    # they are handled: every exec record written before them is then in the cache.
    sensor.before_delivery.append(process_context.module.drain)
    process_context.drain_each_event = False
    return DataPath(config, plugins, ruleset, export, pipeline, sensor, feedback)
