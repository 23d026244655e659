"""The in-kernel stage with real rules: every approver kind passes its event and drops a neighbour;
hard links and bind mounts of watched files are caught; discarders are learned and invalidated."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_fim.event import EventType
from tests.support.filtered_agent import RULES, FilteredAgent, apply_rules, filtered_agent, read, write
from tests.support.kernel_harness import in_child

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilteredAgent]:
    yield from filtered_agent(tmp_path_factory)


def test_open_flag_gate_drops_reads_first(agent: FilteredAgent) -> None:
    target = agent.d / "exact" / "secret"
    before = agent.counter("approver_dropped")
    reader = in_child(lambda: read(target))
    writer = in_child(lambda: write(target))
    assert agent.wait(lambda: "exact" in agent.matched_rules(writer))
    agent.settle()
    assert not [e for e in agent.delivered_for(reader) if e.file.path == str(target)]
    assert agent.counter("approver_dropped") > before


@pytest.mark.parametrize(
    ("hit", "neighbour", "rule"),
    [
        ("exact/secret", "exact/secret2", "exact"),
        ("other/target.conf", "other/neighbour.conf", "basename"),
        ("parent/f", "parent2/f", "parent"),
        ("tree/a/b/f", "nottree/a/b/f", "ancestor"),
    ],
)
def test_each_approver_passes_its_event_and_drops_a_neighbour(
    agent: FilteredAgent, hit: str, neighbour: str, rule: str
) -> None:
    for rel in (hit, neighbour):
        (agent.d / rel).parent.mkdir(parents=True, exist_ok=True)
    hit_pid = in_child(lambda: write(agent.d / hit))
    miss_pid = in_child(lambda: write(agent.d / neighbour))
    assert agent.wait(lambda: rule in agent.matched_rules(hit_pid))
    agent.settle()
    assert agent.delivered_for(miss_pid) == [], "the neighbour reached user space: not filtered in kernel"


def test_hard_link_to_watched_file_is_caught(agent: FilteredAgent) -> None:
    alias = agent.d / "elsewhere" / "innocent-name"
    os.link(agent.d / "exact" / "secret", alias)
    agent.sensor.filter.refresh_inodes()
    pid = in_child(lambda: write(alias))
    assert agent.wait(lambda: "exact" in agent.matched_rules(pid))
    event = next(e for e, rules in agent.matched if e.process.pid == pid)
    assert event.file.path == str(agent.d / "exact" / "secret")
    assert event.extra["otel_fim.file"]["accessed_path"] == str(alias)


def test_refresh_follows_a_watched_file_replaced_by_rename(agent: FilteredAgent) -> None:
    secret = agent.d / "exact" / "secret"
    old = os.stat(secret)
    staging = agent.d / "exact" / "secret.new"
    staging.write_text("s2\n")
    os.replace(staging, secret)  # how editors and package managers write: a new inode
    new = os.stat(secret)
    agent.sensor.filter.refresh_inodes()
    kernel_keys = {(k.ino, k.dev) for k in agent.sensor.filter._inodes.keys()}
    dev = (os.major(new.st_dev) << 20) | os.minor(new.st_dev)
    assert (new.st_ino, dev) in kernel_keys
    assert (old.st_ino, dev) not in kernel_keys
    assert agent.sensor.filter.watched_files[(new.st_dev, new.st_ino)] == str(secret)
    assert (old.st_dev, old.st_ino) not in agent.sensor.filter.watched_files


def test_bind_mount_of_watched_directory_is_caught(agent: FilteredAgent) -> None:
    mnt = agent.d / "bind"
    subprocess.run(["mount", "--bind", str(agent.d / "tree"), str(mnt)], check=True)
    try:
        pid = in_child(lambda: write(mnt / "via-bind"))
        assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
        event = next(e for e, rules in agent.matched if e.process.pid == pid)
        assert event.file.path == str(agent.d / "tree" / "via-bind")
        assert event.extra["otel_fim.file"]["accessed_path"] == str(mnt / "via-bind")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_name_based_call_through_a_later_bind_mount_is_caught(agent: FilteredAgent) -> None:
    """No dentry for an unlink by name: the kernel sends it up; user space finds the bind mount
    (made after the agent started) the path runs through, and the watched name behind it."""
    victim = agent.d / "tree" / "victim"
    victim.write_text("x")
    mnt = agent.d / "bind-later"
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(agent.d / "tree"), str(mnt)], check=True)
    try:
        pid = in_child(lambda: os.unlink(mnt / "victim"))
        assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
        event = next(e for e, rules in agent.matched if e.process.pid == pid)
        assert event.type is EventType.UNLINK
        assert event.file.path == str(victim)
        assert event.extra["otel_fim.file"]["accessed_path"] == str(mnt / "victim")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def learn_dir_discarder(agent: FilteredAgent, directory: Path) -> None:
    """`parent/*` over-approves deeper paths (a directory prefix): the first write below reaches user
    space, matches nothing, and teaches the kernel that the whole directory can be discarded. A
    rename anywhere on the host (other processes) invalidates what was learned: then learn again."""
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(5):
        if _learn_once(agent, directory / f"first{attempt}", directory / f"second{attempt}"):
            (directory / "second").write_text("")  # the file the callers move
            return
    pytest.fail("the directory discarder never dropped an event")


DISCARDER_RULES = """
version: 1
rules:
  - id: parent
    expression: fim.write.file.path =~ "{d}/parent/*"
    severity: low
  - id: ancestor
    expression: fim.write.file.path =~ "{d}/tree/**"
    severity: critical
