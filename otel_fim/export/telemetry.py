"""The export stage: the outputs, and the metrics when OTLP is on (built by `otel_fim.wiring`).

export.shutdown_metrics()         # while the sensor's maps are still readable: final counters
pipeline.close()                  # closes the outputs (the OTLP spool keeps what is undelivered)
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_fim.export.metrics import FimMetrics
from otel_fim.export.outputs import Output


@dataclass
class Export:
    outputs: list[Output]
    metrics: FimMetrics | None

    def shutdown_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.shutdown()
            self.metrics = None
