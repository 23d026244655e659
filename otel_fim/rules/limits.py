"""Bounds on what a policy may ask of the loader and of the pipeline thread.

Every stage that walks an expression (the syntax tree builder, name resolution, the static
analyses, the compiled closures that run per event) recurses once per nesting level, and macros
are inlined where they are used. Without bounds, 3,000 nested parentheses end in a RecursionError
instead of an error message, and macros that use macros twice double the rule per level. Real
rules are far below every bound here.
"""

from __future__ import annotations

MAX_EXPRESSION_CHARS = 65_536  # one expression's text
MAX_DEPTH = 100  # nesting of the syntax tree (parentheses, `!`, operator chains, lists)
MAX_LIST_ITEMS = 4_096  # items of one `[...]` list or one list macro
MAX_EXPANDED_NODES = 20_000  # conditions and values of one rule once its macros are inlined
