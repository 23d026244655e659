"""Rule regexes and globs, matched in linear time by RE2 (`google-re2`).

A file name is attacker-chosen: with a backtracking engine (Python's `re`) a rule like
`r"/tmp/(a+)+"` takes seconds per event on `/tmp/aaaa…!`, and the single pipeline thread stalls
while the kernel's buffer fills. RE2 runs in time linear in the name, whatever the pattern, at
the price of the features that need backtracking: backreferences (`\\1`, `(?P=name)`),
lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`), possessive and atomic forms, and `\\Z` (write `$`, or
`\\z`). Those are refused when rules load, at the regex's position, with what to write instead.

Names are `str`s in which bytes that are not UTF-8 are surrogate escapes (`os.fsdecode`); RE2 wants
UTF-8, so such a name is matched with each bad byte as U+FFFD: one character, as `re` saw it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import re2

# The compiled program's memory cap (RE2's own default is 8 MiB): `(a{1000}){1000}` is refused at
# load time instead of taking the agent's memory.
MAX_PROGRAM_MEMORY = 8 << 20

_HINTS = (
    ("(?=", "lookahead `(?=...)` is not supported"),
    ("(?!", "negative lookahead `(?!...)` is not supported; use `!~` on a second pattern"),
    ("(?<=", "lookbehind `(?<=...)` is not supported"),
    ("(?<!", "negative lookbehind `(?<!...)` is not supported; use `!~` on a second pattern"),
    ("(?P=", "backreferences `(?P=name)` are not supported"),
    ("(?>", "atomic groups `(?>...)` are not supported (not needed: matching never backtracks)"),
)


class RegexError(ValueError):
    """A pattern RE2 cannot run; `offset` is where in the pattern (0 when unknown)."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.offset = offset


Matcher = Callable[[str], bool]


def _options() -> re2.Options:
    options = re2.Options()
    options.dot_nl = True  # `.` matches a newline too, as `re.DOTALL` did: names may hold one
    options.log_errors = False  # errors are ours to report, not absl's on stderr
    options.max_mem = MAX_PROGRAM_MEMORY
    return options


def _explain(pattern: str, reason: str) -> RegexError:
    for marker, hint in _HINTS:
        at = pattern.find(marker)
        if at >= 0:
            return RegexError(f"{hint} (rule regexes use the linear-time RE2 dialect)", at)
    for i in range(len(pattern) - 1):
        if pattern[i] == "\\":
            if pattern[i + 1].isdigit() and pattern[i + 1] != "0":
                return RegexError("backreferences like `\\1` are not supported (RE2 dialect)", i)
            if pattern[i + 1] == "Z":
                return RegexError("`\\Z` is not supported (RE2 dialect); write `\\z` or `$`", i)
    return RegexError(f"bad regex: {reason}")


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re2._Regexp:
    """Compile for RE2 or raise RegexError saying what to change."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise _explain(pattern, str(reason)) from None
    except UnicodeError:
        raise RegexError("the pattern is not valid UTF-8 text") from None


def fullmatcher(pattern: str) -> Matcher:
    """A predicate: does the whole value match? Linear in the value's length."""
    fullmatch = compile_pattern(pattern).fullmatch

    def matches(value: str) -> bool:
        try:
            return fullmatch(value) is not None
        except UnicodeEncodeError:  # a name with bytes that are not UTF-8 (surrogate escapes)
            clean = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            return fullmatch(clean) is not None

    return matches
