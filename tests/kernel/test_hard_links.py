"""Every name of a watched file: a hard link to a file in a watched directory or tree, made before
the agent started (or while it runs), is a way to write the watched file; such a write is reported
under the watched name with the name used (`otel_fim.file.accessed_path`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from otel_fim.kernel.linked_files import scan_linked
from tests.support.agent_harness import records, start_agent, stop_agent, wait_records
from tests.support.kernel_harness import in_child

RULES = """
version: 1
rules:
  - id: watched_dir
    expression: fim.write.file.path =~ "{d}/watched/*"
    severity: high
  - id: watched_tree
    expression: fim.write.file.path =~ "{d}/tree/**"
    severity: high
"""


def accessed(r: dict) -> str | None:
    return r["attributes"].get("otel_fim.file.accessed_path")


def append(path: Path) -> None:
    with open(path, "a") as f:
        f.write("x\n")


def setup_tree(d: Path) -> Path:
    for sub in ("watched", "tree/a/b", "elsewhere"):
        (d / sub).mkdir(parents=True)
    (d / "watched" / "secret").write_text("s\n")
    (d / "watched" / "other").write_text("o\n")
    (d / "tree" / "a" / "b" / "deep.conf").write_text("c\n")
    (d / "elsewhere" / "unrelated").write_text("u\n")
    policy = d / "rules.yaml"
    policy.write_text(RULES.format(d=d))
    return policy


def by_accessed(out: Path, accessed: Path) -> list[dict]:
    return [r for r in records(out) if r["attributes"].get("otel_fim.file.accessed_path") == str(accessed)]


@pytest.mark.kernel
def test_write_through_a_link_made_before_start_is_reported_under_the_watched_name(tmp_path: Path) -> None:
    d = tmp_path / "fs"
    policy = setup_tree(d)
    link = d / "elsewhere" / "innocent"
    deep_link = d / "elsewhere" / "also-innocent"
    os.link(d / "watched" / "secret", link)  # before the agent starts
    os.link(d / "tree" / "a" / "b" / "deep.conf", deep_link)
    proc, out = start_agent(tmp_path, "--rules", str(policy))
    try:
        writer = in_child(lambda: append(link))
        deep_writer = in_child(lambda: append(deep_link))
        quiet = in_child(lambda: append(d / "elsewhere" / "unrelated"))
        assert wait_records(out, lambda r: accessed(r) == str(link))
        assert wait_records(out, lambda r: accessed(r) == str(deep_link))
    finally:
        stop_agent(proc)
    (record,) = by_accessed(out, link)
    assert record["attributes"]["file.path"] == str(d / "watched" / "secret")
    assert record["attributes"]["security_rule.name"] == "watched_dir"
    assert record["attributes"]["process.pid"] == writer
    (deep,) = by_accessed(out, deep_link)
    assert deep["attributes"]["file.path"] == str(d / "tree" / "a" / "b" / "deep.conf")
    assert deep["attributes"]["security_rule.name"] == "watched_tree"
    assert deep["attributes"]["process.pid"] == deep_writer
    assert not [r for r in records(out) if r["attributes"]["process.pid"] == quiet]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["filter"]["linked_inodes"] == 2
    assert stats["filter"]["linked_scan_truncated"] == 0
    # The kernel let the link through by inode: the unrelated file was dropped there.
    assert stats["kernel"]["open"]["approver_dropped"] >= 1


@pytest.mark.kernel
def test_links_made_and_removed_while_running_are_followed(tmp_path: Path) -> None:
    """The 5 s inode refresh keeps the approvers exact: a new link is approved, a removed one is
    dropped (the file has a single name again)."""
    d = tmp_path / "fs"
    policy = setup_tree(d)
    old_link = d / "elsewhere" / "old"
    os.link(d / "watched" / "secret", old_link)
    proc, out = start_agent(tmp_path, "--rules", str(policy))
    try:
        old_link.unlink()
        new_link = d / "elsewhere" / "new"
        os.link(d / "watched" / "other", new_link)
        time.sleep(6)  # one refresh (INODE_REFRESH_S = 5)
        writer = in_child(lambda: append(new_link))
        found = wait_records(out, lambda r: accessed(r) == str(new_link))
    finally:
        stop_agent(proc)
    assert found and found[0]["attributes"]["file.path"] == str(d / "watched" / "other")
    assert found[0]["attributes"]["process.pid"] == writer
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["filter"]["linked_inodes"] == 1  # `secret` has one name again: no longer listed


def test_scan_is_bounded_and_says_so(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"f{i}").write_text("")
        os.link(tmp_path / f"f{i}", tmp_path / f"g{i}")
    full = scan_linked([(str(tmp_path), False, 1)])
    assert len(full.files) == 10 and not full.truncated
    assert full.scanned == 20
    capped = scan_linked([(str(tmp_path), False, 1)], max_linked=3)
    assert len(capped.files) == 3 and capped.truncated
    few = scan_linked([(str(tmp_path), False, 1)], max_scanned=5)
    assert few.scanned == 5 and few.truncated


def test_scan_merges_a_directory_reached_twice_and_skips_single_names(tmp_path: Path) -> None:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "single").write_text("")
    (tmp_path / "real" / "sub" / "deep").write_text("")
    os.link(tmp_path / "real" / "sub" / "deep", tmp_path / "deep-link")
    (tmp_path / "alias").symlink_to(tmp_path / "real")  # like /bin -> /usr/bin
    scan = scan_linked([(str(tmp_path / "real"), False, 1), (str(tmp_path / "alias"), True, 2)])
    st = os.stat(tmp_path / "real" / "sub" / "deep")
    assert list(scan.files) == [(st.st_dev, st.st_ino)]  # the one linked file, found once
    assert scan.files[(st.st_dev, st.st_ino)].mask == 3
