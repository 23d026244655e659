"""One OTLP log export attempt, and what the receiver's answer means for the records sent.

The SDK's exporters answer SUCCESS or FAILURE. That is not enough to deliver durably: a FAILURE
may be transient (the receiver is down, overloaded: retry later) or permanent for *these*
records (HTTP 400/413, gRPC INVALID_ARGUMENT: retrying the same batch fails forever and blocks
everything behind it), and a SUCCESS may carry OTLP `partial_success` (some records rejected).
`LogTransport.send` makes one attempt through the exporter's own client, so endpoint, headers,
TLS, compression and timeout are still the SDK's, resolved from config and `OTEL_*` variables,
and classifies the answer:

* ACCEPTED (2xx / OK), with `rejected` > 0 when the receiver reported a partial success;
* REJECTED: the receiver refused the request's content (HTTP 400, 413; gRPC INVALID_ARGUMENT, or
  RESOURCE_EXHAUSTED without RetryInfo, which the OTLP spec makes non-retryable);
* RETRY: anything else — no answer, a timeout, 429/502/503/504, UNAVAILABLE, and also 401/403/
  404/...: those say the endpoint or its credentials are wrong, not these records, so the records
  wait (and the failures are counted and logged) instead of being given up.

Making one attempt uses SDK internals (the HTTP client's `_submit`, the gRPC stub); when they are
not there (another SDK version) `send` falls back to `export()`: SUCCESS is ACCEPTED, FAILURE is
RETRY, as before poison records were told apart.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExportResult

log = logging.getLogger(__name__)

PERMANENT_HTTP = frozenset({400, 413})


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Reply:
    verdict: Verdict
    rejected: int = 0  # partial_success.rejected_log_records of an ACCEPTED reply
    detail: str = ""  # status and the receiver's message, for logs and the dead-letter table


def _partial(response: Any) -> tuple[int, str]:
    partial = getattr(response, "partial_success", None)
    if partial is None:
        return 0, ""
    return int(partial.rejected_log_records), str(partial.error_message)


class LogTransport:
    """Sends log records through an SDK OTLP log exporter, one attempt per call."""

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter
        self._mode = self._detect(exporter)
        if self._mode == "export":
            log.warning(
                "otlp: %s gives no status codes here; records the receiver refuses will be retried, "
                "not isolated as poison records",
                type(exporter).__name__,
            )

    @staticmethod
    def _detect(exporter: Any) -> str:
        client = getattr(exporter, "_client", None)
        if hasattr(client, "_submit") and hasattr(client, "_compress"):
            return "http"
        if hasattr(exporter, "_translate_data") and hasattr(exporter, "_headers") and client is not None:
            return "grpc"
        return "export"

    def send(self, records: Sequence[Any]) -> Reply:  # SDK log records
        try:
            if self._mode == "http":
                return self._send_http(records)
            if self._mode == "grpc":
                return self._send_grpc(records)
            result = self.exporter.export(records)
        except Exception as exc:  # an exporter bug must not kill the sender thread
            log.exception("otlp: export raised")
            return Reply(Verdict.RETRY, detail=f"exporter raised {type(exc).__name__}: {exc}")
        if result is LogRecordExportResult.SUCCESS:
            return Reply(Verdict.ACCEPTED)
        return Reply(Verdict.RETRY, detail="export failed")

    def _send_http(self, records: Sequence[Any]) -> Reply:
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        client = self.exporter._client
        data = client._compress(encode_logs(records).SerializeToString())
        result = client._submit(data, client._timeout)
        status = result.status_code
        if status is None:
            return Reply(Verdict.RETRY, detail=f"no answer: {result.error}")
        body = b""
        try:
            body = result.content() or b""
        except Exception:  # an unreadable body says nothing either way
            pass
        if 200 <= status < 300:
            response = ExportLogsServiceResponse()
            try:
                response.ParseFromString(body)
            except Exception:  # JSON or empty: no partial success to read
                return Reply(Verdict.ACCEPTED)
            rejected, message = _partial(response)
            detail = f"HTTP {status} partial success: {message}" if rejected else ""
            return Reply(Verdict.ACCEPTED, rejected, detail)
        detail = f"HTTP {status} {result.reason or ''}: {_status_message(body)}".strip()
        if status in PERMANENT_HTTP:
            return Reply(Verdict.REJECTED, detail=detail)
        return Reply(Verdict.RETRY, detail=detail)

    def _send_grpc(self, records: Sequence[Any]) -> Reply:
        import grpc

        exporter = self.exporter
        try:
            response = exporter._client.Export(
                request=exporter._translate_data(records),
                metadata=exporter._headers,
                timeout=exporter._timeout,
            )
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            message = error.details() if hasattr(error, "details") else ""
            detail = f"gRPC {getattr(code, 'name', code)}: {message}"
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                return Reply(Verdict.REJECTED, detail=detail)
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and not _has_retry_info(error):
                return Reply(Verdict.REJECTED, detail=detail)
            return Reply(Verdict.RETRY, detail=detail)
        rejected, message = _partial(response)
        return Reply(Verdict.ACCEPTED, rejected, f"gRPC partial success: {message}" if rejected else "")


def _has_retry_info(error: Any) -> bool:
    try:
        return "google.rpc.retryinfo-bin" in dict(error.trailing_metadata() or ())
    except Exception:
        return False


def _status_message(body: bytes) -> str:
    """The receiver's reason: OTLP/HTTP error bodies are a google.rpc.Status (protobuf)."""
    try:
        from google.rpc import status_pb2

        status = status_pb2.Status()
        status.ParseFromString(body)
        if status.message:
            return status.message[:500]
    except Exception:
        pass
    return body[:200].decode("utf-8", "replace")
