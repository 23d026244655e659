"""Run the real sensor in-process and find the events a test's own child process caused."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from otel_fim.event import Event, EventType
from otel_fim.kernel.sensor import Sensor, SensorOptions

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15


def kernel_unavailable(reason: str) -> None:
    """Skip a kernel test that cannot run here; under CI (`CI` set) fail it instead, so a broken
    sensor can never pass as "skipped"."""
    if os.environ.get("CI"):
        pytest.fail(f"kernel test cannot run under CI: {reason}")
    pytest.skip(reason)


@dataclass
class EventCollector:
    sensor: Sensor
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def add(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sensor.poll(50)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join()
        self.sensor.stop()

    def of_pid(self, pid: int) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.process.pid == pid]

    def wait_for(
        self, pid: int, predicate: Callable[[Event], bool] = lambda e: True, timeout: float = 5.0
    ) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.of_pid(pid):
                if predicate(event):
                    return event
            time.sleep(0.02)
        seen = "\n  ".join(
            f"{e.type.value} {e.syscall} {e.file.path!r} ret={e.retval}" for e in self.of_pid(pid)
        )
        raise AssertionError(f"no matching event from pid {pid} within {timeout}s; its events:\n  {seen}")

    def wait_type(
        self, pid: int, etype: EventType, syscall: str | None = None, path: str | None = None
    ) -> Event:
        return self.wait_for(
            pid,
            lambda e: (
                e.type is etype
                and (syscall is None or e.syscall == syscall)
                and (path is None or e.file.path == path)
            ),
        )


def start_collector() -> EventCollector:
    # agent_pid=0: the test process is not the agent, its children must be seen.
    collector = EventCollector(sensor=None)  # type: ignore[arg-type]
    sensor = Sensor(collector.add, SensorOptions(agent_pid=0))
    collector.sensor = sensor
    sensor.start()
    collector.thread = threading.Thread(target=collector.run, name="sensor-poll", daemon=True)
    collector.thread.start()
    return collector


def in_child(fn: Callable[[], object], comm: str = "fimtest") -> int:
    """Run fn in a forked child named `comm` that exits at once; returns its pid after it exited.
    The exit status is 0 when fn returned, 1 when it raised."""
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            libc.prctl(PR_SET_NAME, comm.encode(), 0, 0, 0)
            fn()
        except BaseException:
            import traceback

            traceback.print_exc()
            status = 1
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's syscalls raised"
    return pid


def syscall(nr: int, *args: object) -> int:
    """Raw syscall; returns the result or -errno (like the kernel does)."""
    conv = [
        ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) if isinstance(a, int) else a
        for a in args
    ]
    ret = libc.syscall(ctypes.c_long(nr), *conv)
    return ret if ret >= 0 else -ctypes.get_errno()
