from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "plugin-example"
EXAMPLE_DIST = "otel-fim-example-plugin"


def _installed() -> bool:
    try:
        importlib.metadata.distribution(EXAMPLE_DIST)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="session")
def example_plugin(tmp_path_factory) -> Iterator[str]:
    """pip-install examples/plugin-example into this venv (from a copy: the build leaves files
    behind); uninstalled again at the end unless it was installed before."""
    was_installed = _installed()
    src = tmp_path_factory.mktemp("example") / "plugin-example"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    result = subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", "--force-reinstall", str(src)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    try:
        yield EXAMPLE_DIST
    finally:
        if not was_installed:
            subprocess.run([*pip, "uninstall", "-y", EXAMPLE_DIST], capture_output=True)