"""


@pytest.fixture
def discarder_rules(agent: FilteredAgent) -> Iterator[None]:
    """Without a rule on basenames alone (a name anywhere could match), whole directories become
    provably unwatched; the original rules come back after the test (a real reload both ways)."""
    apply_rules(agent, DISCARDER_RULES, "discarder-rules.yaml")
    yield
    apply_rules(agent, RULES, "rules.yaml")


def _learn_once(agent: FilteredAgent, first: Path, second: Path) -> bool:
    pushed = agent.sensor.filter.stats.discarders_pushed
    pid = in_child(lambda: write(first))
    assert agent.wait(lambda: agent.delivered_for(pid))
    assert agent.wait(lambda: agent.sensor.filter.stats.discarders_pushed > pushed)
    dropped = agent.counter("discarder_dropped")
    again = in_child(lambda: write(second))
    if not agent.wait(lambda: agent.counter("discarder_dropped") > dropped, timeout=2):
        return False
    agent.settle()
    assert agent.delivered_for(again) == []
    return True


@pytest.mark.usefixtures("discarder_rules")
def test_discarded_directory_renamed_under_watched_one_is_detected(agent: FilteredAgent) -> None:
    sub = agent.d / "parent" / "deep1"
    learn_dir_discarder(agent, sub)
    moved = agent.d / "tree" / "deep1"
    os.rename(sub, moved)
    pid = in_child(lambda: write(moved / "second"))
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))


@pytest.mark.usefixtures("discarder_rules")
def test_file_under_discarded_directory_renamed_into_watched_one_is_detected(agent: FilteredAgent) -> None:
    sub = agent.d / "parent" / "deep2"
    learn_dir_discarder(agent, sub)
    pid = in_child(lambda: os.rename(sub / "second", agent.d / "tree" / "moved"))
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))  # the rename's destination
    writer = in_child(lambda: write(agent.d / "tree" / "moved"))
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(writer))


@pytest.mark.usefixtures("discarder_rules")
def test_rule_reload_clears_discarders(agent: FilteredAgent) -> None:
    sub = agent.d / "parent" / "deep3"
    learn_dir_discarder(agent, sub)
    revision = agent.sensor.filter.revision()
    wider = (
        DISCARDER_RULES
        + '  - id: wider\n    expression: fim.write.file.path =~ "{d}/parent/**"\n    severity: high\n'
    )
    apply_rules(agent, wider, "wider.yaml")
    assert agent.sensor.filter.revision() > revision
    pid = in_child(lambda: write(sub / "third"))
    assert agent.wait(lambda: "wider" in agent.matched_rules(pid))


# -- names looked up in the kernel (bpf/name_lookup.h) -----------------------------------------
# A name-based call (unlink, rename, chmod ... by "/a/b/c") has no dentry at sys_exit: the kernel
# looks its directories up in the dentry cache, so the event is judged in the kernel like one on an
# open file. Every doubt leaves the rest of the name to user space, which must still get it right.


def test_name_lookup_is_compiled_in(agent: FilteredAgent) -> None:
    assert agent.sensor.name_lookup["FIM_NAME_LOOKUP"] == 1, "this kernel's BTF should allow it"


def test_name_based_calls_in_an_unwatched_directory_die_in_kernel(agent: FilteredAgent) -> None:
    base = agent.d / "nottree" / "names" / "deep"
    base.mkdir(parents=True)
    (base / "f1").write_text("x")
    dropped = {t: agent.counter("approver_dropped", t) for t in (EventType.RENAME, EventType.UNLINK)}

    def calls() -> None:
        os.chmod(base / "f1", 0o600)
        os.rename(base / "f1", base / "f2")
        os.mkdir(base / "sub")
        os.rmdir(base / "sub")
        os.unlink(base / "f2")

    pid = in_child(calls)
    agent.settle()
    assert agent.delivered_for(pid) == [], "absolute multi-component names reached user space"
    for etype, before in dropped.items():
        assert agent.counter("approver_dropped", etype) > before


def test_name_based_calls_in_a_watched_directory_are_exact(agent: FilteredAgent) -> None:
    base = agent.d / "tree" / "names" / "deep"
    base.mkdir(parents=True)
    (base / "g1").write_text("x")
    inode = os.stat(base / "g1").st_ino
    pid = in_child(lambda: (os.chmod(base / "g1", 0o600), os.unlink(base / "g1")))
    assert agent.wait(lambda: len([e for e, r in agent.matched if e.process.pid == pid]) == 2)
    chmod, unlink = sorted(
        (e for e, _ in agent.matched if e.process.pid == pid), key=lambda e: e.type is EventType.UNLINK
    )
    assert (chmod.type, chmod.file.path, chmod.file.inode) == (EventType.CHMOD, str(base / "g1"), inode)
    assert (unlink.type, unlink.file.path) == (EventType.UNLINK, str(base / "g1"))


def test_symlinked_directory_in_a_name_is_resolved_in_user_space(agent: FilteredAgent) -> None:
    """The string /…/elsewhere/link/victim says nothing of where the file is: not dropped."""
    (agent.d / "tree" / "victim-sl").write_text("x")
    link = agent.d / "elsewhere" / "to-tree"
    link.symlink_to(agent.d / "tree")
    pid = in_child(lambda: os.unlink(link / "victim-sl"))
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
    event = next(e for e, _ in agent.matched if e.process.pid == pid)
    assert event.file.path == str(agent.d / "tree" / "victim-sl")


def test_chmod_through_a_symlink_to_a_watched_file_is_caught(agent: FilteredAgent) -> None:
    """chmod follows a symlink in the last component: the lookup must not judge the link."""
    link = agent.d / "nottree" / "names-link"
    link.symlink_to(agent.d / "exact" / "secret")
    pid = in_child(lambda: os.chmod(link, 0o640))
    assert agent.wait(lambda: "exact" in agent.matched_rules(pid))


def test_dotdot_in_a_name_is_resolved_in_user_space(agent: FilteredAgent) -> None:
    (agent.d / "tree" / "victim-dd").write_text("x")
    name = f"{agent.d}/nottree/../tree/victim-dd"
    pid = in_child(lambda: os.unlink(name))
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
    event = next(e for e, _ in agent.matched if e.process.pid == pid)
    assert event.file.path == str(agent.d / "tree" / "victim-dd")


@pytest.mark.parametrize(("where", "watched"), [("tree", True), ("nottree", False)])
def test_names_cross_into_a_mount(agent: FilteredAgent, where: str, watched: bool) -> None:
    mnt = agent.d / where / f"tmpfs-{where}"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], check=True)
    try:
        (mnt / "sub").mkdir()
        (mnt / "sub" / "f").write_text("x")
        pid = in_child(lambda: os.unlink(mnt / "sub" / "f"))
        if watched:
            assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
            event = next(e for e, _ in agent.matched if e.process.pid == pid)
            assert event.file.path == str(mnt / "sub" / "f")
        else:
            agent.settle()
            assert agent.delivered_for(pid) == [], "the lookup did not cross the mount"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_lookup_gives_up_in_a_crowded_directory_and_user_space_resolves(agent: FilteredAgent) -> None:
    """Children are scanned newest first, a bounded number: an old entry behind hundreds of newer
    ones is not reached. The event then goes up with the name as passed, and its path is right."""
    crowd = agent.d / "nottree" / "crowd"
    (crowd / "old").mkdir(parents=True)
    (crowd / "old" / "f").write_text("x")
    for i in range(400):
        (crowd / f"new{i}").write_text("")
    agent.sensor._bpf[b"dentry_cache"].clear()  # as right after the agent started
    partial = agent.sensor.lookup_counters()["partial"]
    pid = in_child(lambda: os.unlink(crowd / "old" / "f"))
    assert agent.wait(lambda: agent.delivered_for(pid))
    assert agent.sensor.lookup_counters()["partial"] > partial
    (event,) = agent.delivered_for(pid)
    assert (event.type, event.file.path) == (EventType.UNLINK, str(crowd / "old" / "f"))
    assert agent.matched_rules(pid) == set()


def test_dentry_cache_finds_what_the_scan_cannot_reach(agent: FilteredAgent) -> None:
    """Walked before (the file was created through an open): the cache map finds `old` at once."""
    crowd = agent.d / "nottree" / "crowd-walked"
    (crowd / "old").mkdir(parents=True)
    in_child(lambda: write(crowd / "old" / "f"))  # the open's walk meets crowd-walked/old
    for i in range(400):
        (crowd / f"new{i}").write_text("")
    before = agent.sensor.lookup_counters()
    pid = in_child(lambda: os.unlink(crowd / "old" / "f"))
    agent.settle()
    after = agent.sensor.lookup_counters()
    assert agent.delivered_for(pid) == []
    assert after["cache_hit"] > before["cache_hit"]
