"""The kernel filter's side of the pipeline (`pipeline.KernelFeedback`): an event that matched no
rule teaches the filter a discarder, and a file's other names (hard links, bind mounts) come from
what the filter watches. Built before the sensor starts; bound to its filter once it exists."""

from __future__ import annotations

from otel_fim.event import Event
from otel_fim.kernel.aliases import AliasResolver
from otel_fim.kernel.kernel_filter import KernelFilter


class FilterFeedback:
    def __init__(self) -> None:
        self._filter: KernelFilter | None = None
        self._resolver = AliasResolver()

    def bind(self, kernel_filter: KernelFilter | None) -> None:
        self._filter = kernel_filter

    def learn(self, event: Event) -> None:
        if self._filter is not None:
            self._filter.learn(event)

    def aliases(self, event: Event) -> list[str]:
        if self._filter is None:
            return []
        self._resolver.watched_files = self._filter.watched_files
        return self._resolver.aliases(event)
