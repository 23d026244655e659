"""otel-fim: eBPF file integrity monitoring exporting OpenTelemetry logs and metrics."""

__version__ = "0.1.0"
