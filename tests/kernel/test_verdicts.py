"""Kernel-learned verdicts (bpf/verdicts.h): a file the kernel walked and found unwatched is dropped
after one lookup next time -- and whatever can make it watched (a rename of it or of a directory
above it into a watched tree, a rule reload, a hard link, a bind mount) is still detected.

The machine is shared: other processes' renames and unlinks bump the verdict revision at any time,
so learning retries; a test only relies on a verdict after it saw one drop an event."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_fim.event import EventType
from tests.support.filtered_agent import RULES, FilteredAgent, apply_rules, filtered_agent, write
from tests.support.kernel_harness import in_child, kernel_unavailable

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilteredAgent]:
    yield from filtered_agent(tmp_path_factory)


WRITES_PER_TRY = 50


def hits(agent: FilteredAgent) -> int:
    return agent.sensor.verdict_counters()["hit"]


def learn_verdict(agent: FilteredAgent, path: Path) -> None:
    """Write-open `path` (unwatched) until a cached verdict drops one of the writes in the kernel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    for _ in range(5):
        before = hits(agent)
        pid = in_child(lambda: [write(path) for _ in range(WRITES_PER_TRY)])
        if hits(agent) > before:
            agent.settle()
            assert agent.delivered_for(pid) == [], "an unwatched file reached user space"
            return
    pytest.fail(f"no verdict was ever used for {path}")


def test_verdict_drops_repeated_writes_of_an_unwatched_file(agent: FilteredAgent) -> None:
    target = agent.d / "nottree" / "v-repeat" / "f"
    learned = agent.sensor.verdict_counters()["learned"]
    dropped = agent.counter("approver_dropped")
    learn_verdict(agent, target)
    assert agent.sensor.verdict_counters()["learned"] > learned
    assert agent.counter("approver_dropped") > dropped  # a verdict drop counts as approver_dropped


def test_rename_of_a_cached_file_into_a_watched_tree_is_detected(agent: FilteredAgent) -> None:
    cached = agent.d / "nottree" / "v-file" / "f"
    learn_verdict(agent, cached)
    moved = agent.d / "tree" / "v-file-moved"
    os.rename(cached, moved)
    pid = in_child(lambda: write(moved))
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))


def test_rename_of_a_directory_above_a_cached_file_into_a_watched_tree_is_detected(
    agent: FilteredAgent,
) -> None:
    directory = agent.d / "nottree" / "v-dir"
    learn_verdict(agent, directory / "inner" / "f")
    moved = agent.d / "tree" / "v-dir"
    os.rename(directory, moved)  # the file keeps its inode, dentry and name: only its path changes
    pid = in_child(lambda: write(moved / "inner" / "f"))
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
    event = next(e for e, _ in agent.matched if e.process.pid == pid)
    assert event.file.path == str(moved / "inner" / "f")


WATCH_IT = (
    '  - id: newly\n    expression: fim.write.file.path =~ "{d}/nottree/v-reload/**"\n    severity: high\n'
)


@pytest.fixture
def restore_rules(agent: FilteredAgent) -> Iterator[None]:
    yield
    apply_rules(agent, RULES, "rules.yaml")


@pytest.mark.usefixtures("restore_rules")
def test_rule_reload_that_watches_a_cached_file_is_detected(agent: FilteredAgent) -> None:
    cached = agent.d / "nottree" / "v-reload" / "f"
    learn_verdict(agent, cached)
    revision = agent.sensor.filter.verdict_revision()
    apply_rules(agent, RULES + WATCH_IT, "verdict-reload.yaml")
    assert agent.sensor.filter.verdict_revision() > revision
    pid = in_child(lambda: write(cached))
    assert agent.wait(lambda: "newly" in agent.matched_rules(pid))


def test_hard_link_of_a_cached_file_to_a_watched_name_is_detected(agent: FilteredAgent) -> None:
    """`exact` watches one path; the file linked there is written through its old, unwatched name."""
    cached = agent.d / "nottree" / "v-link" / "f"
    learn_verdict(agent, cached)
    secret = agent.d / "exact" / "secret"
    os.replace(secret, agent.d / "exact" / "secret.before-link")
    try:
        os.link(cached, secret)
        agent.sensor.filter.refresh_inodes()  # as the agent does every few seconds
        pid = in_child(lambda: write(cached))
        assert agent.wait(lambda: agent.delivered_for(pid)), "dropped in the kernel"
        assert agent.wait(lambda: "exact" in agent.matched_rules(pid))
        event = next(e for e, _ in agent.matched if e.process.pid == pid)
        assert event.extra["otel_fim.file"]["accessed_path"] == str(cached)
    finally:
        os.replace(agent.d / "exact" / "secret.before-link", secret)
        agent.sensor.filter.refresh_inodes()


