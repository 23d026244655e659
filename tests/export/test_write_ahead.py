"""Write-ahead: a matched event is in the spool as soon as it matched, before the plugins enrich
it. SIGKILL the agent right after a burst, while the plugins still hold most of the events: the
restarted agent delivers every one, those never enriched marked `otel_fim.plugin.status=incomplete`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from otel_fim.export.otlp import OtlpOutput
from otel_fim.export.record import log_record
from tests.factories import MATCHES, numbered_event
from tests.support.agent_harness import start_agent, stop_agent
from tests.support.otlp_receiver import Rotel
from tests.support.refusing_receiver import RefusingReceiver, attribute, path_of

N = 40
# Opens N watched files for writing and keeps them open: the hash and diff plugins wait (up to
# settle_seconds, 1 s) for each writer to close, so the plugin stage holds the burst for ~N s.
_WRITER = textwrap.dedent(
    """
    import sys, time
    files = [open(f"{watched}/f{{i}}.conf", "w") for i in range({n})]
    for f in files:
        f.write("x\\n"); f.flush()
    open({ready!r}, "w").write("ok")
    time.sleep(600)
    """
)


def spool_rows(state: Path) -> tuple[int, int]:
    """(records, of which pending enrichment) in the agent's spool, read next to the agent."""
    db = state / "spool.db"
    if not db.exists():
        return 0, 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            query = "SELECT count(*), coalesce(sum(pending), 0) FROM records"
            total, pending = conn.execute(query).fetchone()
        except sqlite3.OperationalError:  # not created yet
            return 0, 0
    return total, pending


@pytest.mark.kernel
def test_sigkill_after_a_burst_delivers_every_matched_event(tmp_path: Path) -> None:
    protocol = "http/protobuf"
    receiver = Rotel(tmp_path)  # down while the agent reads the burst
    watched, state = tmp_path / "watched", tmp_path / "state"
    watched.mkdir()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f'version: 1\nrules:\n  - id: watched\n    expression: fim.write.file.path =~ "{watched}/**"\n'
        "    severity: high\n"
    )
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint(protocol),
           "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}  # fmt: skip
    flags = ("--rules", str(policy), "--output", "otlp", "--state-dir", str(state))
    agent, _ = start_agent(tmp_path, *flags, env=env)
    ready = tmp_path / "writer-ready"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER.format(watched=watched, n=N, ready=str(ready))])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() or spool_rows(state)[0] < N:
            assert agent.poll() is None, "agent died"
            assert time.monotonic() < deadline, f"the agent spooled {spool_rows(state)} of {N} matches"
            time.sleep(0.05)
        total, pending = spool_rows(state)
        os.kill(agent.pid, signal.SIGKILL)  # every match is spooled; most still wait for plugins
        agent.communicate()
    finally:
        writer.kill()
        writer.wait()
    assert total == N and pending > 0, (total, pending)

    receiver.start()
    try:
        agent, _ = start_agent(tmp_path, *flags, env=env)
        try:
            logs = receiver.wait_logs(
                lambda logs: len({lg.attributes.get("file.path") for lg in logs}) >= N, timeout=60
            )
        finally:
            stop_agent(agent)
    finally:
        receiver.stop()
    ours = [lg for lg in logs if str(lg.attributes.get("file.path", "")).startswith(str(watched))]
    assert {lg.attributes["file.path"] for lg in ours} == {f"{watched}/f{i}.conf" for i in range(N)}
    incomplete = [lg for lg in ours if lg.attributes.get("otel_fim.plugin.status") == "incomplete"]
    complete = [lg for lg in ours if "otel_fim.plugin.status" not in lg.attributes]
    assert len(incomplete) >= pending - 1  # one may have been completed between the count and the kill
    assert all("otel_fim.plugin.hash.sha256" not in lg.attributes for lg in incomplete)
    assert all(lg.attributes.get("security_rule.name") == "watched" for lg in ours)
    hashed = ("otel_fim.plugin.hash.sha256", "otel_fim.plugin.hash.skipped")
    assert all(any(k in lg.attributes for k in hashed) for lg in complete)


def _output(receiver: RefusingReceiver, state: Path) -> OtlpOutput:
    return OtlpOutput(endpoint=receiver.endpoint, protocol="http/protobuf", state_dir=state,
                      backoff_initial=0.05, backoff_max=0.2, close_timeout=5)  # fmt: skip


def test_reserved_then_enriched_is_sent_once_enriched(tmp_path: Path) -> None:
    receiver = RefusingReceiver()
    try:
        out = _output(receiver, tmp_path)
        early, late = numbered_event(1), numbered_event(2)
        out.reserve(early, MATCHES)
        out.reserve(late, MATCHES)
        out.end_batch()  # committed, pending: not sent
        assert out.spool.depth() == 2 and len(out.spool.pending()) == 2
        early.extra = {"otel_fim.plugin.hash": {"sha256": "ab"}}
        out.emit(early, MATCHES, log_record(early, MATCHES))  # the plugins finished
        third = numbered_event(3)
        out.reserve(third, MATCHES)
        out.emit(third, MATCHES, log_record(third, MATCHES))  # finished before the batch committed
        out.end_batch()
        assert wait_for(lambda: len(receiver.accepted) == 2)
        got = {path_of(r): r for r in receiver.accepted}
        assert set(got) == {"/etc/fim-test/file-1", "/etc/fim-test/file-3"}
        assert attribute(got["/etc/fim-test/file-1"], "otel_fim.plugin.hash.sha256") == "ab"
        assert all(attribute(r, "otel_fim.plugin.status") is None for r in receiver.accepted)
        out.spool.close()  # "killed": `late` was never completed
        out._abort.set()

        again = _output(receiver, tmp_path)  # the next start sends it, marked
        assert again.flush(10)
        assert len(receiver.accepted) == 3
        last = receiver.accepted[-1]
        assert path_of(last) == "/etc/fim-test/file-2"
        assert attribute(last, "otel_fim.plugin.status") == "incomplete"
        again.close()
    finally:
        receiver.close()


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)
    return condition()
