"""OpenTelemetry conventions of the records: log.record.uid (stable through resends), the
executable's basename as process.executable.name, file owner/group names, the rule's reference,
one attribute namespace (`otel_fim.*` besides semconv names)."""

from __future__ import annotations

import re
import threading
import time

from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_fim.event import EventType
from otel_fim.export.otlp import OtlpOutput
from otel_fim.export.record import log_record, record_uid
from otel_fim.process.context import ProcessContext
from otel_fim.process.users import UserNames
from otel_fim.rules.match import Match
from tests.support import catalog

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
# Semantic-convention namespaces we use as the spec defines them; everything else is ours.
SEMCONV = ("file.", "process.", "thread.", "user.", "container.", "security_rule.", "log.record.")


class RecordingExporter(LogRecordExporter):
    """Refuses the first export, accepts the second: the same records are sent twice."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.done = threading.Event()

    def export(self, batch):
        self.batches.append(list(batch))
        if len(self.batches) == 1:
            return LogRecordExportResult.FAILURE
        self.done.set()
        return LogRecordExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def test_record_uid_is_a_ulid_unique_and_time_ordered():
    uids = [record_uid(time.time_ns()) for _ in range(5000)]
    assert all(ULID.match(u) for u in uids) and len(set(uids)) == len(uids)
    assert record_uid(1_000_000_000_000_000_000)[:10] < record_uid(2_000_000_000_000_000_000)[:10]


def test_resent_record_keeps_its_uid(tmp_path):
    exporter = RecordingExporter()
    out = OtlpOutput(state_dir=tmp_path, exporter=exporter, backoff_initial=0.05, backoff_max=0.1)
    try:
        rec = log_record(catalog.synthetic_event(EventType.OPEN), catalog.MATCHES)
        out.emit_record(rec)
        assert exporter.done.wait(10)
    finally:
        out.close()
    first, second = exporter.batches[0], exporter.batches[1]
    uid = rec["attributes"]["log.record.uid"]
    assert first[0].log_record.attributes["log.record.uid"] == uid
    assert second[0].log_record.attributes["log.record.uid"] == uid  # a backend can drop the resend


def test_executable_name_is_the_executables_basename():
    event = catalog.synthetic_event(EventType.OPEN)
    event.process.comm = "kworker-lookalike"  # comm is whatever the process says it is
    attrs = log_record(event)["attributes"]
    assert attrs["process.executable.name"] == "vim.basic"  # /usr/bin/vim.basic
    assert attrs["otel_fim.process.comm"] == "kworker-lookalike"
    event.process.executable = None  # not known (a process older than the agent, gone): comm
    assert log_record(event)["attributes"]["process.executable.name"] == "kworker-lookalike"


def test_file_owner_and_group_names(tmp_path):
    """The process context names the file's owner and group from the host's passwd/group files."""
    (tmp_path / "passwd").write_text("alice:x:4242:4242::/home/alice:/bin/sh\n")
    (tmp_path / "group").write_text("devs:x:777:\n")
    context = ProcessContext(users=UserNames(tmp_path / "passwd", tmp_path / "group"))
    context.drain_each_event = False  # no kernel module here: nothing to drain
    event = catalog.synthetic_event(EventType.OPEN)
    event.container = None  # a host process: the host's names
    event.file.uid, event.file.gid = 4242, 777
    event.file.owner_name = event.file.group_name = None
    attrs = log_record(context.enrich(event))["attributes"]
    assert (attrs["file.owner.id"], attrs["file.owner.name"]) == ("4242", "alice")
    assert (attrs["file.group.id"], attrs["file.group.name"]) == ("777", "devs")
    event.file.uid, event.file.owner_name = 5, None  # no such user: the id alone
    assert "file.owner.name" not in log_record(context.enrich(event))["attributes"]
    in_container = catalog.synthetic_event(EventType.OPEN)  # the host's names would be someone else's
    in_container.file.uid, in_container.file.owner_name = 4242, None
    assert "file.owner.name" not in log_record(context.enrich(in_container))["attributes"]


def test_rule_reference():
    event = catalog.synthetic_event(EventType.OPEN)
    mitre = Match("r", "high", tags={"mitre": "T1548.003"})
    assert log_record(event, [mitre])["attributes"]["security_rule.reference"] == (
        "https://attack.mitre.org/techniques/T1548/003/"
    )
    own = Match("r2", "high", tags={"mitre": "T1098", "reference": "https://wiki.example/fim/r2"})
    assert log_record(event, [own])["attributes"]["security_rule.reference"] == "https://wiki.example/fim/r2"
    assert "security_rule.reference" not in log_record(event, [Match("r3", "low")])["attributes"]


def test_one_namespace():
    for key in catalog.emitted_log_attributes():
        assert key.startswith(SEMCONV) or key.startswith("otel_fim."), key
        assert not key.startswith("process.real_group"), "not a semantic convention"
    for info in catalog.emitted_metrics().values():
        assert info.name.startswith("otel_fim.")
        for key in info.attributes:
            assert key.startswith("otel_fim.") or key in ("security_rule.name", "error.type"), key


def test_metric_names_follow_otel_naming():
    """No `_total` (Prometheus adds it); units in `unit`; a counter of things may be plural (its unit
    is a `{thing}` annotation), a current amount is not (`.count`, `.depth`, `.size`); durations are
    `.duration` in seconds."""
    for info in catalog.emitted_metrics().values():
        assert not info.name.endswith(("_total", ".total", ".latency")), info.name
        if info.kind == "updowncounter":
            assert info.name.endswith((".count", ".depth", ".size")), info.name
        if info.kind == "counter":
            assert info.unit.startswith("{"), info.name
        if info.kind == "histogram":
            assert info.name.endswith(".duration") and info.unit == "s", info.name
