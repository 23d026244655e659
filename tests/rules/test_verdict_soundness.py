"""Property-based soundness of kernel-learned verdicts (bpf/verdicts.h), hypothesis.

The kernel caches "no approver passes this file" per (file, event type) and reuses it for every
later event of that type on the file -- by another process, with other flags, modes, owners or
results -- until something changes the file's path (the invalidations are checked by
tests/kernel/test_verdicts.py). That is sound only if the kernel's approver verdict, once the
open-flag gate passed, depends on the path and type alone:

  whenever the kernel's path approvers (the maps `KernelFilter.apply` writes: basenames cut to
  their 31-byte keys, directory prefixes cut to 256 bytes) reject a path, no event of that type on
  that path that passes the flag gate can match a rule, whatever its other fields.

Random rulesets and events come from the generators of test_rules_soundness.py (a small path
alphabet, so rules and events collide often).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rules_helpers import make_event
from test_rules_soundness import (
    COMMS,
    FLAG_VALUES,
    OPEN_GATES,
    expressions,
    literal_list,
    name_st,
    path_st,
    policy,
    q,
)

from otel_fim.event import Event, EventType
from otel_fim.kernel.kernel_filter import TypePlan, plan_for
from otel_fim.kernel.layout import BASENAME_KEY, POLICY_DENY, PREFIX_MAX

# Verdicts are only learned for events with one name (a rename's or link's destination may be
# watched when its source is not).
SINGLE_NAME_TYPES = [EventType.OPEN, EventType.UNLINK, EventType.CHMOD, EventType.TRUNCATE]


def kernel_path_passes(plan: TypePlan, path: str) -> bool:
    """What bpf/path_resolver.h's path_approved and the walk's directory inodes decide for a path
    with no aliases (a hard link or bind mount is another key: another mount id, or nlink > 1)."""
    raw = path.encode()
    name = raw.rsplit(b"/", 1)[-1][: BASENAME_KEY - 1]
    if any(name == b.encode()[: BASENAME_KEY - 1] for b in plan.basenames):
        return True
    if any(raw[:PREFIX_MAX].startswith(p.encode()[:PREFIX_MAX]) for p in plan.prefixes):
        return True
    return path in plan.files


def gate_passes(plan: TypePlan, event: Event) -> bool:
    if event.type is not EventType.OPEN or plan.flags_any is None:
        return True
    flags = event.details.flags
    return bool(flags & plan.flags_any) or (plan.allow_rdonly and flags & 3 == 0)


@st.composite
def variants(draw: st.DrawFn, event_type: EventType, path: str) -> Event:
    """Another event on the same file: another process, flags, mode, owner, result, container."""
    return make_event(
        event_type,
        path,
        flags=draw(st.sampled_from(FLAG_VALUES)),
        mode=draw(st.sampled_from([0o644, 0o4755, 0o600])),
        comm=draw(st.sampled_from(COMMS)),
        uid=draw(st.integers(0, 2)),
        pid=draw(st.integers(1, 5)),
        retval=draw(st.sampled_from([0, 3, -13])),
        container=draw(st.sampled_from([None, "c1", "c2"])),
    )


CACHED: list[int] = []  # rejected (cacheable) paths per example, to check the generators stay useful


def approvable(kind: str) -> st.SearchStrategy[str]:
    """Rules the kernel can filter (so their type is *deny unless approved*): a positive path or
    name condition, often with conditions on the fields a verdict ignores (process, flags, ...)."""
    f = "fim.write.file" if kind == "fim.write" else f"{kind}.file"
    path_leaf = st.one_of(
        st.builds(lambda p: f"{f}.path == {q(p)}", path_st),
        st.builds(lambda g: f"{f}.path =~ {q(g)}", st.sampled_from(DIR_GLOBS)),
        st.builds(lambda n: f"{f}.name == {q(n)}", name_st),
        st.builds(lambda xs: f"{f}.path in {literal_list(xs)}", st.lists(path_st, min_size=1, max_size=3)),
    )
    other = st.sampled_from(OTHER_LEAVES + (OPEN_GATES if kind == "open" else []))
    return st.one_of(
        path_leaf,
        st.builds(lambda a, b: f"{a} && {b}", path_leaf, other),
        st.builds(lambda a, b, c: f"({a} || {b}) && !({c})", path_leaf, path_leaf, other),
    )


DIR_GLOBS = ["/etc/**", "/etc/ssh/*", "/home/*/.ssh/*", "/bin/*", "/a/**/passwd", "/home/**"]
OTHER_LEAVES = [
    'process.comm == "vi"',
    'process.comm in ["bash", "dpkg"]',
    "process.uid < 1",
    'container.id == "c1"',
    'container.id != "c2"',
]


def rulesets(data: st.DataObject):  # noqa: ANN201 - a RuleSet
    kinds = data.draw(
        st.lists(
            st.sampled_from(["fim.write", *(t.value for t in SINGLE_NAME_TYPES)]), min_size=1, max_size=3
        )
    )
    if data.draw(st.integers(0, 3)) == 0:  # sometimes the fully random rules (mostly accept-all)
        return policy([data.draw(expressions(k)) for k in kinds])
    return policy([data.draw(approvable(k)) for k in kinds])


CACHED: list[int] = []  # rejected (cacheable) paths per example
FOLDED: list[int] = []  # events on an approved path that matched: the generators reach the rules


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.data())
def test_a_rejected_path_stays_rejected_for_every_event_on_it(data: st.DataObject) -> None:
    rs = rulesets(data)
    cached = matched = 0
    for _ in range(20):
        etype = data.draw(st.sampled_from(SINGLE_NAME_TYPES))
        plan = plan_for(rs, etype, True)
        path = data.draw(path_st)
        if plan.mode != POLICY_DENY:
            continue  # nothing to cache: every event goes up, or none
        passes = kernel_path_passes(plan, path)
        cached += not passes
        for _ in range(8):
            event = data.draw(variants(etype, path))
            if not gate_passes(plan, event):
                continue  # dropped before any verdict is looked at
            hit = bool(rs.evaluate(event))
            matched += hit
            assert passes or not hit, f"{etype.value} {path}: cached as unwatched, but matches"
    CACHED.append(cached)
    FOLDED.append(matched)


def test_the_generators_exercise_both_sides() -> None:
    if not CACHED:
        test_a_rejected_path_stays_rejected_for_every_event_on_it()
    assert sum(CACHED) > 200, CACHED[:20]
    assert sum(FOLDED) > 100, FOLDED[:20]
