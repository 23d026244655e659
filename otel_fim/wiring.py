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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_fim.canary.probe import Canary, write_policy
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
from otel_fim.scan.service import ScanService

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


# How often the kernel's `lost` counters are read for coverage gaps (otel_fim.scan).
LOST_CHECK_S = 1.0


@dataclass
class DataPath:
    config: AgentConfig
    plugins: Plugins
    ruleset: RuleSet | None
    export: Export
    pipeline: Pipeline
    sensor: Sensor
    feedback: FilterFeedback
    scans: ScanService | None = None  # baseline and scans (otel_fim.scan)
    canary: Canary | None = None  # proven liveness (otel_fim.canary)
    builtin_rules: list[str] = field(default_factory=list)  # policy files of ours (the canary's)
    _next_lost_check: float = 0.0

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
        if self.scans is not None:  # after attaching: a change during the scan is also seen live
            self.scans.start(self.ruleset)
        canary = self.canary
        if canary is not None:
            if self.export.metrics is not None:
                self.export.metrics.canary_latency = lambda: canary.latency
                self.export.metrics.coverage = lambda: canary.coverage
            canary.start()

    def tick(self) -> None:
        """Once per poll: scan findings go to the rules; every LOST_CHECK_S the scan service learns
        the kernel's lost total (a rise is a coverage gap, repaired by a scan)."""
        scans = self.scans
        if scans is None:
            return
        scans.deliver(self.pipeline.report, self.pipeline.emitter.emit_record)
        now = time.monotonic()
        if now >= self._next_lost_check:
            self._next_lost_check = now + LOST_CHECK_S
            scans.kernel_lost(sum(n for (name, _), n in self.sensor.counters().items() if name == "lost"))

    def status_warning(self) -> str:
        """A suffix for the status line while the canary fails."""
        return self.canary.warning() if self.canary is not None else ""

    def extra_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.scans is not None:
            out["scan"] = self.scans.snapshot()
        if self.canary is not None:
            out["canary"] = self.canary.snapshot()
        return out

    def reload_rules(self) -> RuleSet:
        """Load the policy files again and put them in force everywhere (raises RuleError, OSError,
        ValueError: the caller keeps the old rules). Rebuilding the kernel filter makes every
        discarder stale."""
        paths = [*self.config.rules, *self.builtin_rules]
        ruleset = load_rules(paths, self.plugins.known_actions(), self.plugins.fields)
        assert ruleset is not None
        self.ruleset = ruleset
        self.pipeline.ruleset = ruleset
        if self.sensor.filter is not None:
            self.sensor.filter.apply(ruleset)
        self.plugins.rules_loaded(ruleset)
        if self.scans is not None:
            self.scans.rules_changed(ruleset)
        return ruleset

    def finish(self) -> None:
        """The plugin stage hands what it holds to the outputs, which write out their buffers; the
        scan service then reads the files those events touched, and scan findings not yet
        reported are (their baseline rows are already written)."""
        self.pipeline.flush()
        if self.canary is not None:
            self.canary.stop()
        if self.scans is not None:
            self.scans.stop()
            if self.scans.drain(self.pipeline.report, self.pipeline.emitter.emit_record):
                self.pipeline.flush()
        self.pipeline.end_batch()

    def close(self) -> None:
        """Final metrics (while the BPF maps are still readable), then the plugin stage and the
        outputs; the sensor is detached by its own context manager."""
        if self.canary is not None:
            self.canary.stop()
        if self.scans is not None:
            self.scans.stop()
        self.export.shutdown_metrics()
        self.pipeline.close()


def build_data_path(config: AgentConfig) -> DataPath:
    """Everything from the config, nothing attached yet. Raises for bad input (OutputSpecError,
    RuleError, PluginError, OSError, ValueError) after closing what it had built."""
    plugins = load_plugins(config)  # before the rules: plugins add rule fields and actions
    # The canary's rule (no rules: every event is reported, the canary's too, and it needs none).
    canary_on = config.canary.enabled and bool(config.rules)
    try:
        builtin_rules = [str(write_policy(config.state_dir))] if canary_on else []
        ruleset = load_rules([*config.rules, *builtin_rules], plugins.known_actions(), plugins.fields)
        export = build_export(config)
    except BaseException:
        plugins.shutdown()
        raise
    counters = UserCounters()
    on_emitted: list[Any] = [export.metrics.on_emitted] if export.metrics is not None else []
    # Late-bound closures: the scan service and the canary need the emitter, pipeline and sensor
    # built below, and those need their hooks.
    scans = None
    if config.scan.enabled:
        scans = ScanService(
            config.scan, config.state_dir, pipeline_idle=lambda: sensor.backlog == 0 and pipeline.flush(0)
        )
        on_emitted.append(scans.observe)
    canary = None
    if canary_on:
        delivering: list[Any] = [o for o in export.outputs if hasattr(o, "delivering")]
        canary = Canary(
            config.canary, config.state_dir, lambda record: emitter.emit_record(record), delivering
        )
        on_emitted.append(canary.arrived)
    emitter = Emitter(export.outputs, on_emitted=on_emitted, counters=counters)
    stage = plugins.start(emitter, ruleset, export.metrics)  # pipeline.close() drains and stops it
    process_context = ProcessContext()
    feedback = FilterFeedback()
    pipeline = Pipeline(
        emitter, ruleset, stage=stage, enrich=process_context.enrich, feedback=feedback,
        on_unmatched=[scans.observe] if scans is not None else (),
    )  # fmt: skip
    sensor = Sensor(
        pipeline.handle,
        SensorOptions(
            ringbuf_pages=config.ringbuf_pages,
            kernel_filter=config.kernel_filter,
            backlog_mib=config.backlog_mib,
            coalesce_ms=config.coalesce_ms,
        ),
        modules=[process_context.module],
    )
    # One drain of the process ring buffer per poll, after the file records were read and before
    # they are handled: every exec record written before them is then in the cache.
    sensor.before_delivery.append(process_context.module.drain)
    process_context.drain_each_event = False
    return DataPath(
        config, plugins, ruleset, export, pipeline, sensor, feedback, scans, canary, builtin_rules
    )
