"""Which saved segments can be evaluated live, and evaluating one customer against them.

A rule runs live when what it counts is the customer's own activity inside a window (their
tracked events, their orders) and everything else it reads is in the customer's published
document (``value_tier``, ``clv``, membership of other segments...). The parsed tree is walked
in Python for one customer (never ``eval``, never SQL), with the engine's null logic: a
comparison with a missing value is unknown, and unknown is not a member.

    >>> plan = plan_segment("cart", "exists(event == 'cart_abandoned', last 1 hours)", "customer",
    ...                     {"value_tier"}, set())
    >>> plan.realtime, plan.longest_seconds
    (True, 3600)
    >>> plan_segment("vip", "value_tier == 'high'", "customer", {"value_tier"}, set()).reason
    'no event or purchase window: nothing a customer does changes it between runs'
    >>> import datetime as dt
    >>> now = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    >>> ev = [{"event_type": "cart_abandoned", "at": "2026-03-01T11:30:00.000000Z",
    ...        "properties": {}, "product_id": None}]
    >>> Customer({}, ev, [], now).matches(plan)
    True
"""

from __future__ import annotations

import datetime as _dt
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from segmentum.features.customer import MONEY_DIGITS
from segmentum.realtime.store import parse_iso
from segmentum.segments import rules as R

# Inside exists(...) / count(...) over events: what each name reads of a tracked event.
EVENT_NAMES = {
    "event": "event_type",
    "event_type": "event_type",
    "product_id": "product_id",
    "channel": "channel",
    "device": "device",
    "campaign_id": "campaign_id",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+)?$")
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


@dataclass
class Plan:
    """A saved segment as the live side sees it: whether it runs live and, if not, why."""

    name: str
    rule: str
    realtime: bool
    reason: str = ""
    longest_seconds: int = 0
    tree: R.Node | None = None
    refs: set[str] = field(default_factory=set)


def plan_segment(
    name: str,
    rule: str,
    level: str,
    attributes: set[str],
    segments: set[str],
    max_window_days: int = 90,
) -> Plan:
    """Decide whether ``rule`` can be evaluated live for one customer.

    ``attributes``: the fields of the published customer document; ``segments``: the names of
    the saved segments (a rule may use another's membership).
    """

    def batch(reason: str) -> Plan:
        return Plan(name, rule, False, reason)

    if level != "customer":
        return batch("account segments are computed in batch")
    try:
        tree = R.parse(rule)
    except R.RuleError as exc:
        return batch(f"the rule does not parse: {exc.reason}")
    windows = R.calls(tree)
    live = [
        c
        for c in windows
        if R.call_table(c) in ("events", "transactions") and c.source != "returns"
    ]
    if not live:
        return batch("no event or purchase window: nothing a customer does changes it between runs")
    longest = 0
    for c in windows:
        table = R.call_table(c)
        if table == "responses":
            return batch("survey answers (responses) are loaded in batch")
        if c.source == "returns":
            return batch("returns come from the invoice export, in batch")
        if c.window is None:
            return batch(
                f"{c.func}() over the whole history is batch-only: give it a window (last 30 days)"
            )
        if c.window.seconds > max_window_days * 86400:
            return batch(
                f"a window longer than {max_window_days} days (the realtime_max_window_days "
                "setting)"
            )
        if table == "transactions":
            if c.where is not None:
                return batch(
                    "conditions on purchase lines (category, product...) are evaluated in batch"
                )
            if c.func == "sum" and R.MEASURES.get(c.source or "spend") != "amount":
                return batch("sums of quantities are evaluated in batch; sum(spend) runs live")
        longest = max(longest, c.window.seconds)
    for n in R.walk(tree):
        if isinstance(n, R.Call) and n.func == "has_tag" and "tags" not in attributes:
            return batch("has_tag() needs the customers' tags, which lookups do not publish")
    refs: set[str] = set()
    for used in sorted(R.names(tree)):
        if used in segments:
            refs.add(used)
        elif used not in attributes:
            return batch(f"uses {used}, which the published customer lookup does not carry")
    return Plan(name, rule, True, "", longest, tree, refs)


def plan_order(plans: Iterable[Plan]) -> list[Plan]:
    """Live plans, each after the live plans it references."""
    by = {p.name: p for p in plans if p.realtime}
    out: list[Plan] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name):
            return  # a cycle cannot be saved; done or in progress either way
        state[name] = 1
        for r in sorted(by[name].refs & set(by)):
            visit(r)
        out.append(by[name])

    for n in sorted(by):
        visit(n)
    return out


@dataclass
class Order:
    """One purchase (an invoice), from the published history or tracked live."""

    invoice_id: str
    at: _dt.datetime
    amount: float | None


