"""The segment rule language: tokenizer, parser, type checker and compiler to Ibis.

A rule is parsed into a syntax tree, checked against the columns it may use, and compiled to an
Ibis boolean expression. Nothing is ever ``eval``-ed or pasted into SQL: literals become Ibis
literals and names are looked up in a known schema.

Grammar (lowest precedence first)::

    rule    := or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := sum [op sum | ['not'] 'in' '(' literal, ... ')' | 'between' sum 'and' sum
                    | 'is' ['not'] 'null']
    sum     := product (('+' | '-') product)*
    product := unary (('*' | '/') unary)*
    unary   := '-' unary | atom
    atom    := number | 'string' | true | false | name | call | '(' rule ')'
    call    := count '(' [source ','] [rule ','] [window] ')'
             | sum '(' measure [',' rule] [',' window] ')'
             | exists '(' [source ','] rule [',' window] ')'
             | has_tag '(' 'tag' ')'
    window  := 'last' number ('hour' | 'hours' | 'day' | 'days' | 'week' | 'weeks'
                              | 'month' | 'months')
    source  := 'purchases' | 'returns' | 'events' | 'responses'

Every input gives a syntax tree or a :class:`RuleError` pointing at a position, never another
exception: nesting is bounded (``Limits.max_depth``: parentheses, ``not``, ``-``, calls, and
runs of ``+ - * /``), ``and`` / ``or`` chains of any length are built as balanced trees, dates
and numbers are checked against the columns they are compared with, and windows are bounded
(``Limits.max_window_days``). A text column compared with a value it never holds gives a
:class:`RuleWarning` ("did you mean 'high'?") from :func:`value_warnings`.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir

from segmentum.errors import InputError
from segmentum.features.customer import mark_purchases, money

# --------------------------------------------------------------------------------------------
# Errors


class RuleError(InputError):
    """A rule that cannot be parsed, checked or compiled; points at the position at fault."""

    def __init__(self, message: str, text: str, pos: int, hint: str | None = None) -> None:
        self.text = text
        self.pos = pos
        self.reason = message
        line = f"{message} at position {pos + 1}:\n    {text}\n    {' ' * pos}^"
        super().__init__(line, hint)


@dataclass(frozen=True)
class RuleWarning:
    """A rule that is valid but probably not what was meant (it would select nobody)."""

    message: str
    position: int
    hint: str | None = None

    def __str__(self) -> str:
        tail = f"; {self.hint}" if self.hint else ""
        return f"{self.message} (position {self.position + 1}){tail}"


@dataclass(frozen=True)
class Limits:
    """Bounds that keep every rule cheap to parse, check and run (settings ``rule_max_*``)."""

    max_depth: int = 40
    max_window_days: int = 36525

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(
            max_depth=int(getattr(settings, "rule_max_depth", cls.max_depth)),
            max_window_days=int(getattr(settings, "rule_max_window_days", cls.max_window_days)),
        )


# --------------------------------------------------------------------------------------------
# Tokens

KEYWORDS = {"and", "or", "not", "in", "between", "is", "null", "true", "false", "last"}
UNITS = {"day": 1, "days": 1, "week": 7, "weeks": 7, "month": 30, "months": 30}
# Hours: for real-time rules (``exists(event == 'cart_abandoned', last 1 hours)``).
HOUR_UNITS = ("hour", "hours")
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<>|<=|>=|<|>|=|\+|-|\*|/|\(|\)|,)
  | (?P<name>[^\W\d]\w*)
    """,
    re.VERBOSE | re.UNICODE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, op, name, keyword, end
    value: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """Split a rule into tokens; an unknown character is an error at its position."""
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in "'\"":
                raise RuleError("this text is never closed", text, pos, "end it with a quote")
            raise RuleError(f"unexpected character {text[pos]!r}", text, pos)
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "string":
            quote = value[0]
            body = value[1:-1]
            value = body.replace("''", "'") if quote == "'" else body
            value = re.sub(r"\\(.)", r"\1", value)
        elif kind == "name" and value.lower() in KEYWORDS:
            kind, value = "keyword", value.lower()
        elif kind == "op" and value in ("=", "<>"):
            value = "==" if value == "=" else "!="
        if kind != "ws":
            out.append(Token(kind, value, m.start()))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


# --------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True)
class Node:
    pos: int


@dataclass(frozen=True)
class Literal(Node):
    value: Any  # float, str, bool or None


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Unary(Node):
    op: str  # 'not' or '-'
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # and or == != < <= > >= + - * /
    left: Node
    right: Node


@dataclass(frozen=True)
class InList(Node):
    operand: Node
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Between(Node):
    operand: Node
    low: Node
    high: Node


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool


@dataclass(frozen=True)
class Window(Node):
    days: int
    hours: int = 0  # a window in hours has days == 0

    @property
    def seconds(self) -> int:
        return self.days * 86400 + self.hours * 3600

    def interval(self) -> Any:
        """The window as an Ibis interval."""
        return ibis.interval(hours=self.hours) if self.hours else ibis.interval(days=self.days)


@dataclass(frozen=True)
class Call(Node):
    func: str  # count, sum, exists, has_tag
    source: str | None  # purchases, returns, events (count / exists) or measure (sum)
    where: Node | None
    window: Window | None
    arg: str | None = None  # has_tag's tag


FUNCTIONS = ("count", "sum", "exists", "has_tag")
SOURCES = ("purchases", "returns", "events", "responses")
MEASURES = {"spend": "amount", "amount": "amount", "quantity": "quantity", "items": "quantity"}


