"""Self-contained HTML charts (inline SVG, no scripts, opens offline) for the history module."""

from __future__ import annotations

import html
from typing import Any

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


def sankey_svg(m: Migration, width: int = 900, height: int = 520) -> str:
    """Two columns of states (start, end) with bands proportional to the customers moving."""
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
        f'<text x="{x0}" y="18" text-anchor="end">{_e(m.date_from)}</text>',
        f'<text x="{x1}" y="18">{_e(m.date_to)}</text>',
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
            f"<title>{_e(f['source'])} → {_e(f['target'])}: {f['customers']:,}</title></path>"
        )
    for s in left:
        y, end = lp[s][0], lp[s][1]
        n = sum(f["customers"] for f in flows if f["source"] == s)
        parts.append(
            f'<rect x="{x0}" y="{y}" width="{bar}" height="{end - y}" fill="{colour[s]}"/>'
        )
        parts.append(
            f'<text x="{x0 - 6}" y="{(y + end) / 2 + 4}" text-anchor="end">{_e(s)} ({n:,})</text>'
        )
    for s in right:
        y, end = rp[s][0], rp[s][1]
        n = sum(f["customers"] for f in flows if f["target"] == s)
        parts.append(
            f'<rect x="{x1}" y="{y}" width="{bar}" height="{end - y}" fill="{colour[s]}"/>'
        )
        parts.append(f'<text x="{x1 + bar + 6}" y="{(y + end) / 2 + 4}">{_e(s)} ({n:,})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _matrix_table(m: Migration) -> str:
    pct = m.percentages
    head = "".join(f"<th>{_e(s)}</th>" for s in m.states)
    rows = []
    for a in m.states:
        cells = "".join(
            f'<td title="{m.counts[a][b]:,} customers" '
            f'style="background:rgba(78,121,167,{pct[a][b] / 100:.2f})">'
            f"{m.counts[a][b]:,}<br><small>{pct[a][b]:.0f}%</small></td>"
            for b in m.states
        )
        rows.append(f"<tr><th>{_e(a)}</th>{cells}</tr>")
    return f"<table><tr><th>from \\ to</th>{head}</tr>{''.join(rows)}</table>"


def _forecast_svg(fc: Forecast, width: int = 900, height: int = 320) -> str:
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
        parts.append(f'<text x="{left + w + 6}" y="{ly + 4}" fill="{c}">{_e(s)}</text>')
    parts.append(f'<text x="{left}" y="{height - 8}">{_e(fc.dates[0])}</text>')
    parts.append(f'<text x="{xs}" y="{height - 8}" text-anchor="middle">{_e(fc.dates[-1])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cohort_table(c: Cohorts, value: str = "retention", max_periods: int = 13) -> str:
    mat = c.matrix(value)
    periods = list(range(max_periods))
    head = "".join(f"<th>{p}</th>" for p in periods)
    rows = []
    for cohort, vals in sorted(mat.items()):
        cells = "".join(
            f'<td style="background:rgba(89,161,79,{min(vals.get(p, 0.0), 1.0):.2f})">'
            f"{100 * vals[p]:.0f}%</td>"
            if p in vals
            else "<td></td>"
            for p in periods
        )
        rows.append(f"<tr><th>{_e(cohort)}</th>{cells}</tr>")
    first = "<th>cohort \\ months since first purchase</th>"
    return f"<table><tr>{first}{head}</tr>{''.join(rows)}</table>"


def report_html(
    migration: Migration | None = None,
    forecast: Forecast | None = None,
    cohorts: Cohorts | None = None,
    title: str = "segmentum · segment history",
) -> str:
    """One HTML page with whatever parts are given."""
    body = [f"<h1>{_e(title)}</h1>"]
    if migration is not None:
        m = migration
        body.append(
            f"<h2>Migration of {_e(m.classification)}: {_e(m.date_from)} → {_e(m.date_to)}</h2>"
        )
        body.append(sankey_svg(m))
        body.append("<h3>Transition matrix (customers, % of the starting state)</h3>")
        body.append(_matrix_table(m))
        net = m.net_change()
        body.append(
            "<h3>Net change</h3><ul>"
            + "".join(f"<li>{_e(s)}: {v:+,}</li>" for s, v in net.items() if v)
            + "</ul>"
        )
        if m.alerts:
            body.append(
                f"<h3>Alert: {len(m.alerts)} valuable customers moved to a risky state</h3>"
            )
            body.append(
                "<table><tr><th>customer</th><th>from</th><th>to</th><th>spend before</th></tr>"
                + "".join(
                    f"<tr><td>{_e(a['customer_id'])}</td><td>{_e(a['state_from'])}</td>"
                    f"<td>{_e(a['state_to'])}</td>"
                    f"<td>{(a.get('lifetime_spend') or 0):,.2f}</td></tr>"
                    for a in m.alerts[:50]
                )
                + "</table>"
            )
    if forecast is not None:
        fc = forecast
        err = (
            ""
            if fc.backtest_mape is None
            else (
                f" One-step backtest error (MAPE): {fc.backtest_mape:.1f}% "
                f"(no-change baseline: {fc.baseline_mape:.1f}%)."
            )
        )
        body.append(f"<h2>Forecast of {_e(fc.classification)} sizes</h2>")
        body.append(f"<p>Solid: observed; dashed: Markov projection.{_e(err)}</p>")
        body.append(_forecast_svg(fc))
    if cohorts is not None:
        body.append(f"<h2>Retention by {_e(cohorts.by)} cohort</h2>")
        body.append(_cohort_table(cohorts))
    style = (
        "body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;font-size:12px;margin:8px 0}"
        "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}"
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
