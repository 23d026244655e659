from __future__ import annotations

import os

from otel_fim.process.cache import ProcessCache, read_proc, split_argv
from otel_fim.process.containers import Container
from tests.factories import Clock, S, process_cache, process_record


def test_chain_of_exited_processes() -> None:
    c = process_cache()
    c.on_exec(process_record(10, 1, "runner", 1 * S, "/usr/bin/python3", argv=["python3", "-m", "pytest"]))
    c.on_fork(process_record(11, 10, "runner", 2 * S))
    c.on_exec(
        process_record(11, 10, "bash", 2 * S, "/usr/bin/bash", argv=["bash", "-c", "x"], exec_boot_ns=3 * S)
    )
    c.on_fork(process_record(12, 11, "bash", 4 * S))
    c.on_exec(process_record(12, 11, "sh", 4 * S, "/usr/bin/sh", argv=["sh", "-c", "y"], exec_boot_ns=5 * S))
    for pid in (12, 11):
        c.on_exit(pid, 6 * S)
    sh = c.get(12, 5 * S + 1)
    assert sh is not None and sh.exited and sh.argv == ["sh", "-c", "y"]
    chain = c.ancestors(sh)
    assert [(a.pid, a.comm, a.exited) for a in chain] == [(11, "bash", True), (10, "runner", False)]
    assert c.ancestors(sh, max_depth=1) == chain[:1]


def test_fork_inherits_the_parents_image() -> None:
    c = process_cache()
    c.on_exec(process_record(10, 1, "python3", S, "/usr/bin/python3", argv=["python3", "a.py"]))
    c.on_fork(process_record(11, 10, "python3", 2 * S))
    child = c.get(11)
    assert child is not None
    assert (child.executable, child.argv, child.source) == ("/usr/bin/python3", ["python3", "a.py"], "exec")


def test_event_read_after_a_later_exec_gets_the_earlier_image() -> None:
    c = process_cache()
    c.on_exec(process_record(20, 1, "sh", S, "/bin/sh", argv=["sh"], exec_boot_ns=S))
    c.on_exec(process_record(20, 1, "true", S, "/bin/true", argv=["true"], exec_boot_ns=5 * S))
    assert c.get(20, 3 * S).executable == "/bin/sh"
    assert c.get(20, 6 * S).executable == "/bin/true"
    assert c.get(20).executable == "/bin/true"


def test_previous_images_are_bounded() -> None:
    c = process_cache()
    for i in range(10):
        c.on_exec(process_record(20, 1, f"p{i}", S, f"/bin/p{i}", exec_boot_ns=(i + 1) * S))
    depth, r = 0, c.get(20)
    while r is not None:
        depth, r = depth + 1, r.previous
    assert depth == 4  # the current image and 3 before it


def test_pid_reuse() -> None:
    c = process_cache()
    c.on_exec(process_record(30, 1, "old-parent", S, "/bin/old"))
    c.on_fork(process_record(31, 30, "child", 2 * S))
    c.on_exit(30, 3 * S)
    c.on_fork(process_record(30, 1, "new", 10 * S))  # pid 30 reused by a younger process
    child = c.get(31)
    assert c.ancestors(child) == []  # the new pid 30 is not 31's parent
    assert c.get(30, 5 * S) is None  # nor was it running at 5 s


def test_late_exit_of_an_older_process_is_ignored() -> None:
    c = process_cache()
    c.on_fork(process_record(40, 1, "new", 10 * S))
    c.on_exit(40, 3 * S, start_boot_ns=1 * S)
    assert not c.get(40).exited


def test_retention_and_bound() -> None:
    clock = Clock()
    c = process_cache(clock, retention=60, max_exited=3, sweep_interval=10**9)
    for pid in range(100, 106):
        c.on_fork(process_record(pid, 1, "p", S))
    for pid in range(100, 103):
        c.on_exit(pid, 2 * S)
    assert all(pid in c for pid in range(100, 106))
    clock.now += 30
    c.on_exit(103, 3 * S)  # a fourth exited one: the oldest goes past the bound
    assert 100 not in c and 101 in c
    clock.now += 31
    c.prune()
    assert 101 not in c and 102 not in c and 103 in c  # past retention
    clock.now += 60
    c.prune()
    assert 103 not in c and all(pid in c for pid in (104, 105))  # live ones stay


def test_sweep_marks_vanished_processes_exited() -> None:
    clock = Clock()
    c = process_cache(clock)
    c.on_fork(process_record(123456789, 1, "lost-exit", S))
    clock.now += 31
    c.prune()
    assert c.get(123456789).exited


def test_read_proc_self_and_seed() -> None:
    me = read_proc(os.getpid())
    assert me is not None
    assert me.pid == os.getpid() and me.ppid == os.getppid()
    assert me.executable == os.path.realpath("/proc/self/exe")
    assert me.argv is not None and len(me.argv) >= 1
    assert me.euid == os.geteuid() and me.start_boot_ns > 0
    c = ProcessCache()
    assert c.seed_from_proc() > 1
    assert os.getpid() in c and 1 in c
    assert c.get(os.getpid()).source == "proc"
    # the kernel's records win over the seed
    c.on_exec(process_record(os.getpid(), os.getppid(), "x", me.start_boot_ns, "/bin/x"))
    c.seed_from_proc()
    assert c.get(os.getpid()).executable == "/bin/x"


def test_lookup_falls_back_to_proc() -> None:
    c = ProcessCache()
    assert c.get(os.getpid()) is None
    me = c.lookup(os.getpid())
    assert me is not None and me.source == "proc"
    assert c.lookup(2**22 + 12345) is None


def test_read_proc_threads_and_kernel_threads() -> None:
    import threading

    done = threading.Event()
    t = threading.Thread(target=done.wait)
    t.start()
    try:
        assert read_proc(t.native_id) is None  # a thread id is not a process
    finally:
        done.set()
        t.join()
    kthreadd = read_proc(2)
    if kthreadd is not None:  # in a pid namespace 2 may be anything
        assert kthreadd.executable is None or kthreadd.comm != "kthreadd"


def test_split_argv() -> None:
    assert split_argv(b"sh\0-c\0echo x\0") == ["sh", "-c", "echo x"]
    assert split_argv(b"a\0\0b\0") == ["a", "", "b"]
    assert split_argv(b"trunc\0ated") == ["trunc", "ated"]
    assert split_argv(b"\xff\0") == ["\udcff"]


def test_container_kept_on_record() -> None:
    c = process_cache()
    c.on_exec(process_record(50, 1, "sh", S, "/bin/sh", container=Container("a" * 64, "docker")))
    assert c.get(50).container == Container("a" * 64, "docker")


def test_fork_record_read_after_the_childs_exec_and_exit() -> None:
    """The parent writes the fork record after the child started running: on another CPU the
    child may exec and even exit first."""
    c = process_cache()
    c.on_exec(process_record(10, 1, "bash", S, "/usr/bin/bash", argv=["bash"]))
    c.on_exec(
        process_record(11, 10, "sh", 2 * S, "/usr/bin/sh", argv=["sh", "-c", "x"], exec_boot_ns=2 * S + 5)
    )
    c.on_fork(process_record(11, 10, "bash", 2 * S))
    assert c.get(11).executable == "/usr/bin/sh"
    c.on_exec(process_record(12, 10, "true", 3 * S, "/bin/true", argv=["true"], exec_boot_ns=3 * S + 5))
    c.on_exit(12, 3 * S + 9, 0, 3 * S)
    c.on_fork(process_record(12, 10, "bash", 3 * S))
    assert c.get(12).exited and c.get(12).executable == "/bin/true"
