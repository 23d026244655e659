"""Path globs: `*` and `?` stay within one path level, `**` crosses levels.

A glob must match the whole value. `**/` matches zero or more whole levels, so `/etc/**/x` matches
`/etc/x` and `/etc/a/b/x`; `/etc/**` matches everything below `/etc`. There is no escaping and no
`[...]` class: every other character is literal.

Besides matching (a compiled regex), the static analyses need two questions answered without
enumerating paths: "which fixed directory / basename does every match carry" (approvers) and "can
any path below this directory match" (directory discarders). The second runs the glob as a small
NFA over the directory prefix.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache

from otel_fim.rules.regex import Matcher, fullmatcher

WILDCARDS = ("*", "?")


def is_glob(text: str) -> bool:
    return "*" in text or "?" in text


def _to_regex(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        else:
            # RE2 takes a backslash before any ASCII punctuation as that character itself.
            out.append("\\" + ch if ch in string.punctuation else ch)
            i += 1
    return "".join(out)


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> Matcher:
    """A full-match predicate, run by RE2 in linear time (`*a*a*a*b` is polynomial with `re`)."""
    return fullmatcher(_to_regex(pattern))


def glob_match(pattern: str, value: str) -> bool:
    return compile_glob(pattern)(value)


# --- static analysis -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GlobShape:
    """What every value matching a path glob is known to carry (None: nothing of that kind)."""

    exact: str | None  # no wildcard at all
    basename: str | None  # the last level is literal
    parent: str | None  # only the last level has wildcards and no `**`: the direct parent is fixed
    ancestor: str | None  # the levels before the first wildcard (never "/": that filters nothing)


def glob_shape(pattern: str) -> GlobShape:
    if not is_glob(pattern):
        return GlobShape(pattern, None, None, None)
    segments = pattern.split("/")
    last = segments[-1]
    basename = last if len(segments) > 1 and last and not is_glob(last) else None
    if not pattern.startswith("/"):
        return GlobShape(None, basename, None, None)
    first_wild = next(i for i, seg in enumerate(segments) if is_glob(seg))
    ancestor = "/".join(segments[:first_wild]) or None  # "" means the root: no filtering power
    parent = None
    if "**" not in pattern and first_wild == len(segments) - 1:
        parent = "/".join(segments[:-1]) or "/"
    return GlobShape(None, basename, parent, ancestor)


# The NFA: one state per token position. `*` and `**` loop on themselves and may be left at any time
# (epsilon to the next token); `**/` is a "split" (epsilon to its `**` or past its `/`: zero levels),
# then a `**` and a literal `/`.
@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "lit", "one" (?), "star" (*), "dstar" (**), "split"
    char: str = ""
    skip: int = -1  # split only: the state past the group


@lru_cache(maxsize=1024)
def _tokens(pattern: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            tokens.append(_Token("split", skip=len(tokens) + 3))
            tokens.append(_Token("dstar"))
            tokens.append(_Token("lit", "/"))
            i += 3
        elif pattern.startswith("**", i):
            tokens.append(_Token("dstar"))
            i += 2
        elif pattern[i] == "*":
            tokens.append(_Token("star"))
            i += 1
        elif pattern[i] == "?":
            tokens.append(_Token("one"))
            i += 1
        else:
            tokens.append(_Token("lit", pattern[i]))
            i += 1
    return tuple(tokens)


def _closure(tokens: tuple[_Token, ...], states: set[int]) -> set[int]:
    todo = list(states)
    while todo:
        s = todo.pop()
        if s >= len(tokens):
            continue
        tok = tokens[s]
        targets = (
            (s + 1, tok.skip) if tok.kind == "split" else (s + 1,) if tok.kind in ("star", "dstar") else ()
        )
        for t in targets:
            if t not in states:
                states.add(t)
                todo.append(t)
    return states


def _step(tokens: tuple[_Token, ...], states: set[int], ch: str) -> set[int]:
    nxt: set[int] = set()
    for s in states:
        if s >= len(tokens):
            continue
        tok = tokens[s]
        if tok.kind == "lit":
            if tok.char == ch:
                nxt.add(s + 1)
        elif tok.kind == "one":
            if ch != "/":
                nxt.add(s + 1)
        elif tok.kind == "star":
            if ch != "/":
                nxt.add(s)
        elif tok.kind == "dstar":
            nxt.add(s)
    return _closure(tokens, nxt)


def nfa_match(pattern: str, value: str) -> bool:
    """Full match by the NFA; equal to `glob_match` (the tests check it), used to validate the NFA."""
    tokens = _tokens(pattern)
    states = _closure(tokens, {0})
    for ch in value:
        states = _step(tokens, states, ch)
        if not states:
            return False
    return len(tokens) in states


def can_match_with_prefix(pattern: str, prefix: str) -> bool:
    """Whether some value `prefix + rest` with a non-empty `rest` can match the glob."""
    tokens = _tokens(pattern)
    states = _closure(tokens, {0})
    for ch in prefix:
        states = _step(tokens, states, ch)
        if not states:
            return False
    # Any consuming state can take one more character and then still reach the end.
    return any(s < len(tokens) and tokens[s].kind != "split" for s in states)


def basename_can_match(pattern: str, name: str) -> bool:
    """Whether some path whose last level is `name` can match the glob (False is exact, True may be
    optimistic)."""
    cut = pattern.rfind("/")
    last = pattern[cut + 1 :]
    if "**" in last or pattern[max(0, cut - 2) : cut + 1] == "**/":
        # `**` can swallow the whole tail, and an optional `**/` group may not be the final `/`.
        return True
    return glob_match(last, name)


def below_prefix(directory: str) -> str:
    """The prefix every path strictly below `directory` starts with."""
    return directory if directory.endswith("/") else directory + "/"
