from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_fim.export.spool import Spool, SpoolError


def test_put_peek_ack_in_order(tmp_path):
    spool = Spool(tmp_path / "s.db")
    for i in range(5):
        spool.put(f"r{i}", severity=9, observed_ns=i)
    batch = spool.peek(3)
    assert [r.payload for r in batch] == ["r0", "r1", "r2"]
    assert spool.depth() == 5  # peek does not remove
    spool.ack([r.id for r in batch])
    assert [r.payload for r in spool.peek(10)] == ["r3", "r4"]
    assert spool.depth() == 2
    assert spool.size_bytes() == 4


def test_survives_reopen(tmp_path):
    path = tmp_path / "state" / "spool.db"
    spool = Spool(path)
    for i in range(3):
        spool.put(f"r{i}", severity=9, observed_ns=i)
    spool.ack([spool.peek(1)[0].id])
    spool.close()
    again = Spool(path)
    assert again.depth() == 2
    assert again.size_bytes() == 4
    assert [r.payload for r in again.peek(10)] == ["r1", "r2"]
    # ids keep growing after reopen, so an old ack can never delete a new row
    again.put("r3", severity=9, observed_ns=3)
    assert again.peek(10)[-1].id > 3


def test_full_evicts_least_severe_oldest_first_and_reports(tmp_path):
    dropped = []
    spool = Spool(tmp_path / "s.db", max_records=3, on_drop=dropped.extend)
    spool.put("crit-old", severity=21, observed_ns=1)
    spool.put("info-old", severity=9, observed_ns=2)
    spool.put("info-new", severity=9, observed_ns=3)
    assert spool.put("high", severity=17, observed_ns=4) == 1
    assert [r.payload for r in dropped] == ["info-old"]
    assert spool.put("crit-new", severity=21, observed_ns=5) == 1
    assert [r.payload for r in dropped] == ["info-old", "info-new"]
    # a low-severity record arriving at a spool full of higher ones is itself the one given up
    assert spool.put("info-late", severity=9, observed_ns=6) == 1
    assert dropped[-1].payload == "info-late"
    assert sorted(r.payload for r in spool.peek(10)) == ["crit-new", "crit-old", "high"]
    assert spool.dropped_total == 3


def test_byte_bound(tmp_path):
    dropped = []
    spool = Spool(tmp_path / "s.db", max_bytes=10, on_drop=dropped.extend)
    spool.put("aaaa", severity=9, observed_ns=1)
    spool.put("bbbb", severity=9, observed_ns=2)
    spool.put("cccc", severity=9, observed_ns=3)
    assert [r.payload for r in dropped] == ["aaaa"]
    assert spool.size_bytes() == 8
    assert spool.depth() == 2


def test_ack_of_evicted_row_is_harmless(tmp_path):
    spool = Spool(tmp_path / "s.db", max_records=2)
    spool.put("a", severity=9, observed_ns=1)
    inflight = spool.peek(1)
    spool.put("b", severity=9, observed_ns=2)
    spool.put("c", severity=9, observed_ns=3)  # evicts "a" while it is in flight
    spool.ack([r.id for r in inflight])
    assert spool.depth() == 2
    assert [r.payload for r in spool.peek(5)] == ["b", "c"]


def test_in_memory_and_bad_options(tmp_path):
    spool = Spool(None)
    spool.put("x", severity=9, observed_ns=1)
    assert spool.depth() == 1
    with pytest.raises(SpoolError):
        Spool(tmp_path / "s.db", max_records=0)
    with pytest.raises(SpoolError):
        Spool(tmp_path / "s.db", synchronous="OFF")


def test_wait_empty_and_not_empty(tmp_path):
    spool = Spool(tmp_path / "s.db")
    assert spool.wait_empty(0.01)
    assert not spool.wait_not_empty(0.01)
    spool.put("x", severity=9, observed_ns=1)
    assert spool.wait_not_empty(0.01)
    assert not spool.wait_empty(0.05)
    threading.Timer(0.05, lambda: spool.ack([r.id for r in spool.peek(10)])).start()
    assert spool.wait_empty(5)


def test_non_utf8_safe_payload(tmp_path):
    spool = Spool(tmp_path / "s.db")
    spool.put('{"p":"\\udcff"}', severity=9, observed_ns=1)  # ASCII JSON of a surrogate-escaped name
    assert spool.peek(1)[0].payload == '{"p":"\\udcff"}'


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.tuples(st.sampled_from(["put", "ack"]), st.integers(1, 5)), max_size=40),
    max_records=st.integers(1, 6),
)
def test_model(ops, max_records):
    """Against a list model: depth, bytes and order stay consistent; every record is delivered or dropped."""
    dropped: list = []
    spool = Spool(None, max_records=max_records, on_drop=dropped.extend)
    put, acked, n = [], [], 0
    for op, arg in ops:
        if op == "put":
            spool.put(f"p{n}", severity=[9, 13, 21][n % 3], observed_ns=n)
            put.append(f"p{n}")
            n += 1
        else:
            batch = spool.peek(arg)
            spool.ack([r.id for r in batch])
            acked += [r.payload for r in batch]
        rest = [r.payload for r in spool.peek(1000)]
        assert spool.depth() == len(rest) <= max_records
        assert spool.size_bytes() == sum(len(p) for p in rest)
        assert rest == sorted(rest, key=lambda p: int(p[1:]))  # FIFO order is kept
    left = [r.payload for r in spool.peek(1000)]
    assert sorted(acked + left + [d.payload for d in dropped]) == sorted(put)
