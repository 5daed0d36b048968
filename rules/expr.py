"""A small, safe condition language for rules: tokenizer, recursive-descent parser, closures.

Nothing is ever passed to ``eval``: source text is tokenised, parsed into closures over a
fixed set of names, and those closures read only the event and the subject.

Grammar::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") operand]
    operand := NUMBER | "-" NUMBER | STRING | "true" | "false" | "null"
             | "[" [expr ("," expr)*] "]" | NAME | "(" expr ")"

Names: ``value`` (the event's value), ``kind`` (the event kind), ``attrs.<key>`` (an event
attribute), ``subject.<attr>`` (``subject.kind``, ``subject.grid``, ``subject.community``,
``subject.id`` or a subject attribute such as ``subject.resident.living_alone``). Any other
name, and any name part starting with ``_``, is an error at load time. Missing values read
as ``null``. Ordering comparisons between values of different types (or with ``null``) are
false rather than errors; booleans never equal numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from adapters.events import Event
from rules.subject import Subject

#: A compiled expression: reads the event (``None`` when there is none) and the subject.
Getter = Callable[[Event | None, Subject], object]

MAX_SOURCE = 2000
MAX_DEPTH = 40


class ExprError(ValueError):
    """The expression is invalid; the message names the position."""


class Tok(StrEnum):
    NUMBER = "number"
    STRING = "string"
    NAME = "name"
    OP = "operator"
    KEYWORD = "keyword"
    END = "end of expression"


KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
_SEGMENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(
    rf"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>{_SEGMENT}(?:\.{_SEGMENT})*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|-)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True, slots=True)
class Token:
    type: Tok
    text: str
    pos: int


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise ExprError(f"unexpected character {source[pos]!r} at {pos + 1}")
        group = match.lastgroup
        text = match.group()
        if group == "number":
            tokens.append(Token(Tok.NUMBER, text, pos))
        elif group == "string":
            tokens.append(Token(Tok.STRING, text, pos))
        elif group == "name":
            tokens.append(Token(Tok.KEYWORD if text in KEYWORDS else Tok.NAME, text, pos))
        elif group == "op":
            tokens.append(Token(Tok.OP, text, pos))
        pos = match.end()
    tokens.append(Token(Tok.END, "", len(source)))
    return tokens


def _unquote(text: str, pos: int) -> str:
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise ExprError(f"unknown escape \\{nxt} in string at {pos + 1}")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# -- semantics ------------------------------------------------------------------------------


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def equal(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    return a == b


def _order(op: str, a: object, b: object) -> bool:
    if _is_number(a) and _is_number(b):
        x, y = float(a), float(b)  # type: ignore[arg-type]  # checked by _is_number
    elif isinstance(a, str) and isinstance(b, str):
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    else:
        return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def contains(a: object, b: object) -> bool:
    if isinstance(b, list | tuple):
        return any(equal(a, item) for item in b)
    if isinstance(a, str) and isinstance(b, str):
        return a in b
    return False


# -- names ----------------------------------------------------------------------------------


def _name_getter(name: str, pos: int) -> Getter:
    parts = name.split(".")
    if any(part.startswith("_") for part in parts):
        raise ExprError(f"unknown name {name!r} at {pos + 1} (names may not start with '_')")
    head, rest = parts[0], parts[1:]
    if head == "value" and not rest:
        return lambda e, s: None if e is None else e.value
    if head == "kind" and not rest:
        return lambda e, s: None if e is None else e.kind.value
    if head == "attrs" and len(rest) == 1:
        key = rest[0]
        return lambda e, s: None if e is None else e.attrs.get(key)
    if head == "subject" and rest:
        attr = ".".join(rest)
        if attr == "kind":
            return lambda e, s: None if s.kind is None else s.kind.value
        if attr == "grid":
            return lambda e, s: s.grid
        if attr == "community":
            return lambda e, s: s.community
        if attr == "id":
            return lambda e, s: s.device_id
        return lambda e, s: s.fact(attr)
    raise ExprError(
        f"unknown name {name!r} at {pos + 1}; use value, kind, attrs.<key> or subject.<attribute>"
    )


# -- parser ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, type_: Tok, text: str) -> bool:
        return self.tok.type is type_ and self.tok.text == text

    def expect(self, type_: Tok, text: str) -> None:
        if not self.at(type_, text):
            raise self.error(f"expected {text!r}")
        self.i += 1

    def error(self, message: str) -> ExprError:
        tok = self.tok
        found = tok.type.value if tok.type is Tok.END else repr(tok.text)
        return ExprError(f"{message}, found {found} at {tok.pos + 1}")

    def parse(self) -> Getter:
        getter = self.expr()
        if self.tok.type is not Tok.END:
            raise self.error("expected an operator or the end")
        return getter

    def expr(self) -> Getter:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error("expression nested too deeply")
        left = self.conj()
        while self.at(Tok.KEYWORD, "or"):
            self.take()
            right = self.conj()
            left = _or(left, right)
        self.depth -= 1
        return left

    def conj(self) -> Getter:
        left = self.neg()
        while self.at(Tok.KEYWORD, "and"):
            self.take()
            right = self.neg()
            left = _and(left, right)
        return left

    def neg(self) -> Getter:
        if self.at(Tok.KEYWORD, "not"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error("expression nested too deeply")
            inner = self.neg()
            self.depth -= 1
            return lambda e, s: not inner(e, s)
        return self.compare()

    def compare(self) -> Getter:
        left = self.operand()
        tok = self.tok
        if tok.type is Tok.OP and tok.text in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            right = self.operand()
            return _compare(tok.text, left, right)
        if self.at(Tok.KEYWORD, "in"):
            self.take()
            right = self.operand()
            return lambda e, s: contains(left(e, s), right(e, s))
        if self.at(Tok.KEYWORD, "not") and self.tokens[self.i + 1].text == "in":
            self.i += 2
            right = self.operand()
            return lambda e, s: not contains(left(e, s), right(e, s))
        return left

    def operand(self) -> Getter:
        tok = self.take()
        if tok.type is Tok.NUMBER:
            return _const(_number(tok.text))
        if tok.type is Tok.OP and tok.text == "-" and self.tok.type is Tok.NUMBER:
            return _const(-_number(self.take().text))
        if tok.type is Tok.STRING:
            return _const(_unquote(tok.text, tok.pos))
        if tok.type is Tok.KEYWORD and tok.text in ("true", "false", "null"):
            return _const({"true": True, "false": False, "null": None}[tok.text])
        if tok.type is Tok.NAME:
            getter = _name_getter(tok.text, tok.pos)
            if self.at(Tok.OP, "("):
                raise self.error(f"{tok.text!r} cannot be called")
            return getter
        if tok.type is Tok.OP and tok.text == "(":
            inner = self.expr()
            self.expect(Tok.OP, ")")
            return inner
        if tok.type is Tok.OP and tok.text == "[":
            items: list[Getter] = []
            if not self.at(Tok.OP, "]"):
                items.append(self.expr())
                while self.at(Tok.OP, ","):
                    self.take()
                    items.append(self.expr())
            self.expect(Tok.OP, "]")
            frozen = tuple(items)
            return lambda e, s: [item(e, s) for item in frozen]
        self.i -= 1
        raise self.error("expected a value, a name or '('")


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _const(value: object) -> Getter:
    return lambda e, s: value


def _or(left: Getter, right: Getter) -> Getter:
    return lambda e, s: bool(left(e, s)) or bool(right(e, s))


def _and(left: Getter, right: Getter) -> Getter:
    return lambda e, s: bool(left(e, s)) and bool(right(e, s))


def _compare(op: str, left: Getter, right: Getter) -> Getter:
    if op == "==":
        return lambda e, s: equal(left(e, s), right(e, s))
    if op == "!=":
        return lambda e, s: not equal(left(e, s), right(e, s))
    return lambda e, s: _order(op, left(e, s), right(e, s))


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled condition; ``source`` is kept for traces and round trips."""

    source: str
    getter: Getter

    def test(self, event: Event | None, subject: Subject) -> bool:
        return bool(self.getter(event, subject))

    def evaluate(self, event: Event | None, subject: Subject) -> object:
        return self.getter(event, subject)


def compile_expr(source: object) -> Expr:
    """Parse ``source`` into an :class:`Expr`; raises :class:`ExprError` (a ``ValueError``)."""
    if isinstance(source, Expr):
        return source
    if not isinstance(source, str):
        raise ExprError(f"a condition must be a string, got {type(source).__name__}")
    if len(source) > MAX_SOURCE:
        raise ExprError(f"a condition is limited to {MAX_SOURCE} characters")
    if not source.strip():
        raise ExprError("a condition cannot be empty")
    return Expr(source, _Parser(source).parse())


def field_getter(name: str) -> Getter:
    """The getter for a bare name (``value``, ``attrs.volts``); used by threshold triggers."""
    return _name_getter(name, 0)
