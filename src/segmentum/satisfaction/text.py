"""The words and two-word phrases that set one group's comments apart from everyone else's.

The comparison is the weighted log-odds ratio with an informative Dirichlet prior of Monroe,
Colaresi and Quinn (2008, "Fightin' Words", *Political Analysis* 16(4)): for each term ``w``,

    delta_w = log((y_iw + a_w) / (n_i + a0 - y_iw - a_w))
            - log((y_jw + a_w) / (n_j + a0 - y_jw - a_w)),
    var(delta_w) ~= 1 / (y_iw + a_w) + 1 / (y_jw + a_w),

where ``y_iw`` counts the term in the group, ``y_jw`` in the rest, ``n`` are the totals and the
prior ``a_w`` is the term's count in all comments (``a0`` their total). The z-score
``delta_w / sd`` ranks terms: rare words do not win on one lucky mention, as with raw ratios.
Tokens are words of letters; Spanish and English stop words are dropped (see
:mod:`.stopwords`), and phrases are pairs of consecutive remaining words.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import ibis

from segmentum.errors import InputError
from segmentum.satisfaction.compute import WINDOW_DAYS, answered, check_dimension, membership
from segmentum.satisfaction.stopwords import STOP_WORDS
from segmentum.warehouse import Warehouse

# An unknown group's error names the groups there are, up to this many (micro-segments are
# hundreds: then it says where to list them).
MAX_GROUPS_NAMED = 20

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
# Comments read per comparison at most (the latest ones): enough for stable term counts.
MAX_COMMENTS = 20_000
# A term must appear this many times in the group to be reported.
MIN_COUNT = 3
# Pseudo-counts of the prior: how much the pooled frequencies pull a group's rare terms back.
PRIOR_STRENGTH = 200.0
# |z| above this is a difference unlikely to be chance (about 95 %, one term at a time).
Z_MIN = 1.96


@dataclass(frozen=True)
class Term:
    """A term that sets the group apart, with how strongly and where it was said."""

    term: str
    z: float
    delta: float
    count: int
    rest_count: int
    quotes: list[str] = field(default_factory=list)


def tokens(text: str) -> list[str]:
    """Lower-case words without stop words.

    >>> tokens("El envío llegó TARDE, otra vez")
    ['envío', 'llegó', 'tarde', 'vez']
    """
    words = [w.lower() for w in _WORD.findall(text or "")]
    return [w for w in words if len(w) > 1 and w not in STOP_WORDS]


def terms_of(text: str) -> list[str]:
    """Words and two-word phrases of a comment."""
    ws = tokens(text)
    return ws + [f"{a} {b}" for a, b in itertools.pairwise(ws)]


def counts(comments: Iterable[str]) -> Counter[str]:
    c: Counter[str] = Counter()
    for text in comments:
        c.update(terms_of(text))
    return c


def log_odds(
    focus: Counter[str],
    rest: Counter[str],
    prior: Counter[str] | None = None,
    strength: float = PRIOR_STRENGTH,
) -> dict[str, tuple[float, float]]:
    """``term -> (delta, z)``: the weighted log-odds of ``focus`` against ``rest``.

    The prior spreads ``strength`` pseudo-counts over the terms in proportion to ``prior``
    (default: the pooled counts, ``focus + rest``): ``a_w = strength * prior_w / sum(prior)``.
    """
    prior = prior if prior is not None else focus + rest
    total = float(sum(prior.values())) or 1.0
    a0 = float(strength)
    n_i, n_j = float(sum(focus.values())), float(sum(rest.values()))
    out: dict[str, tuple[float, float]] = {}
    for w in set(focus) | set(rest):
        a = a0 * float(prior.get(w, 0)) / total or 0.01
        yi, yj = float(focus.get(w, 0)), float(rest.get(w, 0))
        li = math.log((yi + a) / (n_i + a0 - yi - a))
        lj = math.log((yj + a) / (n_j + a0 - yj - a))
        delta = li - lj
        out[w] = (delta, delta / math.sqrt(1 / (yi + a) + 1 / (yj + a)))
    return out


def distinguishing(
    group: Sequence[str],
    others: Sequence[str],
    top: int = 10,
    min_count: int = MIN_COUNT,
    z_min: float = Z_MIN,
    quotes: int = 2,
) -> list[Term]:
    """The terms said more in ``group`` than in ``others``, strongest first, with quotes.

    >>> late = ["envío tarde", "el envío llegó tarde", "envío muy tarde"] * 20
    >>> fine = ["buena calidad", "todo bien", "calidad excelente"] * 20
    >>> [t.term for t in distinguishing(late, fine, top=2)]
    ['envío', 'tarde']
    """
    return rank_terms(counts(group), counts(others), group, top, min_count, z_min, quotes)


def rank_terms(
    fc: Counter[str],
    rc: Counter[str],
    group: Sequence[str],
    top: int = 10,
    min_count: int = MIN_COUNT,
    z_min: float = Z_MIN,
    quotes: int = 2,
) -> list[Term]:
    """:func:`distinguishing` from term counts already made (``group`` gives the quotes)."""
    scored = log_odds(fc, rc)
    chosen = sorted(
        (w for w, (_, z) in scored.items() if z >= z_min and fc.get(w, 0) >= min_count),
        key=lambda w: (-scored[w][1], w),
    )
    out: list[Term] = []
    for w in chosen:
        # A phrase and its words say the same thing: keep a word only if no chosen phrase
        # stronger than it already holds it.
        if " " not in w and any(w in t.term.split() for t in out if " " in t.term):
            continue
        out.append(
            Term(w, scored[w][1], scored[w][0], fc[w], rc.get(w, 0), _quotes(group, w, quotes))
        )
        if len(out) >= top:
            break
    return out


def _quotes(comments: Sequence[str], term: str, k: int) -> list[str]:
    """Up to ``k`` different comments that contain ``term``, shortest first (they read best)."""
    found = {c.strip() for c in comments if term in " ".join(tokens(c))}
    return sorted(found, key=lambda c: (len(c), c))[:k]


def comments(
    wh: Warehouse,
    as_of: _dt.date,
    dimension: str,
    segment: str,
    window_days: int | None = WINDOW_DAYS,
    limit: int = MAX_COMMENTS,
) -> tuple[list[str], list[str]]:
    """The comments of a group's members and of everyone else (latest first, at most ``limit``
    each); anonymous comments count with the rest."""
    r = answered(wh, as_of, window_days)
    text = r.comment.strip()
    r = r.filter(text.notnull() & (text != ""))
    m = membership(wh, as_of)
    m = m.filter((m.dimension == dimension) & (m.segment == segment)).select(
        "customer_id", _in=ibis.literal(True)
    )
    j = r.left_join(m, r.customer_id == m.customer_id)
    j = j.select(comment=j.comment, _in=j._in.fill_null(False), ts=j.timestamp)
    group = j.filter(j._in).order_by(ibis.desc("ts")).limit(limit).comment
    rest = j.filter(~j._in).order_by(ibis.desc("ts")).limit(limit).comment
    return (
        [str(x) for x in group.to_pyarrow().to_pylist()],
        [str(x) for x in rest.to_pyarrow().to_pylist()],
    )


def segment_terms(
    wh: Warehouse, as_of: _dt.date, dimension: str, segment: str, top: int = 10
) -> list[Term]:
    """The terms that set the comments of ``segment`` (in ``dimension``) apart; a dimension or
    group that is not there is an :class:`InputError` naming those that are (no terms would
    read as "nothing sets them apart")."""
    check_dimension(dimension)
    m = membership(wh, as_of)
    m = m.filter(m.dimension == dimension).select("segment").distinct()
    groups = sorted(str(x) for x in m.segment.to_pyarrow().to_pylist() if x is not None)
    if segment not in groups:
        hint = (
            f"use one of: {', '.join(groups)}"
            if 0 < len(groups) <= MAX_GROUPS_NAMED
            else f"list them: segmentum satisfaction summary --by {dimension}"
        )
        raise InputError(f"there is no group {segment!r} in {dimension}", hint)
    group, rest = comments(wh, as_of, dimension, segment)
    return distinguishing(group, rest, top=top)
