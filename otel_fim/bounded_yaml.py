"""YAML from files an operator (or an attacker with write access to a drop-in directory) wrote:
composed only after a cheap, iterative pass has bounded its size, nesting and alias expansion.

PyYAML's composer and constructor recurse once per nesting level, so 5,000 nested `[` end in a
RecursionError; an anchor used inside itself (`&a [*a]`) builds a cyclic node graph; and a few
dozen aliases of aliases ("billion laughs") expand to billions of values for whoever walks the
result. The pass below reads the parser's event stream (a state machine, no recursion) and
refuses each of these with the position of the offending node.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import Node

MAX_FILE_BYTES = 1 << 20  # policy and config files are a few KiB; 1 MiB is generous
MAX_DEPTH = 64  # nested mappings/sequences
MAX_EXPANDED_NODES = 200_000  # values the document holds once every alias is expanded


@dataclass
class YamlLimitError(ValueError):
    """The document breaks a bound; `line` and `col` are 1-based (0: the whole file)."""

    message: str
    line: int = 0
    col: int = 0
    index: int = 0  # offset in the text

    def __str__(self) -> str:
        return self.message


def _at(message: str, event: yaml.Event) -> YamlLimitError:
    mark = event.start_mark
    return YamlLimitError(message, mark.line + 1, mark.column + 1, mark.index)


def check_bounds(text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_EXPANDED_NODES) -> None:
    """Raise YamlLimitError if `text` nests deeper than `max_depth`, refers to an anchor inside
    itself, or expands (aliases included) to more than `max_nodes` values. YAML syntax errors are
    left to the composer, which reports them with their position."""
    sizes: dict[str, int] = {}  # anchor -> expanded size of the node it names
    stack: list[tuple[str | None, int]] = []  # open collections: (anchor, size so far)
    total = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            total = _account(event, stack, sizes, total, max_depth, max_nodes)
    except yaml.YAMLError:
        return  # a syntax error: the composer reports it (the bounds held up to that point)


def _account(
    event: yaml.Event,
    stack: list[tuple[str | None, int]],
    sizes: dict[str, int],
    total: int,
    max_depth: int,
    max_nodes: int,
) -> int:
    """Fold one parser event into the running sizes; returns the new top-level total."""
    if isinstance(event, CollectionStartEvent):
        if len(stack) >= max_depth:
            raise _at(f"nested more than {max_depth} levels deep", event)
        stack.append((event.anchor, 1))
        return total
    if isinstance(event, CollectionEndEvent):
        anchor, size = stack.pop()
        if anchor is not None:
            sizes[anchor] = size
        added = size
    elif isinstance(event, AliasEvent):
        if any(anchor == event.anchor for anchor, _ in stack):
            raise _at(f"alias *{event.anchor} refers to a node that contains it", event)
        added = sizes.get(event.anchor, 1)
    elif isinstance(event, ScalarEvent):
        if event.anchor is not None:
            sizes[event.anchor] = 1
        added = 1
    else:
        return total
    if stack:
        anchor, size = stack[-1]
        stack[-1] = (anchor, size + added)
    else:
        total += added
    if total + sum(size for _, size in stack) > max_nodes:
        raise _at(f"the document expands to more than {max_nodes} values (aliases included)", event)
    return total


def compose(text: str, *, max_bytes: int = MAX_FILE_BYTES) -> Node | None:
    """`yaml.compose` (SafeLoader) within the bounds above; raises YamlLimitError or yaml.YAMLError."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise YamlLimitError(f"the file is {size} bytes; at most {max_bytes} are read")
    check_bounds(text)
    return yaml.compose(text, Loader=yaml.SafeLoader)
