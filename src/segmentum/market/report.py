"""The market section of the HTML report: penetration by place, white space, unplaced customers.

Inline SVG only (the report runs no script); every text comes from the gettext catalogs and
every value is escaped.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from segmentum import i18n
from segmentum.config import Settings
from segmentum.errors import SegmentumError
from segmentum.market.core import DIMENSIONS, geo_levels, read_market, rollup
from segmentum.market.geo import choropleth_svg, load_geojson, matched
from segmentum.warehouse import Warehouse


def _e(x: Any) -> str:
    return html.escape(str(x))


def index_bars_svg(
    labels: list[str],
    index: list[float],
    low: list[float],
    high: list[float],
    title: str,
    width: int = 640,
) -> str:
    """Horizontal bars of the index with their intervals and a line at 100 (the average)."""
    if not labels:
        return ""
    row, left, right = 22, 190, 60
    height = 34 + row * len(labels)
    finite = [v for v in [*index, *high] if math.isfinite(v)]
    top = max([*finite, 100.0]) * 1.05

    def x(v: float) -> float:
        return left + (width - left - right) * (max(v, 0.0) / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12" role="img" aria-label="{_e(title)}">',
        f'<text x="0" y="14" font-weight="bold">{_e(title)}</text>',
    ]
    for i, (lab, v, lo, hi) in enumerate(zip(labels, index, low, high, strict=True)):
        y = 24 + i * row
        colour = "#0072B2" if v >= 100 else "#E69F00"
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{_e(lab)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y + 4}" width="{x(v) - left:.1f}" height="{row - 8}" '
            f'fill="{colour}"/>'
        )
        if math.isfinite(lo) and math.isfinite(hi):
            parts.append(
                f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y + 11}" y2="{y + 11}" '
                'stroke="#333" stroke-width="1.5"/>'
            )
        parts.append(f'<text x="{x(max(v, hi if math.isfinite(hi) else v)) + 4:.1f}" y="{y + 14}">')
        parts.append(f"{v:,.0f}</text>")
    x100 = x(100.0)
    parts.append(
        f'<line x1="{x100:.1f}" x2="{x100:.1f}" y1="22" y2="{height - 6}" stroke="#444" '
        'stroke-dasharray="3,3"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def market_section(wh: Warehouse, lang: str, settings: Settings, currency: str | None) -> str:
    """The report's market section ('' when no population was loaded)."""
    found = read_market(wh)
    if found is None:
        return ""
    cells, summary = found
    _ = i18n.translations(lang).ugettext

    def num(v: Any, digits: int | None = None) -> str:
        return i18n.number(v, lang, digits)

    def pct(v: Any, digits: int = 3) -> str:
        return i18n.percent(v, lang, digits)

    def money(v: Any, digits: int = 0) -> str:
        return i18n.money(v, lang, currency, digits)

    out = [f"<h2>{_e(_('Market'))}</h2>"]
    out.append(
        "<p>"
        + _e(_("Overall penetration"))
        + f": <b>{_e(pct(summary.get('overall_penetration')))}</b>; "
        + _e(_("Customers placed"))
        + f": {_e(num(summary.get('placed')))}; "
        + _e(_("Customers not placed"))
        + f": {_e(num(summary.get('unplaced')))}.</p>"
    )
    levels = geo_levels(cells)
    if levels:
        level = levels[-1]
        places = rollup(cells, level, summary.get("overall_penetration"))
        out.append(_map(places, settings, lang) or _bars(places, lang))
        rows = []
        for r in places.sort_values("index", ascending=False).to_dict("records"):
            rows.append(
                f"<tr><td>{_e(r['place'])}</td><td>{_e(num(r['population']))}</td>"
                f"<td>{_e(num(r['customers']))}</td><td>{_e(pct(r['penetration']))} "
                f"({_e(pct(r['penetration_low']))} – {_e(pct(r['penetration_high']))})</td>"
                f"<td>{_e(num(r['index'], 0))} ({_e(num(r['index_low'], 0))} – "
                f"{_e(num(r['index_high'], 0))})</td><td>{_e(money(r['revenue_per_head'], 2))}</td>"
                f"<td>{_e(money(r['clv_per_head'], 2))}</td></tr>"
            )
        head = "".join(
            f"<th>{_e(t)}</th>"
            for t in (
                _("Place"),
                _("Population"),
                _("Customers"),
                _("Penetration (95% interval)"),
                _("Index (95% interval)"),
                _("Revenue per head (12 months)"),
                _("CLV per head"),
            )
        )
        out.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    out.append(f"<h3>{_e(_('White space: where to look for customers'))}</h3>")
    ws = cells[cells["white_space_rank"].notna()].sort_values("white_space_rank").head(10)
    dims = [d for d in summary.get("dimensions", []) if d in DIMENSIONS]
    if len(ws):
        rows = []
        for r in ws.to_dict("records"):
            cell = " · ".join(
                i18n.label(lang, d, r[d]) for d in dims if not i18n.is_missing(r.get(d))
            )
            rows.append(
                f"<tr><td>{_e(num(r['white_space_rank']))}</td><td>{_e(cell)}</td>"
                f"<td>{_e(num(r['population']))}</td><td>{_e(num(r['index'], 0))}</td>"
                f"<td>{_e(money(r['expected_value']))}</td><td>{_e(num(r['similarity'], 2))}</td>"
                f"<td>{_e(money(r['white_space_score']))}</td></tr>"
            )
        head = "".join(
            f"<th>{_e(t)}</th>"
            for t in (
                "#",
                _("Cell"),
                _("Population"),
                _("Index"),
                _("Expected value per customer"),
                _("Similarity"),
                _("Score"),
            )
        )
        out.append(f"<table><tr>{head}</tr>{''.join(rows)}</table>")
    else:
        none = _("Not scored: too few cells have enough customers to tell the best ones.")
        out.append(f"<p>{_e(none)}</p>")
    return "".join(out)


def _map(places: pd.DataFrame, settings: Settings, lang: str) -> str:
    if not settings.market_geojson:
        return ""
    _ = i18n.translations(lang).ugettext
    try:
        geo = load_geojson(settings.market_geojson)
    except SegmentumError:
        return ""
    values = {str(p): float(v) for p, v in zip(places["place"], places["index"], strict=True)}
    if not matched(geo, settings.market_geojson_key, values):
        return ""
    legend = [
        _("index below 50"),
        _("index 50 to 80"),
        _("index 80 to 120"),
        _("index 120 to 200"),
        _("index 200 or more"),
        _("no data"),
    ]
    return choropleth_svg(
        geo,
        settings.market_geojson_key,
        values,
        lambda p: f"{p}: {i18n.number(values.get(p), lang, 0)}",
        legend,
        _("Penetration index by place"),
    )


def _bars(places: pd.DataFrame, lang: str) -> str:
    _ = i18n.translations(lang).ugettext
    df = places.sort_values("index", ascending=False).head(30)
    return index_bars_svg(
        [str(p) for p in df["place"]],
        [float(v) for v in df["index"].fillna(0.0)],
        [float(v) for v in df["index_low"]],
        [float(v) for v in df["index_high"]],
        _("Penetration index by place (100 = average, 95% interval)"),
    )