class Customer:
    """One customer as the live rules see them: the published document's attributes, their
    tracked events and their orders (the published history with live purchases added, one per
    invoice), at ``now``.

    ``membership(name)`` answers for other segments: the live result when the segment runs
    live (set by :meth:`matches` callers), else the batch membership in the document.
    """

    def __init__(
        self,
        document: Mapping[str, Any],
        events: list[dict[str, Any]],
        orders: list[Order],
        now: _dt.datetime,
        membership: Mapping[str, bool] | None = None,
        segment_names: Iterable[str] = (),
    ) -> None:
        self.doc = document
        self.segment_names = set(segment_names)
        self.events = [(parse_iso(e["at"]), e) for e in events]
        self.now = now
        known = {o.invoice_id for o in orders}
        live = [
            Order(str(e["invoice_id"]), at, e.get("amount"))
            for at, e in self.events
            if e["event_type"] == "purchase" and e.get("invoice_id")
        ]
        # A live purchase whose invoice the published history holds already is the same order.
        self.orders = orders + [o for o in live if o.invoice_id not in known]
        self.batch_segments = set(document.get("segments") or [])
        self.live: dict[str, bool] = dict(membership or {})
        # The earliest moment a counted item leaves its window (a rule may change then).
        self.due: _dt.datetime | None = None

    def matches(self, plan: Plan) -> bool:
        assert plan.tree is not None
        return self._value(plan.tree) is True

    # ------------------------------------------------------------------ the tree
    def _value(self, n: R.Node) -> Any:
        return _eval(n, self._name, self._call)

    def _name(self, name: str) -> Any:
        if name in self.live:
            return self.live[name]
        if name in self.segment_names:
            return name in self.batch_segments
        return _scalar(self.doc.get(name))

    def _since(self, window: R.Window | None) -> _dt.datetime:
        assert window is not None  # plan_segment keeps window-less calls in batch
        return self.now - _dt.timedelta(seconds=window.seconds)

    def _counted(self, at: _dt.datetime, window: R.Window | None) -> bool:
        start = self._since(window)
        if at < start:
            return False
        leaves = at + _dt.timedelta(seconds=window.seconds if window else 0)
        if self.due is None or leaves < self.due:
            self.due = leaves
        return True

    def _call(self, call: R.Call) -> Any:
        if call.func == "has_tag":
            tags = str(self.doc.get("tags") or "").lower().replace("|", ",").split(",")
            return (call.arg or "").strip().lower() in {t.strip() for t in tags}
        if R.call_table(call) == "events":
            hits = 0
            for at, e in self.events:
                if call.where is not None and _eval(call.where, _event_name(e), None) is not True:
                    continue
                if self._counted(at, call.window):
                    hits += 1
            return hits > 0 if call.func == "exists" else float(hits)
        orders = [o for o in self.orders if self._counted(o.at, call.window)]
        if call.func == "sum":
            # Rounded as the batch's money sums are (segmentum.features.customer.money).
            return round(math.fsum(o.amount or 0.0 for o in orders), MONEY_DIGITS)
        return len(orders) > 0 if call.func == "exists" else float(len(orders))


def _event_name(e: Mapping[str, Any]) -> Callable[[str], Any]:
    def name(n: str) -> Any:
        col = EVENT_NAMES.get(n, n)
        if col in ("event_type", "product_id"):
            return e.get(col)
        return (e.get("properties") or {}).get(col)

    return name


def _scalar(v: Any) -> Any:
    """A document value as the rule compares it: numbers as floats, ISO dates as dates."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str) and _DATE.match(v):
        try:
            return _dt.date.fromisoformat(v[:10])
        except ValueError:
            return v
    return v


def _literal(v: Any, other: Any) -> Any:
    """A literal read as the type of the other side (a date text compared with a date)."""
    if isinstance(other, _dt.date) and isinstance(v, str):
        try:
            return _dt.date.fromisoformat(v)
        except ValueError:
            return v
    return v


def _eval(n: R.Node, name: Callable[[str], Any], call: Callable[[R.Call], Any] | None) -> Any:
    """The value of ``n`` with SQL's null logic (None is unknown)."""

    def ev(x: R.Node) -> Any:
        return _eval(x, name, call)

    if isinstance(n, R.Literal):
        return n.value
    if isinstance(n, R.Name):
        return name(n.name)
    if isinstance(n, R.Call):
        return call(n) if call is not None else None
    if isinstance(n, R.Unary):
        v = ev(n.operand)
        if v is None:
            return None
        return (not v) if n.op == "not" else -v
    if isinstance(n, R.Binary):
        if n.op in ("and", "or"):
            a, b = ev(n.left), ev(n.right)
            if n.op == "and":
                if a is False or b is False:
                    return False
                return None if a is None or b is None else True
            if a is True or b is True:
                return True
            return None if a is None or b is None else False
        a, b = ev(n.left), ev(n.right)
        if isinstance(n.left, R.Literal):
            a = _literal(a, b)
        if isinstance(n.right, R.Literal):
            b = _literal(b, a)
        if a is None or b is None:
            return None
        try:
            if n.op == "/":
                return None if b == 0 else float(a) / float(b)
            return _COMPARE[n.op](a, b)
        except TypeError:
            return None
    if isinstance(n, R.InList):
        v = ev(n.operand)
        if v is None:
            return None
        hit = v in [_literal(x.value, v) for x in n.values]
        return not hit if n.negated else hit
    if isinstance(n, R.Between):
        v, lo, hi = ev(n.operand), ev(n.low), ev(n.high)
        lo, hi = _literal(lo, v), _literal(hi, v)
        if v is None or lo is None or hi is None:
            return None
        try:
            return bool(lo <= v <= hi)
        except TypeError:
            return None
    if isinstance(n, R.IsNull):
        v = ev(n.operand)
        return v is not None if n.negated else v is None
    return None  # pragma: no cover - every node kind is handled above


def live_plan(name: str, rule: str, longest_seconds: int, segments: set[str]) -> Plan:
    """A plan stored as live (:func:`plan_segment` decided it), rebuilt from its rule."""
    tree = R.parse(rule)
    return Plan(name, rule, True, "", longest_seconds, tree, R.names(tree) & segments)
