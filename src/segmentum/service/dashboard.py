"""The bilingual web dashboard (Spanish / English), served by the same app; works offline.

Charts use Plotly's JavaScript bundle shipped inside the ``plotly`` Python package (served at
``/static/plotly.min.js``): no CDN. The language is ``?lang=es|en`` (remembered in a cookie),
else the browser's ``Accept-Language``. Sign-in stores the API key in an HTTP-only cookie.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import ibis
from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "segmentum",
        "overview": "Overview",
        "customers": "Customers",
        "customer": "Customer lookup",
        "segments": "Segment builder",
        "revenue": "Revenue",
        "as_of": "as of",
        "rfm": "RFM segments",
        "tiers": "Value tiers",
        "grid": "Value x potential",
        "heatmap": "RFM heat map (recency x frequency score)",
        "clv": "Customer lifetime value (12 months)",
        "churn": "Churn probability",
        "saved": "Saved segments",
        "sign_in": "Sign in",
        "key": "API key",
        "wrong_key": "That key is not valid.",
        "search": "Search",
        "not_found": "No customer with that id.",
        "rule": "Rule",
        "size": "Size",
        "preview_hint": "Type a rule, e.g. value_tier == 'high' and recency_days > 60",
        "language": "Español",
        "explorer": "Segment explorer",
        "micro": "Micro-segments",
        "geography": "Geography",
        "migration": "Migration",
        "campaigns": "Campaigns",
        "data": "Data",
        "members": "Members",
        "export": "Export CSV",
        "flags": "Flags",
        "profile": "Profile",
        "from": "From",
        "to": "To",
        "by": "By",
        "forecast": "Forecast (next periods)",
        "batches": "Loaded files",
        "runs": "Pipeline runs",
        "quarantine": "Rejected rows",
        "persona": "Persona",
        "no_data": "Nothing yet.",
        "show": "Show",
        "name": "Name",
        "save": "Save segment",
        "saved_ok": "Saved:",
    },
    "es": {
        "title": "segmentum",
        "overview": "Resumen",
        "customers": "Clientes",
        "customer": "Buscar cliente",
        "segments": "Constructor de segmentos",
        "revenue": "Ingresos",
        "as_of": "a fecha de",
        "rfm": "Segmentos RFM",
        "tiers": "Niveles de valor",
        "grid": "Valor x potencial",
        "heatmap": "Mapa de calor RFM (recencia x frecuencia)",
        "clv": "Valor de vida del cliente (12 meses)",
        "churn": "Probabilidad de abandono",
        "saved": "Segmentos guardados",
        "sign_in": "Entrar",
        "key": "Clave de API",
        "wrong_key": "Esa clave no es válida.",
        "search": "Buscar",
        "not_found": "No hay ningún cliente con ese id.",
        "rule": "Regla",
        "size": "Tamaño",
        "preview_hint": "Escribe una regla, p. ej. value_tier == 'high' and recency_days > 60",
        "language": "English",
        "explorer": "Explorador de segmentos",
        "micro": "Micro-segmentos",
        "geography": "Geografía",
        "migration": "Migración",
        "campaigns": "Campañas",
        "data": "Datos",
        "members": "Miembros",
        "export": "Exportar CSV",
        "flags": "Avisos",
        "profile": "Perfil",
        "from": "Desde",
        "to": "Hasta",
        "by": "Por",
        "forecast": "Previsión (próximos periodos)",
        "batches": "Ficheros cargados",
        "runs": "Ejecuciones del proceso",
        "quarantine": "Filas rechazadas",
        "persona": "Persona",
        "no_data": "Todavía nada.",
        "show": "Mostrar",
        "name": "Nombre",
        "save": "Guardar segmento",
        "saved_ok": "Guardado:",
    },
}

BASE = """<!doctype html><html lang="{{ lang }}"><head><meta charset="utf-8">
<title>{{ t.title }} · {{ page_title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/static/plotly.min.js"></script>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#f7f7f9}
nav{background:#263238;padding:10px 20px}nav a{color:#fff;margin-right:18px;text-decoration:none}
main{padding:20px}.kpi{display:inline-block;background:#fff;padding:12px 20px;margin:0 12px 12px 0;
border-radius:8px;box-shadow:0 1px 3px #0002}.kpi b{display:block;font-size:1.6em}
.card{background:#fff;border-radius:8px;padding:12px;margin-bottom:16px;box-shadow:0 1px 3px #0002}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #eee;text-align:left}
.error{color:#b00020}textarea{width:100%;font-family:monospace}
</style></head><body>
<nav><a href="/dashboard">{{ t.overview }}</a><a href="/dashboard/customer">{{ t.customer }}</a>
<a href="/dashboard/segments">{{ t.segments }}</a>
<a href="/dashboard/explorer">{{ t.explorer }}</a><a href="/dashboard/micro">{{ t.micro }}</a>
<a href="/dashboard/geography">{{ t.geography }}</a><a href="/dashboard/migration">{{ t.migration }}</a>
<a href="/dashboard/campaigns">{{ t.campaigns }}</a><a href="/dashboard/data">{{ t.data }}</a>
<a id="lang" href="?lang={{ 'en' if lang == 'es' else 'es' }}">{{ t.language }}</a></nav>
<main>{{ body | safe }}</main></body></html>"""

_env = Environment(autoescape=True)
_base = _env.from_string(BASE)


def language(request: Request) -> str:
    q = request.query_params.get("lang")
    if q in TEXT:
        return q
    c = request.cookies.get("segmentum_lang")
    if c in TEXT:
        return c
    accept = request.headers.get("accept-language", "")
    return "es" if accept.lower().startswith("es") else "en"


def _page(request: Request, title: str, body: str, lang: str) -> HTMLResponse:
    html = _base.render(lang=lang, t=TEXT[lang], page_title=title, body=body)
    resp = HTMLResponse(html)
    if request.query_params.get("lang") in TEXT:
        resp.set_cookie("segmentum_lang", lang, samesite="lax")
    return resp


def _plot(div: str, data: list[dict[str, Any]], layout: dict[str, Any]) -> str:
    return (
        f'<div id="{div}" class="card" style="height:{layout.get("height", 340)}px"></div><script>'
        f"Plotly.newPlot({json.dumps(div)},{json.dumps(data)},{json.dumps(layout)},"
        '{"displaylogo":false,"responsive":true});</script>'
    )


def mount_dashboard(app: FastAPI, svc: Any) -> None:
    mount_pages(app, svc)
    import plotly

    plotly_js = Path(str(plotly.__file__)).parent / "package_data" / "plotly.min.js"

    def signed_in(request: Request) -> bool:
        return svc.keys.verify(request.cookies.get("segmentum_key")) is not None

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_bundle() -> FileResponse:
        return FileResponse(plotly_js, media_type="application/javascript")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, error: int = 0) -> HTMLResponse:
        lang = language(request)
        t = TEXT[lang]
        msg = f'<p class="error" id="error">{t["wrong_key"]}</p>' if error else ""
        body = _env.from_string(
            '<div class="card"><h1>{{ t.sign_in }}</h1>{{ msg | safe }}'
            '<form method="post" action="/login"><label>{{ t.key }} '
            '<input name="key" id="key" size="60" autocomplete="off"></label> '
            '<button type="submit" id="sign-in">{{ t.sign_in }}</button></form></div>'
        ).render(t=t, msg=msg)
        return _page(request, t["sign_in"], body, lang)

    @app.post("/login", include_in_schema=False)
    def login(key: str = Form("")) -> Response:
        if svc.keys.verify(key) is None:
            return RedirectResponse("/login?error=1", status_code=303)
        resp = RedirectResponse("/dashboard", status_code=303)
        resp.set_cookie("segmentum_key", key, httponly=True, samesite="strict")
        return resp

    @app.get("/dashboard", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        if not signed_in(request):
            return RedirectResponse("/login", status_code=303)
        from segmentum.precompute import overview

        lang = language(request)
        t = TEXT[lang]
        o = svc.locked(lambda: overview(svc.wh))
        name_key = "name"
        parts = [
            f"<h1>{t['overview']} <small>{t['as_of']} {o['as_of']}</small></h1>",
            f'<div class="kpi" id="kpi-customers">{t["customers"]}<b>{o["customers"]:,}</b></div>',
            f'<div class="kpi" id="kpi-revenue">{t["revenue"]}<b>{o["revenue"]:,.0f}</b></div>',
            '<div class="grid">',
        ]
        for key, title in (
            ("rfm_segment", t["rfm"]),
            ("value_tier", t["tiers"]),
            ("value_potential", t["grid"]),
        ):
            rows = o.get(key) or []
            parts.append(
                _plot(
                    f"chart-{key}",
                    [
                        {
                            "type": "bar",
                            "name": t["customers"],
                            "offsetgroup": 1,
                            "x": [r[name_key] for r in rows],
                            "y": [r["customers"] for r in rows],
                        },
                        {
                            "type": "bar",
                            "name": t["revenue"] + " %",
                            "yaxis": "y2",
                            "offsetgroup": 2,
                            "x": [r[name_key] for r in rows],
                            "y": [round(100 * r["revenue_share"], 1) for r in rows],
                        },
                    ],
                    {
                        "title": {"text": title},
                        "barmode": "group",
                        "yaxis": {"title": {"text": t["customers"]}},
                        "yaxis2": {
                            "overlaying": "y",
                            "side": "right",
                            "title": {"text": t["revenue"] + " %"},
                        },
                    },
                )
            )
        heat = o.get("rfm_heatmap") or []
        if heat:
            z = [[0] * 5 for _ in range(5)]
            for r in heat:
                z[int(r["f_score"]) - 1][int(r["r_score"]) - 1] = r["customers"]
            parts.append(
                _plot(
                    "chart-heatmap",
                    [{"type": "heatmap", "z": z, "x": [1, 2, 3, 4, 5], "y": [1, 2, 3, 4, 5]}],
                    {
                        "title": {"text": t["heatmap"]},
                        "xaxis": {"title": {"text": "R"}},
                        "yaxis": {"title": {"text": "F"}},
                    },
                )
            )
        for key, title in (("clv_histogram", t["clv"]), ("churn_histogram", t["churn"])):
            h = o.get(key)
            if h and h["counts"]:
                labels = [
                    f"{a:,.2f}–{b:,.2f}" if b < 10 else f"{a:,.0f}–{b:,.0f}"
                    for a, b in zip(h["edges"][:-1], h["edges"][1:], strict=True)
                ]
                parts.append(
                    _plot(
                        f"chart-{key}",
                        [{"type": "bar", "x": labels, "y": h["counts"]}],
                        {
                            "title": {"text": title},
                            "xaxis": {"type": "category"},
                            "yaxis": {"title": {"text": t["customers"]}},
                        },
                    )
                )
        parts.append("</div>")
        if o.get("segments"):
            rows = "".join(
                f"<tr><td>{s['segment']}</td><td>{s['customers']:,}</td></tr>"
                for s in o["segments"]
            )
            parts.append(
                f'<div class="card"><h2>{t["saved"]}</h2><table id="saved">{rows}</table></div>'
            )
        return _page(request, t["overview"], "".join(parts), lang)

    @app.get("/dashboard/customer", include_in_schema=False)
    def customer_page(request: Request, id: str = "") -> Response:
        if not signed_in(request):
            return RedirectResponse("/login", status_code=303)
        from segmentum.precompute import customer_lookup

        lang = language(request)
        t = TEXT[lang]
        found = customer_lookup(svc, id) if id else None
        table = ""
        if found:
            table = (
                "<table id='customer'>"
                + "".join(
                    f"<tr><th>{_env.from_string('{{ k }}').render(k=k)}</th>"
                    f"<td>{_env.from_string('{{ v }}').render(v=v)}</td></tr>"
                    for k, v in found.items()
                )
                + "</table>"
            )
        elif id:
            table = f'<p class="error" id="not-found">{t["not_found"]}</p>'
        body = (
            _env.from_string(
                '<h1>{{ t.customer }}</h1><form class="card"><input name="id" id="customer-id" '
                'value="{{ id }}"> <button id="search">{{ t.search }}</button></form>'
            ).render(t=t, id=id)
            + f'<div class="card">{table}</div>'
        )
        return _page(request, t["customer"], body, lang)

    @app.get("/dashboard/segments", include_in_schema=False)
    def builder(request: Request) -> Response:
        if not signed_in(request):
            return RedirectResponse("/login", status_code=303)
        lang = language(request)
        t = TEXT[lang]
        body = _env.from_string(
            """<h1>{{ t.segments }}</h1><div class="card">
<label for="rule">{{ t.rule }}</label>
<textarea id="rule" rows="3" placeholder="{{ t.preview_hint }}"></textarea>
<p id="result"></p>
<label>{{ t.name }} <input id="name" pattern="[A-Za-z_][A-Za-z0-9_]*"></label>
<button id="save">{{ t.save }}</button> <span id="saved-msg"></span></div>
<script>
let timer = null;
document.getElementById("rule").addEventListener("input", function () {
  clearTimeout(timer);
  const rule = this.value;
  timer = setTimeout(async function () {
    const out = document.getElementById("result");
    if (!rule.trim()) { out.textContent = ""; return; }
    const r = await fetch("/v1/segments/preview", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({rule: rule})});
    const j = await r.json();
    if (r.ok) {
      out.className = "";
      out.textContent = "{{ t.size }}: " + j.size.toLocaleString() + " / " +
        j.customers.toLocaleString() + " (" + (100 * j.share).toFixed(1) + "%)";
    } else {
      out.className = "error";
      out.textContent = j.detail;
    }
  }, 300);
});
document.getElementById("save").addEventListener("click", async function () {
  const msg = document.getElementById("saved-msg");
  const r = await fetch("/v1/segments", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({name: document.getElementById("name").value,
                          rule: document.getElementById("rule").value})});
  const j = await r.json();
  msg.className = r.ok ? "" : "error";
  msg.textContent = r.ok ? "{{ t.saved_ok }} " + j.name : j.detail;
});
</script>"""
        ).render(t=t)
        return _page(request, t["segments"], body, lang)


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _table(rows: list[dict[str, Any]], cols: list[str], table_id: str) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
    return v


def mount_pages(app: FastAPI, svc: Any) -> None:
    """The analysis pages: explorer, micro-segments, geography, migration, campaigns, data."""

    def guard(request: Request) -> tuple[str, dict[str, str]] | None:
        if svc.keys.verify(request.cookies.get("segmentum_key")) is None:
            return None
        lang = language(request)
        return lang, TEXT[lang]

    def login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    @app.get("/dashboard/explorer", include_in_schema=False)
    def explorer(request: Request, segment: str = "") -> Response:
        g = guard(request)
        if g is None:
            return login()
        lang, t = g
        from segmentum.segments.discover import profile_labels, segment_labels
        from segmentum.segments.store import Segments

        def run() -> str:
            store = Segments(svc.wh, svc.settings)
            segs = store.list()
            links = "".join(
                f'<li><a href="?segment={_e(x.name)}">{_e(x.name)}</a>: <code>{_e(x.rule)}</code></li>'
                for x in segs
            )
            out = f'<h1>{t["explorer"]}</h1><div class="card"><ul id="segment-list">{links}</ul></div>'
            if segment:
                from types import SimpleNamespace

                from segmentum.precompute import overview

                cached = overview(svc.wh).get("profiles", {}).get(segment)
                if cached is not None:  # precomputed by the pipeline
                    prof: Any = SimpleNamespace(
                        tree_rules=cached["tree_rules"],
                        segments=[
                            SimpleNamespace(
                                **{**p, "tests": [SimpleNamespace(**x) for x in p["tests"]]}
                            )
                            for p in cached["segments"]
                        ],
                    )
                else:
                    prof = profile_labels(svc.wh, segment_labels(svc.wh, segment), "segment")
                inside = next((p for p in prof.segments if p.segment == "in"), None)
                members = store.members(segment)
                ids = members.order_by("customer_id").limit(50).customer_id.to_pyarrow().to_pylist()
                if inside is not None:
                    name = inside.name_es if lang == "es" else inside.name_en
                    desc = inside.description_es if lang == "es" else inside.description_en
                    tests = [
                        {
                            "feature": x.feature,
                            "test": x.test,
                            "effect": x.effect,
                            "q": x.q_value,
                            "segment": x.segment_value,
                            "rest": x.rest_value,
                        }
                        for x in inside.tests[:12]
                    ]
                    out += (
                        f'<div class="card" id="profile"><h2>{_e(segment)}: {_e(name)}</h2>'
                        f"<p>{_e(desc)}</p><p>{t['flags']}: {_e(', '.join(inside.flags) or '-')}</p>"
                        + _table(
                            tests, ["feature", "test", "effect", "q", "segment", "rest"], "tests"
                        )
                        + f"<pre>{_e(prof.tree_rules)}</pre></div>"
                    )
                out += (
                    f'<div class="card"><h2>{t["members"]}</h2><p id="members">{_e(", ".join(ids))}</p>'
                    f'<a id="export" href="/v1/exports/segments/{_e(segment)}.csv">{t["export"]}</a></div>'
                )
            return out

        return _page(request, t["explorer"], svc.locked(run), lang)

    @app.get("/dashboard/micro", include_in_schema=False)
    def micro(request: Request, dimensions: str = "value_tier,region,city,age_band") -> Response:
        g = guard(request)
        if g is None:
            return login()
        lang, t = g
        from types import SimpleNamespace

        from segmentum.precompute import DEFAULT_MICRO, overview
        from segmentum.segments.micro import micro_segments

        dims = [d.strip() for d in dimensions.split(",") if d.strip()]
        min_size = svc.settings.micro_segment_min_size
        cached = svc.locked(lambda: overview(svc.wh)).get("micro")
        if cached and tuple(dims) == DEFAULT_MICRO and cached["min_size"] == min_size:
            nodes: list[Any] = [SimpleNamespace(**n) for n in cached["nodes"]]
        else:
            nodes = svc.locked(
                lambda: micro_segments(svc.wh, dims, min_size=min_size, store=False)
            ).nodes
        rows = []
        for n in nodes:
            persona = "; ".join(f"{k}: {v['value']}" for k, v in n.persona.items())
            rows.append(
                f"<tr><td style='padding-left:{12 * n.depth}px'>{_e(n.value or 'all')}</td>"
                f"<td>{n.customers:,}</td><td>{n.own:,}</td><td>{n.revenue:,.0f}</td>"
                f"<td>{'' if n.avg_clv is None else f'{n.avg_clv:,.0f}'}</td><td>{_e(persona)}</td></tr>"
            )
        body = (
            f'<h1>{t["micro"]}</h1><form class="card"><input name="dimensions" size="60" '
            f'value="{_e(dimensions)}"> <button>{t["show"]}</button></form><div class="card">'
            f'<table id="micro"><tr><th></th><th>{t["customers"]}</th><th>own</th>'
            f"<th>{t['revenue']}</th><th>CLV</th><th>{t['persona']}</th></tr>{''.join(rows)}</table></div>"
        )
        return _page(request, t["micro"], body, lang)

    @app.get("/dashboard/geography", include_in_schema=False)
    def geography(request: Request) -> Response:
        g = guard(request)
        if g is None:
            return login()
        lang, t = g
        from segmentum.precompute import overview
        from segmentum.segments.micro import drilldown

        cached = svc.locked(lambda: overview(svc.wh)).get("geography")
        rows = cached if cached is not None else svc.locked(lambda: drilldown(svc.wh))
        ids = [r["path"] for r in rows]
        parents = [" > ".join(r["path"].split(" > ")[:-1]) for r in rows]
        body = f"<h1>{t['geography']}</h1>" + _plot(
            "chart-geo",
            [
                {
                    "type": "sunburst",
                    "ids": ids,
                    "labels": [r["name"] for r in rows],
                    "parents": parents,
                    "values": [r["revenue"] for r in rows],
                    "branchvalues": "total",
                    "customdata": [r["customers"] for r in rows],
                    "hovertemplate": "%{label}: %{value:,.0f} (%{customdata} "
                    + t["customers"]
                    + ")",
                }
            ],
            {"height": 600},
        )
        return _page(request, t["geography"], body, lang)

    @app.get("/dashboard/migration", include_in_schema=False)
    def migration_page(
        request: Request, by: str = "value_tier", date_from: str = "", date_to: str = ""
    ) -> Response:
        g = guard(request)
        if g is None:
            return login()
        lang, t = g
        import datetime as dt

        from segmentum.errors import SegmentumError
        from segmentum.history.cohorts import forecast
        from segmentum.history.migration import migration
        from segmentum.history.snapshots import snapshot_dates

        def run() -> str:
            dates = snapshot_dates(svc.wh)
            if len(dates) < 2:
                return f'<h1>{t["migration"]}</h1><p id="no-data">{t["no_data"]}</p>'
            from types import SimpleNamespace

            from segmentum.precompute import overview

            cache = overview(svc.wh)
            try:
                a = dt.date.fromisoformat(date_from) if date_from else dates[-2]
                b = dt.date.fromisoformat(date_to) if date_to else dates[-1]
                cm = cache.get("migration")
                if cm and by == "value_tier" and (cm["from"], cm["to"]) == (str(a), str(b)):
                    m: Any = SimpleNamespace(states=cm["states"], flows=lambda: cm["flows"])
                else:
                    m = migration(svc.wh, a, b, by)
            except (ValueError, SegmentumError) as exc:
                return f'<h1>{t["migration"]}</h1><p class="error">{_e(exc)}</p>'
            labels = [f"{s_} ({a})" for s_ in m.states] + [f"{s_} ({b})" for s_ in m.states]
            k = len(m.states)
            idx = {s_: i for i, s_ in enumerate(m.states)}
            flows = m.flows()
            opts = "".join(f"<option{' selected' if d == a else ''}>{d}</option>" for d in dates)
            opts2 = "".join(f"<option{' selected' if d == b else ''}>{d}</option>" for d in dates)
            out = (
                f'<h1>{t["migration"]}</h1><form class="card">{t["by"]} <input name="by" value="{_e(by)}"> '
                f'{t["from"]} <select name="date_from">{opts}</select> {t["to"]} '
                f'<select name="date_to">{opts2}</select> <button>{t["show"]}</button></form>'
                + _plot(
                    "chart-sankey",
                    [
                        {
                            "type": "sankey",
                            "node": {"label": labels},
                            "link": {
                                "source": [idx[f["source"]] for f in flows],
                                "target": [k + idx[f["target"]] for f in flows],
                                "value": [f["customers"] for f in flows],
                            },
                        }
                    ],
                    {"height": 520},
                )
            )
            try:
                cf = cache.get("forecast")
                if cf and by == "value_tier":
                    fc: Any = SimpleNamespace(**cf)
                else:
                    fc = forecast(svc.wh, by if not by.startswith("segment:") else "value_tier")
                rows = [
                    {
                        "segment": s_,
                        "now": fc.observed[-1].get(s_, 0),
                        **{f"+{i + 1}": round(p[s_]) for i, p in enumerate(fc.projected)},
                    }
                    for s_ in fc.states
                ]
                out += (
                    f'<div class="card"><h2>{t["forecast"]}</h2>'
                    + _table(rows, list(rows[0]) if rows else [], "forecast")
                    + (
                        f"<p>MAPE {fc.backtest_mape:.1f}% (no change: {fc.baseline_mape:.1f}%)</p>"
                        if fc.backtest_mape is not None
                        else ""
                    )
                    + "</div>"
                )
            except SegmentumError:
                pass
            return out

        return _page(request, t["migration"], svc.locked(run), lang)

    @app.get("/dashboard/campaigns", include_in_schema=False)
    def campaigns_page(request: Request, c: str = "") -> Response:
        g = guard(request)
        if g is None:
            return login()
        lang, t = g
        from segmentum.campaigns.core import Campaigns
        from segmentum.campaigns.measure import results

        def run() -> str:
            rows = []
            cs = Campaigns(svc.wh, svc.settings)
            for camp in cs.list():
                row: dict[str, Any] = {
                    "campaign": camp.name,
                    "tactic": camp.tactic,
                    "channel": camp.channel,
                }
                try:
                    r = results(
                        svc.wh, camp.campaign_id, svc.settings, camp.cost_per_contact
                    ).overall
                    row.update(
                        treated=r.treated,
                        control=r.control,
                        uplift=f"{100 * r.uplift:+.1f} pp ({100 * r.uplift_low:+.1f}, "
                        f"{100 * r.uplift_high:+.1f})",
                        p=r.p_value,
                        roi=r.roi,
                    )
                except Exception:  # not sent yet
                    pass
                rows.append(row)
            cols = ["campaign", "tactic", "channel", "treated", "control", "uplift", "p", "roi"]
            links = "".join(
                f'<li><a href="?c={_e(x.campaign_id)}">{_e(x.name)}</a></li>' for x in cs.list()
            )
            out = (
                f'<h1>{t["campaigns"]}</h1><div class="card">'
                + (_table(rows, cols, "campaigns") if rows else f"<p>{t['no_data']}</p>")
                + f"<ul>{links}</ul></div>"
            )
            if c:
                # Audience and schedule: the dry run (who would get what, when and why).
                plan = cs.dry_run(cs.get(c), sample=10)
                outcomes = [{"outcome": k, "customers": v} for k, v in plan["outcomes"].items()]
                out += (
                    f'<div class="card" id="plan"><h2>{_e(plan["campaign"])}: '
                    f"{plan['audience']:,} {t['customers'].lower()}</h2>"
                    + _table(outcomes, ["outcome", "customers"], "outcomes")
                    + _table(
                        plan["examples"], ["customer_id", "when", "why", "subject"], "examples"
                    )
                    + "</div>"
                )
            return out

        return _page(request, t["campaigns"], svc.locked(run), lang)

    @app.get("/dashboard/data", include_in_schema=False)
    def data_page(request: Request, batch: str = "") -> Response:
        g = guard(request)
        if g is None:
            return login()
        lang, t = g

        def run() -> str:
            wh = svc.wh
            out = f"<h1>{t['data']}</h1>"
            if wh.has("pipeline_runs"):
                runs = (
                    wh.table("pipeline_runs")
                    .order_by(ibis.desc("started_at"))
                    .limit(20)
                    .to_pyarrow()
                    .to_pylist()
                )
                for r in runs:
                    steps = json.loads(r["steps"] or "[]")
                    failed = [x for x in steps if x.get("status") == "failed"]
                    r["failed_step"] = (
                        f"{failed[0]['step']}: {failed[0].get('error', '')}" if failed else ""
                    )
                out += (
                    f'<div class="card"><h2>{t["runs"]}</h2>'
                    + _table(
                        runs,
                        ["run_id", "started_at", "as_of", "status", "failed_step", "error"],
                        "runs",
                    )
                    + "</div>"
                )
            if wh.has("ingest_batches"):
                b = wh.table("ingest_batches").order_by("loaded_at").to_pyarrow().to_pylist()
                for r in b:
                    r["batch_id"] = r["batch_id"]
                out += (
                    f'<div class="card"><h2>{t["batches"]}</h2>'
                    + _table(
                        b,
                        [
                            "batch_id",
                            "table_name",
                            "file",
                            "rows_read",
                            "accepted",
                            "quarantined",
                            "anonymous",
                            "duplicates",
                            "loaded_at",
                        ],
                        "batches",
                    )
                    + "</div>"
                )
            if wh.has("quarantine"):
                q = wh.table("quarantine")
                if batch:
                    q = q.filter(q.batch_id == batch)
                rows = q.limit(100).to_pyarrow().to_pylist()
                out += (
                    f'<div class="card"><h2>{t["quarantine"]}</h2>'
                    + _table(
                        rows,
                        ["batch_id", "file", "source_row", "column", "value", "reason"],
                        "quarantine",
                    )
                    + "</div>"
                )
            return out

        return _page(request, t["data"], svc.locked(run), lang)
