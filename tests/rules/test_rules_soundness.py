"""Property-based soundness of the static analyses (hypothesis).

The contract the kernel stage relies on: whenever `evaluate` matches an event,
  * the event passes `approvers(event.type)`, and
  * none of its values is a discarder: not its path, not its basename, not any directory above it
    (and the same for a rename's or link's destination);
and the rule index never changes what `evaluate` returns (checked against running every rule).

Rules are random expressions over a small path alphabet (so rules and events collide often): exact
paths, globs with `*`, `?`, `**`, regexes, names, lists, negations, open-flag masks, process and
container fields, `&&`, `||`, `!`, and `fim.write`. Example counts: 600 random rulesets with 40
events each for the per-type rules, 400 for `fim.write` rules, 1000 for the glob NFA checks.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_fim.event import EventType
from otel_fim.rules.approvers import ancestors
from otel_fim.rules.glob import basename_can_match, can_match_with_prefix, glob_match, nfa_match
from otel_fim.rules.ruleset import RuleSet
from tests.factories import make_event

SEGMENTS = ["etc", "ssh", "cron.d", "home", "alice", ".ssh", "bin", "passwd", "x.conf", "a", "ab"]
WILD_SEGMENTS = ["*", "?", "a*", "*.conf", "**", "?b", "*ss*"]
REGEXES = [r"/etc/.*", r".*\.conf", r"/home/[^/]+/\.ssh/.*", r"(/bin|/etc)/a", r".*ss.*"]
COMMS = ["bash", "dpkg", "vi", "sshd"]
FLAG_NAMES = ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_ACCMODE", "O_EXCL"]
FLAG_VALUES = [0, 0o1, 0o2, 0o101, 0o1101, 0o2001, 0o102, 0o200, 0o100000, 0o20200002]
OPEN_GATES = [
    "open.flags & (O_WRONLY | O_RDWR) != 0",
    "open.flags & O_CREAT > 0",
    "open.flags & O_ACCMODE == O_RDONLY",
    "(open.flags & O_TRUNC != 0 || open.flags & O_APPEND != 0)",
    "open.flags in [0, 65]",
]
TYPES = [
    EventType.OPEN,
    EventType.UNLINK,
    EventType.RENAME,
    EventType.LINK,
    EventType.CHMOD,
    EventType.SYMLINK,
]

path_st = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
name_st = st.sampled_from(SEGMENTS)
glob_st = st.one_of(
    st.lists(st.sampled_from(SEGMENTS + WILD_SEGMENTS), min_size=1, max_size=4).map(
        lambda s: "/" + "/".join(s)
    ),
    st.sampled_from(["*.conf", "**/passwd", "*", "**", "a*", "/**"]),
)


def q(text: str) -> str:
    return '"' + text + '"'


def literal_list(items: list[str]) -> str:
    return "[" + ", ".join(q(i) for i in items) + "]"


def leaves(kind: str) -> st.SearchStrategy[str]:
    """Leaf conditions for a rule of event type `kind` (an EventType value or "fim.write")."""
    f = "fim.write.file" if kind == "fim.write" else f"{kind}.file"
    common = [
        st.builds(lambda p: f"{f}.path == {q(p)}", path_st),
        st.builds(lambda p: f"{f}.path != {q(p)}", path_st),
        st.builds(lambda g: f"{f}.path =~ {q(g)}", glob_st),
        st.builds(lambda g: f"{f}.path !~ {q(g)}", glob_st),
        st.builds(lambda r: f'{f}.path =~ r"{r}"', st.sampled_from(REGEXES)),
        st.builds(
            lambda xs: f"{f}.path in {literal_list(xs)}", st.lists(st.one_of(path_st, glob_st), max_size=3)
        ),
        st.builds(lambda xs: f"{f}.path not in {literal_list(xs)}", st.lists(glob_st, max_size=2)),
        st.builds(lambda n: f"{f}.name == {q(n)}", name_st),
        st.builds(lambda n: f"{f}.name != {q(n)}", name_st),
        st.builds(lambda g: f"{f}.name =~ {q(g)}", st.sampled_from(["*.conf", "a*", "passwd", "?b"])),
        st.builds(lambda xs: f"{f}.name in {literal_list(xs)}", st.lists(name_st, max_size=3)),
        st.builds(lambda c: f"process.comm == {q(c)}", st.sampled_from(COMMS)),
        st.builds(
            lambda c: f"process.comm in {literal_list(c)}", st.lists(st.sampled_from(COMMS), max_size=2)
        ),
        st.builds(lambda n: f"process.uid < {n}", st.integers(0, 2)),
        st.sampled_from(['container.id == "c1"', 'container.id != "c1"', "true", "false"]),
    ]
    if kind == "open":
        masks = st.sampled_from(["O_ACCMODE", "O_CREAT|O_TRUNC", "O_WRONLY|O_RDWR"])
        flag_lists = st.lists(st.sampled_from(FLAG_VALUES), max_size=3)
        common += [
            st.builds(
                lambda m, op: f"open.flags & {m} {op} 0",
                st.sampled_from(FLAG_NAMES),
                st.sampled_from(["!=", ">", "=="]),
            ),
            st.builds(lambda m, v: f"open.flags & ({m}) == {v}", masks, st.sampled_from(FLAG_VALUES[:6])),
            st.builds(lambda v: f"open.flags == {v}", st.sampled_from(FLAG_VALUES)),
            st.builds(lambda vs: f"open.flags in [{', '.join(map(str, vs))}]", flag_lists),
            st.just("open.flags & O_ACCMODE == O_RDONLY"),
            st.just("open.flags & (O_CREAT | O_TRUNC) >= 1"),
        ]
    if kind in ("rename", "link", "symlink"):
        d = f"{kind}.file.destination"
        common += [
            st.builds(lambda g: f"{d}.path =~ {q(g)}", glob_st),
            st.builds(lambda p: f"{d}.path == {q(p)}", path_st),
            st.builds(lambda p: f"{d}.path != {q(p)}", path_st),
        ]
        if kind != "symlink":
            common.append(st.builds(lambda n: f"{d}.name == {q(n)}", name_st))
    return st.one_of(common)


def expressions(kind: str) -> st.SearchStrategy[str]:
    tree = st.recursive(
        leaves(kind),
        lambda sub: st.one_of(
            st.builds(lambda a, b: f"({a} && {b})", sub, sub),
            st.builds(lambda a, b: f"({a} || {b})", sub, sub),
            st.builds(lambda a: f"!({a})", sub),
            st.builds(lambda a, b: f"(not {a} or {b})", sub, sub),
        ),
        max_leaves=5,
    )
    marker = "fim.write.file" if kind == "fim.write" else f"{kind}."
    anchor = "fim.write.file.inode >= 0" if kind == "fim.write" else f"{kind}.retval > -100000"
    anchored = tree.map(lambda e: e if marker in e else f"{anchor} && {e}")
    if kind != "open":
        return anchored
    # Often put a flag condition on top, so whole rulesets get an open-flag gate.
    gated = st.builds(lambda f, e: f"{f} && ({e})", st.sampled_from(OPEN_GATES), anchored)
    return st.one_of(anchored, gated)


def policy(exprs: list[str]) -> RuleSet:
    body = "\n".join(f"  - id: r{i}\n    expression: '{e}'" for i, e in enumerate(exprs))
    return RuleSet.from_text(f"rules:\n{body}\n")


@st.composite
def events(draw: st.DrawFn, event_type: EventType) -> object:
    path = draw(path_st)
    return make_event(
        event_type,
        path,
        flags=draw(st.sampled_from(FLAG_VALUES)),
        dest=draw(path_st),
        comm=draw(st.sampled_from(COMMS)),
        uid=draw(st.integers(0, 2)),
        container=draw(st.sampled_from([None, "c1", "c2"])),
    )


HITS: list[int] = []  # matched events per example, to check the generators stay useful


def check_sound(rs: RuleSet, event: object) -> int:
    """Assert the contract for one event; returns 1 if some rule matched."""
    got = [m.rule_id for m in rs.evaluate(event)]
    brute = [r.id for r in rs.rules if r.matches(event)]
    assert got == brute, "the index changed the result"
    if not got:
        return 0
    t = event.type
    approvers = rs.approvers(t)
    assert approvers.passes(event), f"matched {got} but rejected by {approvers}"
    path = event.file.path
    assert not rs.is_discarder(t, "file.path", path)
    assert not rs.is_discarder(t, "file.name", event.file.name)
    for directory in [*ancestors(path), "/"]:
        assert not rs.is_discarder(t, "file.directory", directory), directory
    dest = getattr(event.details, "destination", None)
    if dest is not None:
        assert not rs.is_discarder(t, "destination.path", dest.path)
        assert not rs.is_discarder(t, "destination.name", dest.name)
        for directory in [*ancestors(dest.path), "/"]:
            assert not rs.is_discarder(t, "destination.directory", directory)
    return 1


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.data())
def test_per_type_rules_are_sound(data: st.DataObject) -> None:
    kinds = data.draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3))
    exprs = [data.draw(expressions(k.value)) for k in kinds]
    rs = policy(exprs)
    hits = 0
    for _ in range(40):
        hits += check_sound(rs, data.draw(events(data.draw(st.sampled_from(kinds)))))
    HITS.append(hits)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.data())
def test_fim_write_rules_are_sound(data: st.DataObject) -> None:
    exprs = data.draw(st.lists(expressions("fim.write"), min_size=1, max_size=2))
    if data.draw(st.booleans()):
        exprs.append(data.draw(expressions("open")))
    rs = policy(exprs)
    types = sorted(rs.event_types(), key=list(EventType).index)
    hits = 0
    for _ in range(40):
        hits += check_sound(rs, data.draw(events(data.draw(st.sampled_from(types)))))
    HITS.append(hits)


# --- the glob machinery the analyses stand on -------------------------------------------------------

glob_text = st.lists(st.sampled_from(["a", "b", "/", "*", "?", "**", "**/"]), max_size=6).map("".join)
value_text = st.lists(st.sampled_from(["a", "b", "/"]), max_size=7).map("".join)


@settings(max_examples=1000, deadline=None)
@given(glob_text, value_text, st.integers(0, 7))
def test_glob_nfa_agrees_with_regex_and_analyses_are_sound(pattern: str, value: str, cut: int) -> None:
    assert nfa_match(pattern, value) == glob_match(pattern, value)
    if glob_match(pattern, value):
        if cut < len(value):  # a proper prefix: some non-empty rest completes it
            assert can_match_with_prefix(pattern, value[:cut])
        assert basename_can_match(pattern, value.rsplit("/", 1)[-1])
