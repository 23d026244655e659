"""Memoized record parts: records built from repeated inputs equal records built fresh, and share
no mutable value with each other."""

from __future__ import annotations

from otel_fim.event import AncestorInfo
from otel_fim.export import record
from otel_fim.memo import Memo
from otel_fim.rules.match import Match
from tests.factories import make_event

MATCHES = [Match("r1", "high", "one", {"team": "a"}, "p"), Match("r2", "low", "two", {}, "p")]


def _event(path: str = "/etc/passwd"):
    e = make_event("open", path, comm="sh", pid=200, ppid=1)
    p = e.process
    p.executable, p.argv, p.user_name = "/usr/bin/sh", ["sh", "-c", "x"], "root"
    p.ancestors = [AncestorInfo(1, 0, "init", "/sbin/init", ["init"])]
    return e


def _fresh(event, matches):
    for memo in (record._PATHS, record._PROCESSES, record._MATCHES):
        memo.clear()
    return record.log_record(event, matches)


def _without_uid(rec: dict) -> dict:
    """log.record.uid is new for every record by design; the rest must be equal."""
    return {**rec, "attributes": {k: v for k, v in rec["attributes"].items() if k != "log.record.uid"}}


def test_memoized_record_equals_fresh_record() -> None:
    first = _without_uid(record.log_record(_event(), MATCHES))
    again = _without_uid(record.log_record(_event(), MATCHES))
    assert again == first == _without_uid(_fresh(_event(), MATCHES))
    assert record.log_record(_event("/etc/sh\nadow"), MATCHES)["attributes"]["otel_fim.path.escaped"] is True


def test_records_share_no_lists() -> None:
    a = record.attributes(_event(), MATCHES)
    b = record.attributes(_event(), MATCHES)
    for key, value in a.items():
        if isinstance(value, list):
            assert value is not b[key], key
    a["otel_fim.rule.ids"].append("changed")
    assert record.attributes(_event(), MATCHES)["otel_fim.rule.ids"] == ["r1", "r2"]


def test_changed_process_context_is_not_served_from_the_memo() -> None:
    e = _event()
    record.attributes(e, MATCHES)
    e.process.argv = ["sh", "-c", "y"]
    assert record.attributes(e, MATCHES)["process.command_line"] == "sh -c y"


def test_memo_is_bounded() -> None:
    memo: Memo[int, int] = Memo(3)
    for i in range(10):
        memo.put(i, i)
        assert len(memo) <= 3
    assert memo.get(9) == 9 and memo.get(0) is None
