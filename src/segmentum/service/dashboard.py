"""The bilingual web dashboard (Spanish / English): routes that read the library and render
the Jinja pages in ``templates/`` with the assets in ``static/``; nothing loads from a CDN.

The language is ``?lang=es|en`` (remembered in a cookie), else the browser's
``Accept-Language``; texts come from the gettext catalogs in ``segmentum/locale``. Signing in
with an API key opens a server-side session (an opaque, HTTP-only cookie that expires); every
state-changing form and JSON call carries the session's CSRF token. Every page is sent with a
Content-Security-Policy whose script nonce is new for each response.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.datastructures import FormData

from segmentum import i18n
from segmentum.errors import SegmentumError
from segmentum.flows.words import segment_name
from segmentum.service.auth import SESSION_COOKIE, Session, Sessions, create_session
from segmentum.titles import column_titles

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LANG_COOKIE = "segmentum_lang"
# Okabe & Ito's palette: told apart by people with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
NAV = (
    ("overview", "/dashboard"),
    ("customer", "/dashboard/customer"),
    ("segments", "/dashboard/segments"),
    ("explorer", "/dashboard/explorer"),
    ("micro", "/dashboard/micro"),
    ("geography", "/dashboard/geography"),
    ("market", "/dashboard/market"),
    ("satisfaction", "/dashboard/satisfaction"),
    ("migration", "/dashboard/migration"),
    ("campaigns", "/dashboard/campaigns"),
    ("flows", "/dashboard/flows"),
    ("data", "/dashboard/data"),
)
ADMIN_NAV = ("keys", "/dashboard/keys")  # shown to admin sessions only
# Columns whose values are money, shares or dates when a table shows them.
MONEY = {
    "revenue",
    "monetary",
    "clv",
    "spend",
    "lifetime_spend",
    "clv_low",
    "clv_high",
    "avg_order_value",
    "avg_clv",
}
# Chances a customer is alive or leaves are shown as percentages, as everywhere else (the
# audiences' reasons, the CLI); a test's p- and q-values stay numbers.
SHARES = {
    "share",
    "revenue_share",
    "customer_share",
    "promo_share",
    "return_rate",
    "p_alive",
    "churn_probability",
}
PROBABILITIES = {"p", "p_value", "q", "q_value"}
DATES = {"as_of", "started_at", "loaded_at", "when", "created_at", "expected_next_purchase"}


def _nav_titles(_: Callable[[str], str]) -> dict[str, str]:
    return {
        "overview": _("Overview"),
        "customer": _("Customers"),
        "segments": _("Segment builder"),
        "explorer": _("Segment explorer"),
        "micro": _("Micro-segments"),
        "geography": _("Geography"),
        "migration": _("Migration"),
        "campaigns": _("Campaigns"),
        "flows": _("Flows"),
        "data": _("Data"),
        "market": _("Market"),
        "satisfaction": _("Satisfaction"),
        "keys": _("API keys"),
    }


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )

    # One environment serves both languages at once: the gettext callables read the page's
    # language from the render context instead of being installed per request.
    @pass_context
    def gettext(ctx: Context, message: str) -> str:
        return i18n.translations(ctx["lang"]).ugettext(message)

    @pass_context
    def ngettext(ctx: Context, singular: str, plural: str, n: int) -> str:
        return i18n.translations(ctx["lang"]).ungettext(singular, plural, n)

    @pass_context
    def pgettext(ctx: Context, context: str, message: str) -> str:
        return i18n.translations(ctx["lang"]).upgettext(context, message)

    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext, ngettext, newstyle=True, pgettext=pgettext
    )
    return env


ENV = _env()
# A flow trigger's segment in the page's language (the Flows page).
ENV.globals["segment_name"] = segment_name


def language(request: Request) -> str:
    q = request.query_params.get("lang")
    if q in i18n.LANGUAGES:
        return q
    c = request.cookies.get(LANG_COOKIE)
    if c in i18n.LANGUAGES:
        return c
    accept = request.headers.get("accept-language", "")
    return "en" if accept.lower().startswith("en") else "es"


class Page:
    """What every template receives: language, formatters, session, nonce, navigation."""

    def __init__(self, request: Request, svc: Any, session: Session | None) -> None:
        self.request = request
        self.lang = language(request)
        self.session = session
        self.nonce = secrets.token_urlsafe(16)
        self.currency = currency_of(svc)
        t = i18n.translations(self.lang)
        self._ = t.ugettext
        self.ngettext = t.ungettext
        self.columns = column_titles(self._)

    def label(self, kind: str, value: Any) -> str:
        return i18n.label(self.lang, kind, value)

    def num(self, v: Any, digits: int | None = None) -> str:
        return i18n.number(v, self.lang, digits)

    def chance(self, v: Any) -> str:
        """A p- or q-value as pages write it: three decimals, "< 0,001" below that (never
        "0,000", which reads as impossible)."""
        if isinstance(v, int | float) and 0 <= v < 0.001:
            return "< " + self.num(0.001, 3)
        return self.num(v, 3)

    def pct(self, v: Any, digits: int = 1) -> str:
        return i18n.percent(v, self.lang, digits)

    def money(self, v: Any, digits: int = 0) -> str:
        return i18n.money(v, self.lang, self.currency, digits)

    def date(self, v: Any) -> str:
        return i18n.date(v, self.lang)

    def duration(self, seconds: Any) -> str:
        return i18n.duration(seconds, self.lang)

    def title(self, column: str) -> str:
        return self.columns.get(column, column.replace("_", " "))

    def cell(self, column: str, v: Any) -> str:
        """A table cell: locale numbers, translated labels, never nan / None / NaT."""
        if i18n.is_missing(v) or v == "":
            return i18n.MISSING
        if isinstance(v, bool):
            return self._("yes") if v else self._("no")
        if isinstance(v, list):
            return ", ".join(self.cell(column, x) for x in v) or i18n.MISSING
        if column in MONEY:
            return self.money(v)
        if column in SHARES and isinstance(v, int | float):
            return self.pct(v)
        if column in PROBABILITIES and isinstance(v, int | float):
            return self.num(v, 3)
        if isinstance(v, int | float):
            return self.num(v)
        if column in DATES or isinstance(v, _dt.date):
            return self.date(v)
        return self.label(column, v)

    def lang_url(self) -> str:
        """The same page in the other language (the query string is kept)."""
        params = dict(self.request.query_params)
        params["lang"] = "en" if self.lang == "es" else "es"
        return f"{self.request.url.path}?{urlencode(params)}"

    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


def currency_of(svc: Any) -> str | None:
    """The currency amounts are shown in: the setting, or with ``auto`` the data's own."""
    found = getattr(svc, "dashboard_currency", None)
    if found is None:
        code = (svc.settings.currency or "auto").upper()
        if code == "AUTO":
            from segmentum.campaigns.core import Campaigns
            from segmentum.precompute import CACHE, overview

            try:
                # The run publishes it with the overview (a Spark job per page start is seconds).
                published: Any = False
                store = svc.serving
                if store is not None and store.has(CACHE):
                    published = (store.read(overview) or {}).get("currency", False)
                code = (
                    published
                    if published is not False
                    else svc.locked(lambda: Campaigns(svc.wh, svc.settings).currency)
                ) or ""
            except Exception:  # the warehouse is busy: plain numbers this time
                return None
        found = svc.dashboard_currency = code
    return found or None


