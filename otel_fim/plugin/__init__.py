"""The plugin system: pluggy markers and project name here; the hook specifications in
`hookspecs`, what plugin authors import in `api`, discovery and isolated hook calls in `manager`,
and the queue between the consumer thread and the plugins in `stage`.

Bundled plugins (the repository's top-level `plugins/`, installed as `otel_fim_plugins`) and
third-party plugins are both found through the `otel_fim` entry-point group.
"""

from __future__ import annotations

import pluggy

PROJECT = "otel_fim"  # the pluggy project name and the entry-point group

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]
