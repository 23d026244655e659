"""The real agent across restarts: what changed while it was down is reported at start-up, once."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from otel_fim.scan.baseline import BaselineStore
from tests.support.agent_harness import records, start_agent, stop_agent, wait_records


def policy(tmp_path: Path, watched: Path) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n"
        "  - id: watched_changed\n"
        f'    expression: fim.write.file.path =~ "{watched}/**"\n'
        "    severity: high\n"
        "  - id: setuid_added\n"
        "    expression: chmod.file.destination.mode & S_ISUID != 0\n"
        "    severity: critical\n"
    )
    return rules


def scanned(out: Path, state: Path, first: bool, timeout: float = 60) -> None:
    """Wait for the start-up scan: its record, or on a first run (no record) the baseline's roots,
    written when the first scan completed."""
    if not first:
        done = wait_records(out, lambda r: r["event_name"] == "otel_fim.scan.completed", timeout=timeout)
        assert done, "the start-up scan did not report"
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state / "baseline.sqlite").exists():
            store = BaselineStore(state)
            try:
                if store.roots():
                    return
            finally:
                store.close()
        time.sleep(0.1)
    pytest.fail("the baseline was not taken")


def run_once(tmp_path: Path, name: str, rules: Path, state: Path, during=None) -> list[dict]:
    """One agent run (its own jsonl) until its start-up scan is done; returns its records."""
    run = tmp_path / name
    run.mkdir()
    first = not (state / "baseline.sqlite").exists()
    proc, out = start_agent(run, "--rules", str(rules), "--state-dir", str(state))
    try:
        scanned(out, state, first)
        if during is not None:
            during(out)
    finally:
        stop_agent(proc)
    return records(out)


def findings(recs: list[dict]) -> dict[tuple[str, str], dict]:
    return {
        (r["attributes"]["otel_fim.scan.change"], r["attributes"]["file.path"]): r
        for r in recs
        if "otel_fim.scan.change" in r["attributes"]
    }


@pytest.mark.kernel
def test_changes_while_down_are_reported_at_start_once(tmp_path):
    watched = tmp_path / "watched"
    watched.mkdir()
    for name in ("config", "gone", "binary", "owned"):
        (watched / name).write_text(f"{name}\n")
    rules, state = policy(tmp_path, watched), tmp_path / "state"

    first = run_once(tmp_path, "run1", rules, state)
    assert first == []  # the first run only records the baseline
    store = BaselineStore(state)
    assert store.count() == 4
    store.close()

    # the agent is down: change things
    down_at = time.time_ns()
    (watched / "config").write_text("config\nPermitRootLogin yes\n")
    (watched / "gone").unlink()
    os.chmod(watched / "binary", 0o4755)
    os.chown(watched / "owned", 1234, 1234)
    (watched / "new").write_text("dropped in\n")

    second = run_once(tmp_path, "run2", rules, state)
    got = findings(second)
    assert set(got) == {
        ("modified", str(watched / "config")),
        ("deleted", str(watched / "gone")),
        ("mode_changed", str(watched / "binary")),
        ("owner_changed", str(watched / "owned")),
        ("created", str(watched / "new")),
    }
    modified = got[("modified", str(watched / "config"))]
    attrs = modified["attributes"]
    assert modified["event_name"] == "otel_fim.file.open"
    assert attrs["otel_fim.syscall"] == "scan" and attrs["otel_fim.scan.reason"] == "startup"
    assert "process.pid" not in attrs  # no process is known, and none is made up
    assert attrs["security_rule.name"] == "watched_changed"
    assert attrs["otel_fim.scan.window.start"] < attrs["otel_fim.scan.window.end"]
    assert attrs["otel_fim.scan.previous.sha256"] != attrs["otel_fim.scan.current.sha256"]
    assert attrs["otel_fim.scan.window.end"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(down_at / 1e9))
    assert "found by a startup scan" in modified["body"]
    # the diff plugin kept its copy across the restart: the finding says what changed
    assert attrs["otel_fim.plugin.diff.status"] == "modified"
    assert "+PermitRootLogin yes" in attrs["otel_fim.plugin.diff.unified"]
    assert got[("deleted", str(watched / "gone"))]["attributes"]["otel_fim.plugin.diff.status"] == "deleted"
    created = got[("created", str(watched / "new"))]["attributes"]
    assert created["otel_fim.plugin.diff.status"] == "created"
    assert "+dropped in" in created["otel_fim.plugin.diff.unified"]
    setuid = got[("mode_changed", str(watched / "binary"))]
    assert setuid["event_name"] == "otel_fim.file.chmod"
    assert set(setuid["attributes"]["otel_fim.rule.ids"]) == {"watched_changed", "setuid_added"}
    assert setuid["severity_text"] == "critical"
    assert got[("deleted", str(watched / "gone"))]["event_name"] == "otel_fim.file.unlink"
    assert got[("owner_changed", str(watched / "owned"))]["attributes"]["otel_fim.chown.uid"] == 1234

    # a live change while the agent runs is reported live and updates the baseline ...
    def live_change(out: Path) -> None:
        (watched / "config").write_text("config\nPermitRootLogin no\n")
        live = wait_records(
            out, lambda r: r["attributes"].get("file.path") == str(watched / "config") and "process.pid" in r
            ["attributes"],
        )  # fmt: skip
        assert live and live[0]["attributes"]["process.pid"] == os.getpid()

    third = run_once(tmp_path, "run3", rules, state, during=live_change)
    assert findings(third) == {}
    # ... so the next start has nothing to re-report
    fourth = run_once(tmp_path, "run4", rules, state)
    assert findings(fourth) == {}
    (summary,) = [r for r in fourth if r["event_name"] == "otel_fim.scan.completed"]
    assert summary["attributes"]["otel_fim.scan.findings"] == 0
    assert summary["attributes"]["otel_fim.scan.files"] == 4


@pytest.mark.kernel
def test_unwatched_changes_are_not_findings(tmp_path):
    """The rules decide: a change under a tree no rule watches is no finding (the baseline only
    covers watched files), and neither is one the rules exclude."""
    watched, other = tmp_path / "watched", tmp_path / "other"
    watched.mkdir()
    other.mkdir()
    (watched / "keep").write_text("x\n")
    (other / "f").write_text("x\n")
    rules, state = policy(tmp_path, watched), tmp_path / "state"
    run_once(tmp_path, "run1", rules, state)
    (other / "f").write_text("changed\n")
    (other / "g").write_text("new\n")
    os.utime(watched / "keep", (0, 0))  # utimes: watched, but ... content and mode are unchanged
    second = run_once(tmp_path, "run2", rules, state)
    assert findings(second) == {}


def is_repair_summary(r: dict) -> bool:
    attrs = r["attributes"]
    return attrs.get("otel_fim.scan.reason") == "repair" and "otel_fim.scan.files" in attrs


@pytest.mark.kernel
def test_lost_events_start_a_repair_scan(tmp_path):
    """A burst the agent cannot keep (a one-page kernel buffer, a 1 MiB backlog) loses events; the
    agent says a coverage gap happened and a repair scan reports the files whose events were lost,
    so every changed file is reported: live, or by the repair."""
    watched = tmp_path / "watched"
    watched.mkdir()
    files = [watched / f"f{i:05d}" for i in range(3000)]
    for f in files:
        f.write_text("before\n")
    rules, state = policy(tmp_path, watched), tmp_path / "state"
    proc, out = start_agent(
        tmp_path,
        "--rules",
        str(rules),
        "--state-dir",
        str(state),
        "--ringbuf-pages",
        "1",
        "--backlog-mib",
        "1",
    )
    try:
        scanned(out, state, first=True)
        for i, f in enumerate(files):
            with open(f, "w") as fh:
                fh.write(f"after {i}\n")
        gap = wait_records(out, lambda r: r["event_name"] == "otel_fim.coverage.gap", timeout=60)
        assert gap, "no coverage gap reported"
        repair = wait_records(out, is_repair_summary, timeout=120)
        assert repair, "no repair scan"
    finally:
        stop_agent(proc)
    recs = records(out)
    gaps = [r for r in recs if r["event_name"] == "otel_fim.coverage.gap"]
    assert gaps[0]["attributes"]["otel_fim.gap.state"] == "ongoing"  # said at once, before the repair
    (gap,) = [r for r in gaps if r["attributes"]["otel_fim.gap.state"] == "ended"][:1]
    g = gap["attributes"]
    assert g["otel_fim.gap.lost"] > 0 and g["otel_fim.gap.duration_s"] >= 0
    assert g["otel_fim.gap.start"] <= g["otel_fim.gap.end"]
    assert gap["severity_text"] == "high"
    live = {r["attributes"]["file.path"] for r in recs if "process.pid" in r["attributes"]}
    repaired = {
        r["attributes"]["file.path"]
        for r in recs
        if r["attributes"].get("otel_fim.scan.reason") == "repair"
        and "otel_fim.scan.change" in r["attributes"]
    }
    lost = g["otel_fim.gap.lost"]
    print(f"\nrepair: lost={lost} live={len(live)} repaired={len(repaired)} of {len(files)}")
    assert repaired, "the repair scan found none of the lost changes"
    assert {str(f) for f in files} <= live | repaired
    # the repair waited for the backlog to be reported: no change is reported both ways
    assert not live & repaired


@pytest.mark.kernel
def test_a_periodic_scan_finds_a_write_the_sensor_cannot_see(tmp_path):
    """A write through a descriptor opened before the agent started is no syscall the sensor traces
    (README *Known limits*); the periodic scan (`--scan-interval`) still reports the change."""
    watched = tmp_path / "watched"
    watched.mkdir()
    target = watched / "config"
    target.write_text("before\n")
    rules, state = policy(tmp_path, watched), tmp_path / "state"
    fd = os.open(target, os.O_WRONLY | os.O_APPEND)  # opened while nobody watches
    try:
        proc, out = start_agent(
            tmp_path, "--rules", str(rules), "--state-dir", str(state), "--scan-interval", "1"
        )
        try:
            scanned(out, state, first=True)
            os.write(fd, b"appended through an old descriptor\n")
            found = wait_records(
                out, lambda r: r["attributes"].get("otel_fim.scan.change") == "modified", timeout=30
            )
        finally:
            stop_agent(proc)
    finally:
        os.close(fd)
    assert found, "the periodic scan did not report the change"
    a = found[0]["attributes"]
    assert a["file.path"] == str(target) and a["otel_fim.scan.reason"] == "periodic"
    assert a["otel_fim.scan.current.size"] == len("before\nappended through an old descriptor\n")
    # the sensor saw nothing of it: no live record for the file
    assert not [
        r
        for r in records(out)
        if r["attributes"].get("file.path") == str(target) and "process.pid" in r["attributes"]
    ]


@pytest.mark.kernel
def test_a_scan_cut_short_by_a_stop_loses_nothing(tmp_path):
    """Stopped in the middle of its start-up scan, the agent reports what it found so far; the
    next start reports the rest; no file is reported twice."""
    watched = tmp_path / "watched"
    watched.mkdir()
    files = [watched / f"f{i:04d}" for i in range(1500)]
    for f in files:
        f.write_text("before\n")
    rules, state = policy(tmp_path, watched), tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text("scan: {files_per_s: 300}\n")  # a scan of ~5 s, cut after ~2
    run_once(tmp_path, "run0", rules, state)
    for f in files:
        f.write_text("after\n")
    run = tmp_path / "run1"
    run.mkdir()
    proc, out = start_agent(
        run, "--rules", str(rules), "--state-dir", str(state), "--config", str(config),
        "--output", "console",  # with --config, an --output makes the harness add its jsonl
    )  # fmt: skip
    try:
        time.sleep(2)
    finally:
        err = stop_agent(proc)
    first = [r["attributes"]["file.path"] for r in records(out) if "otel_fim.scan.change" in r["attributes"]]
    assert 0 < len(first) < len(files), err[-3000:]
    (summary,) = [r for r in records(out) if r["event_name"] == "otel_fim.scan.completed"]
    assert summary["attributes"]["otel_fim.scan.interrupted"] is True
    second = [
        r["attributes"]["file.path"]
        for r in run_once(tmp_path, "run2", rules, state)
        if "otel_fim.scan.change" in r["attributes"]
    ]
    reported = first + second
    assert len(reported) == len(set(reported)), "a file was reported twice"
    assert set(reported) == {str(f) for f in files}
