"""The bilingual web dashboard (Spanish / English), served by the same app; works offline.

Charts use Plotly's JavaScript bundle shipped inside the ``plotly`` Python package (served at
``/static/plotly.min.js``): no CDN. The language is ``?lang=es|en`` (remembered in a cookie),
else the browser's ``Accept-Language``. Sign-in stores the API key in an HTTP-only cookie.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
        f'<div id="{div}" class="card" style="height:340px"></div><script>'
        f"Plotly.newPlot({json.dumps(div)},{json.dumps(data)},{json.dumps(layout)},"
        '{"displaylogo":false,"responsive":true});</script>'
    )


def mount_dashboard(app: FastAPI, svc: Any) -> None:
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
        from segmentum.service.queries import overview

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
                            "x": [r[name_key] for r in rows],
                            "y": [r["customers"] for r in rows],
                        },
                        {
                            "type": "bar",
                            "name": t["revenue"] + " %",
                            "yaxis": "y2",
                            "x": [r[name_key] for r in rows],
                            "y": [round(100 * r["revenue_share"], 1) for r in rows],
                        },
                    ],
                    {
                        "title": title,
                        "barmode": "group",
                        "yaxis2": {"overlaying": "y", "side": "right"},
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
                    {"title": t["heatmap"]},
                )
            )
        for key, title in (("clv_histogram", t["clv"]), ("churn_histogram", t["churn"])):
            h = o.get(key)
            if h and h["counts"]:
                mids = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:], strict=True)]
                parts.append(
                    _plot(
                        f"chart-{key}",
                        [{"type": "bar", "x": mids, "y": h["counts"]}],
                        {"title": title},
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
        from segmentum.service.queries import customer_lookup

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
<p id="result"></p></div>
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
</script>"""
        ).render(t=t)
        return _page(request, t["segments"], body, lang)
