"""One self-contained HTML report (inline SVG charts, no scripts, opens offline), ES or EN.

Sections: overview (customers, revenue, RFM segments, value tiers, value x potential), saved
and discovered segments with their profiles, customer lifetime value and churn, migration
between the last two snapshots, and campaign results against their control groups.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import ibis

from segmentum import i18n
from segmentum.config import Settings, load_settings
from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

WORDS = {
    "en": {
        "title": "Customer base report",
        "as_of": "as of",
        "customers": "customers",
        "revenue": "revenue",
        "overview": "Overview",
        "rfm": "RFM segments",
        "tiers": "Value tiers",
        "grid": "Value x potential",
        "segments": "Saved segments",
        "clusters": "Discovered segments",
        "clv": "Customer lifetime value and churn",
        "clv_hist": "12-month CLV (customers per band)",
        "churn_hist": "Churn probability (customers per band)",
        "migration": "Migration between the last two snapshots",
        "campaigns": "Campaign results (treatment vs control)",
        "none": "Nothing yet.",
        "uplift": "uplift",
        "roi": "ROI",
        "share": "share",
        "level": "95%",
    },
    "es": {
        "title": "Informe de la base de clientes",
        "as_of": "a fecha de",
        "customers": "clientes",
        "revenue": "ingresos",
        "overview": "Resumen",
        "rfm": "Segmentos RFM",
        "tiers": "Niveles de valor",
        "grid": "Valor x potencial",
        "segments": "Segmentos guardados",
        "clusters": "Segmentos descubiertos",
        "clv": "Valor de vida del cliente y abandono",
        "clv_hist": "CLV a 12 meses (clientes por tramo)",
        "churn_hist": "Probabilidad de abandono (clientes por tramo)",
        "migration": "Migración entre las dos últimas fotos",
        "campaigns": "Resultados de campañas (tratamiento frente a control)",
        "none": "Todavía nada.",
        "uplift": "incremento",
        "roi": "ROI",
        "share": "cuota",
        "level": "95 %",
    },
}


def _e(x: Any) -> str:
    return html.escape(str(x))


def bar_svg(
    labels: list[str], values: list[float], title: str, width: int = 640, lang: str = "en"
) -> str:
    """Horizontal bars with their values (a chart that needs no script), numbers in ``lang``."""
    if not labels:
        return ""
    row, left = 22, 190
    height = 30 + row * len(labels)
    top = max(values) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12" role="img" aria-label="{_e(title)}">',
        f'<text x="0" y="14" font-weight="bold">{_e(title)}</text>',
    ]
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row
        w = (width - left - 80) * (v / top)
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{_e(lab)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="#4e79a7"/>'
        )
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}">{i18n.number(v, lang, 0)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def build_report(wh: Warehouse, lang: str = "en", settings: Settings | None = None) -> str:
    """The whole report as one HTML string."""
    from segmentum.ingest.core import data_currency
    from segmentum.precompute import overview

    if lang not in WORDS:
        raise InputError(f"unknown language {lang!r}", "use es or en")
    settings = settings or load_settings()
    w = WORDS[lang]
    o = overview(wh)
    body = [
        f"<h1>{w['title']}</h1>",
        f"<p>{w['as_of']} {_e(i18n.date(o['as_of'], lang))}: "
        f"<b>{_e(i18n.number(o['customers'], lang, 0))}</b> {w['customers']}, "
        f"<b>{_e(i18n.money(o['revenue'], lang, data_currency(wh, settings)[0]))}</b> "
        f"{w['revenue']}</p>",
        f"<h2>{w['overview']}</h2>",
    ]
    names = _spanish_names() if lang == "es" else {}
    for key, title in (
        ("rfm_segment", w["rfm"]),
        ("value_tier", w["tiers"]),
        ("value_potential", w["grid"]),
    ):
        rows = o.get(key) or []
        labels = [names.get(str(r["name"]), str(r["name"])) for r in rows]
        body.append(bar_svg(labels, [r["customers"] for r in rows], title, lang=lang))
    body.append(f"<h2>{w['segments']}</h2>")
    segs = o.get("segments") or []
    body.append(
        bar_svg(
            [s["segment"] for s in segs], [s["customers"] for s in segs], w["segments"], lang=lang
        )
        if segs
        else f"<p>{w['none']}</p>"
    )
    body.append(f"<h2>{w['clusters']}</h2>")
    if wh.has("cluster_runs"):
        r = wh.table("cluster_runs").order_by(ibis.desc("created_at")).limit(1)
        summary = json.loads(r.to_pyarrow().to_pylist()[0]["summary"])
        items = []
        for p in summary["profiles"]["segments"]:
            name = p["name_es"] if lang == "es" else p["name_en"]
            desc = p["description_es"] if lang == "es" else p["description_en"]
            said = ", ".join(i18n.segment_flag(lang, f) for f in p["flags"])
            flags = f" <i>({_e(said)})</i>" if p["flags"] else ""
            items.append(f"<li><b>{_e(name)}</b>{flags}: {_e(desc)}</li>")
        body.append("<ul>" + "".join(items) + "</ul>")
    else:
        body.append(f"<p>{w['none']}</p>")
    body.append(f"<h2>{w['clv']}</h2>")
    for key, title in (("clv_histogram", w["clv_hist"]), ("churn_histogram", w["churn_hist"])):
        h = o.get(key)
        if h and h["counts"]:
            labels = [
                f"{i18n.number(a, lang, 2)}–{i18n.number(b, lang, 2)}"
                for a, b in zip(h["edges"][:-1], h["edges"][1:], strict=True)
            ]
            body.append(bar_svg(labels, h["counts"], title, lang=lang))
    body.append(f"<h2>{w['migration']}</h2>")
    body.append(_migration(wh, w, lang))
    body.append(f"<h2>{w['campaigns']}</h2>")
    body.append(_campaigns(wh, settings, w, lang))
    from segmentum.market.report import market_section

    body.append(market_section(wh, lang, settings, data_currency(wh, settings)[0] or None))
    from segmentum.satisfaction.report import satisfaction_section

    body.append(satisfaction_section(wh, lang))
    style = (
        "body{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px}"
    )
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{w['title']}</title><style>{style}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )


def _spanish_names() -> dict[str, str]:
    from segmentum.segments.classes import GRID, RFM_RULES

    out = {r.name: r.name_es for r in RFM_RULES}
    out.update(dict(GRID.values()))
    out.update({"high": "alto", "medium": "medio", "low": "bajo"})
    out["Too new to judge"] = "Demasiado nuevos"
    return out


def _migration(wh: Warehouse, w: dict[str, str], lang: str = "en") -> str:
    from segmentum.history.charts import sankey_svg
    from segmentum.history.migration import migration
    from segmentum.history.snapshots import snapshot_dates

    dates = snapshot_dates(wh)
    if len(dates) < 2:
        return f"<p>{w['none']}</p>"
    m = migration(wh, dates[-2], dates[-1], "value_tier")
    return sankey_svg(m, lang=lang, state=lambda x: i18n.label(lang, "value_tier", x))


def _campaigns(wh: Warehouse, settings: Settings, w: dict[str, str], lang: str = "en") -> str:
    from segmentum.campaigns.core import Campaigns
    from segmentum.campaigns.measure import results

    rows = []
    for c in Campaigns(wh, settings).list():
        try:
            res = results(wh, c.campaign_id, settings, c.cost_per_contact)
        except Exception:  # a campaign not sent yet has no results
            continue
        if not res.ready:  # nothing to compare yet (no uplift, no p-value)
            continue
        r = res.overall
        if r.uplift is None or r.uplift_low is None or r.uplift_high is None:
            continue
        roi = i18n.percent(r.roi, lang)
        interval = f"{i18n.points(r.uplift_low, lang)}, {i18n.points(r.uplift_high, lang)}"
        rows.append(
            f"<tr><td>{_e(c.name)}</td><td>{i18n.number(r.treated, lang, 0)}</td>"
            f"<td>{i18n.number(r.control, lang, 0)}</td>"
            f"<td>{_e(i18n.points(r.uplift, lang))} ({_e(interval)})</td>"
            f"<td>{i18n.number(r.p_value, lang, 3)}</td>"
            f"<td>{i18n.number(r.incremental_revenue, lang, 0)}</td><td>{_e(roi)}</td></tr>"
        )
    if not rows:
        return f"<p>{w['none']}</p>"
    head = (
        f"<tr><th></th><th>T</th><th>C</th><th>{w['uplift']} ({w['level']})</th><th>p</th>"
        f"<th>+{w['revenue']}</th><th>{w['roi']}</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def write_report(wh: Warehouse, out: str | Path, lang: str = "en") -> Path:
    p = Path(out)
    p.write_text(build_report(wh, lang), encoding="utf-8")
    return p
