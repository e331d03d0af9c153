"""The satisfaction section of the HTML report: NPS with intervals per segment, by value tier and
lifecycle stage, the groups that stand out and what they say.

Inline SVG only (the report runs no script); every text comes from the gettext catalogs and
every value is escaped. Empty when no survey answers were loaded.
"""

from __future__ import annotations

import html
from typing import Any

from segmentum import i18n
from segmentum.satisfaction.compute import SEGMENTS, cluster_names_es, stored_segments
from segmentum.satisfaction.step import stored_terms
from segmentum.warehouse import Warehouse


def _e(x: Any) -> str:
    return html.escape(str(x))


def nps_bars_svg(
    labels: list[str], nps: list[float], low: list[float], high: list[float], title: str
) -> str:
    """Bars from 0 to each NPS on a -100..100 axis, with the interval as a line."""
    if not labels:
        return ""
    width, row, left, right = 640, 22, 190, 40
    height = 34 + row * len(labels)

    def x(v: float) -> float:
        return left + (width - left - right) * (v + 100) / 200

    zero = x(0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12" role="img" aria-label="{_e(title)}">',
        f'<text x="0" y="14" font-weight="bold">{_e(title)}</text>',
        f'<line x1="{zero:.1f}" y1="22" x2="{zero:.1f}" y2="{height}" stroke="#999"/>',
    ]
    for i, (lab, v, lo, hi) in enumerate(zip(labels, nps, low, high, strict=True)):
        y = 24 + i * row
        a, b = sorted((zero, x(v)))
        colour = "#0072B2" if v >= 0 else "#D55E00"
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{_e(lab)}</text>')
        parts.append(
            f'<rect x="{a:.1f}" y="{y + 4}" width="{b - a:.1f}" height="{row - 8}" '
            f'fill="{colour}"/>'
        )
        parts.append(
            f'<line x1="{x(lo):.1f}" y1="{y + 11}" x2="{x(hi):.1f}" y2="{y + 11}" '
            'stroke="#222" stroke-width="1.5"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def satisfaction_section(wh: Warehouse, lang: str) -> str:
    """The section's HTML ('' when satisfaction was never computed)."""
    if not wh.has(SEGMENTS):
        return ""
    _ = i18n.translations(lang).ugettext
    rows = stored_segments(wh)
    if not rows:
        return ""

    def num(v: Any, digits: int = 1) -> str:
        return i18n.number(v, lang, digits)

    es_names = cluster_names_es(wh) if lang == "es" else {}

    def group(r: dict[str, Any]) -> str:
        return i18n.satisfaction_group(lang, r["dimension"], r["segment"], es_names)

    def band(r: dict[str, Any]) -> str:
        if r["nps_low"] is None:
            return ""
        return _("%(low)s to %(high)s") % {
            "low": num(r["nps_low"], 0),
            "high": num(r["nps_high"], 0),
        }

    out = [f"<h2>{_e(_('Satisfaction'))}</h2>"]
    overall = next((r for r in rows if r["dimension"] == "all"), None)
    if overall is not None and overall["nps"] is not None:
        out.append(
            "<p>"
            + _e(
                _(
                    "NPS %(nps)s (95%% interval %(interval)s) from %(n)s customers who answered "
                    "(%(share)s); CSAT %(csat)s of 5."
                )
                % {
                    "nps": num(overall["nps"]),
                    "interval": band(overall),
                    "n": i18n.number(overall["respondents"], lang),
                    "share": i18n.percent(overall["response_share"], lang),
                    "csat": num(overall["csat_mean"], 2),
                }
            )
            + "</p>"
        )
    segs = [r for r in rows if r["dimension"] == "segment" and r["nps"] is not None]
    if segs:
        out.append(
            nps_bars_svg(
                [group(r) for r in segs],
                [r["nps"] for r in segs],
                [r["nps_low"] if r["nps_low"] is not None else r["nps"] for r in segs],
                [r["nps_high"] if r["nps_high"] is not None else r["nps"] for r in segs],
                _("NPS by saved segment, with its 95%% interval") % {},
            )
        )
    flagged = [r for r in rows if r["flag"]]
    if flagged:
        items = []
        for r in flagged:
            verdict = (
                _("worse than the rest") if r["flag"] == "worse" else _("better than the rest")
            )
            items.append(
                f"<li><b>{_e(group(r))}</b>: "
                + _e(
                    _("NPS %(nps)s (%(interval)s) against %(rest)s for the rest")
                    % {"nps": num(r["nps"]), "interval": band(r), "rest": num(r["rest_nps"])}
                )
                + f", {_e(verdict)}</li>"
            )
        out.append(f"<h3>{_e(_('Groups that stand out'))}</h3><ul>{''.join(items)}</ul>")
        worst = next((r for r in flagged if r["flag"] == "worse"), None)
        if worst is not None:
            terms = stored_terms(wh, worst["dimension"], worst["segment"])[:5]
            if terms:
                lines = "".join(
                    f"<li><b>{_e(t['term'])}</b>"
                    + (f": <q>{_e(t['quotes'][0])}</q>" if t["quotes"] else "")
                    + "</li>"
                    for t in terms
                )
                title = _("What %(group)s say more than the rest") % {"group": group(worst)}
                out.append(f"<h3>{_e(title)}</h3><ul>{lines}</ul>")
    head = "".join(
        f"<th>{_e(h)}</th>"
        for h in (_("Group"), _("Answered"), _("NPS (95%% interval)") % {}, _("CSAT (1 to 5)"))
    )
    for dim, title in (
        ("value_tier", _("Value tiers")),
        ("lifecycle_stage", _("Lifecycle stages")),
    ):
        mine = [r for r in rows if r["dimension"] == dim]
        if not mine:
            continue
        body = "".join(
            f"<tr><td>{_e(group(r))}</td><td>{_e(i18n.number(r['respondents'], lang))}</td>"
            f"<td>{_e(num(r['nps']))} ({_e(band(r))})</td>"
            f"<td>{_e(num(r['csat_mean'], 2))}</td></tr>"
            for r in mine
        )
        out.append(f"<h3>{_e(title)}</h3><table><tr>{head}</tr>{body}</table>")
    return "".join(out)
