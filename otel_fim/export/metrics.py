"""otel-fim's own metrics: how many events each filter stage saw, what matched, latency, delivery health.

The per-stage counters live in BPF maps and the pipeline; they are read by observable instruments
when the reader collects, so a hot path never pays for an instrument call per event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

import otel_fim
from otel_fim.export.endpoint import OtlpEndpoint, build_resource

log = logging.getLogger(__name__)

# (stage, event_type) -> cumulative count since start.
CountersSource = Callable[[], Mapping[tuple[str, str], int]]
Gauge = Callable[[], int]

STAGES = (
    "kernel.seen",
    "kernel.approver_dropped",
    "kernel.discarder_dropped",
    "kernel.sent",
    "kernel.lost",
    "user.evaluated",
    "user.matched",
)
# Latency buckets (s): sub-millisecond for the hot path, up to an hour for delivery after an outage.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
DEFAULT_EXPORT_INTERVAL = 60.0  # seconds; OTEL_METRIC_EXPORT_INTERVAL's default


class FimMetrics:
    """The instruments. Sources (`counters`, `discarders`, the spool) may be attached later."""

    def __init__(
        self,
        meter_provider: MeterProvider,
        counters: CountersSource | None = None,
        *,
        discarders: Gauge | None = None,
    ) -> None:
        self.meter_provider = meter_provider
        self.counters = counters
        self.discarders = discarders
        self.backlog: Gauge | None = None  # records read from the kernel, not yet handled
        self._spool_depth: Gauge | None = None
        self._spool_bytes: Gauge | None = None
        self._dead_letters: Gauge | None = None
        self._failed_callbacks: set[str] = set()
        self._lock = threading.Lock()
        meter = meter_provider.get_meter("otel_fim", otel_fim.__version__)
        meter.create_observable_counter(
            "otel_fim.events",
            callbacks=[self._observe_events],
            unit="{event}",
            description="File events by filter stage (otel_fim.stage) and event type (otel_fim.event.type), "
            "since the agent started.",
        )
        self._matches = meter.create_counter(
            "otel_fim.rule.matches",
            unit="{match}",
            description="Rule matches by rule id (security_rule.name).",
        )
        meter.create_observable_up_down_counter(
            "otel_fim.discarder.count",
            callbacks=[self._gauge_callback("discarders", lambda: self.discarders)],
            unit="{discarder}",
            description="Discarders currently installed in the kernel.",
        )
        meter.create_observable_up_down_counter(
            "otel_fim.backlog.depth",
            callbacks=[self._gauge_callback("backlog", lambda: self.backlog)],
            unit="{record}",
            description="Records read from the kernel's ring buffer and not yet handled; when it is "
            "full, reading stops and the kernel counts what it cannot queue as lost.",
        )
        self._latency = meter.create_histogram(
            "otel_fim.event.duration",
            unit="s",
            description="Kernel timestamp to the event being handed to the outputs.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self._delivery = meter.create_histogram(
            "otel_fim.export.duration",
            unit="s",
            description="Kernel timestamp to the OTLP receiver acknowledging the log record.",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        meter.create_observable_up_down_counter(
            "otel_fim.spool.depth",
            callbacks=[self._gauge_callback("spool.depth", lambda: self._spool_depth)],
            unit="{record}",
            description="Log records spooled and not yet acknowledged by the receiver.",
        )
        meter.create_observable_up_down_counter(
            "otel_fim.spool.size",
            callbacks=[self._gauge_callback("spool.size", lambda: self._spool_bytes)],
            unit="By",
            description="Bytes of spooled log records.",
        )
        self._dropped = meter.create_counter(
            "otel_fim.spool.dropped",
            unit="{record}",
            description="Log records given up before delivery, by severity (otel_fim.severity) and "
            "error.type (spool_full, spool_error, corrupt, dead_letter_full).",
        )
        meter.create_observable_up_down_counter(
            "otel_fim.spool.dead_letter.count",
            callbacks=[self._gauge_callback("spool.dead_letters", lambda: self._dead_letters)],
            unit="{record}",
            description="Log records the receiver refused for good, kept in the spool's dead-letter table.",
        )
        self._rejected = meter.create_counter(
            "otel_fim.export.rejected",
            unit="{record}",
            description="Log records the receiver refused for good (poison records), by error.type "
            "(rejected: the request was refused; partial_success: the receiver said it dropped them), "
            "moved to the dead-letter table.",
        )
        self._failures = meter.create_counter(
            "otel_fim.export.failures",
            unit="{failure}",
            description="Failed OTLP export attempts by signal (logs, metrics); each is retried or reported.",
        )
        self._plugin_errors = meter.create_counter(
            "otel_fim.plugin.errors",
            unit="{error}",
            description="Exceptions raised by plugin hooks, by plugin (otel_fim.plugin.name) and hook "
            "(otel_fim.plugin.hook); the agent logs each and carries on.",
        )
        # The liveness canary (otel_fim.canary): set by whoever runs it.
        self.canary_latency: Callable[[], float | None] | None = None
        self.coverage: Gauge | None = None
        meter.create_observable_gauge(
            "otel_fim.canary.duration",
            callbacks=[self._gauge_callback("canary.latency", lambda: self.canary_latency)],
            unit="s",
            description="The last liveness canary: its file change's time from the write to the outputs.",
        )
        meter.create_observable_gauge(
            "otel_fim.coverage",
            callbacks=[self._gauge_callback("coverage", lambda: self.coverage)],
            unit="1",
            description="1 while the last liveness canary reached the outputs (and OTLP delivered) in "
            "time, 0 after one did not: file changes may be going unreported.",
        )
        self._plugin_overflow = meter.create_counter(
            "otel_fim.plugin.queue.overflow",
            unit="{event}",
            description="Matched events exported without enrichment, alerts or actions because the "
            "plugin queue was full.",
        )

    @classmethod
    def otlp(
        cls,
        endpoint: OtlpEndpoint,
        counters: CountersSource | None = None,
        *,
        discarders: Gauge | None = None,
        interval: float = DEFAULT_EXPORT_INTERVAL,
        resource: Resource | None = None,
        exporter: MetricExporter | None = None,
    ) -> FimMetrics:
        """Metrics exported every `interval` seconds over OTLP (`exporter` overrides, for tests)."""
        counting = FailureCountingExporter(exporter or endpoint.metric_exporter())
        reader = PeriodicExportingMetricReader(counting, export_interval_millis=interval * 1000)
        metrics = cls.with_reader(reader, counters, discarders=discarders, resource=resource)
        counting.on_failure = lambda: metrics.record_export_failure("metrics")
        return metrics

    @classmethod
    def with_reader(
        cls,
        reader: MetricReader,
        counters: CountersSource | None = None,
        *,
        discarders: Gauge | None = None,
        resource: Resource | None = None,
    ) -> FimMetrics:
        provider = MeterProvider(resource=resource or build_resource(), metric_readers=[reader])
        return cls(provider, counters, discarders=discarders)

    # -- what the pipeline and outputs call ------------------------------------------------------

    def on_emitted(self, event: Any, matches: Sequence[Any], record: Mapping[str, Any]) -> None:
        """A `Pipeline.on_emitted` hook: counts the matches and the kernel-to-outputs latency."""
        self.record_latency((time.time_ns() - event.timestamp_ns) / 1e9)
        for match in matches:
            self.record_match(match.rule_id)

    def record_match(self, rule_id: str) -> None:
        self._matches.add(1, {"security_rule.name": rule_id})

    def record_latency(self, seconds: float) -> None:
        self._latency.record(max(seconds, 0.0))

    def record_delivery_latency(self, seconds: float) -> None:
        self._delivery.record(max(seconds, 0.0))

    def record_export_failure(self, signal: str) -> None:
        self._failures.add(1, {"otel_fim.signal": signal})

    def record_spool_dropped(self, severity_text: str, count: int = 1, *, reason: str) -> None:
        self._dropped.add(count, {"otel_fim.severity": severity_text, "error.type": reason})

    def record_plugin_error(self, plugin: str, hook: str) -> None:
        self._plugin_errors.add(1, {"otel_fim.plugin.name": plugin, "otel_fim.plugin.hook": hook})

    def record_plugin_overflow(self, count: int = 1) -> None:
        self._plugin_overflow.add(count)

    def record_rejected(self, count: int, *, reason: str) -> None:
        self._rejected.add(count, {"error.type": reason})

    def watch_spool(self, depth: Gauge, size_bytes: Gauge, dead_letters: Gauge | None = None) -> None:
        self._spool_depth, self._spool_bytes = depth, size_bytes
        self._dead_letters = dead_letters

    def force_flush(self, timeout: float = 10.0) -> bool:
        return self.meter_provider.force_flush(int(timeout * 1000))

    def shutdown(self) -> None:
        """Collects and exports one last time, then stops the reader."""
        self.meter_provider.shutdown()

    # -- callbacks -------------------------------------------------------------------------------

    def _observe_events(self, options: CallbackOptions) -> Iterable[Observation]:
        if self.counters is None:
            return []
        try:
            counts = self.counters()
        except Exception:
            self._callback_failed("events")
            return []
        return [
            Observation(value, {"otel_fim.stage": stage, "otel_fim.event.type": event_type})
            for (stage, event_type), value in counts.items()
        ]

    def _gauge_callback(self, name: str, source: Callable[[], Callable[[], float | None] | None]):
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            gauge = source()
            if gauge is None:
                return []
            try:
                value = gauge()
                return [] if value is None else [Observation(value)]
            except Exception:
                self._callback_failed(name)
                return []

        return callback

    def _callback_failed(self, name: str) -> None:
        with self._lock:
            first = name not in self._failed_callbacks
            self._failed_callbacks.add(name)
        if first:  # once per source: a broken source must not flood the log every interval
            log.exception("metrics: reading %s failed", name)


class FailureCountingExporter(MetricExporter):
    """Delegates to an OTLP metric exporter and reports each failed export.

    The periodic reader ignores the export result, so this is the only place a failure is visible.
    """

    def __init__(self, inner: MetricExporter, on_failure: Callable[[], None] | None = None) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.on_failure = on_failure
        self.failures = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs
    ) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            log.exception("metrics: exporter raised")
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self.failures += 1
            if self.on_failure is not None:
                self.on_failure()
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def agent_counters(
    kernel: Callable[[], Mapping[tuple[str, Any], int]],
    user: Any,
) -> CountersSource:
    """A counters source from the sensor's `counters()` ({(name, EventType): n}, names like `seen`)
    and the pipeline's `UserCounters` (`evaluated` / `matched` Counters keyed by EventType)."""

    def read() -> dict[tuple[str, str], int]:
        out = {(f"kernel.{name}", str(etype)): n for (name, etype), n in kernel().items()}
        # dict() copies in one step: the pipeline thread may add a key meanwhile.
        out.update({("user.evaluated", str(t)): n for t, n in dict(user.evaluated).items()})
        out.update({("user.matched", str(t)): n for t, n in dict(user.matched).items()})
        return out

    return read
