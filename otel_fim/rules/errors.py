"""Load errors that point at the spot: `file:line:col: message`, the source line and a caret."""

from __future__ import annotations

from collections.abc import Iterable


class RuleError(Exception):
    """One problem in a policy file. `line` and `col` are 1-based; 0 means "the whole file"."""

    def __init__(self, message: str, file: str = "<string>", line: int = 0, col: int = 0, source: str = ""):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.source = source  # the file's text at `line`, for the caret

    def location(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"

    def render(self) -> str:
        head = f"{self.location()}: {self.message}"
        if not self.source.strip() or self.col <= 0:
            return head
        # Drop the YAML indentation but keep the caret under the same character.
        indent = len(self.source) - len(self.source.lstrip())
        shown = self.source.strip()
        caret = " " * max(0, min(self.col - 1 - indent, len(shown)))
        return f"{head}\n    {shown}\n    {caret}^"

    def __str__(self) -> str:
        return self.render()


class PolicyError(RuleError):
    """Every error found while loading policies, raised together once loading is done.

    `file`/`line`/`col`/`message` are those of the first error; `errors` holds them all."""

    def __init__(self, errors: Iterable[RuleError]):
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.col))
        if not self.errors:
            raise ValueError("PolicyError needs at least one error")
        first = self.errors[0]
        super().__init__(first.message, first.file, first.line, first.col, first.source)

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


class ExpressionError(Exception):
    """A problem inside one expression, at a character offset; the policy loader turns it into a
    RuleError with the file position."""

    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message = message
        self.pos = pos
