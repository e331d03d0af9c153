"""A flow condition evaluated for one customer: the checked syntax tree of a segment rule
walked over the customer's values, with SQL's treatment of missing values (a comparison with
a missing value is unknown, and an unknown condition is false). Nothing is ever ``eval``-ed.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from typing import Any

from segmentum.segments import rules


def _date(value: Any) -> _dt.date | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    try:
        return _dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def holds(
    node: rules.Node,
    values: Mapping[str, Any],
    segments: set[str],
    kinds: Mapping[str, str],
) -> bool:
    """Whether the condition is true for a customer with ``values`` in ``segments``."""
    return _eval(node, values, segments, kinds) is True


def _eval(n: rules.Node, v: Mapping[str, Any], segs: set[str], kinds: Mapping[str, str]) -> Any:
    def kind(x: rules.Node) -> str:
        if isinstance(x, rules.Name):
            return kinds.get(x.name, rules.BOOL if x.name not in v else rules.TEXT)
        if isinstance(x, rules.Literal):
            return rules.NUMBER if isinstance(x.value, float) else rules.TEXT
        return rules.NUMBER

    def val(x: rules.Node, as_kind: str | None = None) -> Any:
        out = _eval(x, v, segs, kinds)
        if _missing(out):
            return None
        k = as_kind or kind(x)
        if k == rules.DATE:
            return _date(out)
        if k == rules.NUMBER and not isinstance(out, bool):
            try:
                return float(out)
            except (TypeError, ValueError):
                return None
        return out

    if isinstance(n, rules.Literal):
        return n.value
    if isinstance(n, rules.Name):
        if n.name in v:
            return v[n.name]
        return n.name in segs
    if isinstance(n, rules.Unary):
        inner = _eval(n.operand, v, segs, kinds)
        if _missing(inner):
            return None
        return (not inner) if n.op == "not" else -float(inner)
    if isinstance(n, rules.Binary):
        if n.op in ("and", "or"):
            a, b = _eval(n.left, v, segs, kinds), _eval(n.right, v, segs, kinds)
            if n.op == "and":
                if a is False or b is False:
                    return False
                return None if _missing(a) or _missing(b) else True
            if a is True or b is True:
                return True
            return None if _missing(a) or _missing(b) else False
        k = kind(n.left) if not isinstance(n.left, rules.Literal) else kind(n.right)
        a, b = val(n.left, k), val(n.right, k)
        if a is None or b is None:
            return None
        if n.op == "/":
            return None if b == 0 else a / b
        try:
            return {
                "==": lambda: a == b,
                "!=": lambda: a != b,
                "<": lambda: a < b,
                "<=": lambda: a <= b,
                ">": lambda: a > b,
                ">=": lambda: a >= b,
                "+": lambda: a + b,
                "-": lambda: a - b,
                "*": lambda: a * b,
            }[n.op]()
        except TypeError:
            return None
    if isinstance(n, rules.InList):
        k = kind(n.operand)
        a = val(n.operand, k)
        if a is None:
            return None
        hit = any(a == val(x, k) for x in n.values)
        return not hit if n.negated else hit
    if isinstance(n, rules.Between):
        sides = (n.operand, n.low, n.high)
        k = next((kind(x) for x in sides if not isinstance(x, rules.Literal)), kind(n.operand))
        a, lo, hi = val(n.operand, k), val(n.low, k), val(n.high, k)
        if a is None or lo is None or hi is None:
            return None
        return bool(lo <= a <= hi)
    if isinstance(n, rules.IsNull):
        missing = _missing(_eval(n.operand, v, segs, kinds))
        return not missing if n.negated else missing
    if isinstance(n, rules.Call) and n.func == "has_tag":
        tags = v.get("tags")
        if _missing(tags):
            return False
        parts = {t.strip().lower() for t in str(tags).replace("|", ",").split(",")}
        return (n.arg or "").strip().lower() in parts
    return None  # window calls are refused when the flow is checked
