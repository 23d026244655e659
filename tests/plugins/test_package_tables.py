"""The package plugin's compact path tables answer exactly as the dicts they replace."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from plugins.package import DigestTable, PathTable

paths = st.lists(st.text(st.sampled_from("/ab.é\udcff"), min_size=1, max_size=12), max_size=40, unique=True)


@given(paths, st.lists(st.sampled_from(["dpkg", "bash", "coreutils,libc6"]), min_size=40, max_size=40))
def test_owner_table_agrees_with_a_dict(keys: list[str], owners: list[str]) -> None:
    expected = dict(zip(keys, owners, strict=False))
    table = PathTable(expected.items())
    assert len(table) == len(expected)
    for path, owner in expected.items():
        assert path in table and table[path] == owner and table.get(path) == owner
    assert "/not/there" not in table and table.get("/not/there") is None


@given(paths)
def test_digest_table_agrees_with_a_dict(keys: list[str]) -> None:
    expected = {p: hashlib.md5(p.encode("utf-8", "surrogateescape")).hexdigest() for p in keys}
    if keys:
        expected[keys[0]] = "not-a-digest"  # kept as written
    table = DigestTable(expected.items())
    for path, digest in expected.items():
        assert table.get(path) == digest
    assert table.get("/not/there") is None
