"""systemd's readiness protocol (sd_notify): one datagram per state change on `$NOTIFY_SOCKET`.

With `Type=notify` systemd waits for `READY=1` before it counts the unit as started, so `systemctl
start otel-fim` returns only once the sensor is attached; `STOPPING=1` says the shutdown began;
`WATCHDOG=1` keeps `WatchdogSec=` from restarting a live agent. Without `$NOTIFY_SOCKET` (not run by
systemd) every call does nothing. The protocol is a few lines of stdlib; no library needed.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _address(value: str) -> str | bytes:
    # "@name" is a socket in the abstract namespace: the kernel wants a leading NUL byte instead.
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Sends states to the service manager; a no-op when not started by one."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        self.watchdog_interval = watchdog_interval()

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    def notify(self, *states: str) -> bool:
        """Send `KEY=VALUE` lines in one datagram; True when sent. A failure is logged, never raised:
        a supervisor that went away must not stop the agent."""
        if not self.socket_path:
            return False
        message = "\n".join(states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(_address(self.socket_path))
                sock.sendall(message)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")


def watchdog_interval() -> float | None:
    """Seconds between `WATCHDOG=1` pings: half of `WatchdogSec=` (systemd passes `$WATCHDOG_USEC`,
    and `$WATCHDOG_PID` when the ping must come from one process), or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None