class Parser:
    """Recursive descent over the tokens; every error names what was expected."""

    def __init__(self, text: str, limits: Limits | None = None) -> None:
        self.text = text
        self.limits = limits or Limits()
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def enter(self, pos: int) -> None:
        """One level deeper; past the limit an error (Python's own stack would give out)."""
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise RuleError(
                f"the rule nests too deeply (more than {self.limits.max_depth} levels of "
                "parentheses, 'not', '-' and calls)",
                self.text,
                pos,
                "write it flatter, e.g. a and b and c instead of nested parentheses "
                "(the limit is the setting rule_max_depth)",
            )

    def leave(self) -> None:
        self.depth -= 1

    # helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def at(self, kind: str, value: str | None = None) -> bool:
        t = self.tok
        return t.kind == kind and (value is None or t.value == value)

    def expect(self, kind: str, value: str, what: str) -> Token:
        if not self.at(kind, value):
            self.fail(f"expected {what}")
        return self.advance()

    def fail(self, message: str) -> None:
        t = self.tok
        found = "the end of the rule" if t.kind == "end" else repr(t.value)
        hint = None
        after = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if (
            t.value == ","
            and self.i > 0
            and self.tokens[self.i - 1].kind == "number"
            and after is not None
            and after.kind == "number"
            and after.pos == t.pos + 1
            and self.text[t.pos - 1 : t.pos].isdigit()
        ):
            # "1000,5": a decimal comma, as Spanish writes numbers.
            number = f"{self.tokens[self.i - 1].value}.{after.value}"
            hint = f"rules write decimals with a point, e.g. {number}"
        raise RuleError(f"{message}, found {found}", self.text, t.pos, hint)

    # grammar
    def parse(self) -> Node:
        if self.at("end"):
            raise RuleError("the rule is empty", self.text, 0, "write a condition, e.g. x >= 2")
        node = self.parse_or()
        if not self.at("end"):
            self.fail("expected 'and', 'or' or the end of the rule")
        return node

    def parse_or(self) -> Node:
        operands, ops = [self.parse_and()], []
        while self.at("keyword", "or"):
            ops.append(self.advance().pos)
            operands.append(self.parse_and())
        return _balanced("or", operands, ops)

    def parse_and(self) -> Node:
        operands, ops = [self.parse_not()], []
        while self.at("keyword", "and"):
            ops.append(self.advance().pos)
            operands.append(self.parse_not())
        return _balanced("and", operands, ops)

    def parse_not(self) -> Node:
        # A run of 'not' is read in a loop (not by recursion): only its length counts as depth.
        nots: list[Token] = []
        while self.at("keyword", "not"):
            nots.append(self.advance())
            self.enter(nots[-1].pos)
        node = self.parse_compare()
        for t in reversed(nots):
            node = Unary(t.pos, "not", node)
            self.leave()
        return node

    def parse_compare(self) -> Node:
        left = self.parse_sum()
        t = self.tok
        if t.kind == "op" and t.value in ("==", "!=", "<", "<=", ">", ">="):
            self.advance()
            return Binary(t.pos, t.value, left, self.parse_sum())
        negated = False
        if self.at("keyword", "not") and self.tokens[self.i + 1].value == "in":
            self.advance()
            negated = True
        if self.at("keyword", "in"):
            t = self.advance()
            self.expect("op", "(", "'(' to open the list of values")
            values = [self.parse_literal()]
            while self.at("op", ","):
                self.advance()
                values.append(self.parse_literal())
            self.expect("op", ")", "',' or ')' to close the list")
            return InList(t.pos, left, tuple(values), negated)
        if self.at("keyword", "between"):
            t = self.advance()
            low = self.parse_sum()
            self.expect("keyword", "and", "'and' between the two bounds")
            return Between(t.pos, left, low, self.parse_sum())
        if self.at("keyword", "is"):
            t = self.advance()
            neg = False
            if self.at("keyword", "not"):
                self.advance()
                neg = True
            self.expect("keyword", "null", "'null' after 'is'")
            return IsNull(t.pos, left, neg)
        return left

    def parse_sum(self) -> Node:
        return self.parse_chain(("+", "-"), self.parse_product)

    def parse_product(self) -> Node:
        return self.parse_chain(("*", "/"), self.parse_unary)

    def parse_chain(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        """Left-associative ``a op b op c``: each operator is one level deeper in the tree."""
        node = operand()
        entered = 0
        while self.tok.kind == "op" and self.tok.value in ops:
            t = self.advance()
            self.enter(t.pos)
            entered += 1
            node = Binary(t.pos, t.value, node, operand())
        self.depth -= entered
        return node

    def parse_unary(self) -> Node:
        minus: list[Token] = []
        while self.at("op", "-"):
            minus.append(self.advance())
            self.enter(minus[-1].pos)
        node = self.parse_atom()
        for t in reversed(minus):
            node = Unary(t.pos, "-", node)
            self.leave()
        return node

    def parse_literal(self) -> Literal:
        t = self.tok
        sign = 1.0
        if self.at("op", "-"):
            self.advance()
            sign = -1.0
            t = self.tok
            if t.kind != "number":
                self.fail("expected a number after '-'")
        if t.kind == "number":
            self.advance()
            value = float(t.value)
            if not math.isfinite(value) or len(t.value) > 30:
                raise RuleError("this number is too large", self.text, t.pos)
            return Literal(t.pos, sign * value)
        if t.kind == "string":
            self.advance()
            return Literal(t.pos, t.value)
        if t.kind == "keyword" and t.value in ("true", "false", "null"):
            self.advance()
            return Literal(t.pos, {"true": True, "false": False, "null": None}[t.value])
        self.fail("expected a value (a number, a 'text' in quotes, true or false)")
        raise AssertionError  # pragma: no cover

    def parse_atom(self) -> Node:
        t = self.tok
        if t.kind in ("number", "string") or (
            t.kind == "keyword" and t.value in ("true", "false", "null")
        ):
            return self.parse_literal()
        if t.kind == "name":
            self.advance()
            if self.at("op", "("):
                self.enter(t.pos)
                call = self.parse_call(t)
                self.leave()
                return call
            return Name(t.pos, t.value)
        if self.at("op", "("):
            self.enter(self.advance().pos)
            node = self.parse_or()
            self.expect("op", ")", "')' to close the parenthesis")
            self.leave()
            return node
        self.fail("expected a column, a segment, a value or '('")
        raise AssertionError  # pragma: no cover

    def parse_window(self) -> Window:
        t = self.advance()  # 'last'
        if not self.at("number"):
            self.fail("expected a number of days, weeks or months after 'last'")
        n = self.advance()
        unit = self.tok
        if unit.kind == "name" and unit.value.lower() in HOUR_UNITS:
            self.advance()
            hours = float(n.value)
            if hours != int(hours) or hours < 1:
                raise RuleError("a window must be a whole number of hours >= 1", self.text, n.pos)
            if hours > self.limits.max_window_days * 24:
                raise RuleError(
                    f"a window can be at most {self.limits.max_window_days:,} days",
                    self.text,
                    n.pos,
                    "leave the window out to count the whole history",
                )
            return Window(t.pos, 0, int(hours))
        if unit.kind != "name" or unit.value.lower() not in UNITS:
            self.fail("expected 'hours', 'days', 'weeks' or 'months'")
        self.advance()
        days = float(n.value) * UNITS[unit.value.lower()]
        if days != int(days) or days < 1:
            raise RuleError("a window must be a whole number of days >= 1", self.text, n.pos)
        longest = self.limits.max_window_days
        if days > longest:
            raise RuleError(
                f"a window can be at most {longest:,} days ({longest / 365.25:.0f} years)",
                self.text,
                n.pos,
                "leave the window out to count the whole history",
            )
        return Window(t.pos, int(days))

    def parse_call(self, name: Token) -> Call:
        func = name.value.lower()
        if func not in FUNCTIONS:
            close = difflib.get_close_matches(func, FUNCTIONS, n=1)
            hint = f"did you mean {close[0]}()?" if close else "functions: " + ", ".join(FUNCTIONS)
            raise RuleError(f"unknown function {name.value!r}", self.text, name.pos, hint)
        self.advance()  # '('
        source: str | None = None
        where: Node | None = None
        window: Window | None = None
        arg: str | None = None
        if func == "has_tag":
            if not self.at("string"):
                self.fail("expected a tag in quotes, e.g. has_tag('travel')")
            arg = self.advance().value
            self.expect("op", ")", "')' after the tag")
            return Call(name.pos, func, None, None, None, arg)
        if func == "sum":
            m = self.tok
            if m.kind != "name" or m.value.lower() not in MEASURES:
                self.fail("expected what to add up: " + ", ".join(MEASURES))
            source = m.value.lower()
            self.advance()
            if not self.at("op", ")"):
                self.expect("op", ",", "',' or ')'")
        elif self.tok.kind == "name" and self.tok.value.lower() in SOURCES:
            nxt = self.tokens[self.i + 1]
            if nxt.kind == "op" and nxt.value in (",", ")"):
                source = self.advance().value.lower()
                if self.at("op", ","):
                    self.advance()
        while not self.at("op", ")"):
            if self.at("keyword", "last"):
                if window is not None:
                    self.fail("expected one window only")
                window = self.parse_window()
            elif where is None and window is None:
                where = self.parse_or()
            else:
                self.fail("expected ')' to close the call")
            if self.at("op", ","):
                self.advance()
            elif not self.at("op", ")"):
                self.fail("expected ',' or ')'")
        self.advance()
        if func == "exists" and where is None and source is None:
            raise RuleError(
                "exists() needs a condition", self.text, name.pos, "e.g. exists(event == 'x')"
            )
        return Call(name.pos, func, source, where, window, arg)


def _balanced(op: str, operands: list[Node], ops: list[int]) -> Node:
    """``a op b op c ...`` as a balanced tree (``and`` and ``or`` are associative): a chain of
    thousands of conditions is then only a few levels deep for the checker and the engine."""
    if len(operands) == 1:
        return operands[0]
    mid = len(operands) // 2
    return Binary(
        ops[mid - 1],
        op,
        _balanced(op, operands[:mid], ops[: mid - 1]),
        _balanced(op, operands[mid:], ops[mid:]),
    )


def parse(text: str, limits: Limits | None = None) -> Node:
    """Parse a rule into its syntax tree, or raise :class:`RuleError` at the position at fault."""
    try:
        return Parser(text, limits).parse()
    except RecursionError as exc:  # a backstop: the depth limit keeps far below the stack
        raise RuleError(
            "the rule nests too deeply", text, 0, "lower the setting rule_max_depth"
        ) from exc


# --------------------------------------------------------------------------------------------
# Walking the tree


def children(node: Node) -> Iterable[Node]:
    if isinstance(node, Unary):
        yield node.operand
    elif isinstance(node, Binary):
        yield node.left
        yield node.right
    elif isinstance(node, InList):
        yield node.operand
        yield from node.values
    elif isinstance(node, Between):
        yield node.operand
        yield node.low
        yield node.high
    elif isinstance(node, IsNull):
        yield node.operand


def walk(node: Node) -> Iterable[Node]:
    """Every node of the tree, not descending into calls' inner conditions."""
    yield node
    for c in children(node):
        yield from walk(c)


def calls(node: Node) -> list[Call]:
    return [n for n in walk(node) if isinstance(n, Call) and n.func != "has_tag"]


def names(node: Node) -> set[str]:
    """The column and segment names a rule uses at customer level (not inside calls)."""
    return {n.name for n in walk(node) if isinstance(n, Name)}


# --------------------------------------------------------------------------------------------
# Types

NUMBER, TEXT, BOOL, DATE, NULL = "number", "text", "boolean", "date", "null"


def kind_of(dtype: Any) -> str:
    """The rule language's type of an Ibis data type."""
    if dtype.is_boolean():
        return BOOL
    if dtype.is_numeric():
        return NUMBER
    if dtype.is_date() or dtype.is_timestamp():
        return DATE
    return TEXT


# Line-level columns usable inside count / sum / exists conditions.
LINE_COLUMNS: dict[str, dict[str, str]] = {
    "transactions": {
        "category": "category",
        "product_id": "product_id",
        "product_name": "product_name",
        "sales_channel": "sales_channel",
        "channel": "sales_channel",
        "device": "device",
        "promo_code": "promo_code",
        "store_id": "store_id",
        "amount": "amount",
        "quantity": "quantity",
        "unit_price": "unit_price",
        "discount": "discount",
    },
    # Survey answers and reviews (count(responses, nps <= 6, last 90 days)).
    "responses": {
        "nps": "nps",
        "csat": "csat",
        "ces": "ces",
        "rating": "rating",
        "channel": "channel",
        "campaign_id": "campaign_id",
        "product_id": "product_id",
        "answer": "answer",
    },
    "events": {
        "event": "event_type",
        "event_type": "event_type",
        "device": "device",
        "channel": "channel",
        "campaign_id": "campaign_id",
        "product_id": "product_id",
    },
}


@dataclass
class Scope:
    """What a rule may refer to: columns with their types, and other segments."""

    columns: Mapping[str, str]  # name -> kind
    segments: Mapping[str, str] = field(default_factory=dict)  # name -> level
    line_schemas: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # table -> kinds
    allow_windows: bool = True


def check(text: str, node: Node, scope: Scope) -> str:
    """Type-check the tree; return its type. Unknown names and type mismatches are errors."""

    def err(msg: str, at: Node, hint: str | None = None) -> RuleError:
        return RuleError(msg, text, at.pos, hint)

    def unknown(name: str, at: Node, known: Iterable[str], what: str) -> RuleError:
        close = difflib.get_close_matches(name, list(known), n=3)
        hint = ("did you mean " + " or ".join(close) + "?") if close else f"see the {what}"
        return err(f"unknown column or segment {name!r}", at, hint)

    def typ(n: Node, cols: Mapping[str, str], inner: bool) -> str:
        if isinstance(n, Literal):
            if n.value is None:
                # null is no value to compute with or compare to (it would silently be null).
                raise err(
                    "null is not a value: test for it with 'is null' or 'is not null'",
                    n,
                    "e.g. city is not null",
                )
            if isinstance(n.value, bool):
                return BOOL
            if isinstance(n.value, float):
                return NUMBER
            return TEXT
        if isinstance(n, Name):
            if n.name in cols:
                return cols[n.name]
            if not inner and n.name in scope.segments:
                return BOOL
            if inner:
                raise unknown(n.name, n, cols, "line columns: " + ", ".join(sorted(cols)))
            raise unknown(n.name, n, [*cols, *scope.segments], "list of columns (segmentum docs)")
        if isinstance(n, Unary):
            t = typ(n.operand, cols, inner)
            want = BOOL if n.op == "not" else NUMBER
            if t not in (want, NULL):
                raise err(f"'{n.op}' needs a {want}, got a {t}", n.operand)
            return want
        if isinstance(n, Binary):
            lt, rt = typ(n.left, cols, inner), typ(n.right, cols, inner)
            if n.op in ("and", "or"):
                for side, t in ((n.left, lt), (n.right, rt)):
                    if t not in (BOOL, NULL):
                        raise err(
                            f"'{n.op}' joins conditions, but this is a {t}",
                            side,
                            "compare it with something, e.g. x > 0",
                        )
                return BOOL
            if n.op in ("+", "-", "*", "/"):
                for side, t in ((n.left, lt), (n.right, rt)):
                    if t not in (NUMBER, NULL):
                        raise err(f"'{n.op}' needs numbers, got a {t}", side)
                return NUMBER
            compatible(lt, rt, n.right, n.op)
            literal_fits(n.left, rt)
            literal_fits(n.right, lt)
            return BOOL
        if isinstance(n, InList):
            t = typ(n.operand, cols, inner)
            for v in n.values:
                compatible(t, typ(v, cols, inner), v, "in")
                literal_fits(v, t)
            return BOOL
        if isinstance(n, Between):
            t = typ(n.operand, cols, inner)
            for bound in (n.low, n.high):
                compatible(t, typ(bound, cols, inner), bound, "between")
                literal_fits(bound, t)
            return BOOL
        if isinstance(n, IsNull):
            typ(n.operand, cols, inner)
            return BOOL
        if isinstance(n, Call):
            if inner:
                raise err(f"{n.func}() cannot be nested inside another count, sum or exists", n)
            if n.func == "has_tag":
                if "tags" not in cols:
                    raise err("has_tag() needs the customers' tags, which are not loaded", n)
                return BOOL
            if not scope.allow_windows:
                raise err(f"{n.func}() is not available here", n, "use aggregated columns")
            table = call_table(n)
            line_cols = scope.line_schemas.get(table)
            if line_cols is None:
                raise err(
                    f"{n.func}() needs the {table} table, which is not loaded",
                    n,
                    f"load it: segmentum ingest {table} FILE",
                )
            if n.where is not None:
                t = typ(n.where, line_cols, True)
                if t not in (BOOL, NULL):
                    raise err(f"the condition of {n.func}() must be true or false", n.where)
            return BOOL if n.func == "exists" else NUMBER
        raise err("cannot use this here", n)  # pragma: no cover

    def compatible(a: str, b: str, at: Node, op: str) -> None:
        if NULL in (a, b):
            raise err(
                "compare with null using 'is null' or 'is not null'", at, "e.g. city is not null"
            )
        if a == b or (a == DATE and b == TEXT) or (a == TEXT and b == DATE):
            if op in ("<", "<=", ">", ">=", "between") and BOOL in (a, b):
                raise err(f"cannot order true/false values with '{op}'", at)
            return
        raise err(f"cannot compare a {a} with a {b} using '{op}'", at)

    def literal_fits(n: Node, other: str) -> None:
        """A text compared with a date must be a date the engine can read."""
        if isinstance(n, Literal) and isinstance(n.value, str) and other == DATE:
            try:
                _dt.date.fromisoformat(n.value)
            except ValueError:
                raise err(
                    f"{n.value!r} is not a date",
                    n,
                    "write dates as 'YYYY-MM-DD', e.g. '2024-03-31'",
                ) from None

    try:
        return typ(node, scope.columns, False)
    except RecursionError as exc:  # a backstop: parse() bounds the depth far below the stack
        raise err("the rule nests too deeply", node, "lower the setting rule_max_depth") from exc


def call_table(call: Call) -> str:
    """The raw table a window call reads: transactions, events or responses."""
    if call.func == "sum" or call.source in ("purchases", "returns"):
        return "transactions"
    if call.source in ("events", "responses"):
        return call.source
    # exists(cond) / count(cond): events when the condition mentions the event type, survey
    # answers when it mentions a score.
    used = names(call.where) if call.where is not None else set()
    if used & {"nps", "csat", "ces", "rating"}:
        return "responses"
    return "events" if used & {"event", "event_type", "campaign_id"} else "transactions"


def call_key(call: Call) -> str:
    """A canonical name for a window call: the same call in two rules is computed once."""
    return "w_" + re.sub(r"\W+", "_", _canon(call)).strip("_")[:48] + f"_{_hash(_canon(call))}"


def _canon(n: Node | None) -> str:
    if n is None:
        return ""
    if isinstance(n, Literal):
        return repr(n.value)
    if isinstance(n, Name):
        return n.name
    if isinstance(n, Call):
        w = "all"
        if n.window is not None:
            w = f"last{n.window.hours}h" if n.window.hours else f"last{n.window.days}"
        return f"{n.func}({n.source},{_canon(n.where)},{w},{n.arg})"
    parts = [_canon(c) for c in children(n)]
    tag = getattr(n, "op", type(n).__name__) + str(getattr(n, "negated", ""))
    return f"{tag}({','.join(parts)})"


def _hash(s: str) -> str:
    import hashlib

    return hashlib.sha1(s.encode()).hexdigest()[:8]


# --------------------------------------------------------------------------------------------
# Compilation to Ibis


def _lit(value: Any, kind: str) -> ir.Value:
    if kind == DATE and isinstance(value, str):
        return ibis.literal(_dt.date.fromisoformat(value), "date")
    if isinstance(value, float):
        return ibis.literal(value, "float64")
    return ibis.literal(value)


def compile_node(
    text: str,
    node: Node,
    resolve: Callable[[str], ir.Value],
    kinds: Mapping[str, str],
    window_column: Callable[[Call], ir.Value] | None = None,
) -> ir.Value:
    """Compile a checked tree to an Ibis expression; names are resolved by ``resolve``."""

    def kind(n: Node) -> str:
        if isinstance(n, Name):
            return kinds.get(n.name, BOOL)
        if isinstance(n, Literal):
            return NUMBER if isinstance(n.value, float) else TEXT
        return NUMBER

    def other(a: Node, b: Node) -> str:
        """The type a literal on one side is read as: the type of the other side."""
        return kind(a) if not isinstance(a, Literal) else kind(b)

    def c(n: Node, as_kind: str | None = None) -> ir.Value:
        if isinstance(n, Literal):
            return _lit(n.value, as_kind or kind(n))
        if isinstance(n, Name):
            v = resolve(n.name)
            return v.cast("date") if kinds.get(n.name) == DATE else v
        if isinstance(n, Unary):
            inner = c(n.operand)
            return ~inner if n.op == "not" else -inner
        if isinstance(n, Binary):
            if n.op in ("and", "or"):
                lft, rgt = c(n.left), c(n.right)
                return (lft & rgt) if n.op == "and" else (lft | rgt)
            k = other(n.left, n.right)
            lft, rgt = c(n.left, k), c(n.right, k)
            if n.op == "/":
                return lft.cast("float64") / ibis.ifelse(rgt == 0, ibis.null(), rgt)
            ops: dict[str, Callable[[Any, Any], Any]] = {
                "==": lambda a, b: a == b,
                "!=": lambda a, b: a != b,
                "<": lambda a, b: a < b,
                "<=": lambda a, b: a <= b,
                ">": lambda a, b: a > b,
                ">=": lambda a, b: a >= b,
                "+": lambda a, b: a + b,
                "-": lambda a, b: a - b,
                "*": lambda a, b: a * b,
            }
            return ops[n.op](lft, rgt)
        if isinstance(n, InList):
            k = kind(n.operand)
            # isin, not a chain of ors: a list of thousands of values stays one flat operation.
            hit = c(n.operand).isin([_lit(v.value, k) for v in n.values])
            return ~hit if n.negated else hit
        if isinstance(n, Between):
            # Literals are read as the type of the first side that is not a literal.
            sides = (n.operand, n.low, n.high)
            k = next((kind(x) for x in sides if not isinstance(x, Literal)), kind(n.operand))
            return c(n.operand, k).between(c(n.low, k), c(n.high, k))
        if isinstance(n, IsNull):
            v = c(n.operand)
            return v.notnull() if n.negated else v.isnull()
        if isinstance(n, Call):
            if n.func == "has_tag":
                return _has_tag(resolve("tags"), n.arg or "")
            if window_column is None:  # pragma: no cover - checked before
                raise RuleError(f"{n.func}() is not available here", text, n.pos)
            return window_column(n)
        raise RuleError("cannot compile this", text, n.pos)  # pragma: no cover

    return c(node)


def _has_tag(tags: ir.Value, tag: str) -> ir.BooleanValue:
    """Tags are stored as one text separated by ',' or '|'; match a whole tag, any case."""
    norm = tags.lower().replace("|", ",").replace(", ", ",")
    wrapped = ibis.literal(",") + norm + ibis.literal(",")
    return wrapped.contains("," + tag.strip().lower() + ",").fill_null(False)


def window_aggregates(
    calls_: Iterable[Call],
    table: ir.Table,
    table_name: str,
    as_of: _dt.date,
    text_of: Mapping[Call, str],
    cancelled: ir.Table | None = None,
    dates: ir.Table | None = None,
    one_day_invoices: bool | None = None,
    days: ir.Table | None = None,
) -> ir.Table:
    """One pass over ``table``: every window call over it as a conditional aggregate per customer.

    All calls over the same table, from every rule, share this single grouped scan.
    ``cancelled``: for transactions, the orders that returns cancel in full
    (:func:`segmentum.ingest.returns.cancelled_invoices`): they are not purchases, as in the
    features. ``dates`` (columns ``as_of`` and ``cutoff``, its midnight as a timestamp): the
    history backfill's snapshot dates; each line then joins the dates whose windows hold it,
    and the aggregates come per customer and ``as_of`` (``as_of`` is then ignored).
    ``one_day_invoices``: whether every invoice of ``table`` has its lines on one day
    (:func:`invoices_within_a_day`), when the caller knows; checked here otherwise.
    ``days``: :func:`window_days` of these calls, when the caller keeps it for several calls
    (a backfill's batches of dates); used when the windows add up by day.
    """
    calls_ = list(dict.fromkeys(calls_))
    windows = [c.window for c in calls_]
    if dates is not None and by_whole_days(calls_, table, table_name, one_day_invoices):
        if days is None:
            days = window_days(calls_, table, table_name, text_of, cancelled)
        return _windows_by_day(calls_, days, dates)
    longest = None
    if all(w is not None for w in windows):
        longest = max((w for w in windows if w is not None), key=lambda w: w.seconds)
    keys = ["customer_id"]
    if dates is None:
        cutoff = ibis.literal(_dt.datetime(as_of.year, as_of.month, as_of.day), "timestamp")
        t = table.filter(table.customer_id.notnull() & (table.timestamp < cutoff))
        if longest is not None:
            t = t.filter(t.timestamp >= cutoff - longest.interval())
        if table_name == "transactions" and cancelled is not None:
            t = mark_purchases(t, cancelled)
    else:
        t = table.filter(table.customer_id.notnull())
        if table_name == "transactions" and cancelled is not None:
            t = mark_purchases(t, cancelled)
        on = [t.timestamp < dates.cutoff]
        if longest is not None:
            on.append(t.timestamp >= dates.cutoff - longest.interval())
        t = t.join(dates.select("as_of", "cutoff"), on)
        cutoff = t.cutoff
        keys.append("as_of")
    conds = _call_conditions(calls_, t, table_name, text_of)
    aggs: dict[str, ir.Scalar] = {}
    for call in calls_:
        cond = conds[call]
        if call.window is not None:
            cond = (t.timestamp >= cutoff - call.window.interval()) & cond
        key = call_key(call)
        if call.func == "sum":
            col = MEASURES[call.source or "spend"]
            aggs[key] = money(t[col].sum(where=cond)).cast("float64")
        elif table_name == "transactions":
            aggs[key] = t.invoice_id.nunique(where=cond).cast("float64")
        else:
            aggs[key] = t.count(where=cond).cast("float64")
    return t.group_by(keys).aggregate(**aggs)


def _call_conditions(
    calls_: list[Call], t: ir.Table, table_name: str, text_of: Mapping[Call, str]
) -> dict[Call, ir.BooleanValue]:
    """What each call counts or sums on one line, its time window left out."""
    mapping = LINE_COLUMNS[table_name]
    line_kinds = {k: kind_of(t.schema()[v]) for k, v in mapping.items() if v in t.columns}
    out: dict[Call, ir.BooleanValue] = {}
    for call in calls_:
        cond: ir.BooleanValue = ibis.literal(True)
        if table_name == "transactions" and call.func != "sum":
            # count / exists over purchases (the default) or returns; sum() is net of returns.
            bought = t.is_purchase if "is_purchase" in t.columns else t.quantity > 0
            cond = cond & ((t.quantity < 0) if call.source == "returns" else bought)
        if call.where is not None:
            where = compile_node(
                text_of[call], call.where, lambda name: t[mapping[name]], line_kinds
            )
            cond = cond & where.fill_null(False)
        out[call] = cond
    return out


def invoices_within_a_day(table: ir.Table) -> bool:
    """Whether no invoice has lines on two days: then counting each day's distinct invoices
    and adding the days gives the distinct invoices of a window of days."""
    t = table.filter(table.customer_id.notnull())
    t = t.group_by(["customer_id", "invoice_id"]).aggregate(
        lo=t.timestamp.date().min(), hi=t.timestamp.date().max()
    )
    return int(t.filter(t.lo != t.hi).count().to_pyarrow().as_py() or 0) == 0


def by_whole_days(
    calls_: list[Call], table: ir.Table, table_name: str, one_day_invoices: bool | None = None
) -> bool:
    """Whether the calls' windows over many dates add up by day (:func:`window_days`): every
    window is whole days (or all time), and, when they count orders, no invoice spans two
    days (``one_day_invoices`` when the caller knows, checked otherwise)."""
    if not calls_ or any(c.window is not None and c.window.hours for c in calls_):
        return False
    if table_name == "transactions" and any(c.func != "sum" for c in calls_):
        # Distinct invoices add up over days only when no invoice spans two.
        return invoices_within_a_day(table) if one_day_invoices is None else one_day_invoices
    return True


def window_days(
    calls_: list[Call],
    table: ir.Table,
    table_name: str,
    text_of: Mapping[Call, str],
    cancelled: ir.Table | None,
) -> ir.Table:
    """Per customer and day (``customer_id``, ``day``): what each call adds up that day, the
    column named by :func:`call_key` (a sum, or a count of lines or of distinct invoices).

    The windows of every snapshot date are then sums of these days (:func:`window_aggregates`
    with ``dates``); a backfill computes this once for all its batches of dates instead of
    once a batch (at 100M lines, a grouped pass over every line for each of 24 dates).
    """
    t = table.filter(table.customer_id.notnull())
    if table_name == "transactions" and cancelled is not None:
        t = mark_purchases(t, cancelled)
    if "day" not in t.columns:
        t = t.mutate(day=t.timestamp.date())
    conds = _call_conditions(calls_, t, table_name, text_of)
    keys = ["customer_id", "day"]
    # Distinct invoices without a DISTINCT aggregate (one hash table of every customer, day
    # and invoice per call, held in memory: 120 million lines ran out of it): one row per
    # invoice and day first, saying which calls it meets, then a plain sum.
    by_invoice = table_name == "transactions" and any(c.func != "sum" for c in calls_)
    per_day: dict[str, ir.Scalar] = {}
    for call in calls_:
        key, cond = call_key(call), conds[call]
        if call.func == "sum":
            per_day[key] = t[MEASURES[call.source or "spend"]].sum(where=cond)
        elif by_invoice:
            per_day[key] = (cond & t.invoice_id.notnull()).cast("int64").max()
        else:
            per_day[key] = t.count(where=cond)
    if by_invoice:
        t = t.group_by([*keys, "invoice_id"]).aggregate(**per_day)
        per_day = {key: t[key].sum() for key in per_day}
    return t.group_by(keys).aggregate(**per_day)


def _windows_by_day(calls_: list[Call], days: ir.Table, dates: ir.Table) -> ir.Table:
    """:func:`window_aggregates` over snapshot ``dates`` when every window is whole days.

    ``days``: the lines added up per customer and day (:func:`window_days`); each day then
    joins, by equality, the dates whose windows hold it, through a small table of
    ``(as_of, day, age)`` pairs (age: days before ``as_of``, up to the longest window, or to
    the first day for a call over all time), and the days are added up per customer and date.
    Joining the raw lines with every date whose window holds them repeated each line once per
    date (on 120 million lines the spill outgrew the disk). The results are those of the
    line-level join: a window of ``n`` days before ``as_of`` holds exactly the lines of the days
    ``as_of - n`` to ``as_of - 1`` (the cutoff is midnight); distinct invoices add up over days
    because the caller checked that no invoice has lines on two days.
    """
    snaps = dates.select("as_of").to_pyarrow().column("as_of").to_pylist()
    if all(c.window is not None for c in calls_):
        longest = max(c.window.days for c in calls_ if c.window is not None)
    else:  # a call over all time: every day before the newest date
        first = days.day.min().to_pyarrow().as_py()
        longest = max((max(snaps) - first).days, 1) if first is not None else 1
    pairs = [(d, d - _dt.timedelta(days=k), k) for d in snaps for k in range(1, longest + 1)]
    grid = ibis.memtable(
        {
            "as_of": [p[0] for p in pairs],
            "day": [p[1] for p in pairs],
            "age": [p[2] for p in pairs],
        },
        schema={"as_of": "date", "day": "date", "age": "int32"},
    )
    # Only the days some window holds (a backfill keeps every day of its dates in ``days``).
    lo = min(snaps) - _dt.timedelta(days=longest)
    top = ibis.literal(max(snaps), "date")
    days = days.filter((days.day >= ibis.literal(lo, "date")) & (days.day < top))
    j = days.join(grid, "day")
    aggs: dict[str, ir.Scalar] = {}
    for call in calls_:
        key = call_key(call)
        within = j.age <= call.window.days if call.window is not None else None
        total = j[key].sum(where=within)
        if call.func == "sum":
            total = money(total)
        aggs[key] = total.fill_null(0).cast("float64")
    return j.group_by(["customer_id", "as_of"]).aggregate(**aggs)


# --------------------------------------------------------------------------------------------
# Warnings: comparisons with a value the column never holds

_VALUES_TTL_S = 300.0
_values_cache: dict[tuple[Any, str], tuple[float, list[str] | None]] = {}
_values_lock = threading.Lock()


def compared_values(node: Node) -> list[tuple[str, Literal, str]]:
    """Every (column, text literal, operator) of ``col == 'x'``, ``col != 'x'``, ``col in (...)``
    at customer level (not inside count / sum / exists)."""
    out: list[tuple[str, Literal, str]] = []
    for n in walk(node):
        if isinstance(n, Binary) and n.op in ("==", "!="):
            for a, b in ((n.left, n.right), (n.right, n.left)):
                if isinstance(a, Name) and isinstance(b, Literal) and isinstance(b.value, str):
                    out.append((a.name, b, n.op))
        elif isinstance(n, InList) and isinstance(n.operand, Name):
            op = "!=" if n.negated else "=="
            out += [(n.operand.name, v, op) for v in n.values if isinstance(v.value, str)]
    return out


def distinct_values(
    view: ir.Table, columns: Iterable[str], max_distinct: int, cache_key: Any = None
) -> dict[str, list[str] | None]:
    """The values of each text column of ``view``, or None for a column with more than
    ``max_distinct`` of them; one small query per column, cached for a few minutes under
    ``cache_key`` (e.g. the warehouse and the date: the values change only with a new run)."""
    out: dict[str, list[str] | None] = {}
    schema = view.schema()
    for col in dict.fromkeys(columns):
        if col not in schema or kind_of(schema[col]) != TEXT:
            continue
        key = (cache_key, col)
        with _values_lock:
            hit = _values_cache.get(key) if cache_key is not None else None
        if hit is not None and time.monotonic() - hit[0] < _VALUES_TTL_S:
            out[col] = hit[1]
            continue
        got = view.select(v=view[col].cast("string")).distinct().limit(max_distinct + 1)
        values = [str(v) for v in got.to_pyarrow().column("v").to_pylist() if v is not None]
        out[col] = sorted(values) if len(values) <= max_distinct else None
        if cache_key is not None:
            with _values_lock:
                _values_cache[key] = (time.monotonic(), out[col])
    return out


# Text columns whose stored values a Spanish page shows translated (i18n labels): a rule typed
# with the name a person reads there gets the stored value as its hint.
LABELLED_COLUMNS = (
    "rfm_segment",
    "value_tier",
    "potential_tier",
    "value_potential",
    "lifecycle_stage",
    "clv_status",
    "gender",
    "preferred_channel",
    "preferred_device",
    "preferred_hour_band",
    "preferred_weekday",
    "income_band",
)


def display_aliases() -> dict[str, dict[str, str]]:
    """Names a person may type instead of the stored value, by column, lower case: the Spanish
    names of the classes (``'Campeones'`` for ``'Champions'``, ``'alto'`` for ``'high'``,
    ``'perdido'`` for ``'lost'``)."""
    from segmentum import i18n
    from segmentum.segments.classes import RFM_RULES

    out = {col: i18n.spoken_names("es", col) for col in LABELLED_COLUMNS}
    out["rfm_segment"].update({r.name_es.lower(): r.name for r in RFM_RULES})
    return out


def value_warnings(
    node: Node,
    values: Mapping[str, list[str] | None],
    aliases: Mapping[str, Mapping[str, str]] | None = None,
    who: str = "customer",
) -> list[RuleWarning]:
    """A warning for each comparison of a text column with a value no customer (``who``: or
    account, for an account rule) has."""
    aliases = display_aliases() if aliases is None else aliases
    out: list[RuleWarning] = []
    for col, lit, op in compared_values(node):
        known = values.get(col)
        if not known or lit.value in known:
            continue
        value = str(lit.value)
        effect = "selects nobody" if op == "==" else "is true for everyone"
        message = f"no {who} has {col} = {value!r}, so this {effect}"
        alias = aliases.get(col, {}).get(value.lower())
        by_case = {k.lower(): k for k in known}
        close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
        if alias is not None and alias in known:
            hint = f"{value!r} is the Spanish name of {alias!r}: write {col} {op} {alias!r}"
        elif value.lower() in by_case:
            hint = f"values are case-sensitive: did you mean {by_case[value.lower()]!r}?"
        elif close:
            hint = f"did you mean {close[0]!r}?"
        else:
            shown = ", ".join(repr(k) for k in known[:10])
            hint = f"its values are {shown}" + (", ..." if len(known) > 10 else "")
        out.append(RuleWarning(message, lit.pos, hint))
    return out


def rule_warnings(
    node: Node, view: ir.Table, max_distinct: int, cache_key: Any = None, who: str = "customer"
) -> list[RuleWarning]:
    """:func:`value_warnings` with the values read from ``view`` (see :func:`distinct_values`):
    its rows are customers, or accounts (``who``)."""
    columns = [col for col, _, _ in compared_values(node)]
    if not columns:
        return []
    found = distinct_values(view, columns, max_distinct, cache_key)
    return value_warnings(node, found, who=who)
