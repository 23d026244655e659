"""The baseline and the scanner on real files (no kernel): what a scan finds, and that it finds it
once."""

from __future__ import annotations

import os
import time
from pathlib import Path

from otel_fim.scan.baseline import BaselineStore
from otel_fim.scan.findings import to_event
from otel_fim.scan.scanner import Change, Scan
from otel_fim.scan.throttle import Throttle
from otel_fim.scan.watched import WatchedSet


def scan(store: BaselineStore, watched: WatchedSet, report: bool = True, **kw) -> list[tuple[Change, str]]:
    found = Scan(store, watched, Throttle(0, 0), 1 << 20, report=report, **kw).run()
    return sorted((f.change, f.path) for f in found)


def tree(tmp_path: Path) -> tuple[Path, WatchedSet]:
    d = tmp_path / "etc"
    (d / "sub").mkdir(parents=True)
    for name in ("a", "b", "c", "sub/deep"):
        (d / name).write_text(f"{name}\n")
    return d, WatchedSet(ancestor_dirs=frozenset({str(d)}))


def test_changes_are_found_once(tmp_path):
    d, watched = tree(tmp_path)
    store = BaselineStore(tmp_path / "state")
    assert scan(store, watched, report=False) == []  # the first scan only records
    assert store.count() == 4
    time.sleep(0.01)
    (d / "a").write_text("changed\n")
    (d / "b").unlink()
    os.chmod(d / "c", 0o4755)
    os.chown(d / "sub/deep", 1, 2)
    (d / "sub/new").write_text("new\n")
    assert scan(store, watched) == sorted(
        [
            (Change.CREATED, str(d / "sub/new")),
            (Change.DELETED, str(d / "b")),
            (Change.MODIFIED, str(d / "a")),
            (Change.MODE_CHANGED, str(d / "c")),
            (Change.OWNER_CHANGED, str(d / "sub/deep")),
        ]
    )
    assert scan(store, watched) == []  # nothing is reported twice
    store.close()
    assert scan(BaselineStore(tmp_path / "state"), watched) == []  # the baseline persists


def test_same_size_rewrite_with_old_mtime_is_found(tmp_path):
    """`touch -r` can put the mtime back; ctime cannot be set, so the content is read again."""
    d, watched = tree(tmp_path)
    store = BaselineStore(tmp_path / "state")
    scan(store, watched, report=False)
    st = os.stat(d / "a")
    (d / "a").write_text("A\n")  # same size
    os.utime(d / "a", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert scan(store, watched) == [(Change.MODIFIED, str(d / "a"))]


def test_replaced_by_rename_is_modified_not_deleted(tmp_path):
    d, watched = tree(tmp_path)
    store = BaselineStore(tmp_path / "state")
    scan(store, watched, report=False)
    (tmp_path / "x").write_text("evil\n")
    os.rename(tmp_path / "x", d / "a")
    assert scan(store, watched) == [(Change.MODIFIED, str(d / "a"))]


def test_a_newly_watched_tree_is_added_quietly(tmp_path):
    """A rule added since the last run is not a pile of `created` findings."""
    d, watched = tree(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x\n")
    store = BaselineStore(tmp_path / "state")
    scan(store, watched, report=False)
    both = WatchedSet(ancestor_dirs=frozenset({str(d), str(other)}))
    assert scan(store, both) == []
    (other / "y").write_text("y\n")
    assert scan(store, both) == [(Change.CREATED, str(other / "y"))]
    # no longer watched: dropped from the baseline, not reported as deleted
    assert scan(store, watched) == []
    assert store.get(str(other / "x")) is None


def test_exact_paths_and_direct_directories(tmp_path):
    d, _ = tree(tmp_path)
    watched = WatchedSet(paths=frozenset({str(d / "a")}), parent_dirs=frozenset({str(d / "sub")}))
    store = BaselineStore(tmp_path / "state")
    scan(store, watched, report=False)
    assert store.count() == 2  # a and sub/deep; not b, c
    (d / "b").write_text("not watched\n")
    (d / "sub/deep").write_text("watched\n")
    assert scan(store, watched) == [(Change.MODIFIED, str(d / "sub/deep"))]


def test_hostile_names_survive(tmp_path):
    d, watched = tree(tmp_path)
    store = BaselineStore(tmp_path / "state")
    scan(store, watched, report=False)
    raw = os.fsencode(str(d)) + b"/new\nline\xff"
    with open(raw, "wb") as f:
        f.write(b"x")
    (found,) = Scan(store, watched, Throttle(0, 0), 1 << 20).run()
    assert os.fsencode(found.path) == raw
    os.unlink(raw)
    assert scan(store, watched) == [(Change.DELETED, os.fsdecode(raw))]


def test_finding_events_carry_the_scan_marker(tmp_path):
    d, watched = tree(tmp_path)
    store = BaselineStore(tmp_path / "state")
    scan(store, watched, report=False)
    (d / "a").write_text("changed\n")
    (finding,) = Scan(store, watched, Throttle(0, 0), 1 << 20).run()
    event = to_event(finding, "startup", (1_000_000_000, 2_000_000_000))
    assert event.type.value == "open" and event.syscall == "scan" and event.process.pid == 0
    attrs = event.extra["otel_fim.scan"]
    assert attrs["change"] == "modified" and attrs["reason"] == "startup"
    assert attrs["window.start"] == "1970-01-01T00:00:01.000Z"
    assert attrs["previous.sha256"] != attrs["current.sha256"]


def test_throttle_limits_the_file_rate(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(60):
        (d / str(i)).write_text("x")
    store = BaselineStore(tmp_path / "state")
    throttle = Throttle(0, 100)  # 100 files/s with a one-second burst: 60 files fit, then ...
    Scan(store, WatchedSet(ancestor_dirs=frozenset({str(d)})), throttle, 1 << 20, report=False).run()
    for i in range(60, 260):
        (d / str(i)).write_text("x")
    throttle = Throttle(0, 100)
    started = time.monotonic()
    list(Scan(store, WatchedSet(ancestor_dirs=frozenset({str(d)})), throttle, 1 << 20).run())
    assert time.monotonic() - started >= 1.4  # 260 files at 100/s after a burst of 100
    assert throttle.slept > 1.0


def test_a_finding_record_replays_with_its_marker(tmp_path):
    """`otel-fim rules test` on the jsonl output: a finding comes back as a finding."""
    from otel_fim.export.record import RecordError, event_from_record, log_record
    from otel_fim.scan.service import Gap, gap_record

    d, watched = tree(tmp_path)
    store = BaselineStore(tmp_path / "state")
    scan(store, watched, report=False)
    os.chmod(d / "c", 0o4755)
    (finding,) = Scan(store, watched, Throttle(0, 0), 1 << 20).run()
    record = log_record(to_event(finding, "startup", (None, 2_000_000_000)))
    assert "process.pid" not in record["attributes"]
    assert record["body"].startswith(f"mode_changed {d / 'c'} (found by a startup scan")
    event = event_from_record(record)
    assert event.extra["otel_fim.scan"]["change"] == "mode_changed" and event.process.uid == -1
    assert event.details.mode == 0o4755
    try:
        event_from_record(gap_record(Gap(1, 2, 3)))
    except RecordError as e:
        assert "otel_fim.coverage.gap is a record about the agent" in str(e)
    else:
        raise AssertionError("an agent record is no file event")