def test_bind_mount_of_a_cached_file_into_a_watched_tree_is_detected(agent: FilteredAgent) -> None:
    directory = agent.d / "nottree" / "v-bind"
    learn_verdict(agent, directory / "f")
    mnt = agent.d / "tree" / "v-bind-mnt"
    mnt.mkdir()
    subprocess.run(["mount", "--bind", str(directory), str(mnt)], check=True)
    try:
        pid = in_child(lambda: write(mnt / "f"))
        assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_move_mount_of_a_cached_file_into_a_watched_tree_is_detected(agent: FilteredAgent) -> None:
    """The file keeps its mount (same mount id, same dentries, same root): only the mount moves, so
    the verdict's key still fits. The mount syscall's exit makes every verdict stale."""
    src = agent.d / "nottree" / "v-move"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(src)], check=True)
    dst = agent.d / "tree" / "v-move-dst"
    dst.mkdir()
    try:
        learn_verdict(agent, src / "f")
        subprocess.run(["mount", "--move", str(src), str(dst)], check=True)
        pid = in_child(lambda: write(dst / "f"))
        assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
        event = next(e for e, _ in agent.matched if e.process.pid == pid)
        assert (event.type, event.file.path) == (EventType.OPEN, str(dst / "f"))
    finally:
        subprocess.run(["umount", "-l", str(dst)], check=False)
        subprocess.run(["umount", "-l", str(src)], check=False)


def test_a_chrooted_process_is_not_hidden_by_a_verdict_learned_outside(agent: FilteredAgent) -> None:
    """Paths stop at the process root: the same file is `<root>/<d>/tree/f` outside (unwatched) and
    `<d>/tree/f` inside the chroot (watched). A verdict is scoped to the root it was learned from."""
    root = agent.d / "nottree" / "v-root"
    inner = Path(str(root) + str(agent.d)) / "tree" / "f"
    learn_verdict(agent, inner)
    seen_inside = agent.d / "tree" / "f"

    def chrooted_write() -> None:
        os.chroot(root)
        os.chdir("/")
        write(seen_inside)

    pid = in_child(chrooted_write)
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
    event = next(e for e, _ in agent.matched if e.process.pid == pid)
    assert event.file.path == str(seen_inside)


URING_RENAME = r"""
#include <liburing.h>
#include <fcntl.h>
#include <stdio.h>
int main(int argc, char **argv)
{
    struct io_uring ring;
    if (argc != 3 || io_uring_queue_init(4, &ring, 0) < 0)
        return 2;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_renameat(sqe, AT_FDCWD, argv[1], AT_FDCWD, argv[2], 0);
    io_uring_submit(&ring);
    struct io_uring_cqe *cqe;
    if (io_uring_wait_cqe(&ring, &cqe) < 0)
        return 3;
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    io_uring_queue_exit(&ring);
    return res == 0 ? 0 : 4;
}
"""


@pytest.fixture(scope="module")
def uring_rename(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A program that renames with io_uring (IORING_OP_RENAMEAT): no rename syscall is made."""
    d = tmp_path_factory.mktemp("uring")
    (d / "rename.c").write_text(URING_RENAME)
    built = subprocess.run(
        ["gcc", "-O1", "-o", str(d / "rename"), str(d / "rename.c"), "-luring"],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        kernel_unavailable(
            f"cannot build the io_uring helper (apt-get install liburing-dev): {built.stderr[-300:]}"
        )
    return d / "rename"


def test_io_uring_rename_of_a_cached_file_into_a_watched_tree_is_detected(
    agent: FilteredAgent, uring_rename: Path
) -> None:
    cached = agent.d / "nottree" / "v-uring" / "f"
    learn_verdict(agent, cached)
    moved = agent.d / "tree" / "v-uring-moved"
    subprocess.run([str(uring_rename), str(cached), str(moved)], check=True)
    assert moved.exists() and not cached.exists()
    pid = in_child(lambda: write(moved))
    assert agent.wait(lambda: "ancestor" in agent.matched_rules(pid))
