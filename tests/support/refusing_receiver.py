"""A small OTLP log receiver for tests that refuses chosen records, as real backends do.

OTLP/HTTP: a stdlib `http.server` on 127.0.0.1 that decodes each `ExportLogsServiceRequest`
(protobuf) and answers like an OTLP receiver: 200 with an `ExportLogsServiceResponse`, 400/413 with
a `google.rpc.Status`, or 503 while it is "overloaded". OTLP/gRPC (`grpc=True`): a grpcio server
with the same policy, answering INVALID_ARGUMENT, RESOURCE_EXHAUSTED (no RetryInfo) or UNAVAILABLE.
What it accepted is kept in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord


def attribute(record: LogRecord, key: str) -> str | None:
    for kv in record.attributes:
        if kv.key == key:
            return kv.value.string_value
    return None


def path_of(record: LogRecord) -> str:
    return attribute(record, "file.path") or ""


@dataclass
class Policy:
    """How the receiver treats a request; every field may be changed while it runs."""

    poison: Callable[[LogRecord], bool] = lambda r: False
    mode: str = "reject"  # reject: 400 for a request holding a poison record; partial: 200 + partial_success
    max_records: int | None = None  # more per request: 413
    unavailable: int = 0  # answer 503 to this many requests first


@dataclass
class RefusingReceiver:
    policy: Policy = field(default_factory=Policy)
    accepted: list[LogRecord] = field(default_factory=list)
    requests: int = 0
    statuses: list[int] = field(default_factory=list)

    grpc: bool = False

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        receiver = self
        if self.grpc:
            self._start_grpc()
            return

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, payload = receiver.handle(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _start_grpc(self) -> None:
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

        receiver = self
        codes = {400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
                 503: grpc.StatusCode.UNAVAILABLE}  # fmt: skip

        class Servicer(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):
                status, payload = receiver.handle(request.SerializeToString())
                if status != 200:
                    message = status_pb2.Status()
                    message.ParseFromString(payload)
                    context.abort(codes[status], message.message)
                response = ExportLogsServiceResponse()
                response.ParseFromString(payload)
                return response

        from concurrent import futures

        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Servicer(), self.grpc_server)
        self.port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()

    @property
    def endpoint(self) -> str:
        if self.grpc:
            return f"http://127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, body: bytes) -> tuple[int, bytes]:
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        records = [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
        with self.lock:
            self.requests += 1
            policy = self.policy
            if policy.unavailable > 0:
                policy.unavailable -= 1
                return self._status(503, "overloaded, try later")
            if policy.max_records is not None and len(records) > policy.max_records:
                return self._status(413, f"{len(records)} records: at most {policy.max_records} per request")
            bad = [r for r in records if policy.poison(r)]
            if bad and policy.mode == "reject":
                return self._status(400, f"record {path_of(bad[0])!r} is invalid")
            self.accepted.extend(r for r in records if not policy.poison(r))
            self.statuses.append(200)
            response = ExportLogsServiceResponse()
            if bad:
                response.partial_success.rejected_log_records = len(bad)
                response.partial_success.error_message = f"{len(bad)} records too old"
            return 200, response.SerializeToString()

    def _status(self, code: int, message: str) -> tuple[int, bytes]:
        self.statuses.append(code)
        return code, status_pb2.Status(code=3, message=message).SerializeToString()

    def paths(self) -> list[str]:
        with self.lock:
            return [path_of(r) for r in self.accepted]

    def close(self) -> None:
        if self.grpc:
            self.grpc_server.stop(0)
            return
        self.server.shutdown()
        self.server.server_close()
