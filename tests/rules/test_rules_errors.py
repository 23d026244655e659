"""Every load error names file:line:col and puts a caret under the spot; all errors are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_fim.rules.errors import PolicyError
from otel_fim.rules.ruleset import RuleSet


def load_error(text: str, **kwargs: object) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        RuleSet.from_text(text, filename="rules/x.yaml", **kwargs)  # type: ignore[arg-type]
    return info.value


def one_rule(expression: str, macros: str = "") -> str:
    return f"{macros}rules:\n  - id: r\n    expression: {expression}\n"


@pytest.mark.parametrize(
    ("expression", "col", "message"),
    [
        (
            'open.file.pth == "/etc/passwd"',
            17,
            "unknown field 'open.file.pth' (did you mean 'open.file.path'?)",
        ),
        ("open.file.path == 3", 35, "wrong operand type: 'open.file.path' is a string, 3 is an integer"),
        ('open.flags == "x"', 31, "wrong operand type: 'open.flags' is an integer, 'x' is a string"),
        ('open.flags =~ "/etc/*"', 28, "glob or regex match on an integer: '=~' needs a string field"),
        ("open.flags & O_CRAET != 0", 30, "unknown constant 'O_CRAET' (did you mean 'O_CREAT'?)"),
        (
            'open.file.path == "/a\\.b"',
            35,
            'bad escape in string (write \\\\ for a backslash, or use a regex r"...")',
        ),
        ("open.retval == 0 && by_editr", 37, "unknown field or macro 'by_editr'"),
        (
            '''open.file.path == "/x" && unlink.file.path == "/y"''',
            43,
            "one rule cannot mix event types 'open' and 'unlink': write one rule per event type",
        ),
        (
            """fim.write.file.path == "/x" && open.flags == 1""",
            48,
            "one rule cannot mix event types 'fim.write' and 'open'",
        ),
        ('process.comm == "x"', 17, "no event type: name at least one event field"),
        ('open.file.path <= "/x"', 32, "'<=' needs integers, 'open.file.path' is a string"),
        ('open.file.path == "/x" &&', 42, "the expression ends too early"),
        ('open.file.path == "/x" ) ', 40, "unexpected ')'"),
        ('open.file.path == "/x" @', 40, "unexpected character '@'"),
        ('open.file.path =~ r"(" ', 35, "bad regex"),
        ("open.flags & O_CREAT", 17, "'&' gives an integer, not a condition; add e.g. `!= 0`"),
        ("open.flags in open.file.path", 31, "`in` needs a list `[...]` or the id of a list macro"),
        ('open.flags in [1, "x"]', 35, "wrong operand type: the field is an integer, this item is a string"),
        ('open.file.path == r"x"', 35, "a regex can only follow =~ or !~"),
    ],
)
def test_expression_errors(expression: str, col: int, message: str) -> None:
    # `col` counts from an unquoted `expression: ...`; the YAML quote adds one
    col += 1
    err = load_error(one_rule(f"'{expression}'"))
    assert (err.file, err.line, err.col) == ("rules/x.yaml", 3, col)
    assert err.message.startswith(message), err.message
    rendered = err.render()
    assert rendered.startswith(f"rules/x.yaml:3:{col}: {message}")
    # the caret sits under the reported column of the shown source line
    src = "    expression: " + f"'{expression}'"
    indent = len(src) - len(src.lstrip())
    assert rendered.splitlines()[1] == "    " + src.strip()
    assert rendered.splitlines()[2].index("^") - 4 == col - 1 - indent


def test_rendering_matches_the_documented_shape() -> None:
    err = load_error(one_rule('open.file.pth == "/etc/passwd"'))
    assert err.render() == (
        "rules/x.yaml:3:17: unknown field 'open.file.pth' (did you mean 'open.file.path'?)\n"
        '    expression: open.file.pth == "/etc/passwd"\n'
        "                ^"
    )


def test_positions_inside_block_scalars() -> None:
    literal = (
        'rules:\n  - id: r\n    expression: |\n      open.file.path == "/x"\n        && open.flgs == 1\n'
    )
    err = load_error(literal)
    assert (err.line, err.col) == (5, 12)
    assert "unknown field 'open.flgs' (did you mean 'open.flags'?)" in err.message
    folded = (
        'rules:\n  - id: r\n    expression: >\n      open.file.path == "/x" &&\n      open.flags == "x"\n'
    )
    err = load_error(folded)
    assert (err.line, err.col) == (5, 21)


def test_positions_inside_double_quoted_strings_with_escapes() -> None:
    text = 'rules:\n  - id: r\n    expression: "open.file.path == \\"/x\\" && open.flgs == 1"\n'
    err = load_error(text)
    assert (err.line, err.col) == (3, 46)


def test_errors_inside_macros_point_into_the_macro() -> None:
    text = "macros:\n  - id: m\n    expression: process.comm == 3\n" + one_rule("open.retval == 0 && m")
    err = load_error(text)
    assert [(e.line, e.col) for e in err.errors] == [(3, 33), (6, 37)]
    assert "wrong operand type" in err.errors[0].message
    assert err.errors[1].message == "macro 'm' has errors (reported at its definition)"


def test_macro_cycle_and_misuse() -> None:
    text = (
        "macros:\n  - id: a\n    expression: open.retval == 0 && b\n"
        "  - id: b\n    expression: a\n  - id: l\n    values: [x]\n"
    )
    err = load_error(text + one_rule("open.retval == 0 && l"))
    messages = [e.message for e in err.errors]
    assert any("macro cycle: a -> b -> a" in m for m in messages), messages
    assert "macro 'l' is a list; use it after `in`" in messages


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("rules:\n  - id: r\n    expression: [\n", 4, 1, "bad YAML"),
        ("rules:\n  - expression: open.retval == 0\n", 2, 5, "rule has no 'id'"),
        ("rules:\n  - id: r\n", 2, 5, "rule 'r' has no 'expression'"),
        (
            "rules:\n  - id: r\n    expression: open.retval == 0\n    severity: urgent\n",
            4,
            15,
            "bad severity 'urgent'",
        ),
        (
            "rules:\n  - id: r\n    expression: open.retval == 0\n    sevrity: high\n",
            4,
            5,
            "unknown key 'sevrity' in a rule (did you mean 'severity'?)",
        ),
        ("rule:\n  - id: r\n", 1, 1, "unknown key 'rule' in a policy file (did you mean 'rules'?)"),
        (
            "rules:\n  - id: r\n    expression: open.retval == 0\n    disabled: maybe\n",
            4,
            15,
            "'disabled' must be",
        ),
        (
            "rules:\n  - id: r\n    expression: open.retval == 0\n    tags: [a]\n",
            4,
            11,
            "'tags' must be a mapping",
        ),
        ("rules:\n  id: r\n", 2, 3, "'rules' must be a list"),
        ("rules:\n  - id: 'bad id'\n    expression: open.retval == 0\n", 2, 9, "bad rule id 'bad id'"),
        ("macros:\n  - id: m\n", 2, 5, "a macro needs exactly one of 'expression' or 'values'"),
        ("macros:\n  - id: m\n    values: [a, 1]\n", 3, 13, "macro values mix strings and integers"),
        ("macros:\n  - id: O_CREAT\n    values: [1]\n", 2, 5, "macro id 'O_CREAT' is a constant"),
        ("rules:\n  - id: r\n    id: s\n    expression: open.retval == 0\n", 3, 5, "duplicate key 'id'"),
        (
            "rules:\n  - id: r\n    expression: open.retval == 0\n"
            "  - id: r\n    expression: open.retval == 1\n",
            4,
            5,
            "duplicate rule id 'r' (first at rules/x.yaml:2); add `override: true` to replace it",
        ),
        ("rules:\n  - id: r\n    override: true\n", 2, 5, "rule 'r' overrides no earlier rule"),
        (
            "rules:\n  - id: r\n    expression: open.retval == 0\n    reference: attack.mitre.org\n",
            4,
            16,
            "bad reference 'attack.mitre.org': use an http:// or https:// URL",
        ),
    ],
)
def test_policy_structure_errors(text: str, line: int, col: int, message: str) -> None:
    err = load_error(text)
    assert (err.line, err.col) == (line, col), err.render()
    assert err.message.startswith(message), err.message


def test_duplicate_id_across_files_and_override() -> None:
    first = "rules:\n  - id: r\n    expression: open.retval == 0\n"
    with pytest.raises(PolicyError) as info:
        RuleSet.from_text(first, first, filename="a.yaml")
    assert info.value.file == "a.yaml#2" and "first at a.yaml:2" in info.value.message
    again = "rules:\n  - id: r\n    override: true\n    expression: open.retval == 1\n"
    assert RuleSet.from_text(first, again).rules[0].expression == "open.retval == 1"


def test_unknown_actions_with_known_actions() -> None:
    text = "rules:\n  - id: r\n    expression: open.retval == 0\n    actions: [{kil: {signal: 9}}, log]\n"
    err = load_error(text, known_actions={"kill": {}, "log": {}})
    assert (err.line, err.col) == (4, 16)
    assert err.message == "unknown action 'kil' (did you mean 'kill'?); known actions: kill, log"
    # without the hook, any action name is kept as data
    rs = RuleSet.from_text(text)
    assert rs.rules[0].actions == ({"kil": {"signal": 9}}, {"log": {}})


def test_all_errors_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - id: r1\n    expression: open.file.pth == 1\n  - id: r2\n    severity: bad\n"
        "    expression: open.retval == 0\n"
    )
    (tmp_path / "b.yaml").write_text("rules:\n  - id: r3\n    expression: 'open.flags =~ \"x\"'\n")
    with pytest.raises(PolicyError) as info:
        RuleSet.load([tmp_path])
    got = [(Path(e.file).name, e.line) for e in info.value.errors]
    assert got == [("a.yaml", 3), ("a.yaml", 5), ("b.yaml", 3)]
    assert len(info.value.render().splitlines()) == 9  # three errors, three lines each


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        RuleSet.load([tmp_path / "nope.yaml", tmp_path])
    messages = sorted(e.message for e in info.value.errors)
    assert messages == ["no *.yaml policy files in this directory", "no such file or directory"]


def test_reference_is_kept_and_inherited_by_an_override() -> None:
    rs = RuleSet.from_text(
        "rules:\n  - id: r\n    expression: open.retval == 0\n    reference: https://example.org/r\n",
        "rules:\n  - id: r\n    override: true\n    severity: high\n",
    )
    assert rs.rules[0].reference == "https://example.org/r"
    assert rs.rules[0].to_match().reference == "https://example.org/r"