def render(page: Page, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    nav_titles = _nav_titles(page._)
    links = list(NAV)
    if page.session is not None and "admin" in page.session.scopes:
        links.append(ADMIN_NAV)
    html = ENV.get_template(template).render(
        lang=page.lang,
        page=page,
        nav=[(key, href, nav_titles[key]) for key, href in links],
        current=ctx.pop("current", ""),
        palette=PALETTE,
        **ctx,
    )
    resp = HTMLResponse(html, status_code=status)
    secure_headers(resp, page.nonce)
    if page.request.query_params.get("lang") in i18n.LANGUAGES:
        resp.set_cookie(LANG_COOKIE, page.lang, samesite="lax", max_age=365 * 86400)
    return resp


def secure_headers(resp: Response, nonce: str) -> None:
    # Plotly writes inline style attributes, so styles allow them; scripts only run with the
    # response's nonce, and no page may be framed.
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"


def chart(
    chart_id: str,
    data: list[dict[str, Any]],
    layout: dict[str, Any],
    links: list[str] | None = None,
) -> dict[str, Any]:
    """A Plotly figure for ``templates/_chart.html``: drawn by static/dashboard.js once the
    page is laid out, resized with its card, each point optionally a link."""
    base = {
        "autosize": True,
        "colorway": PALETTE,
        "margin": {"t": 48, "r": 56, "b": 8, "l": 56},
        "font": {"family": "system-ui, sans-serif"},
        "legend": {"orientation": "h", "y": -0.25},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    # Tick labels grow the margin instead of being cut off at the card's edge.
    axes = {
        axis: {"automargin": True, **layout.get(axis, {})}
        for axis in ("xaxis", "yaxis")
        if not any(d.get("type") in ("pie", "sankey") for d in data)
    }
    return {
        "id": chart_id,
        "data": data,
        "layout": {**base, **layout, **axes},
        "links": links or [],
        "height": layout.get("height", 380),
    }


def rule_for(column: str, value: Any) -> str:
    text = str(value).replace("'", "''")
    return f"{column} == '{text}'"


def explorer_link(rule: str) -> str:
    return "/dashboard/explorer?" + urlencode({"rule": rule})


def mount_dashboard(app: FastAPI, svc: Any) -> None:
    import plotly

    plotly_js = Path(str(plotly.__file__)).parent / "package_data" / "plotly.min.js"
    sessions: Sessions = svc.sessions

    def current_session(request: Request) -> Session | None:
        # Expired sessions and those of revoked keys are refused by the store itself.
        return sessions.get(request.cookies.get(SESSION_COOKIE))

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)

    def csrf_ok(request: Request, session: Session, token: str | None) -> bool:
        sent = token or request.headers.get("x-csrf-token", "")
        return secrets.compare_digest(sent, session.csrf)

    def page_or_login(request: Request) -> Page | RedirectResponse:
        s = current_session(request)
        if s is None:
            return to_login(request)
        return Page(request, svc, s)

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_bundle() -> FileResponse:
        return FileResponse(plotly_js, media_type="application/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    # ------------------------------------------------------------------ sign in / out
    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, error: int = 0, next: str = "/dashboard") -> HTMLResponse:
        page = Page(request, svc, None)
        # A pre-session token: the sign-in form is CSRF-protected too (double-submit cookie).
        token = request.cookies.get("segmentum_login_csrf") or secrets.token_urlsafe(24)
        resp = render(
            page, "login.html", error=bool(error), next=_safe_next(next), login_csrf=token
        )
        resp.set_cookie("segmentum_login_csrf", token, httponly=True, samesite="strict")
        return resp

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        key, nxt = str(form.get("key", "")).strip(), _safe_next(str(form.get("next", "")))
        token = str(form.get("csrf", ""))
        cookie = request.cookies.get("segmentum_login_csrf", "")
        if not cookie or not secrets.compare_digest(token, cookie):
            return RedirectResponse("/login?error=2", status_code=303)
        s = create_session(sessions, key)
        if s is None:
            return RedirectResponse("/login?" + urlencode({"error": 1, "next": nxt}), 303)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(
            SESSION_COOKIE, s.sid, httponly=True, samesite="strict", max_age=sessions.max_age
        )
        resp.delete_cookie("segmentum_login_csrf")
        return resp

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        s = current_session(request)
        form = await request.form()
        if s is not None and csrf_ok(request, s, str(form.get("csrf", ""))):
            sessions.end(s.sid)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    from segmentum.service import dashboard_pages as pages

    pages.mount(app, svc, page_or_login, csrf_ok, current_session)

    from segmentum.service import dashboard_admin

    dashboard_admin.mount(app, svc, page_or_login, csrf_ok)


def _safe_next(target: str) -> str:
    """Only a path on this site (never ``//host`` or a full URL) after signing in."""
    if not target.startswith("/dashboard") or target.startswith("//"):
        return "/dashboard"
    return target


def problem_json(status: int, message: str, hint: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "detail": message, **extra}
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status)


