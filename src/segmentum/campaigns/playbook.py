"""A playbook for every segment: what to do with each RFM segment, value x potential cell and
lifecycle stage, grounded in the segment's own numbers.

The recommendations (tactic, channel, timing, message in Spanish and English, incentive) come
from an editable YAML file (``playbook.yaml`` beside this module is the default). For each
segment the warehouse computes its size, the sum of its members' CLV, their average promo share
and the product categories it favours (the highest lift of the segment's spend share against
the base's). The incentive is then grounded: no discount for a segment that buys at full price
anyway, a perk instead of a discount for a high-value one. The value at stake is the segment's
CLV times an assumed uplift, always reported as an assumption.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import yaml

from segmentum import i18n
from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

DEFAULT_FILE = Path(__file__).with_name("playbook.yaml")
DIMENSIONS = ("rfm_segment", "value_potential", "lifecycle_stage")
INCENTIVES = ("none", "perk", "small_discount", "discount")
_ENTRY_KEYS = ("tactic", "channel", "timing", "incentive", "message")
_LANGS = ("es", "en")
_GROUNDED = ("full_price", "protect_margin")
_LABELS = (
    "segment",
    "customers",
    "value_at_stake",
    "what_to_do",
    "favours",
    "missing",
    "entry",
    "mid",
    "premium",
    "assumption",
)


@dataclass
class Play:
    """The playbook entry of one segment, with its numbers."""

    dimension: str
    segment: str
    size: int
    clv_total: float
    avg_clv: float | None
    promo_share: float | None
    uplift: float
    value_at_stake: float
    tactic: dict[str, str] = field(default_factory=dict)
    channel: str = ""
    timing: dict[str, str] = field(default_factory=dict)
    message: dict[str, str] = field(default_factory=dict)
    incentive: str = "none"
    incentive_advice: dict[str, str] = field(default_factory=dict)
    favours: list[dict[str, Any]] = field(default_factory=list)
    # Entry, mid and premium price bands with their lift (highest first).
    price_bands: list[dict[str, Any]] = field(default_factory=list)
    in_playbook: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_playbook(path: str | Path | None = None) -> dict[str, Any]:
    """Read and check a playbook file (default: the one shipped with segmentum).

    Every problem is reported at once, each naming the file, the segment and the key.
    """
    p = Path(path) if path is not None else DEFAULT_FILE
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise InputError(f"there is no playbook file {p}", _HINT) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{p} is not valid YAML: {exc}", _HINT) from exc
    problems: list[str] = []
    if not isinstance(data, dict):
        raise InputError(f"{p} must be a mapping of settings and segments", _HINT)
    uplift = data.get("uplift", 0.05)
    if not isinstance(uplift, int | float) or not 0 <= uplift <= 1:
        problems.append(f"uplift: {uplift!r} is not a share between 0 and 1")
    labels = data.get("labels") or {}
    for lang in _LANGS:
        for key in _LABELS:
            if not isinstance((labels.get(lang) or {}).get(key), str):
                problems.append(f"labels.{lang}.{key}: missing")
    texts = data.get("incentives") or {}
    for kind in (*INCENTIVES, *_GROUNDED):
        for lang in _LANGS:
            if not isinstance((texts.get(kind) or {}).get(lang), str):
                problems.append(f"incentives.{kind}.{lang}: missing")
    for dim in DIMENSIONS:
        for name, entry in (data.get(dim) or {}).items():
            where = f"{dim}.{name}"
            if not isinstance(entry, dict):
                problems.append(f"{where}: must be a mapping")
                continue
            missing = [k for k in _ENTRY_KEYS if k not in entry]
            if missing:
                problems.append(f"{where}: missing {', '.join(missing)}")
            if entry.get("incentive", "none") not in INCENTIVES:
                problems.append(
                    f"{where}.incentive: {entry.get('incentive')!r} is not one of "
                    + ", ".join(INCENTIVES)
                )
            for key in ("message", "tactic", "timing"):
                text = entry.get(key)
                one_language = key == "message" and key in entry and not isinstance(text, dict)
                if one_language or (
                    isinstance(text, dict) and [x for x in _LANGS if not text.get(x)]
                ):
                    problems.append(f"{where}.{key}: needs both es and en")
            up = entry.get("uplift", uplift)
            if not isinstance(up, int | float) or not 0 <= up <= 1:
                problems.append(f"{where}.uplift: {up!r} is not a share between 0 and 1")
    if problems:
        raise InputError(f"{p}: " + "; ".join(problems), _HINT)
    return dict(data)


_HINT = "start from the defaults: segmentum playbook --write-defaults my-playbook.yaml"


def _lines(wh: Warehouse, as_of: _dt.date) -> ir.Table | None:
    """Purchase lines (no returns) up to ``as_of`` with their category, or None without any."""
    if not wh.has("transactions"):
        return None
    t = wh.table("transactions")
    t = t.filter(t.customer_id.notnull() & (t.amount > 0) & (t.timestamp.date() < as_of))
    cat = t.category if "category" in t.columns else ibis.null("string")
    if wh.has("products") and "product_id" in t.columns:
        p = wh.table("products")
        if "category" in p.columns:
            p = p.select("product_id", p_category=p.category)
            t = t.left_join(p, "product_id")
            cat = (t.category if "category" in t.columns else ibis.null("string")).coalesce(
                t.p_category
            )
    price = (
        ibis.ifelse(t.quantity > 0, t.amount / t.quantity, ibis.null("float64"))
        if "quantity" in t.columns
        else ibis.null("float64")
    )
    return t.select("customer_id", "amount", category=cat, price=price.cast("float64"))


# Price bands: the base's unit prices cut in thirds (entry, mid, premium).
PRICE_BANDS = ("entry", "mid", "premium")


def _banded(lines: ir.Table) -> ir.Table:
    """``lines`` with a ``band`` column from the base's unit-price terciles (null without a
    price)."""
    priced = lines.filter(lines.price.notnull())
    cuts = priced.aggregate(
        q1=priced.price.quantile(1 / 3), q2=priced.price.quantile(2 / 3)
    ).to_pyarrow()
    q1, q2 = cuts.column("q1")[0].as_py(), cuts.column("q2")[0].as_py()
    if q1 is None or q2 is None:
        return lines.mutate(band=ibis.null("string"))
    band = ibis.cases(
        (lines.price.isnull(), ibis.null("string")),
        (lines.price <= q1, "entry"),
        (lines.price <= q2, "mid"),
        else_="premium",
    )
    return lines.mutate(band=band)


def favoured_categories(
    lines: ir.Table, view: ir.Table, dimension: str, key: str = "category"
) -> dict[str, list[dict[str, Any]]]:
    """Per segment of ``dimension``: every category (or other ``key`` of the lines, such as
    the price band) with its share of the segment's spend and its lift against the base
    (share in the segment / share in all purchases), computed in the engine; only the small
    table of segments x categories comes back."""
    lines = lines.filter(lines[key].notnull()).select("customer_id", "amount", category=key)
    v = view.select("customer_id", seg=view[dimension]).filter(lambda x: x.seg.notnull())
    g = (
        lines.join(v, "customer_id")
        .group_by(["seg", "category"])
        .agg(spend=lambda x: x.amount.sum())
    )
    seg = g.group_by("seg").agg(seg_spend=g.spend.sum())
    cat = lines.group_by("category").agg(cat_spend=lines.amount.sum())
    cat = cat.mutate(base_share=cat.cat_spend / cat.cat_spend.sum())
    r = g.join(seg, "seg").join(cat, "category")
    r = r.mutate(share=r.spend / r.seg_spend)
    r = r.mutate(lift=r.share / r.base_share).select("seg", "category", "share", "lift")
    out: dict[str, list[dict[str, Any]]] = {}
    for row in r.order_by([ibis.desc("lift"), "category"]).to_pyarrow().to_pylist():
        out.setdefault(str(row["seg"]), []).append(
            {key: row["category"], "share": row["share"], "lift": row["lift"]}
        )
    return out


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def playbook(
    wh: Warehouse,
    *,
    as_of: _dt.date | None = None,
    dimensions: tuple[str, ...] = DIMENSIONS,
    path: str | Path | None = None,
    uplift: float | None = None,
) -> tuple[list[Play], _dt.date]:
    """Every segment of ``dimensions`` with its numbers and its grounded playbook entry.

    ``uplift`` replaces the file's assumed uplift for every segment.
    """
    from segmentum.segments.view import customer_view

    bad = [d for d in dimensions if d not in DIMENSIONS]
    if bad:
        raise InputError(
            f"cannot make a playbook by {', '.join(bad)}", "use " + ", ".join(DIMENSIONS)
        )
    if uplift is not None and not 0 <= uplift <= 1:
        raise InputError(f"--uplift {uplift} is not a share between 0 and 1", "e.g. 0.05")
    book = load_playbook(path)
    view, as_of = customer_view(wh, as_of)
    view = view.filter(view.frequency > 0)
    clv = view.clv.cast("float64") if "clv" in view.columns else ibis.null("float64")
    promo = (
        view.promo_share.cast("float64") if "promo_share" in view.columns else ibis.null("float64")
    )
    keep = [d for d in dimensions if d in view.columns]
    # Computed once: every figure below reads these two small tables, not the joins behind.
    view = wh.materialize(view.select("customer_id", *keep, clv_=clv, promo_=promo), "playbook")
    temps = [view]
    lines = _lines(wh, as_of)
    if lines is not None:
        lines = wh.materialize(_banded(lines), "playbook_lines")
        temps.append(lines)
    try:
        return _plays(book, view, lines, keep, uplift), as_of
    finally:
        for t in temps:
            wh.drop(t.get_name())


def _plays(
    book: dict[str, Any],
    view: ir.Table,
    lines: ir.Table | None,
    dimensions: list[str],
    uplift: float | None,
) -> list[Play]:
    rules = book.get("rules") or {}
    full_price = float(rules.get("full_price_promo_share", 0.10))
    high_ratio = float(rules.get("high_value_clv_ratio", 1.5))
    min_lift = float(rules.get("min_lift", 1.1))
    top = int(rules.get("top_categories", 3))
    base_clv = _num(view.clv_.mean().to_pyarrow().as_py())
    plays: list[Play] = []
    for dim in dimensions:
        if dim not in view.columns:
            continue
        f = view.filter(view[dim].notnull())
        stats = (
            f.group_by(seg=f[dim])
            .agg(
                size=f.count(),
                clv_total=f.clv_.sum(),
                avg_clv=f.clv_.mean(),
                promo_share=f.promo_.mean(),
            )
            .order_by(ibis.desc("size"))
            .to_pyarrow()
            .to_pylist()
        )
        favours = favoured_categories(lines, view, dim) if lines is not None else {}
        bands = favoured_categories(lines, view, dim, "band") if lines is not None else {}
        entries = book.get(dim) or {}
        for s in stats:
            name = str(s["seg"])
            entry = entries.get(name)
            up = float(
                uplift
                if uplift is not None
                else (entry or {}).get("uplift", book.get("uplift", 0.05))
            )
            total = _num(s["clv_total"]) or 0.0
            play = Play(
                dim,
                name,
                int(s["size"]),
                total,
                _num(s["avg_clv"]),
                _num(s["promo_share"]),
                up,
                total * up,
                favours=[f for f in favours.get(name, []) if f["lift"] >= min_lift][:top],
                price_bands=bands.get(name, []),
                in_playbook=entry is not None,
            )
            if entry is not None:
                play.tactic, play.channel = _both(entry["tactic"]), str(entry["channel"])
                play.timing, play.message = _both(entry["timing"]), _both(entry["message"])
                _ground(play, str(entry["incentive"]), book, full_price, high_ratio, base_clv)
            plays.append(play)
    return plays


def _both(text: Any) -> dict[str, str]:
    """A text in both languages (the same words in both when the file gives one)."""
    if isinstance(text, dict):
        return {lang: str(text[lang]) for lang in _LANGS}
    return dict.fromkeys(_LANGS, str(text))


def _ground(
    play: Play,
    kind: str,
    book: dict[str, Any],
    full_price: float,
    high_ratio: float,
    base_clv: float | None,
) -> None:
    """The entry's incentive, overruled by the segment's numbers where they say so."""
    texts = book["incentives"]
    advice = {lang: texts[kind][lang] for lang in _LANGS}
    promo = play.promo_share
    ratio = play.avg_clv / base_clv if play.avg_clv is not None and base_clv else None
    if kind != "none" and promo is not None and promo <= full_price:
        kind = "none"
        advice = {
            lang: texts["full_price"][lang].format(promo=i18n.percent(promo, lang, 0))
            for lang in _LANGS
        }
    elif kind in ("small_discount", "discount") and ratio is not None and ratio >= high_ratio:
        kind = "perk"
        advice = {
            lang: texts["protect_margin"][lang].format(ratio=i18n.number(ratio, lang, 1) + "x")
            + " "
            + texts["perk"][lang]
            for lang in _LANGS
        }
    play.incentive, play.incentive_advice = kind, advice
