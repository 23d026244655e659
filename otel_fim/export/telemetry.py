"""The export stage assembled from an `AgentConfig`: the outputs, and the metrics when OTLP is on.

export = build_export(config)
pipeline = Pipeline(export.outputs, ruleset)
export.attach(sensor, pipeline)   # counters, discarders, per-match metrics
...
export.shutdown_metrics()         # while the sensor's maps are still readable: final counters
pipeline.close()                  # closes the outputs (the OTLP spool keeps what is undelivered)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otel_fim.config import AgentConfig
from otel_fim.export.metrics import FimMetrics, agent_counters
from otel_fim.export.outputs import Output, build_output


@dataclass
class Export:
    outputs: list[Output]
    metrics: FimMetrics | None

    def attach(self, sensor: Any, pipeline: Any) -> None:
        """Point the metrics at the sensor's BPF counters and the pipeline's, and hook each emit."""
        if self.metrics is None:
            return
        self.metrics.counters = agent_counters(sensor.counters, pipeline.counters)
        discarders = getattr(sensor, "discarder_count", None)
        if callable(discarders):
            self.metrics.discarders = discarders
        if hasattr(sensor, "backlog"):
            self.metrics.backlog = lambda: sensor.backlog
        pipeline.on_emitted.append(self.metrics.on_emitted)

    def shutdown_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.shutdown()
            self.metrics = None


def build_export(config: AgentConfig) -> Export:
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