def forbidden(page: Page) -> PlainTextResponse:
    return PlainTextResponse(page._("The form expired: reload the page."), status_code=403)


async def checked_form(
    request: Request,
    page: Page | Response,
    csrf_ok: Callable[[Request, Session, str | None], bool],
) -> tuple[Page, FormData] | Response:
    """A dashboard form post's page and fields, once its sender is signed in (``page``: what
    ``page_or_login`` or an admin check answered) and its CSRF token matches the session's;
    otherwise the answer to give: the sign-in page, or 403 for a forged or stale form."""
    if not isinstance(page, Page):
        return page
    form = await request.form()
    assert page.session is not None
    if not csrf_ok(request, page.session, str(form.get("csrf", ""))):
        return forbidden(page)
    return page, form


def csv_response(text: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# Hints the library writes for the command line, as a page says them (the dashboard has
# these lists on its own pages; a person there is not at a terminal).
_PAGE_HINTS = (
    (
        re.compile(r"list them: segmentum segment list"),
        i18n.N_("page hint", "choose one of the saved segments: the Segment explorer lists them"),
    ),
    (
        re.compile(r"edit it \(segmentum segment edit .*\) or choose another name"),
        i18n.N_(
            "page hint",
            "choose another name, or edit that one: the Segment explorer lists the saved "
            "segments, each with Edit or delete",
        ),
    ),
    (
        re.compile(r"list them: segmentum campaign list"),
        i18n.N_("page hint", "choose one of the campaigns the Campaigns page lists"),
    ),
)


def page_hint(lang: str, hint: str | None) -> str:
    """A library error's hint as a page says it, in ``lang``."""
    for pattern, said in _PAGE_HINTS:
        if hint and pattern.fullmatch(hint):
            return str(i18n.translations(lang).upgettext(*said))
    return i18n.translate_message(lang, hint)


def user_error(page: Page, exc: SegmentumError) -> dict[str, str]:
    """A library error as a page shows it: a translated heading, the message and the hint.
    A rule's error is translated line by line (its rule and caret follow the message)."""
    return {
        "message": "\n".join(
            i18n.translate_message(page.lang, line) for line in exc.message.split("\n")
        ),
        "hint": page_hint(page.lang, exc.hint),
    }


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def latest(t: Any, column: str = "as_of") -> Any:
    return t.filter(t[column] == t[column].max())
