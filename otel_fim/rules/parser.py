"""The rule language's syntax: a lark LALR grammar and the untyped syntax tree it produces.

Precedence, loosest first: `|| or`, `&& and`, `! not`, comparisons (`== != < <= > >= =~ !~ in
not in`), `|`, `^`, `&`. Bitwise operators bind tighter than comparisons (unlike C), so
`open.flags & O_CREAT != 0` means what it says. Names (fields, macros, constants) are resolved later
by the compiler; this module only knows where each piece sits (`pos`, an offset into the text).
"""

from __future__ import annotations

import ast as pyast
import warnings
from dataclasses import dataclass
from functools import lru_cache

from lark import Lark, Token, Transformer, Tree, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken, v_args

from otel_fim.rules.errors import ExpressionError
from otel_fim.rules.limits import MAX_DEPTH, MAX_EXPRESSION_CHARS, MAX_LIST_ITEMS

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr
        | or_expr OR and_expr                    -> or_
?and_expr: not_expr
         | and_expr AND not_expr                 -> and_
?not_expr: cmp
         | BANG not_expr                         -> not_
         | NOT_KW not_expr                       -> not_
?cmp: bit_or
    | bit_or CMP_OP bit_or                       -> compare
    | bit_or MATCH_OP bit_or                     -> compare
    | bit_or IN bit_or                           -> compare
    | bit_or NOT_KW IN bit_or                    -> not_in
?bit_or: bit_xor
       | bit_or PIPE bit_xor                     -> bitop
?bit_xor: bit_and
        | bit_xor CARET bit_and                  -> bitop
?bit_and: atom
        | bit_and AMP atom                       -> bitop
?atom: NAME                                      -> name
     | NUMBER                                    -> number
     | STRING                                    -> string
     | REGEX                                     -> regex
     | TRUE                                      -> boolean
     | FALSE                                     -> boolean
     | LPAR or_expr RPAR                         -> paren
     | LSQB [bit_or (COMMA bit_or)* COMMA?] RSQB -> list_

OR: "||" | "or"
AND: "&&" | "and"
NOT_KW: "not"
IN: "in"
TRUE: "true"
FALSE: "false"
BANG: "!"
CMP_OP: "==" | "!=" | "<=" | ">=" | "<" | ">"
MATCH_OP: "=~" | "!~"
PIPE: "|"
CARET: "^"
AMP: "&"
LPAR: "("
RPAR: ")"
LSQB: "["
RSQB: "]"
COMMA: ","
NAME: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/
NUMBER: /-?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|[0-9]+)/
REGEX.2: /r"(?:[^"\\]|\\.)*"/ | /r'(?:[^'\\]|\\.)*'/
STRING: /"(?:[^"\\]|\\.)*"/ | /'(?:[^'\\]|\\.)*'/

%import common.WS
%ignore WS
"""


# --- syntax tree ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    pos: int  # offset of the node's first character in the expression text


@dataclass(frozen=True, slots=True)
class Name(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Int(Node):
    value: int


@dataclass(frozen=True, slots=True)
class Str(Node):
    value: str


@dataclass(frozen=True, slots=True)
class Regex(Node):
    value: str


@dataclass(frozen=True, slots=True)
class Bool(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class BitOp(Node):
    op: str  # & | ^
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Compare(Node):
    op: str  # == != < <= > >= =~ !~ in "not in"
    left: Node
    right: Node
    op_pos: int


@dataclass(frozen=True, slots=True)
class And(Node):
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or(Node):
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Not(Node):
    operand: Node


def _parse_int(text: str) -> int:
    neg = text.startswith("-")
    body = text[1:] if neg else text
    if body[:2] in ("0x", "0X"):
        value = int(body, 16)
    elif body[:2] in ("0o", "0O"):
        value = int(body[2:], 8)
    elif len(body) > 1 and body.startswith("0"):
        value = int(body, 8)  # C-style octal, as modes are usually written (0755)
    else:
        value = int(body)
    return -value if neg else value


def _unquote(text: str) -> str:
    # The literal's escapes are Python's; literal_eval rejects a malformed one, and an unknown one
    # (`"\\."`) only warns: make that an error too rather than guess what the author meant.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", SyntaxWarning)
        return pyast.literal_eval(text)


def _at(tok: Token) -> int:
    """A token's offset (lark types it Optional; the tokens built here always have one)."""
    return tok.start_pos or 0


