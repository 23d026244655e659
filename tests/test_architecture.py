"""The house plan holds: no import cycle among otel_fim's modules, and every import runs down the
layers README *Architecture* names (commands -> agent -> wiring -> plugin -> config -> scan |
canary -> pipeline -> process -> kernel | export | provenance -> rules -> the event model).
Type-only imports count too: they are dependencies a reader has to follow all the same."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. Modules of one layer may import each other only within the same package; two
# packages sharing a layer (kernel, export) are independent of each other.
LAYERS: list[tuple[str, ...]] = [
    ("otel_fim", "otel_fim.event", "otel_fim.constants", "otel_fim.memo"),
    ("otel_fim.rules",),
    ("otel_fim.kernel", "otel_fim.export", "otel_fim.provenance"),
    ("otel_fim.process",),
    ("otel_fim.pipeline",),
    ("otel_fim.scan", "otel_fim.canary"),  # the baseline and scans; the liveness canary
    ("otel_fim.config",),
    ("otel_fim.plugin",),
    ("otel_fim.plugin_api",),  # the old import path plugin authors use: a re-export of plugin.api
    ("otel_fim.wiring",),
    ("otel_fim.agent",),
    ("otel_fim.commands",),
    ("otel_fim.__main__",),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "otel_fim").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "otel_fim")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "otel_fim":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the layer entry it belongs to): the longest matching entry wins."""
    best: tuple[int, str] | None = None
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and (
                best is None or len(entry) > len(best[1])
            ):
                best = (index, entry)
    assert best is not None, f"{module} is in no layer: add it to LAYERS and README *Architecture*"
    return best


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_imports_run_down_the_layers() -> None:
    wrong = []
    for module, deps in sorted(graph().items()):
        here, entry = layer_of(module)
        for dep in sorted(deps):
            there, dep_entry = layer_of(dep)
            if there > here or (there == here and dep_entry != entry):
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


def test_the_checks_can_fail() -> None:
    """The two checks above on a made-up graph: a cycle and an upward import are both found."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert layer_of("otel_fim.kernel.sensor")[0] < layer_of("otel_fim.wiring")[0]
    assert layer_of("otel_fim.rules.fields") == (1, "otel_fim.rules")


def test_every_package_is_installed() -> None:
    """pyproject.toml lists the packages by hand (plugins/ is mapped to otel_fim_plugins, which
    rules out automatic discovery): a new package missing there would be absent from the wheel."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "otel_fim").rglob("__init__.py")
    }
    # plus the top-level folders mapped into the distribution (plugins/, bpf/, rules/)
    assert found | set(setuptools["package-dir"]) == set(setuptools["packages"])
