"""Poison records: a record the receiver refuses for good is isolated by bisection, kept in the
spool's dead-letter table (bounded, counted, a metric, `otel-fim spool`), and the rest is delivered.
Transient refusals are retried. Against a real OTLP/HTTP receiver that refuses chosen records."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_fim.agent import status_line
from otel_fim.commands import main
from otel_fim.export.delivery import LogTransport
from otel_fim.export.endpoint import OtlpEndpoint
from otel_fim.export.metrics import FimMetrics
from otel_fim.export.otlp import OtlpOutput
from otel_fim.export.record import log_record
from tests.factories import MATCHES, WRITE_TRUNC, make_event
from tests.support.refusing_receiver import Policy, RefusingReceiver, path_of

POISON = "/etc/fim-test/poison"


@pytest.fixture
def receiver() -> Iterator[RefusingReceiver]:
    rx = RefusingReceiver()
    yield rx
    rx.close()


@pytest.fixture
def grpc_receiver() -> Iterator[RefusingReceiver]:
    rx = RefusingReceiver(grpc=True)
    yield rx
    rx.close()


def output(receiver: RefusingReceiver, tmp_path: Path, **kwargs: object) -> OtlpOutput:
    options = {"backoff_initial": 0.05, "backoff_max": 0.2, "batch_size": 64, "timeout": 5.0, **kwargs}
    protocol = "grpc" if receiver.grpc else "http/protobuf"
    return OtlpOutput(endpoint=receiver.endpoint, protocol=protocol, state_dir=tmp_path, **options)


def emit(out: OtlpOutput, paths: list[str]) -> None:
    for i, path in enumerate(paths):
        event = make_event("open", path, flags=WRITE_TRUNC, inode=1000 + i, timestamp_ns=time.time_ns())
        out.emit_record(log_record(event, MATCHES))


def wait(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def paths(n: int, poison_at: set[int]) -> list[str]:
    return [f"{POISON}-{i}" if i in poison_at else f"/etc/fim-test/file-{i}" for i in range(n)]


def test_rejected_records_are_isolated_and_the_rest_delivered(
    receiver: RefusingReceiver, tmp_path: Path
) -> None:
    receiver.policy = Policy(poison=lambda r: path_of(r).startswith(POISON), mode="reject")
    reader = InMemoryMetricReader()
    out = output(receiver, tmp_path, metrics=FimMetrics.with_reader(reader))
    sent = paths(200, poison_at={3, 64, 65, 199})
    emit(out, sent)
    assert out.flush(30), f"spool still holds {out.spool.depth()}"
    good = [p for p in sent if not p.startswith(POISON)]
    assert receiver.paths() == good  # each delivered once, in order: a refused request accepted nothing
    assert 400 in receiver.statuses
    assert out.spool.dead_letter_count() == 4 and out.rejected == 4
    dead = out.spool.dead_letters()
    assert [json.loads(d.payload)["attributes"]["file.path"] for d in dead] == [
        f"{POISON}-{i}" for i in (3, 64, 65, 199)
    ]
    assert all(d.reason.startswith("rejected: HTTP 400") and "is invalid" in d.reason for d in dead)
    metrics = _metric_values(reader)
    assert metrics[("otel_fim.export.rejected", "rejected")] == 4
    assert metrics[("otel_fim.spool.dead_letter.count", None)] == 4
    out.close()


def test_partial_success_records_go_to_dead_letters(receiver: RefusingReceiver, tmp_path: Path) -> None:
    receiver.policy = Policy(poison=lambda r: path_of(r).startswith(POISON), mode="partial")
    out = output(receiver, tmp_path)
    sent = paths(100, poison_at={10, 77})
    emit(out, sent)
    assert out.flush(30)
    # The receiver dropped 2 and said so: those two are kept, not acknowledged as delivered.
    assert out.spool.dead_letter_count() == 2
    assert sorted(json.loads(d.payload)["attributes"]["file.path"] for d in out.spool.dead_letters()) == [
        f"{POISON}-10",
        f"{POISON}-77",
    ]
    reasons = [d.reason for d in out.spool.dead_letters()]
    assert all(r.startswith("partial_success: HTTP 200 partial success: ") for r in reasons), reasons
    # Every good record arrived; the halves re-sent to find the two arrive again (at least once).
    got = receiver.paths()
    assert set(got) == {p for p in sent if not p.startswith(POISON)}
    out.close()


def test_a_batch_over_the_size_limit_is_split(receiver: RefusingReceiver, tmp_path: Path) -> None:
    receiver.policy = Policy(max_records=10)
    out = output(receiver, tmp_path, batch_size=64)
    sent = paths(100, poison_at=set())
    emit(out, sent)
    assert out.flush(30)
    assert receiver.paths() == sent and out.spool.dead_letter_count() == 0
    assert 413 in receiver.statuses
    out.close()


def test_transient_refusals_are_retried_not_dead_lettered(receiver: RefusingReceiver, tmp_path: Path) -> None:
    receiver.policy = Policy(unavailable=5)
    out = output(receiver, tmp_path)
    sent = paths(20, poison_at=set())
    emit(out, sent)
    assert out.flush(30)
    assert receiver.paths() == sent
    assert receiver.statuses[:5] == [503] * 5 and out.spool.dead_letter_count() == 0
    assert out.export_failures >= 5
    out.close()


def test_dead_letters_are_bounded(receiver: RefusingReceiver, tmp_path: Path) -> None:
    receiver.policy = Policy(poison=lambda r: True)  # refuses everything
    out = output(receiver, tmp_path, max_dead_letters=5, batch_size=4)
    emit(out, paths(12, poison_at=set()))
    assert wait(lambda: out.spool.depth() == 0)
    assert out.spool.dead_letter_count() == 5 and out.spool.dead_letter_dropped == 7
    # the newest are kept
    kept = [json.loads(d.payload)["attributes"]["file.path"] for d in out.spool.dead_letters()]
    assert kept == [f"/etc/fim-test/file-{i}" for i in range(7, 12)]
    out.close()


def test_spool_command_lists_requeues_and_purges(
    receiver: RefusingReceiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.policy = Policy(poison=lambda r: path_of(r).startswith(POISON))
    out = output(receiver, tmp_path)
    emit(out, paths(10, poison_at={2, 5}))
    assert out.flush(30) and out.spool.dead_letter_count() == 2
    out.close()

    assert main(["spool", "--state-dir", str(tmp_path), "status"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[-2:] == ["spooled: 0 (pending enrichment: 0)", "dead letters: 2"]
    assert main(["spool", "--state-dir", str(tmp_path), "list"]) == 0
    listed = capsys.readouterr().out
    assert f"{POISON}-2" in listed and f"{POISON}-5" in listed and "HTTP 400" in listed
    first_id = int(listed.split()[0])
    assert main(["spool", "--state-dir", str(tmp_path), "purge", str(first_id)]) == 0
    assert main(["spool", "--state-dir", str(tmp_path), "requeue", "--all"]) == 0
    capsys.readouterr()

    # The receiver now takes the requeued record: it is delivered at the next start.
    receiver.policy = Policy()
    again = output(receiver, tmp_path)
    assert again.flush(30)
    assert receiver.paths()[-1] == f"{POISON}-5" and again.spool.dead_letter_count() == 0
    again.close()


def _metric_values(reader: InMemoryMetricReader) -> dict[tuple[str, str | None], float]:
    values: dict[tuple[str, str | None], float] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    reason = point.attributes.get("error.type")
                    values[(metric.name, reason)] = getattr(point, "value", None)
    return values


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_real_exporters_give_status_codes(protocol: str) -> None:
    """The SDK internals the transport relies on are there: no silent fallback to retry-forever."""
    exporter = OtlpEndpoint("http://127.0.0.1:1", protocol).log_exporter()
    assert LogTransport(exporter)._mode == protocol.split("/")[0]
    exporter.shutdown()


def test_status_line_shows_dead_letters(receiver: RefusingReceiver, tmp_path: Path) -> None:
    receiver.policy = Policy(poison=lambda r: path_of(r).startswith(POISON))
    out = output(receiver, tmp_path)
    emit(out, paths(5, poison_at={1}))
    assert out.flush(30)
    stats = {"kernel": {}, "user": {"evaluated": {}, "matched": {}}, "export": out.delivery_stats()}
    assert status_line(stats).endswith("| otlp spooled=0 delivered=4 dead_letters=1")
    out.close()


@pytest.mark.parametrize("mode", ["reject", "partial"])
def test_grpc_refusals_isolate_poison_records(
    grpc_receiver: RefusingReceiver, tmp_path: Path, mode: str
) -> None:
    """Over gRPC: INVALID_ARGUMENT (and a partial success) isolate the records like HTTP 400."""
    grpc_receiver.policy = Policy(poison=lambda r: path_of(r).startswith(POISON), mode=mode, unavailable=2)
    out = output(grpc_receiver, tmp_path)
    sent = paths(50, poison_at={7, 31})
    emit(out, sent)
    assert out.flush(30), f"spool still holds {out.spool.depth()}"
    assert set(grpc_receiver.paths()) == {p for p in sent if not p.startswith(POISON)}
    assert grpc_receiver.statuses[:2] == [503, 503]  # UNAVAILABLE: retried, not dead-lettered
    dead = out.spool.dead_letters()
    dead_paths = sorted(json.loads(d.payload)["attributes"]["file.path"] for d in dead)
    assert dead_paths == [f"{POISON}-31", f"{POISON}-7"]
    if mode == "reject":
        assert grpc_receiver.paths() == [p for p in sent if not p.startswith(POISON)]
        assert all(d.reason.startswith("rejected: gRPC INVALID_ARGUMENT: record") for d in dead)
    out.close()


def test_grpc_message_too_large_is_split(grpc_receiver: RefusingReceiver, tmp_path: Path) -> None:
    grpc_receiver.policy = Policy(max_records=8)  # RESOURCE_EXHAUSTED without RetryInfo
    out = output(grpc_receiver, tmp_path)
    sent = paths(40, poison_at=set())
    emit(out, sent)
    assert out.flush(30)
    assert grpc_receiver.paths() == sent and out.spool.dead_letter_count() == 0
    out.close()
