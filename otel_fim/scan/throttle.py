"""A token bucket for scan I/O: bytes read and files looked at per second.

A scan must not hurt the host it protects: it reads at most `bytes_per_s` and stats at most
`files_per_s`, sleeping when it is ahead. A burst of one second's worth is allowed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Bucket:
    rate: float  # units per second; 0: unlimited
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.rate

    def delay(self, amount: float) -> float:
        """Take `amount`; return how long to sleep to stay within the rate."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Throttle:
    def __init__(self, bytes_per_s: float, files_per_s: float, stop: threading.Event | None = None) -> None:
        self.bytes = Bucket(bytes_per_s)
        self.files = Bucket(files_per_s)
        self.stop = stop or threading.Event()
        self.slept = 0.0  # seconds spent waiting (reported with each scan)

    def file(self) -> None:
        self._sleep(self.files.delay(1))

    def read(self, n: int) -> None:
        self._sleep(self.bytes.delay(n))

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept += seconds
            self.stop.wait(seconds)  # a stopping agent does not wait for the throttle
