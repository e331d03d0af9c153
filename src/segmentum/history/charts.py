"""Self-contained HTML charts (inline SVG, no scripts, opens offline) for the history module."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Callable
from typing import Any

from segmentum import i18n
from segmentum.history.cohorts import Cohorts, Forecast
from segmentum.history.migration import Migration

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#2ca02c",
)


def _e(x: Any) -> str:
    return html.escape(str(x))


def _as_is(x: str) -> str:
    return x


def _day(value: Any, lang: str) -> str:
    """A snapshot date in ``lang`` (as stored when it is not a date)."""
    if isinstance(value, _dt.date):
        return i18n.date(value, lang)
    return str(value)


def sankey_svg(
    m: Migration,
    width: int = 900,
    height: int = 520,
    lang: str = "en",
    state: Callable[[str], str] = _as_is,
) -> str:
    """Two columns of states (start, end) with bands proportional to the customers moving;
    dates and counts in ``lang``, each state as ``state`` names it."""
    num = i18n.number
    flows = [f for f in m.flows() if f["customers"] > 0]
    total = sum(f["customers"] for f in flows) or 1
    left = [s for s in m.states if any(f["source"] == s for f in flows)]
    right = [s for s in m.states if any(f["target"] == s for f in flows)]
    gap, top, bar = 6.0, 30.0, 14.0
    usable = height - top - 10 - gap * max(len(left), len(right))
    scale = usable / total
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(m.states)}

    def layout(states: list[str], key: str) -> dict[str, list[float]]:
        pos, y = {}, top
        for s in states:
            h = sum(f["customers"] for f in flows if f[key] == s) * scale
            pos[s] = [y, y]  # start, running offset
            y += h + gap
        return pos

    lp, rp = layout(left, "source"), layout(right, "target")
    x0, x1 = 190.0, width - 190.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="{x0}" y="18" text-anchor="end">{_e(_day(m.date_from, lang))}</text>',
        f'<text x="{x1}" y="18">{_e(_day(m.date_to, lang))}</text>',
    ]
    for f in sorted(flows, key=lambda f: (left.index(f["source"]), right.index(f["target"]))):
        h = f["customers"] * scale
        ya, yb = lp[f["source"]][1], rp[f["target"]][1]
        lp[f["source"]][1] += h
        rp[f["target"]][1] += h
        xm = (x0 + x1) / 2
        path = (
            f"M{x0 + bar},{ya} C{xm},{ya} {xm},{yb} {x1},{yb} L{x1},{yb + h} "
            f"C{xm},{yb + h} {xm},{ya + h} {x0 + bar},{ya + h} Z"
        )
        parts.append(
            f'<path d="{path}" fill="{colour[f["source"]]}" fill-opacity="0.35">'
            f"<title>{_e(state(f['source']))} → {_e(state(f['target']))}: "
            f"{num(f['customers'], lang, 0)}</title></path>"
        )
    for s in left:
        y, end = lp[s][0], lp[s][1]
        n = sum(f["customers"] for f in flows if f["source"] == s)
        parts.append(
            f'<rect x="{x0}" y="{y}" width="{bar}" height="{end - y}" fill="{colour[s]}"/>'
        )
        parts.append(
            f'<text x="{x0 - 6}" y="{(y + end) / 2 + 4}" text-anchor="end">'
            f"{_e(state(s))} ({num(n, lang, 0)})</text>"
        )
    for s in right:
        y, end = rp[s][0], rp[s][1]
        n = sum(f["customers"] for f in flows if f["target"] == s)
        parts.append(
            f'<rect x="{x1}" y="{y}" width="{bar}" height="{end - y}" fill="{colour[s]}"/>'
        )
        parts.append(
            f'<text x="{x1 + bar + 6}" y="{(y + end) / 2 + 4}">{_e(state(s))} '
            f"({num(n, lang, 0)})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _matrix_table(m: Migration, lang: str = "en", state: Callable[[str], str] = _as_is) -> str:
    t = i18n.translations(lang)
    pct = m.percentages
    head = "".join(f"<th>{_e(state(s))}</th>" for s in m.states)
    rows = []
    for a in m.states:
        cells = "".join(
            f'<td title="{_e(_customers(t, m.counts[a][b], lang))}" '
            f'style="background:rgba(78,121,167,{pct[a][b] / 100:.2f})">'
            f"{i18n.number(m.counts[a][b], lang, 0)}<br>"
            f"<small>{_e(i18n.percent(pct[a][b] / 100, lang, 0))}</small></td>"
            for b in m.states
        )
        rows.append(f"<tr><th>{_e(state(a))}</th>{cells}</tr>")
    corner = _e(t.ugettext("from \\ to"))
    return f"<table><tr><th>{corner}</th>{head}</tr>{''.join(rows)}</table>"


def _customers(t: Any, n: int, lang: str) -> str:
    return str(t.ungettext("%(n)s customer", "%(n)s customers", n) % {"n": i18n.number(n, lang, 0)})


def _forecast_svg(
    fc: Forecast,
    width: int = 900,
    height: int = 320,
    lang: str = "en",
    state: Callable[[str], str] = _as_is,
) -> str:
    n_obs = len(fc.observed)
    series = {
        s: [d.get(s, 0) for d in fc.observed] + [p[s] for p in fc.projected] for s in fc.states
    }
    n = n_obs + len(fc.projected)
    ymax = max((max(v) for v in series.values()), default=1) or 1
    left, right, top, bottom = 50, 170, 20, 30
    w, h = width - left - right, height - top - bottom

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + w * i / max(n - 1, 1), top + h * (1 - v / ymax)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#888"/>',
    ]
    xs, _ = xy(n_obs - 1, 0)
    parts.append(
        f'<line x1="{xs}" y1="{top}" x2="{xs}" y2="{top + h}" stroke="#ccc" stroke-dasharray="4"/>'
    )
    for k, (s, vals) in enumerate(series.items()):
        c = PALETTE[k % len(PALETTE)]
        pts = [xy(i, v) for i, v in enumerate(vals)]
        obs = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts[:n_obs])
        proj = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts[n_obs - 1 :])
        parts.append(f'<polyline points="{obs}" fill="none" stroke="{c}" stroke-width="2"/>')
        parts.append(
            f'<polyline points="{proj}" fill="none" stroke="{c}" stroke-width="2" '
            'stroke-dasharray="5,4"/>'
        )
        _, ly = xy(n - 1, vals[-1])
        parts.append(f'<text x="{left + w + 6}" y="{ly + 4}" fill="{c}">{_e(state(s))}</text>')
    first, last = (_e(_day(d, lang)) for d in (fc.dates[0], fc.dates[-1]))
    parts.append(f'<text x="{left}" y="{height - 8}">{first}</text>')
    parts.append(f'<text x="{xs}" y="{height - 8}" text-anchor="middle">{last}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cohort_table(
    c: Cohorts,
    value: str = "retention",
    max_periods: int = 13,
    lang: str = "en",
    state: Callable[[str], str] = _as_is,
) -> str:
    t = i18n.translations(lang)
    mat = c.matrix(value)
    periods = list(range(max_periods))
    head = f"<th>{_e(t.ugettext('customers'))}</th>" + "".join(f"<th>{p}</th>" for p in periods)
    sizes = c.sizes()
    rows = []
    for cohort, vals in sorted(mat.items()):
        # An empty cell: a month not reached yet; a month reached with no buyer reads 0 %.
        cells = f"<td>{_e(i18n.number(sizes[cohort], lang, 0))}</td>" + "".join(
            f'<td style="background:rgba(89,161,79,{min(vals.get(p, 0.0), 1.0):.2f})">'
            f"{_e(i18n.percent(vals[p], lang, 0))}</td>"
            if p in vals
            else "<td></td>"
            for p in periods
        )
        rows.append(f"<tr><th>{_e(_cohort_name(cohort, c.by, lang, state))}</th>{cells}</tr>")
    corner = t.ugettext("cohort \\ months since first purchase")
    first = f"<th>{_e(corner)}</th>"
    return f"<table><tr>{first}{head}</tr>{''.join(rows)}</table>"


def _cohort_name(cohort: str, by: str, lang: str, state: Callable[[str], str]) -> str:
    """A cohort as a person reads it: its month ("ene 2025") or its class."""
    return i18n.month(cohort, lang) if by == "month" else state(cohort)


def report_html(
    migration: Migration | None = None,
    forecast: Forecast | None = None,
    cohorts: Cohorts | None = None,
    title: str | None = None,
    *,
    lang: str = "en",
    state: Callable[[str], str] = _as_is,
    by: str | None = None,
) -> str:
    """One HTML page with whatever parts are given, in ``lang``: ``state`` names the states
    of the classification, ``by`` the classification itself (both as stored by default)."""
    t = i18n.translations(lang)
    _ = t.ugettext
    title = title or _("segmentum · segment history")
    body = [f"<h1>{_e(title)}</h1>"]
    if migration is not None:
        m = migration
        heading = _("Migration of %(by)s: %(from)s → %(to)s") % {
            "by": by or m.classification,
            "from": _day(m.date_from, lang),
            "to": _day(m.date_to, lang),
        }
        body.append(f"<h2>{_e(heading)}</h2>")
        body.append(sankey_svg(m, lang=lang, state=state))
        body.append(
            "<h3>" + _e(_("Transition matrix (customers, share of the starting state)")) + "</h3>"
        )
        body.append(_matrix_table(m, lang, state))
        net = m.net_change()
        body.append(
            "<h3>"
            + _e(_("Net change"))
            + "</h3><ul>"
            + "".join(
                f"<li>{_e(state(s))}: {'+' if v > 0 else '-'}{i18n.number(abs(v), lang, 0)}</li>"
                for s, v in net.items()
                if v
            )
            + "</ul>"
        )
        if m.alerts:
            alert = t.ungettext(
                "Alert: %(n)s valuable customer moved to a risky state",
                "Alert: %(n)s valuable customers moved to a risky state",
                len(m.alerts),
            ) % {"n": i18n.number(len(m.alerts), lang, 0)}
            cols = (_("customer"), _("from"), _("to"), _("spend before"))
            body.append(f"<h3>{_e(alert)}</h3>")
            body.append(
                "<table><tr>"
                + "".join(f"<th>{_e(c)}</th>" for c in cols)
                + "</tr>"
                + "".join(
                    f"<tr><td>{_e(a['customer_id'])}</td><td>{_e(state(a['state_from']))}</td>"
                    f"<td>{_e(state(a['state_to']))}</td>"
                    f"<td>{_e(i18n.number(a.get('lifetime_spend') or 0, lang, 2))}</td></tr>"
                    for a in m.alerts[:50]
                )
                + "</table>"
            )
    if forecast is not None:
        fc = forecast
        err = ""
        if fc.backtest_mape is not None and fc.baseline_mape is not None:
            err = " " + _(
                "One-step backtest error (MAPE): %(mape)s (no-change baseline: %(base)s)."
            ) % {
                "mape": i18n.percent(fc.backtest_mape / 100, lang),
                "base": i18n.percent(fc.baseline_mape / 100, lang),
            }
        heading = _("Forecast of %(by)s sizes") % {"by": by or fc.classification}
        body.append(f"<h2>{_e(heading)}</h2>")
        legend = _("Solid: observed; dashed: Markov projection.")
        body.append(f"<p>{_e(legend)}{_e(err)}</p>")
        body.append(_forecast_svg(fc, lang=lang, state=state))
    if cohorts is not None:
        heading = (
            _("Retention by month of first purchase")
            if cohorts.by == "month"
            else _("Retention by %(by)s cohort") % {"by": by or cohorts.by}
        )
        body.append(f"<h2>{_e(heading)}</h2>")
        body.append(_cohort_table(cohorts, lang=lang, state=state))
    style = (
        "body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;font-size:12px;margin:8px 0}"
        "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}"
    )
    return (
        f'<!doctype html><html lang="{_e(lang)}"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
