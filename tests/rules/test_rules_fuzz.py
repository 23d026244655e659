"""The policy loader under hostile input: limits give FILE:LINE:COL errors, and random YAML,
random expressions and random bytes only ever produce RuleErrors, never another exception."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_fim.commands import main
from otel_fim.rules.errors import PolicyError, RuleError
from otel_fim.rules.limits import MAX_DEPTH, MAX_EXPRESSION_CHARS, MAX_LIST_ITEMS
from otel_fim.rules.ruleset import RuleSet

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
A = 'open.file.path == "/a"'


def load_error(text: str) -> RuleError:
    with pytest.raises(PolicyError) as info:
        RuleSet.from_text(text, filename="rules/x.yaml")
    return info.value


def rule(expression: str) -> str:
    return "rules:\n  - id: r\n    expression: '" + expression.replace("'", "''") + "'\n"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("(" * 3000 + A + ")" * 3000, f"the expression nests more than {MAX_DEPTH} levels deep"),
        ("!" * 3000 + A, f"the expression nests more than {MAX_DEPTH} levels deep"),
        (" || ".join([A] * 3000), "the expression is"),  # over the size bound first
        (" || ".join([A] * 300), f"the expression nests more than {MAX_DEPTH} levels deep"),
        ("open.flags == " + " | ".join(["1"] * 500), f"the expression nests more than {MAX_DEPTH}"),
        ("open.file.path in [" + ",".join(["1"] * (MAX_LIST_ITEMS + 1)) + "]", "the list has"),
        ("[" * 3000, "the expression ends too early"),  # a syntax error, not a crash
        ("x" * (MAX_EXPRESSION_CHARS + 1), "the expression is"),
    ],
)
def test_expression_limits(expression: str, message: str) -> None:
    err = load_error(rule(expression))
    assert err.file == "rules/x.yaml" and err.line == 3 and err.col >= 18, err.render()[:300]
    assert err.message.startswith(message), err.message[:200]


def test_3000_nested_parentheses_is_an_error_from_rules_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "deep.yaml"
    policy.write_text(rule("(" * 3000 + A + ")" * 3000))
    assert main(["rules", "check", str(policy)]) == 1
    err = capsys.readouterr().err
    assert f"{policy}:3:" in err and "nests more than" in err and "Traceback" not in err


def test_macro_expansion_is_bounded() -> None:
    lines = ["macros:", "  - id: m0", f"    expression: '{A}'"]
    for i in range(1, 30):  # each macro doubles the one before: 2**29 conditions once inlined
        lines += [f"  - id: m{i}", f"    expression: 'm{i - 1} || m{i - 1}'"]
    err = load_error("\n".join(lines) + "\nrules:\n  - id: r\n    expression: m29\n")
    assert "parts once macros are inlined" in err.message and err.line > 0


def test_long_list_macro_is_refused() -> None:
    values = ", ".join(["a"] * (MAX_LIST_ITEMS + 1))
    err = load_error(f"macros:\n  - id: names\n    values: [{values}]\nrules: []\n")
    assert (err.line, err.col) == (3, 13) and err.message.startswith("the list has")


LAUGHS = [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcde", "bcdef", strict=True)]


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("rules: " + "[" * 5000 + "]" * 5000, "nested more than 64 levels deep", 1),
        ("macros: &a\n  - *a\n", "alias *a refers to a node that contains it", 2),
        (
            "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(LAUGHS) + "rules: []\n",
            "the document expands to more than",
            6,
        ),
    ],
)
def test_yaml_limits(text: str, message: str, line: int) -> None:
    err = load_error(text)
    assert err.message.startswith(message) and err.line == line, err.render()[:300]


def test_policy_file_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\nrules: []\n")
    with pytest.raises(PolicyError) as info:
        RuleSet.load([big])
    assert info.value.file == str(big) and "larger than" in info.value.message


# --- fuzzing ---------------------------------------------------------------------------------------

FIELDS = ["open.file.path", "open.flags", "process.comm", "fim.write.file.path", "container.id", "unlink.x"]
TOKENS = [
    *FIELDS, "O_CREAT", "S_ISUID", "m0", "names", "==", "!=", "<", ">=", "=~", "!~", "in", "not in", "&&",
    "||", "and", "or", "!", "not", "&", "|", "^", "(", ")", "[", "]", ",", "true", "false", "0644", "0x1ff",
    "-1",
    "99999999999999999999999", '"/etc/*"', '"/etc/**/x"', '"a\\x"', "'q'", 'r"(a+)+"', 'r"(?=x)"', 'r"\\1"',
    'r"["', '"\\udcff"', "@", "#", "'", '"', "\\", "\n", "\t", "é",
]  # fmt: skip
expressions = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=40).map(" ".join) | st.text(max_size=200)
MACROS = """macros:
  - id: m0
    expression: process.comm == "x"
  - id: names
    values: [a, b]
"""


def scalar_yaml():
    return st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)


yaml_values = st.recursive(
    scalar_yaml(),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.sampled_from(["id", "expression", "rules", "macros", "values", "severity", "tags",
                                       "actions", "disabled", "override", "version", "description", "x"])
                      | st.text(max_size=8), inner, max_size=6),
    max_leaves=30,
)  # fmt: skip


def only_rule_errors(text: str) -> None:
    try:
        RuleSet.from_text(text, filename="rules/fuzz.yaml")
    except PolicyError as err:
        assert err.errors and all(isinstance(e, RuleError) for e in err.errors)
        rendered = err.render()
        assert rendered.startswith("rules/fuzz.yaml")
        assert "Traceback" not in rendered


@FUZZ
@given(expressions)
def test_random_expressions_give_rule_errors_only(expression: str) -> None:
    only_rule_errors(MACROS + rule(expression))


@FUZZ
@given(yaml_values)
def test_random_yaml_gives_rule_errors_only(value: object) -> None:
    only_rule_errors(yaml.safe_dump(value))


@FUZZ
@given(st.lists(st.fixed_dictionaries({"id": st.text(max_size=5), "expression": expressions}), max_size=4))
def test_random_rules_give_rule_errors_only(rules: list[dict[str, str]]) -> None:
    only_rule_errors(MACROS + yaml.safe_dump({"rules": rules}))


@FUZZ
@given(st.binary(max_size=400) | st.text(alphabet=string.printable + "{}[]&*!|>'\"%@`", max_size=400))
def test_random_bytes_give_rule_errors_only(
    tmp_path_factory: pytest.TempPathFactory, data: bytes | str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    try:
        RuleSet.load([path])
    except PolicyError as err:
        assert all(isinstance(e, RuleError) and e.file == str(path) for e in err.errors)
