"""Where OTLP goes and how: the endpoint settings, the exporters built from them, and the resource.

Exporters are built by hand (the durable log path calls `export()` itself), so the SDK never reads
`OTEL_EXPORTER_OTLP_PROTOCOL`; `resolve_protocol` does. Everything left unset here (`None`) falls
through to the SDK, which reads the standard `OTEL_EXPORTER_OTLP_*` variables for endpoint, headers,
timeout, compression, certificates and insecure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from opentelemetry.sdk.resources import OTELResourceDetector, Resource

import otel_fim

Protocol = Literal["grpc", "http/protobuf"]
Signal = Literal["logs", "metrics"]

PROTOCOLS: tuple[str, ...] = ("grpc", "http/protobuf")
# The OTLP exporter spec's default; the Collector's OTLP receiver listens for it on 4318.
DEFAULT_PROTOCOL: Protocol = "http/protobuf"
_ENDPOINT_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


class EndpointError(ValueError):
    pass


def resolve_protocol(configured: str | None, signal: Signal) -> Protocol:
    """Config first, then `OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`, then `OTEL_EXPORTER_OTLP_PROTOCOL`."""
    value = (
        configured
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or DEFAULT_PROTOCOL
    ).strip()
    if value == "http":  # a common shorthand
        value = "http/protobuf"
    if value not in PROTOCOLS:
        raise EndpointError(f"OTLP protocol {value!r} is not supported: use grpc or http/protobuf")
    return value  # type: ignore[return-value]


def endpoint_configured(endpoint: str | None = None) -> bool:
    """True when an OTLP endpoint is set in config or in the environment (makes `otlp` the default output)."""
    return bool(endpoint) or any(os.environ.get(v) for v in _ENDPOINT_VARS)


@dataclass(slots=True)
class OtlpEndpoint:
    """Connection settings shared by the log and metric exporters.

    `endpoint` is a base URL like `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://collector:4318`); for
    http/protobuf the signal path (`/v1/logs`, `/v1/metrics`) is appended.
    """

    endpoint: str | None = None
    protocol: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds per export request
    insecure: bool | None = None  # gRPC only: plaintext instead of TLS
    compression: str | None = None  # gzip | none

    def protocol_for(self, signal: Signal) -> Protocol:
        return resolve_protocol(self.protocol, signal)

    def _url(self, signal: Signal, protocol: Protocol) -> str | None:
        if not self.endpoint:
            return None
        if protocol == "grpc":
            return self.endpoint
        return f"{self.endpoint.rstrip('/')}/v1/{signal}"

    def log_exporter(self):  # -> LogRecordExporter
        protocol = self.protocol_for("logs")
        url = self._url("logs", protocol)
        headers = dict(self.headers) or None
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

            return OTLPLogExporter(
                endpoint=url,
                insecure=self.insecure,
                headers=headers,
                timeout=self.timeout,
                compression=_grpc_compression(self.compression),
            )
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

        return HttpLogExporter(
            endpoint=url,
            headers=headers,
            timeout=self.timeout,
            compression=_http_compression(self.compression),
        )

    def metric_exporter(self):  # -> MetricExporter
        protocol = self.protocol_for("metrics")
        url = self._url("metrics", protocol)
        headers = dict(self.headers) or None
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            return OTLPMetricExporter(
                endpoint=url,
                insecure=self.insecure,
                headers=headers,
                timeout=self.timeout,
                compression=_grpc_compression(self.compression),
            )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        return HttpMetricExporter(
            endpoint=url,
            headers=headers,
            timeout=self.timeout,
            compression=_http_compression(self.compression),
        )


def _grpc_compression(name: str | None):
    if name is None:
        return None  # the SDK reads OTEL_EXPORTER_OTLP_*_COMPRESSION
    from grpc import Compression

    return {"gzip": Compression.Gzip, "none": Compression.NoCompression}[_check_compression(name)]


def _http_compression(name: str | None):
    if name is None:
        return None
    from opentelemetry.exporter.otlp.proto.http import Compression

    return {"gzip": Compression.Gzip, "none": Compression.NoCompression}[_check_compression(name)]


def _check_compression(name: str) -> str:
    if name not in ("gzip", "none"):
        raise EndpointError(f"OTLP compression {name!r} is not supported: use gzip or none")
    return name


def host_id(path: Path = Path("/etc/machine-id")) -> str | None:
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value or None


# Namespace of otel-fim's service.instance.id (a UUID v5 of the host's id, as semconv suggests).
INSTANCE_NAMESPACE = uuid.UUID("6f1d4a5e-2b0c-5d55-9a40-0e3f8f5f1c11")


def service_instance_id(host: str) -> str:
    """The same id on every start of the agent on one host: Loki makes service.instance.id an index
    label and Prometheus the `instance` label, so a random id per start would split every series."""
    return str(uuid.uuid5(INSTANCE_NAMESPACE, host))


def build_resource(extra: Mapping[str, str] | None = None) -> Resource:
    """otel-fim's resource; `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` override it."""
    hostname = socket.gethostname()
    attrs: dict[str, str] = {
        "service.name": "otel-fim",
        "service.version": otel_fim.__version__,
        "host.name": hostname,
        "os.type": "linux",
    }
    hid = host_id()
    if hid is not None:
        attrs["host.id"] = hid
    attrs["service.instance.id"] = service_instance_id(hid or hostname)
    attrs.update(extra or {})
    # Resource.create lets its argument win over the environment; the operator's env must win here.
    return Resource.create(attrs).merge(OTELResourceDetector().detect())
