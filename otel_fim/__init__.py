"""otel-fim: eBPF file integrity monitoring exporting OpenTelemetry logs and metrics."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__version__ = "0.1.0"

_CHECKOUT = Path(__file__).resolve().parent.parent


def data_dir(package: str, folder: str) -> Path:
    """The directory of an installed data package (`otel_fim_bpf` is bpf/, `otel_fim_rules` the
    default rules/; see pyproject.toml), else the folder of this source checkout. Never relative to
    the working directory. (Data packages have no __init__.py: their spec's search location is the
    directory; importlib.resources would hand back a MultiplexedPath.)"""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(location).is_dir():
            return Path(location)
    return _CHECKOUT / folder
