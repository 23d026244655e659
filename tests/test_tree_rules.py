"""House rules of the test tree, read from the source with `ast`:

- no file in tests/ or bench/ imports a test module (`test_*`) or a conftest: shared code lives in
  tests/support/, synthetic data in tests/factories.py, fixtures reach tests by name;
- no file imports a tests/ helper by a bare name that only works because pytest put its directory
  on sys.path (`from rules_helpers import ...`);
- an `Event` is built by hand only in tests/factories.py, and no other `make_event` is defined;
- every file under tests/ that is not a test, a conftest or a package marker is in tests/support/
  (or is tests/factories.py).
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = ("tests", "bench")
FACTORY = "tests/factories.py"
SUPPORT = "tests/support/"
BUILDER_NAME = re.compile(r"_?make_events?")
THIS = "tests/test_tree_rules.py"


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def module_name(path: str) -> str:
    """`tests/export/test_x.py` -> `tests.export.test_x`; a package's `__init__.py` -> the package."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, path: str) -> str:
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(tree: ast.AST, path: str) -> Iterator[tuple[int, list[str]]]:
    """(line, names) per imported module: the module first, and for `from m import a` also `m.a`
    (which may be a submodule). Scripts kept in string constants (run in a subprocess) import
    things too: theirs are reported at the string's line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, [alias.name]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, path)
            yield node.lineno, [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import " in node.value:
            script = _parse_script(node.value)
            if script is None:
                continue
            for _, names in imports(script, path):
                yield node.lineno, names


def _parse_script(text: str) -> ast.Module | None:
    """A string that is Python code, or a str.format template of it (`{root!r}` placeholders)."""
    text = textwrap.dedent(text)
    for candidate in (text, re.sub(r"\{[^{}]*\}", "_", text)):
        try:
            return ast.parse(candidate)
        except SyntaxError:
            continue
    return None


def _forbidden(name: str) -> str | None:
    for part in name.split("."):
        if part.startswith("test_"):
            return f"imports the test module {name!r}: move what it shares to {SUPPORT} or {FACTORY}"
        if part == "conftest":
            return f"imports {name!r}: fixtures reach tests by name, shared code goes to {SUPPORT}"
    return None


def import_violations(path: str, source: str, bare_names: set[str], modules: set[str]) -> list[Violation]:
    """`bare_names`: modules importable without their package only because pytest puts their
    directory on sys.path; they must be imported as `tests.<package>.<name>`. `modules`: the
    modules of tests/ and bench/, which every import of `tests.`/`bench.` must name."""
    found = []
    for line, names in imports(ast.parse(source), path):
        for name in names:
            what = _forbidden(name)
            if what is None and name.split(".")[0] in bare_names:
                what = f"imports {name!r} through sys.path: import it as a `tests.` module"
            if what is not None:
                break
        if what is None and names[0].split(".")[0] in TREES and names[0] not in modules:
            what = f"imports {names[0]!r}, which does not exist (moved?)"
        if what is not None:
            found.append(Violation(path, line, what))
    return found


def builder_violations(path: str, source: str) -> list[Violation]:
    """`Event(...)` calls and `make_event` definitions outside the factory."""
    if path == FACTORY:
        return []
    tree = ast.parse(source)
    classes: set[str] = set()  # names bound to otel_fim.event.Event
    modules: set[str] = set()  # names bound to the otel_fim.event module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "otel_fim.event":
            classes |= {a.asname or a.name for a in node.names if a.name == "Event"}
        elif isinstance(node, ast.ImportFrom) and node.module == "otel_fim":
            modules |= {a.asname or a.name for a in node.names if a.name == "event"}
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.name == "otel_fim.event" and a.asname}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and BUILDER_NAME.fullmatch(node.name):
            found.append(Violation(path, node.lineno, f"defines {node.name}(): use {FACTORY}"))
        elif isinstance(node, ast.Call) and _is_event_class(node.func, classes, modules):
            found.append(Violation(path, node.lineno, f"builds an Event by hand: use {FACTORY}"))
    return found


def _is_event_class(func: ast.expr, classes: set[str], modules: set[str]) -> bool:
    if isinstance(func, ast.Name):
        return func.id in classes
    if isinstance(func, ast.Attribute) and func.attr == "Event":
        return ast.unparse(func.value) in modules | {"otel_fim.event"}
    return False


def misplaced_helper(path: str) -> Violation | None:
    name = path.rsplit("/", 1)[-1]
    if not path.startswith("tests/") or path == FACTORY or path.startswith(SUPPORT):
        return None
    if name.startswith("test_") or name in ("conftest.py", "__init__.py"):
        return None
    return Violation(path, 1, f"shared test code outside {SUPPORT}: move it there (or into {FACTORY})")


def tree_files() -> dict[str, str]:
    """Every Python file of tests/ and bench/, by path relative to the repository."""
    return {
        p.relative_to(ROOT).as_posix(): p.read_text()
        for tree in TREES
        for p in sorted((ROOT / tree).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def bare_module_names(paths: list[str]) -> set[str]:
    """The files of directories without `__init__.py`: pytest puts such a directory on sys.path."""
    packages = {p.rsplit("/", 1)[0] for p in paths if p.endswith("/__init__.py")}
    return {p.rsplit("/", 1)[1].removesuffix(".py") for p in paths if p.rsplit("/", 1)[0] not in packages}


def check(files: dict[str, str]) -> list[Violation]:
    bare = bare_module_names(list(files))
    modules = {module_name(p) for p in files}
    found: list[Violation] = []
    for path, source in files.items():
        found += import_violations(path, source, bare, modules)
        found += builder_violations(path, source)
        if (v := misplaced_helper(path)) is not None:
            found.append(v)
    return sorted(found)


# -- the tree as it is ------------------------------------------------------------------------------


def test_the_test_tree_keeps_its_house_rules() -> None:
    files = tree_files()
    del files[THIS]  # its examples below break every rule on purpose
    # the walk saw the tree (a wrong ROOT would find nothing and pass)
    assert FACTORY in files and "tests/support/agent_harness.py" in files and "bench/bench_rules.py" in files
    assert len([p for p in files if p.rsplit("/", 1)[-1].startswith("test_")]) >= 30
    violations = check(files)
    assert not violations, "\n".join(map(str, violations))


# -- the checker finds what it forbids ------------------------------------------------------------

BAD = {
    "tests/process/test_a.py": textwrap.dedent(
        """
        from tests.process.test_cache import S
        from tests.process import test_cache
        from .conftest import ProcSensor
        from rules_helpers import ruleset
        import tests.kernel.test_paths as paths
        from otel_fim.event import Event as Ev

        def _make_event(path):
            return Ev(path=path)

        SCRIPT = '''
            from tests.export.conftest import MATCHES
        '''
        TEMPLATE = '''
            sys.path.insert(0, {root!r})
            from tests.process.test_cache import S
        '''

        def test_x():
            from .receiver import Rotel
        """
    ),
    "tests/export/receiver.py": "import otel_fim.event as ev\nE = ev.Event()\n",
    "bench/x.py": "from otel_fim import event\n\ndef make_events():\n    return [event.Event()]\n",
    "tests/rules/rules_helpers.py": "",
}
GOOD = {
    FACTORY: "from otel_fim.event import Event\n\ndef make_event():\n    return Event()\n",
    "tests/support/kernel_harness.py": "import threading\n\nDONE = threading.Event()\n",
    "tests/export/test_b.py": "from tests.factories import make_event\nfrom tests.support import plugins\n",
    "tests/export/conftest.py": "from tests.support.otlp_receiver import Rotel\n",
    "tests/support/__init__.py": "",
    "tests/support/otlp_receiver.py": "",
    "tests/support/plugins.py": "",
}


def test_checker_reports_each_broken_rule_and_nothing_else() -> None:
    got = [(v.path, v.line, v.what.split(":")[0]) for v in check(BAD | GOOD)]
    assert got == [
        ("bench/x.py", 3, "defines make_events()"),
        ("bench/x.py", 4, "builds an Event by hand"),
        ("tests/export/receiver.py", 1, f"shared test code outside {SUPPORT}"),
        ("tests/export/receiver.py", 2, "builds an Event by hand"),
        ("tests/process/test_a.py", 2, "imports the test module 'tests.process.test_cache'"),
        ("tests/process/test_a.py", 3, "imports the test module 'tests.process.test_cache'"),
        ("tests/process/test_a.py", 4, "imports 'tests.process.conftest'"),
        ("tests/process/test_a.py", 5, "imports 'rules_helpers' through sys.path"),
        ("tests/process/test_a.py", 6, "imports the test module 'tests.kernel.test_paths'"),
        ("tests/process/test_a.py", 9, "defines _make_event()"),
        ("tests/process/test_a.py", 10, "builds an Event by hand"),
        ("tests/process/test_a.py", 12, "imports 'tests.export.conftest'"),  # in the SCRIPT string
        ("tests/process/test_a.py", 15, "imports the test module 'tests.process.test_cache'"),  # TEMPLATE
        ("tests/process/test_a.py", 21, "imports 'tests.process.receiver', which does not exist (moved?)"),
        ("tests/rules/rules_helpers.py", 1, f"shared test code outside {SUPPORT}"),
    ]