@v_args(inline=True)
class _Build(Transformer):
    def name(self, tok: Token) -> Node:
        return Name(_at(tok), str(tok))

    def number(self, tok: Token) -> Node:
        try:
            return Int(_at(tok), _parse_int(str(tok)))
        except ValueError:
            raise ExpressionError(
                f"bad number {str(tok)!r} (a leading 0 means octal)", _at(tok)
            ) from None

    def string(self, tok: Token) -> Node:
        try:
            return Str(_at(tok), _unquote(str(tok)))
        except (ValueError, SyntaxError):
            raise ExpressionError(
                'bad escape in string (write \\\\ for a backslash, or use a regex r"...")', _at(tok)
            ) from None

    def regex(self, tok: Token) -> Node:
        return Regex(_at(tok), _unquote(str(tok)))

    def boolean(self, tok: Token) -> Node:
        return Bool(_at(tok), str(tok) == "true")

    def paren(self, _l: Token, inner: Node, _r: Token) -> Node:
        return inner

    def list_(self, lsqb: Token, *rest: object) -> Node:
        items = tuple(x for x in rest if isinstance(x, Node))
        return ListLit(_at(lsqb), items)

    def bitop(self, left: Node, op: Token, right: Node) -> Node:
        return BitOp(left.pos, str(op), left, right)

    def compare(self, left: Node, op: Token, right: Node) -> Node:
        return Compare(left.pos, str(op), left, right, _at(op))

    def not_in(self, left: Node, not_tok: Token, _in: Token, right: Node) -> Node:
        return Compare(left.pos, "not in", left, right, _at(not_tok))

    def not_(self, tok: Token, operand: Node) -> Node:
        return Not(_at(tok), operand)

    def and_(self, left: Node, _op: Token, right: Node) -> Node:
        return And(left.pos, left, right)

    def or_(self, left: Node, _op: Token, right: Node) -> Node:
        return Or(left.pos, left, right)


_TOKEN_TEXT = {
    "OR": "'||'",
    "AND": "'&&'",
    "RPAR": "')'",
    "RSQB": "']'",
    "COMMA": "','",
    "CMP_OP": "a comparison",
    "MATCH_OP": "'=~'",
    "NAME": "a field, macro or constant",
    "NUMBER": "a number",
    "STRING": "a string",
    "$END": "the end of the expression",
}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_TEXT.get(t, t.lower()) for t in expected if t in _TOKEN_TEXT})
    if not names:
        return ""
    return " (expected " + ", ".join(names[:5]) + ")"


def _first_pos(tree: Tree) -> int:
    """Offset of the subtree's first token (iteratively: the tree may be deep)."""
    node: Tree | Token = tree
    while isinstance(node, Tree):
        if not node.children:
            return 0
        node = node.children[0]
    return node.start_pos or 0


def _check_shape(tree: Tree) -> None:
    """Nesting depth and list lengths, walked with an explicit stack."""
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(
                f"the expression nests more than {MAX_DEPTH} levels deep (parentheses, `!`, operator "
                "chains); split it into macros, or use `in [...]` for long `||` chains",
                _first_pos(node),
            )
        if node.data == "list_":
            items = sum(1 for c in node.children if isinstance(c, Tree | Token) and not _is_punct(c))
            if items > MAX_LIST_ITEMS:
                raise ExpressionError(
                    f"the list has {items} items; at most {MAX_LIST_ITEMS} are allowed", _first_pos(node)
                )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _is_punct(child: Tree | Token) -> bool:
    return isinstance(child, Token) and child.type in ("LSQB", "RSQB", "COMMA")


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse one expression; raises ExpressionError at the offending offset."""
    if not text.strip():
        raise ExpressionError("empty expression", 0)
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"the expression is {len(text)} characters long; at most {MAX_EXPRESSION_CHARS} are allowed",
            MAX_EXPRESSION_CHARS,
        )
    try:
        tree = _parser().parse(text)
    except UnexpectedCharacters as e:
        pos = e.pos_in_stream or 0
        raise ExpressionError(f"unexpected character {text[pos]!r}", pos) from None
    except UnexpectedEOF as e:
        expected = _describe_expected(set(e.expected))
        raise ExpressionError("the expression ends too early" + expected, len(text)) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            pos = len(text.rstrip())
            msg = "the expression ends too early"
        else:
            pos = tok.start_pos if tok.start_pos is not None else 0
            msg = f"unexpected {str(tok)!r}"
        raise ExpressionError(msg + _describe_expected(set(e.expected)), pos) from None
    _check_shape(tree)  # before the (recursive) transform below
    try:
        return _Build().transform(tree)
    except Exception as e:  # lark wraps errors raised in callbacks
        inner = getattr(e, "orig_exc", e)
        if isinstance(inner, ExpressionError):
            raise inner from None
        raise
