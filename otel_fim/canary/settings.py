"""`canary:` in the agent's config file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CanaryConfig:
    enabled: bool = True  # only with rules: without rules every event is reported anyway
    interval: float = 60.0  # seconds between two canary writes
    deadline: float = 10.0  # seconds the write may take to reach the outputs (and OTLP to deliver)
