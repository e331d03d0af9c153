"""Association rules from baskets with FP-growth (Han, Pei and Yin 2000), our own implementation.

Baskets are sets of items (categories or products). ``basket_items`` builds them in the engine
from invoice lines, net of returns: an item whose line was returned or cancelled in full is not
in the basket. ``fpgrowth`` returns every itemset whose support (share of baskets containing it)
is at least ``min_support``; ``association_rules`` turns them into rules ``A -> B`` with
support, confidence P(B|A) and lift P(B|A) / P(B).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import ibis.expr.types as ir

from segmentum.ingest.returns import EPS, returned_per_line


def basket_items(lines: ir.Table, links: ir.Table, level: str) -> ir.Table:
    """The items each invoice really bought: ``(invoice_id, customer_id, item)``, distinct.

    ``lines`` are invoice lines (``transactions`` or a window of it); ``links`` the stored
    ``return_links`` (:func:`segmentum.ingest.returns.links`). A purchase line is in its
    basket when the units returned against it leave some bought: a cancelled order leaves an
    empty basket, a partly returned line stays.
    """
    t = lines.filter((lines.quantity > 0) & lines[level].notnull())
    back = returned_per_line(links)
    t = t.left_join(back, ["invoice_id", "line"])
    t = t.drop(*[c for c in t.columns if c.endswith("_right")])
    t = t.filter(t.quantity + t.returned.fill_null(0) > EPS)
    return t.select("invoice_id", "customer_id", item=t[level]).distinct()


@dataclass
class _Node:
    item: str | None
    count: int
    parent: _Node | None
    children: dict[str, _Node]


def _build(
    transactions: Iterable[tuple[Sequence[str], int]], min_count: int
) -> tuple[_Node, dict[str, list[_Node]], dict[str, int]]:
    transactions = list(transactions)
    counts: dict[str, int] = defaultdict(int)
    for items, n in transactions:
        for i in set(items):
            counts[i] += n
    frequent = {i: c for i, c in counts.items() if c >= min_count}
    root = _Node(None, 0, None, {})
    header: dict[str, list[_Node]] = defaultdict(list)
    for items, n in transactions:
        kept = sorted({i for i in items if i in frequent}, key=lambda i: (-frequent[i], i))
        node = root
        for i in kept:
            child = node.children.get(i)
            if child is None:
                child = _Node(i, 0, node, {})
                node.children[i] = child
                header[i].append(child)
            child.count += n
            node = child
    return root, header, frequent


def _mine(
    transactions: list[tuple[Sequence[str], int]],
    min_count: int,
    suffix: tuple[str, ...],
    out: dict[frozenset[str], int],
    max_len: int,
) -> None:
    _, header, frequent = _build(transactions, min_count)
    for item in sorted(frequent, key=lambda i: (frequent[i], i)):
        itemset = (item, *suffix)
        out[frozenset(itemset)] = frequent[item]
        if len(itemset) >= max_len:
            continue
        # The conditional pattern base: every prefix path leading to this item.
        base: list[tuple[Sequence[str], int]] = []
        for node in header[item]:
            path = []
            p = node.parent
            while p is not None and p.item is not None:
                path.append(p.item)
                p = p.parent
            if path:
                base.append((path, node.count))
        if base:
            _mine(base, min_count, itemset, out, max_len)


def fpgrowth(
    baskets: Iterable[Sequence[str]], min_support: float = 0.01, max_len: int = 3
) -> tuple[dict[frozenset[str], float], int]:
    """Frequent itemsets with their support, and the number of baskets."""
    weighted: dict[tuple[str, ...], int] = defaultdict(int)
    n = 0
    for b in baskets:
        weighted[tuple(sorted(set(b)))] += 1
        n += 1
    if n == 0:
        return {}, 0
    min_count = max(1, int(min_support * n + 0.999999))
    found: dict[frozenset[str], int] = {}
    _mine(list(weighted.items()), min_count, (), found, max_len)
    return {k: v / n for k, v in found.items()}, n


@dataclass(frozen=True)
class Rule:
    antecedent: tuple[str, ...]
    consequent: str
    support: float
    confidence: float
    lift: float


def association_rules(
    itemsets: dict[frozenset[str], float], min_confidence: float = 0.1, min_lift: float = 1.0
) -> list[Rule]:
    """Rules with one item on the right: A -> b for every frequent itemset A + {b}."""
    rules = []
    for itemset, support in itemsets.items():
        if len(itemset) < 2:
            continue
        for b in itemset:
            a = itemset - {b}
            conf = support / itemsets[a]
            lift = conf / itemsets[frozenset([b])]
            if conf >= min_confidence and lift >= min_lift:
                rules.append(Rule(tuple(sorted(a)), b, support, conf, lift))
    return sorted(rules, key=lambda r: (-r.lift, -r.confidence, r.antecedent, r.consequent))


def brute_force_supports(
    baskets: Sequence[Sequence[str]], max_len: int = 3
) -> dict[frozenset[str], float]:
    """Every itemset's support by counting (for tests on small data)."""
    counts: dict[frozenset[str], int] = defaultdict(int)
    for b in baskets:
        items = sorted(set(b))
        for k in range(1, max_len + 1):
            for combo in combinations(items, k):
                counts[frozenset(combo)] += 1
    return {k: v / len(baskets) for k, v in counts.items()}
