"""The dashboard's pages and their JSON calls: each route reads the library and hands plain
values to a template in ``templates/``; no HTML and no user-visible text is written here
other than through the catalogs."""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import ibis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from segmentum import i18n
from segmentum.config import Settings
from segmentum.errors import InputError, SegmentumError
from segmentum.flows.words import flow_words
from segmentum.ingest.core import named_column
from segmentum.page_models import (
    ACTIVITY,
    CAMPAIGN_PAGES,
    DIRECTORY,
    INVOICES,
    PLAN_EXAMPLES,
    QUARANTINE_RECENT,
    SNAPSHOT_KPIS,
    campaign_names,
    published_plan,
    published_results,
    sent_activity,
)
from segmentum.segments.classes import RFM_RULES
from segmentum.service.auth import Session
from segmentum.service.dashboard import (
    PALETTE,
    Page,
    chart,
    checked_form,
    csv_response,
    currency_of,
    explorer_link,
    page_hint,
    problem_json,
    render,
    rule_for,
    user_error,
)

CATEGORICAL = (
    "rfm_segment",
    "value_tier",
    "lifecycle_stage",
    "potential_tier",
    "value_potential",
    "country",
    "region",
    "city",
    "age_band",
    "gender",
    "income_band",
    "preferred_channel",
    "preferred_device",
    "top_category",
    "clv_status",
)


def _bin_labels(edges: list[float], fmt: Callable[[Any, int], str]) -> list[str]:
    """``a – b`` for each bin, with as few decimals as keep the edges apart (the CLV bins of
    a small base are under one unit wide: whole units printed a bin "1 – 1")."""
    for digits in range(3):
        texts = [fmt(e, digits) for e in edges]
        if all(a != b for a, b in itertools.pairwise(texts)):
            break
    return [f"{a} – {b}" for a, b in itertools.pairwise(texts)]


# The categorical columns of the account view (firmographics) an account rule compares.
ACCOUNT_CATEGORICAL = ("industry", "country")


def _offered(svc: Any, level: str = "customer") -> list[str]:
    """The categorical columns this warehouse's customer view has (from the last run's cached
    overview; all of them before a run): no region or age without a customers file. An
    account rule's: the account view's firmographics."""
    if level == "account":
        return list(ACCOUNT_CATEGORICAL)
    have = svc.overview().get("columns")
    return [c for c in CATEGORICAL if have is None or c in have]


# What the migration page and the overview's "what changed" read (in the serving store).
HISTORY_TABLES = ("customer_classes", INVOICES)
# Overview charts: the column, whether its bars follow a fixed order, and that order.
ORDERS: dict[str, list[str]] = {
    "value_tier": ["high", "medium", "low"],
    "lifecycle_stage": ["new", "active", "at_risk", "lapsed", "lost"],
}
# Tables and trees list a classification's states in this order (the overview's RFM chart
# keeps its bars by size): best to worst (RFM segments as their rules are listed), never the
# alphabet of the English codes.
STATE_ORDERS: dict[str, list[str]] = {**ORDERS, "rfm_segment": [r.name for r in RFM_RULES]}


def _state_rank(dimension: str, state: Any) -> int:
    """Where ``state`` of ``dimension`` comes in :data:`STATE_ORDERS` (states it does not
    know, and dimensions without an order, keep their own order after the known ones)."""
    order = STATE_ORDERS.get(dimension, [])
    return order.index(state) if state in order else len(order)


def _snapshot_kpis(wh: Any, as_of: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The overview's figures at its own date and at the snapshot before it, both counted
    the same way (``snapshot_kpis``); None where there is no such snapshot."""
    if not wh.has(SNAPSHOT_KPIS):
        return None, None
    day = _dt.date.fromisoformat(str(as_of)[:10])
    k = wh.table(SNAPSHOT_KPIS)
    rows = k.filter(k.as_of <= ibis.literal(day, "date")).order_by(ibis.desc("as_of"))
    found = rows.limit(2).to_pyarrow().to_pylist()
    current = found[0] if found and found[0]["as_of"] == day else None
    before = [r for r in found if r["as_of"] < day]
    return current, (before[0] if before else None)


def mount(
    app: FastAPI,
    svc: Any,
    page_or_login: Callable[[Request], Page | RedirectResponse],
    csrf_ok: Callable[[Request, Session, str | None], bool],
    current_session: Callable[[Request], Session | None],
) -> None:
    wh_lock = svc.locked

    def _exporter(request: Request) -> Page | Response:
        """The page of a session allowed to download an ad audience (hashed emails and
        phones), a sign-in redirect, or a 403 saying which scope is missing."""
        page = page_or_login(request)
        if isinstance(page, Page) and not _can_export(page):
            return PlainTextResponse(
                page._("An ad audience needs a key with the write scope."), 403
            )
        return page

    # ------------------------------------------------------------------ overview
    @app.get("/dashboard", include_in_schema=False)
    def overview(request: Request) -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        _ = page._
        o = svc.overview()
        try:  # from the serving store: no wait while a run holds the warehouse
            now, prev = svc.read_models(lambda wh: _snapshot_kpis(wh, o["as_of"]), SNAPSHOT_KPIS)
        except SegmentumError:  # not published and the warehouse is busy: no comparison
            now, prev = None, None
        kpis = _kpis(page, o, now, prev)
        charts = []
        for col, title in (
            ("rfm_segment", _("RFM segments")),
            ("value_tier", _("Value tiers")),
            ("value_potential", _("Value x potential")),
            ("lifecycle_stage", _("Lifecycle stages")),
        ):
            rows = list(o.get(col) or [])
            if not rows:
                continue
            if col in ORDERS:
                order = ORDERS[col]
                rows.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else 99)
            names = [page.label(col, r["name"]) for r in rows]
            charts.append(
                chart(
                    f"chart-{col}",
                    [
                        {
                            "type": "bar",
                            "name": _("Customers"),
                            "x": names,
                            "y": [r["customers"] for r in rows],
                            "offsetgroup": 1,
                            "marker": {"color": PALETTE[0]},
                            "hovertemplate": "%{x}: %{y:,} " + _("customers") + "<extra></extra>",
                        },
                        {
                            "type": "bar",
                            "name": _("Revenue share (%)"),
                            "x": names,
                            "y": [round(100 * r["revenue_share"], 1) for r in rows],
                            "yaxis": "y2",
                            "offsetgroup": 2,
                            "marker": {"color": PALETTE[1]},
                            "hovertemplate": "%{x}: %{y:.1f} %<extra></extra>",
                        },
                    ],
                    {
                        "title": {"text": title},
                        "barmode": "group",
                        "xaxis": {"automargin": True, "tickangle": -30},
                        "yaxis": {"title": {"text": _("Customers")}, "automargin": True},
                        "yaxis2": {
                            "title": {"text": _("Revenue share (%)")},
                            "overlaying": "y",
                            "side": "right",
                            "rangemode": "tozero",
                            "automargin": True,
                        },
                        "separators": ",." if page.lang == "es" else ".,",
                    },
                    links=[explorer_link(rule_for(col, r["name"])) for r in rows],
                )
            )
        heat = o.get("rfm_heatmap") or []
        if heat:
            z: list[list[int]] = [[0] * 5 for _i in range(5)]
            for r in heat:
                z[int(r["f_score"]) - 1][int(r["r_score"]) - 1] = int(r["customers"])
            charts.append(
                chart(
                    "chart-heatmap",
                    [
                        {
                            "type": "heatmap",
                            "z": z,
                            "x": [1, 2, 3, 4, 5],
                            "y": [1, 2, 3, 4, 5],
                            "colorscale": "Cividis",
                            "colorbar": {"title": {"text": _("Customers")}},
                            "hovertemplate": "R %{x} · F %{y}: %{z:,}<extra></extra>",
                        }
                    ],
                    {
                        "title": {"text": _("RFM heat map (recency x frequency score)")},
                        "xaxis": {"title": {"text": _("Recency score (5 = most recent)")}},
                        "yaxis": {"title": {"text": _("Frequency score (5 = most often)")}},
                        "separators": ",." if page.lang == "es" else ".,",
                    },
                    links=[
                        explorer_link(f"r_score == {r} and f_score == {f}")
                        for f in range(1, 6)
                        for r in range(1, 6)
                    ],
                )
            )
        for key, title, is_money in (
            ("clv_histogram", _("Customer lifetime value (12 months)"), True),
            ("churn_histogram", _("Churn probability"), False),
        ):
            h = o.get(key)
            if not h or not h.get("counts"):
                continue
            fmt = page.money if is_money else page.pct
            labels = _bin_labels(h["edges"], fmt)
            charts.append(
                chart(
                    f"chart-{key}",
                    [
                        {
                            "type": "bar",
                            "x": labels,
                            "y": h["counts"],
                            "name": _("Customers"),
                            "marker": {"color": PALETTE[2]},
                        }
                    ],
                    {
                        "title": {"text": title},
                        "xaxis": {"type": "category", "automargin": True, "tickangle": -40},
                        "yaxis": {"title": {"text": _("Customers")}, "automargin": True},
                        "showlegend": False,
                        "separators": ",." if page.lang == "es" else ".,",
                    },
                )
            )
        if "migration" not in o:
            o = {**o, **_history_now(svc)}
        changes = _what_changed(page, o)
        saved = [
            {"name": s["segment"], "customers": s["customers"]} for s in o.get("segments") or []
        ]
        return render(
            page,
            "overview.html",
            current="overview",
            o=o,
            kpis=kpis,
            charts=charts,
            changes=changes,
            saved=saved,
        )

    # ------------------------------------------------------------------ customers
    @app.get("/dashboard/customer", include_in_schema=False)
    def customer_page(request: Request, id: str = "", q: str = "") -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        query = (q or id).strip()
        found = svc.customer(query) if query else None
        matches: list[dict[str, Any]] = []
        total = 0
        if query and found is None:
            matches, total = svc.read_models(lambda wh: _search(wh, query), DIRECTORY)
            if len(matches) == 1:
                found = svc.customer(str(matches[0]["customer_id"]))
        profile = _profile(page, found, svc) if found else None
        return render(
            page,
            "customer.html",
            current="customer",
            query=query,
            profile=profile,
            matches=matches,
            matched=page.num(total),
            more=total > len(matches),
            not_found=bool(query) and found is None and not matches,
        )

    # ------------------------------------------------------------------ builder
    @app.get("/dashboard/segments", include_in_schema=False)
    def builder(request: Request, rule: str = "", edit: str = "") -> Response:
        """The segment builder; with ``edit``, a saved segment's rule and description in it,
        to change and save under the same name (or to delete)."""
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        from segmentum.segments.store import Segments

        editing, error, status = None, None, 200
        if edit:
            try:
                seg, _published = svc.fresh_or_published(
                    lambda: Segments(svc.wh, svc.settings).get(edit), "segment_definitions"
                )
                editing = {"name": seg.name, "description": seg.description, "level": seg.level}
                rule = rule or seg.rule
            except SegmentumError as exc:
                error, status = user_error(page, exc), 404
        return render(
            page,
            "builder.html",
            status=status,
            current="segments",
            rule=rule,
            editing=editing,
            error=error,
            columns=_offered(svc, editing["level"] if editing else "customer"),
            can_write="write" in (page.session.scopes if page.session else []),
        )

    @app.post("/dashboard/api/preview", include_in_schema=False)
    async def api_preview(request: Request) -> Response:
        s = current_session(request)
        if s is None:
            return problem_json(401, _said(request, "sign in again: your session has ended"))
        if not csrf_ok(request, s, None):
            return problem_json(403, "bad CSRF token")
        body = await request.json()
        rule = str(body.get("rule", ""))[:4000]
        lang = body.get("lang") if body.get("lang") in i18n.LANGUAGES else "es"
        # An account segment edited in the builder is previewed as one (its accounts' people).
        level = "account" if body.get("level") == "account" else "customer"
        from segmentum.segments.rules import RuleError
        from segmentum.segments.store import Segments

        try:
            p = wh_lock(lambda: Segments(svc.wh, svc.settings).preview(rule, level=level))
        except RuleError as exc:
            return problem_json(
                422,
                i18n.translate_message(lang, exc.reason),
                i18n.translate_message(lang, exc.hint),
                position=exc.pos,
                text=exc.text,
                kind="rule",
            )
        except SegmentumError as exc:
            return problem_json(
                422,
                i18n.translate_message(lang, exc.message),
                i18n.translate_message(lang, exc.hint),
            )
        d = p.to_dict()
        out = {
            "rule": rule,
            "size": d["size"],
            "customers": d["customers"],
            "share": d["share"],
            "revenue_share": d["revenue_share"],
            "size_text": i18n.number(d["size"], lang),
            "customers_text": i18n.number(d["customers"], lang),
            "share_text": i18n.percent(d["share"], lang),
            "revenue_text": i18n.money(d["revenue"], lang, currency_of(svc)),
            "revenue_share_text": i18n.percent(d["revenue_share"], lang),
            "reach": _reach_rows(lang, d.get("reach")),
            "warnings": _warnings(lang, rule, p.warnings),
        }
        return JSONResponse(out)

    @app.get("/dashboard/api/values", include_in_schema=False)
    def api_values(request: Request, column: str = "", level: str = "customer") -> Response:
        s = current_session(request)
        if s is None:
            return problem_json(401, _said(request, "sign in again: your session has ended"))
        account = level == "account"
        if column not in (ACCOUNT_CATEGORICAL if account else CATEGORICAL):
            return JSONResponse({"column": column, "values": []})
        lang = language_of(request)
        vals = wh_lock(lambda: _distinct(svc, column, account))
        return JSONResponse(
            {
                "column": column,
                "values": [{"value": v, "label": i18n.label(lang, column, v)} for v in vals],
            }
        )

    def _refused_writer(request: Request) -> Response | None:
        """The builder's refusal of a request that may not save segments (no session, no CSRF
        token, no write scope); None when it may."""
        s = current_session(request)
        if s is None:
            return problem_json(401, _said(request, "sign in again: your session has ended"))
        if not csrf_ok(request, s, None):
            return problem_json(403, _said(request, "the form expired: reload the page"))
        if "write" not in s.scopes:
            return problem_json(
                403, _said(request, "this key cannot save segments (it needs the write scope)")
            )
        return None

    @app.post("/dashboard/api/segments", include_in_schema=False)
    async def api_save(request: Request) -> Response:
        if (refused := _refused_writer(request)) is not None:
            return refused
        body = await request.json()
        name, rule = str(body.get("name", "")).strip(), str(body.get("rule", "")).strip()
        description = str(body.get("description", "")).strip()[:1000]
        if not name:  # "'' cannot be a segment name" says nothing to someone at a form
            return problem_json(422, _said(request, "write a name for the segment"))
        from segmentum.segments.store import Segments

        def run() -> tuple[str, int]:
            # Members at once, so the explorer, the export and campaigns see them now.
            seg, size = Segments(svc.wh, svc.settings).create_and_compute(name, rule, description)
            return seg.name, size

        return _saved(request, run, 201)

    @app.post("/dashboard/api/segments/{name}", include_in_schema=False)
    async def api_edit(request: Request, name: str) -> Response:
        """A saved segment's new rule and description (the builder opened with ``edit``)."""
        if (refused := _refused_writer(request)) is not None:
            return refused
        body = await request.json()
        rule = str(body.get("rule", "")).strip()
        description = str(body.get("description", "")).strip()[:1000]
        from segmentum.segments.store import Segments

        def run() -> tuple[str, int]:
            # Every segment's members again when the rule changed: some may be built on it.
            seg, size = Segments(svc.wh, svc.settings).edit_and_size(name, rule, description)
            return seg.name, size

        return _saved(request, run, 200)

    def _saved(request: Request, run: Callable[[], tuple[str, int]], status: int) -> Response:
        """A saved (or edited) segment's answer to the builder: its name and size, the size
        in the page's language; a refusal as the builder shows it."""
        lang = language_of(request)
        try:
            name, size = wh_lock(run)
        except SegmentumError as exc:
            message = "\n".join(i18n.translate_message(lang, x) for x in exc.message.split("\n"))
            return problem_json(422, message, page_hint(lang, exc.hint) or None)
        out = {"name": name, "size": size, "size_text": i18n.number(size, lang)}
        return JSONResponse(out, status_code=status)

    @app.post("/dashboard/segments/{name}/delete", include_in_schema=False)
    async def segment_delete(request: Request, name: str) -> Response:
        """Delete a saved segment (a write key); refused while other segments use it."""
        got = await checked_form(request, page_or_login(request), csrf_ok)
        if not isinstance(got, tuple):
            return got
        page = got[0]
        assert page.session is not None
        if "write" not in page.session.scopes:
            err = {
                "message": page._("Deleting a segment needs a key with the write scope."),
                "hint": "",
            }
            return render(page, "error.html", status=403, error=err)
        from segmentum.segments.store import Segments

        def run() -> dict[str, Any] | None:
            try:
                Segments(svc.wh, svc.settings).delete(name)
                return None
            except SegmentumError as exc:  # used by other segments, or gone already
                return {
                    **explorer_context(page, svc, name, ""),
                    "delete_error": user_error(page, exc),
                }

        refused = wh_lock(run)
        if refused is not None:
            return render(page, "explorer.html", status=409, current="explorer", **refused)
        return RedirectResponse("/dashboard/explorer?" + urlencode({"deleted": name}), 303)

    # ------------------------------------------------------------------ explorer
    @app.get("/dashboard/explorer", include_in_schema=False)
    def explorer(
        request: Request, segment: str = "", rule: str = "", audience: str = "", deleted: str = ""
    ) -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page

        def explore() -> dict[str, Any]:
            return explorer_context(page, svc, segment, rule, audience)

        if (rule or audience) and svc.batch_engine:
            # Spark: a rule's preview or an audience asked for runs on the warehouse (seconds).
            ctx, published = svc.locked(explore), None
        else:
            ctx, published = svc.fresh_or_published(
                explore, "segment_definitions", "segment_members"
            )
        return render(
            page, "explorer.html", current="explorer", published=published, deleted=deleted, **ctx
        )

    def _download(
        request: Request,
        page: Page,
        kind: str,
        filename: str,
        build: Callable[[bool], tuple[str, list[Any]]],
        segment: str | None = None,
    ) -> Response:
        """A CSV of customers built by ``build(personal)`` (its text and ids), refused when it
        would carry names, emails and phones to a key without the write scope; every download
        recorded for ``segmentum forget``."""
        from segmentum.service.audiences import record_download

        personal = svc.settings.export_personal_data
        if personal and not _can_export(page):  # names, emails, phones: as the API asks
            return PlainTextResponse(
                page._("Exporting names, emails and phones needs a key with the write scope."),
                403,
            )
        try:
            text, ids = wh_lock(lambda: build(personal))
        except SegmentumError as exc:
            return render(page, "error.html", status=404, error=user_error(page, exc))
        assert page.session is not None  # page_or_login signed them in
        record_download(request, page.session.key_id, kind, ids, personal, segment=segment)
        return csv_response(text, filename)

    @app.get("/dashboard/export/{name}.csv", include_in_schema=False)
    def export(request: Request, name: str) -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        from segmentum.segments.reach import allowed_contacts
        from segmentum.segments.store import Segments

        def build(personal: bool) -> tuple[str, list[Any]]:
            m = Segments(svc.wh, svc.settings).members(name)
            cols = ["customer_id"]
            if personal and svc.wh.has("customers"):
                # As the API's export: a contact only where the customer allows the channel.
                c = allowed_contacts(svc.wh, m, svc.settings, ("first_name", "email", "phone"))
                m = m.left_join(c, "customer_id").drop("customer_id_right")
                cols += [x for x in c.columns if x != "customer_id"]
            df = m.select(*cols).order_by("customer_id").to_pandas()
            return str(df.to_csv(index=False)), df["customer_id"].tolist()

        return _download(request, page, "segment export", f"{name}.csv", build, segment=name)

    @app.get("/dashboard/campaigns/{cid}/file.csv", include_in_schema=False)
    def campaign_file(request: Request, cid: str) -> Response:
        """A sent file campaign's file (what the send wrote on the server: its members, with
        their contacts where ``export_personal_data`` allows), for the person who sent it."""
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        from segmentum.campaigns.channels import PERSONAL
        from segmentum.campaigns.core import Campaigns

        def build(personal: bool) -> tuple[str, list[Any]]:
            cs = Campaigns(svc.wh, svc.settings)
            camp = cs.get(cid)
            df = cs.file_frame(camp, "sent") if camp.channel == "file" else None
            if df is None or df.empty:
                raise InputError(
                    page._("This campaign has no file: only a file campaign, once sent, has one.")
                )
            if not personal:
                df = df.drop(columns=[c for c in PERSONAL if c in df.columns])
            return str(df.to_csv(index=False)), df["customer_id"].tolist()

        return _download(request, page, "campaign file", f"{cid}.csv", build)

    @app.get("/dashboard/ad-audience/{name}.csv", include_in_schema=False)
    def ad_audience(request: Request, name: str, format: str = "google") -> Response:
        """The saved segment as a customer-match CSV, as ``GET /v1/segments/{name}/ad-audience``
        answers it (report in ``X-Segmentum-Report``), for a session allowed to write."""
        page = _exporter(request)
        if not isinstance(page, Page):
            return page
        from segmentum.campaigns.adaudiences import FORMATS, build
        from segmentum.service.audiences import csv_answer, record_download

        if format not in FORMATS:
            return PlainTextResponse(page._("Choose Google Ads, Meta or TikTok."), 422)

        def run() -> tuple[str, dict[str, Any], list[str]]:
            text, report, ids = build(svc.wh, name, format, svc.settings)
            return text, report.to_dict(), ids

        try:
            text, report, ids = wh_lock(run)
        except SegmentumError as exc:
            status = 409 if not svc.settings.export_personal_data else 404
            return render(page, "error.html", status=status, error=user_error(page, exc))
        assert page.session is not None  # _can_export checked it
        record_download(
            request, page.session.key_id, "ad audience", ids, segment=name, platform=format
        )
        return csv_answer(text, report, f"{name}-{format}", False)

    @app.get("/dashboard/audiences/{kind}.csv", include_in_schema=False)
    def behaviour_audience(
        request: Request,
        kind: str,
        platform: str = "meta",
        behaviour: str = "carted",
        days: int = 30,
        top: int = 1000,
    ) -> Response:
        """A retargeting audience (``kind`` retargeting: viewed or carted in the last ``days``
        without buying) or a look-alike seed (``kind`` seed: the ``top`` customers by CLV), as
        ``GET /v1/audiences/retargeting`` and ``/seed`` answer them, for a session allowed to
        write."""
        page = _exporter(request)
        if not isinstance(page, Page):
            return page
        from segmentum.campaigns.adaudiences import FORMATS, export_retargeting, export_seed
        from segmentum.service.audiences import csv_answer, record_download

        if (
            kind not in ("retargeting", "seed")
            or platform not in FORMATS
            or behaviour not in ("viewed", "carted")
            or not 1 <= days <= 3650
            or top < 1
        ):
            return PlainTextResponse(page._("Choose Google Ads, Meta or TikTok."), 422)

        def run() -> tuple[str, dict[str, Any], str, list[str]]:
            if kind == "seed":
                text, seeds = export_seed(svc.wh, platform, svc.settings, top=top, write=False)
                return text, seeds.to_dict(), f"seed-top{top}-{platform}", seeds.customer_ids
            text, _products, found = export_retargeting(
                svc.wh, behaviour, days, platform, svc.settings, write=False
            )
            name = f"retarget-{behaviour}-{days}d-{platform}"
            return text, found.to_dict(), name, found.customer_ids

        try:
            text, report, name, ids = wh_lock(run)
        except SegmentumError as exc:
            status = 409 if not svc.settings.export_personal_data else 404
            return render(page, "error.html", status=status, error=user_error(page, exc))
        assert page.session is not None  # _can_export checked it
        what = "look-alike seed" if kind == "seed" else "retargeting audience"
        segment = str(report["segment"])
        record_download(request, page.session.key_id, what, ids, segment=segment, platform=platform)
        return csv_answer(text, report, name, False)

    # ------------------------------------------------------------------ micro-segments
    @app.get("/dashboard/micro", include_in_schema=False)
    def micro(request: Request, dimensions: str = "") -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        from types import SimpleNamespace

        from segmentum.segments.micro import micro_segments

        # None asked for: the default tree (place and age, or the classes without customers).
        dims = [d.strip() for d in dimensions.split(",") if d.strip()]
        min_size = svc.settings.micro_segment_min_size

        def run() -> tuple[list[str], list[Any]]:
            """The tree's dimensions (the default ones when none were asked for) and nodes."""
            cached = svc.overview().get("micro")
            if (
                cached
                and (not dims or dims == list(cached["dimensions"]))
                and cached["min_size"] == min_size
            ):
                return list(cached["dimensions"]), [SimpleNamespace(**n) for n in cached["nodes"]]
            # Only views the cache lacks open the warehouse (busy while a run holds it).
            tree = wh_lock(
                lambda: micro_segments(svc.wh, dims or None, min_size=min_size, store=False)
            )
            return tree.dimensions, tree.nodes

        error = None
        nodes: list[Any] = []
        try:
            dims, nodes = run()
        except SegmentumError as exc:
            error = {"message": i18n.translate_message(page.lang, exc.message), "hint": ""}
            error["known"] = ", ".join(_offered(svc))
        tree = _tree(page, nodes, dims)
        return render(
            page,
            "micro.html",
            current="micro",
            dimensions=",".join(dims) or dimensions,
            tree=tree,
            error=error,
            known=_offered(svc),
        )

    # ------------------------------------------------------------------ geography
    @app.get("/dashboard/geography", include_in_schema=False)
    def geography(request: Request) -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        from segmentum.segments.micro import drilldown

        def run() -> list[dict[str, Any]]:
            cached = svc.overview().get("geography")
            return cached if cached is not None else wh_lock(lambda: drilldown(svc.wh))

        try:
            rows = run()
        except SegmentumError as exc:
            return render(page, "error.html", current="geography", error=user_error(page, exc))
        parents = [" > ".join(r["path"].split(" > ")[:-1]) for r in rows]
        fig = chart(
            "chart-geo",
            [
                {
                    "type": "sunburst",
                    "ids": [r["path"] for r in rows],
                    "labels": [page.label("value", r["name"]) for r in rows],
                    "parents": parents,
                    "values": [r["revenue"] for r in rows],
                    "branchvalues": "total",
                    "customdata": [
                        [page.num(r["customers"]), page.money(r["revenue"])] for r in rows
                    ],
                    "hovertemplate": "%{label}: %{customdata[1]} (%{customdata[0]} "
                    + page._("customers")
                    + ")<extra></extra>",
                }
            ],
            {"height": 600, "title": {"text": page._("Revenue by place")}},
        )
        top = sorted(
            (r for r in rows if r["level"] == rows[-1]["level"]), key=lambda r: -r["revenue"]
        )[:15]
        return render(page, "geography.html", current="geography", chart=fig, top=top)

    # ------------------------------------------------------------------ market
    @app.get("/dashboard/market", include_in_schema=False)
    def market(request: Request, level: str = "") -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        from segmentum.market.core import CELLS
        from segmentum.service.market import market_page

        try:
            if not svc.read_models(lambda wh: wh.has(CELLS), CELLS):
                return render(page, "market.html", current="market", m=None, error=None)
            m = market_page(page, svc, level)
        except SegmentumError as exc:
            error = user_error(page, exc)
            return render(page, "market.html", current="market", m=None, error=error)
        return render(page, "market.html", current="market", m=m, error=None)

    # ------------------------------------------------------------------ satisfaction
    @app.get("/dashboard/satisfaction", include_in_schema=False)
    def satisfaction(request: Request, by: str = "segment", group: str = "") -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        from segmentum.satisfaction.compute import SEGMENTS
        from segmentum.service.satisfaction import satisfaction_page

        s: dict[str, Any] | None = None
        error: dict[str, str] | None = None
        try:
            if svc.read_models(lambda wh: wh.has(SEGMENTS), SEGMENTS):
                s = satisfaction_page(page, svc, by, group)
        except SegmentumError as exc:
            error = user_error(page, exc)
        return render(page, "satisfaction.html", current="satisfaction", s=s, error=error)

    # ------------------------------------------------------------------ migration
    @app.get("/dashboard/migration", include_in_schema=False)
    def migration_page(
        request: Request, by: str = "value_tier", date_from: str = "", date_to: str = ""
    ) -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        # From the serving store: the page keeps answering while a run holds the warehouse.
        ctx = svc.read_models(
            lambda wh: _migration(page, wh, by, date_from, date_to), *HISTORY_TABLES
        )
        return render(page, "migration.html", current="migration", by=by, **ctx)

    # ------------------------------------------------------------------ campaigns
    @app.get("/dashboard/campaigns", include_in_schema=False)
    def campaigns_page(
        request: Request, c: str = "", segment: str = "", deleted: str = ""
    ) -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        if c and svc.batch_engine and not _published_campaign(svc, c):
            # Spark: a plan for a campaign not sent yet is a job (seconds); a sent one's plan
            # and an imported one's results are published.
            ctx, published = svc.locked(lambda: _campaigns(page, svc, c)), None
        else:
            ctx, published = svc.fresh_or_published(lambda: _campaigns(page, svc, c))
        return render(
            page,
            "campaigns.html",
            status=404 if ctx.get("unknown") else 200,
            current="campaigns",
            published=published,
            selected=c,
            segment=segment,
            can_write="write" in (page.session.scopes if page.session else []),
            ad_personal=bool(svc.settings.export_personal_data),
            deleted=deleted,
            **ctx,
        )

    @app.post("/dashboard/campaigns", include_in_schema=False)
    async def campaigns_create(request: Request) -> Response:
        got = await checked_form(request, page_or_login(request), csrf_ok)
        if not isinstance(got, tuple):
            return got
        page, form = got
        assert page.session is not None
        from segmentum.campaigns.core import Campaigns

        f = {k: str(v) for k, v in form.items()}
        template = None
        if f.get("body_es") or f.get("body_en"):
            template = {
                "subject": {"es": f.get("subject_es", ""), "en": f.get("subject_en", "")},
                "body": {"es": f.get("body_es", ""), "en": f.get("body_en", "")},
            }

        def run() -> str:
            if f.get("tactic") == "segment" and not f.get("target", "").strip():
                # Said of the form's own field, not of the command line's --target.
                raise InputError(page._("Choose the segment the campaign is for (Segment)."))
            share = float(f.get("control_share") or 10) / 100
            camp = Campaigns(svc.wh, svc.settings).create(
                f.get("name", "").strip(),
                f.get("tactic", ""),
                f.get("channel", ""),
                target=f.get("target", ""),
                template=template,
                control_share=share,
            )
            return camp.campaign_id

        try:
            if "write" not in page.session.scopes:
                raise SegmentumError(page._("This key cannot create campaigns."))
            cid = wh_lock(run)
        except (SegmentumError, ValueError) as exc:
            err = exc if isinstance(exc, SegmentumError) else SegmentumError(str(exc))
            ctx = wh_lock(lambda: _campaigns(page, svc, ""))
            said = user_error(page, err)
            # A template's part is named as the form labels it ("body.es": Body (Spanish)).
            fields = {
                "subject.es": page._("Subject (Spanish)"),
                "body.es": page._("Body (Spanish)"),
                "subject.en": page._("Subject (English)"),
                "body.en": page._("Body (English)"),
            }
            for key, label in fields.items():
                said = {k: v.replace(f" {key}", f" «{label}»") for k, v in said.items()}
            return render(
                page,
                "campaigns.html",
                status=422,
                current="campaigns",
                selected="",
                segment=f.get("target", ""),
                can_write=True,
                form=f,
                form_error=said,
                **ctx,
            )
        return RedirectResponse(f"/dashboard/campaigns?{urlencode({'c': cid})}", 303)

    async def campaign_action(
        request: Request,
        cid: str,
        refused: Callable[[Page], str],
        act: Callable[[Any], Any],
        error: str,
        status: int,
    ) -> tuple[Page, Any] | Response:
        """A form of a campaign's page (send, delete): a signed-in sender, its CSRF token and a
        write key (else ``refused``, said on the page), then ``act`` (given the campaigns)
        under the warehouse lock. A refusal or a user error shows the campaign's page again
        with the reason under ``error``, answered with ``status``."""
        got = await checked_form(request, page_or_login(request), csrf_ok)
        if not isinstance(got, tuple):
            return got
        page = got[0]
        assert page.session is not None
        from segmentum.campaigns.core import Campaigns

        try:
            if "write" not in page.session.scopes:
                raise SegmentumError(refused(page))
            return page, wh_lock(lambda: act(Campaigns(svc.wh, svc.settings)))
        except SegmentumError as exc:
            ctx = wh_lock(lambda: _campaigns(page, svc, cid))
            return render(
                page,
                "campaigns.html",
                status=status,
                current="campaigns",
                selected=cid,
                segment="",
                can_write="write" in page.session.scopes,
                **{error: user_error(page, exc)},
                **ctx,
            )

    @app.post("/dashboard/campaigns/{cid}/send", include_in_schema=False)
    async def campaigns_send(request: Request, cid: str) -> Response:
        done = await campaign_action(
            request,
            cid,
            lambda page: page._("This key cannot send campaigns."),
            lambda cs: dict(cs.send(cs.get(cid), immediately=True).__dict__),
            "send_error",
            422,
        )
        if not isinstance(done, tuple):
            return done
        q = urlencode({"c": cid, "sent": done[1].get("delivered", 0)})
        return RedirectResponse(f"/dashboard/campaigns?{q}", 303)

    @app.post("/dashboard/campaigns/{cid}/delete", include_in_schema=False)
    async def campaigns_delete(request: Request, cid: str) -> Response:
        """Delete a campaign never sent (a write key); a sent one keeps its log and results."""
        done = await campaign_action(
            request,
            cid,
            lambda page: page._("This key cannot delete campaigns."),
            lambda cs: cs.delete(cid).name,
            "delete_error",
            409,
        )
        if not isinstance(done, tuple):
            return done
        return RedirectResponse("/dashboard/campaigns?" + urlencode({"deleted": done[1]}), 303)

    # ------------------------------------------------------------------ data
    @app.get("/dashboard/data", include_in_schema=False)
    def data_page(request: Request, batch: str = "") -> Response:
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        ctx, published = svc.fresh_or_published(lambda: _data(svc.wh, batch))
        # Why each row was rejected, in the page's language (the stored reason is English).
        ctx["quarantine"] = [
            {
                **r,
                "reason": i18n.translate_reason(page.lang, r.get("reason")),
                "column": named_column(r),  # as the file names it
            }
            for r in ctx.get("quarantine") or []
        ]
        ctx["runs"] = [
            {
                **r,
                "failed_step": _failed_step(page.lang, r.get("failed_step")),
                "error": i18n.translate_message(page.lang, r.get("error")),
            }
            for r in ctx.get("runs") or []
        ]
        return render(page, "data.html", current="data", published=published, **ctx)


def explorer_context(
    page: Page, svc: Any, segment: str, rule: str, audience: str = ""
) -> dict[str, Any]:
    """What the explorer shows: the saved segments, a typed rule's preview, one segment's
    profile, members, its ad audience for the ``audience`` platform and (for admins) its
    webhook subscriptions. Inside ``svc.locked``."""
    from segmentum.history.webhooks import subscriptions
    from segmentum.segments.store import Segments

    store = Segments(svc.wh, svc.settings)
    ctx: dict[str, Any] = {"segments": store.list(), "segment": segment, "rule": rule}
    if rule and svc.wh.read_only:
        ctx["error"] = user_error(page, _busy_now(page))
    elif rule:
        try:
            p = store.preview(rule, sample=20)
            ctx["preview"] = p.to_dict()
            ctx["reach"] = _reach_rows(page.lang, ctx["preview"].get("reach"))
        except SegmentumError as exc:
            ctx["error"] = user_error(page, exc)
    from segmentum.service.flows import playbook_context  # the segment's playbook, "apply"

    ctx["play"] = playbook_context(page, svc, rule)
    if segment:
        try:
            ctx.update(_segment_detail(page, svc, store, segment))
        except SegmentumError as exc:
            ctx["error"] = user_error(page, exc)
        if "seg" in ctx:
            ctx["ad"] = _ad_audience(page, svc, segment, audience)
        from segmentum.realtime.store import RealtimeStore  # whether it runs live, and why not

        live = RealtimeStore.for_warehouse(svc.url, svc.settings)
        for s in live.segments():
            if s["name"] == segment:
                ctx["live"] = {
                    "on": s["realtime"],
                    "why": i18n.translate_message(page.lang, s["reason"]),
                }
                if s["realtime"]:
                    ctx["live"].update(_live_numbers(page, live.segment_status(segment)))
        is_admin = page.session is not None and "admin" in page.session.scopes
        # Subscriptions hold their secrets: never published, so not listed during a run.
        if is_admin and "seg" in ctx and not svc.wh.read_only:
            ctx["webhooks"] = [
                {
                    "id": w.subscription_id,
                    "url": w.url,
                    "since": page.date(w.delivered_through),
                    "error": w.last_error or "",
                }
                for w in subscriptions(svc.wh, segment)
            ]
    return ctx


def _live_numbers(page: Page, st: dict[str, Any]) -> dict[str, str]:
    """A live segment's members now, the last event received (UTC) and webhooks waiting."""
    from segmentum.realtime.store import parse_iso

    last = st["last_event_received"]
    return {
        "members": page.num(st["members"]),
        "last_event": page.date(parse_iso(last).replace(tzinfo=None)) if last else "",
        "waiting": page.num(st["webhooks_waiting"]),
    }


def _can_export(page: Page) -> bool:
    # Hashed emails and phones are personal data: the API exports them with the write scope.
    return page.session is not None and "write" in page.session.scopes


def _ad_audience(page: Page, svc: Any, segment: str, platform: str) -> dict[str, Any]:
    """The explorer's ad audience panel: whether this session may download, and for the
    chosen ``platform`` who goes into the file and who is left out, and why."""
    from segmentum.campaigns.adaudiences import DROP_REASONS, FORMATS, build

    ad: dict[str, Any] = {
        "allowed": _can_export(page),
        "personal": bool(svc.settings.export_personal_data),
        "platforms": FORMATS,
        "chosen": platform if platform in FORMATS else "",
    }
    if not (ad["allowed"] and ad["personal"] and ad["chosen"]):
        return ad
    if svc.wh.read_only:
        ad["error"] = user_error(page, _busy_now(page))
        return ad
    try:
        _text, report, _ids = build(svc.wh, segment, platform, svc.settings)
    except SegmentumError as exc:
        ad["error"] = user_error(page, exc)
        return ad
    ad["report"] = {
        "size": page.num(report.size),
        "exported": page.num(report.exported),
        "share": page.pct(report.exported / report.size) if report.size else i18n.MISSING,
        "dropped": [(r, page.num(report.dropped.get(r, 0))) for r in DROP_REASONS],
        "phones_invalid_kept": page.num(report.phones_invalid_kept),
    }
    return ad


def _history_now(svc: Any) -> dict[str, Any]:
    """The overview's migration when the cache was built before the history existed (for
    example a backfill after the run), computed once per pair of snapshot dates."""
    from segmentum.history.snapshots import snapshot_dates
    from segmentum.precompute import _history

    try:
        dates = svc.read_models(snapshot_dates, *HISTORY_TABLES)
        if len(dates) < 2:
            return {}
        memo: dict[Any, dict[str, Any]] = svc.__dict__.setdefault("dashboard_history", {})
        key = tuple(dates[-2:])
        if key not in memo:
            memo[key] = svc.read_models(_history, *HISTORY_TABLES)
        return memo[key]
    except Exception:  # busy or not computable now: the panel is left out
        return {}


_REFUSALS = (
    i18n.N_("dashboard", "sign in again: your session has ended"),
    i18n.N_("dashboard", "the form expired: reload the page"),
    i18n.N_("dashboard", "this key cannot save segments (it needs the write scope)"),
    i18n.N_("dashboard", "write a name for the segment"),
)


def _said(request: Request, text: str) -> str:
    """One of the dashboard API's ``_REFUSALS`` in the page's language."""
    return str(i18n.translations(language_of(request)).upgettext("dashboard", text))


def language_of(request: Request) -> str:
    from segmentum.service.dashboard import language

    return language(request)


# ---------------------------------------------------------------------- helpers (no HTML)
def _kpis(
    page: Page, o: dict[str, Any], now: dict[str, Any] | None, prev: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The overview's key figures, each with its change against the previous snapshot (an
    empty ``delta`` when there is none to compare with)."""
    _ = page._
    base = now or {"customers": o.get("customers"), "revenue": o.get("revenue")}

    def per_customer(r: dict[str, Any] | None) -> float | None:
        if not r or not r.get("customers"):
            return None
        return float(r.get("revenue") or 0.0) / float(r["customers"])

    def delta(a: Any, b: Any) -> str:
        if prev is None or i18n.is_missing(a) or i18n.is_missing(b) or not b:
            return ""
        change = float(a) / float(b) - 1.0
        sign = "+" if change > 0 else ("−" if change < 0 else "±")
        return _("%(change)s vs %(date)s") % {
            "change": sign + page.pct(abs(change)),
            "date": page.date(prev["as_of"]),
        }

    p = prev or {}
    avg = per_customer(o)
    return [
        {
            "id": "kpi-customers",
            # Buyers: the micro-segment tree's "everyone" also counts those yet to buy.
            "title": _("Customers with purchases"),
            "value": page.num(o["customers"]),
            "delta": delta(base.get("customers"), p.get("customers")),
        },
        {
            "id": "kpi-revenue",
            "title": _("Revenue"),
            "value": page.money(o["revenue"]),
            "delta": delta(base.get("revenue"), p.get("revenue")),
        },
        {
            "id": "kpi-average",
            "title": _("Revenue per customer"),
            "value": page.money(avg),
            "delta": delta(per_customer(base), per_customer(prev)),
        },
    ]


def _what_changed(page: Page, o: dict[str, Any]) -> dict[str, Any]:
    """The biggest movements and valuable-to-risky alerts between the last two snapshots."""
    m = o.get("migration")
    if not m:
        return {}
    by = m.get("classification", "value_tier")
    moves = [
        f
        for f in m.get("flows", [])
        if f["source"] != f["target"] and not str(f["source"]).startswith("(")
    ]
    moves.sort(key=lambda f: -f["customers"])
    net = sorted(m.get("net_change", {}).items(), key=lambda kv: -abs(kv[1]))
    alerts = m.get("alerts") or []
    return {
        "from": page.date(m["from"]),
        "to": page.date(m["to"]),
        "by": page.title(by),
        "moves": [
            {
                "source": page.label(by, f["source"]),
                "target": page.label(by, f["target"]),
                "customers": page.num(f["customers"]),
                "count": int(f["customers"]),
            }
            for f in moves[:5]
        ],
        "net": [
            {"state": page.label(by, s), "change": ("+" if n > 0 else "") + page.num(n)}
            for s, n in net[:5]
        ],
        "alerts": len(alerts),
        "alert_revenue": page.money(
            sum(float(a.get("lifetime_spend") or a.get("revenue") or 0) for a in alerts)
        ),
    }


def _directory(wh: Any) -> Any:
    """Ids, names, emails and cities: the published directory, else the customers table."""
    for name in (DIRECTORY, "customers"):
        if wh.has(name):
            return wh.table(name)
    return None


# Accented letters a name search reads as their plain letter ("garcia" finds García).
_ACCENTED, _PLAIN = (
    "áàâäãéèêëíìîïóòôöõúùûüñçÁÀÂÄÃÉÈÊËÍÌÎÏÓÒÔÖÕÚÙÛÜÑÇ",
    "aaaaaeeeeiiiiooooouuuuncAAAAAEEEEIIIIOOOOOUUUUNC",
)
# Matching customers a search lists (it says how many matched in all).
SEARCH_SHOWN = 25


def _search(wh: Any, query: str) -> tuple[list[dict[str, Any]], int]:
    """Customers whose id, email or name matches, ignoring case, accents and extra spaces:
    the first :data:`SEARCH_SHOWN` by id, and how many matched in all."""
    c = _directory(wh)
    if c is None:
        return [], 0
    q = " ".join(query.lower().split())
    conds = [c.customer_id.cast("string").lower() == q]
    if "email" in c.columns:
        conds.append(c.email.lower().strip() == q)
    name_cols = [x for x in ("first_name", "last_name") if x in c.columns]
    if name_cols:
        full = c[name_cols[0]].fill_null("")
        for col in name_cols[1:]:
            full = full.concat(" ", c[col].fill_null(""))
        full = full.translate(_ACCENTED, _PLAIN).lower().re_replace(r"\s+", " ").strip()
        plain = q.translate(str.maketrans(_ACCENTED, _PLAIN))
        conds.append(full.contains(plain) if len(plain) >= 2 else full == plain)
    cond = conds[0]
    for x in conds[1:]:
        cond = cond | x
    shown = ("first_name", "last_name", "email", "city")
    keep = ["customer_id", *[x for x in shown if x in c.columns]]
    found = c.filter(cond)
    rows = found.select(*keep).order_by("customer_id").limit(SEARCH_SHOWN).to_pyarrow().to_pylist()
    total = len(rows) if len(rows) < SEARCH_SHOWN else int(found.count().to_pyarrow().as_py())
    return list(rows), total


FIELD_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "classes",
        (
            "rfm_segment",
            "value_tier",
            "potential_tier",
            "value_potential",
            "lifecycle_stage",
            "cluster_name",
            "segments",
        ),
    ),
    (
        "value",
        (
            "clv",
            "expected_purchases",
            "p_alive",
            "churn_probability",
            "clv_status",
            "expected_next_purchase",
        ),
    ),
    (
        "behaviour",
        (
            "frequency",
            "monetary",
            "avg_order_value",
            "recency_days",
            "tenure_days",
            "interpurchase_mean",
            "promo_share",
            "return_rate",
            "top_category",
            "trend",
        ),
    ),
    (
        "contact",
        (
            "best_channel",
            "best_hour_band",
            "best_weekday",
            "best_device",
            "preferred_channel",
            "preferred_device",
            "preferred_hour_band",
        ),
    ),
    ("who", ("age", "age_band", "gender", "income_band", "country", "region", "city")),
)


def _profile(page: Page, found: dict[str, Any], svc: Any) -> dict[str, Any]:
    _ = page._
    titles = {
        "classes": _("Classes"),
        "value": _("Value and risk"),
        "behaviour": _("Behaviour"),
        "contact": _("Best time and channel"),
        "who": _("Who"),
    }
    if page.lang == "es":
        # The Spanish names the pipeline wrote beside the English ones.
        for col in ("rfm_segment", "value_potential", "cluster_name"):
            es = found.get(f"{col}_es")
            if es:
                found = {**found, col: es, f"_{col}_es": True}
    # Scored, yet no P(alive): the fit could not tell when customers stop buying (the dropout
    # process is not identified), so it is no probability; churn was calibrated on the
    # history instead. Said, not shown as a bare dash that reads like missing data.
    unestimated = found.get("clv_status") == "scored" and i18n.is_missing(found.get("p_alive"))

    def value(col: str) -> Any:
        if found.get(f"_{col}_es"):
            return found[col]
        if col == "p_alive" and unestimated:
            return _(
                "not estimated: this history cannot tell when customers stop buying "
                "(see the churn probability)"
            )
        return page.cell(col, found.get(col))

    groups = []
    for key, cols in FIELD_GROUPS:
        fields = [
            {"key": col, "title": page.title(col), "value": value(col)}
            for col in cols
            if col in found
        ]
        if fields:
            groups.append({"title": titles[key], "fields": fields})
    cid = str(found["customer_id"])
    # segmentum's own messages from its send log when the warehouse is free (a campaign sent
    # since the last run shows at once), else as the last run published them.
    sent, _ = svc.fresh_or_published(lambda: sent_activity(svc.wh, cid), ACTIVITY)
    # The flows' messages, from their own store (SQLite, readable while a run holds the
    # warehouse): read now, as a flow may have sent one a minute ago.
    flows = _flow_activity(svc, cid)
    timeline = svc.read_models(lambda wh: _timeline(page, wh, cid, sent, flows), INVOICES, ACTIVITY)
    person = svc.read_models(lambda wh: _person(wh, cid), DIRECTORY)
    return {
        "customer_id": cid,
        "as_of": page.date(found.get("as_of")),
        "groups": groups,
        "timeline": timeline,
        "person": person,
    }


def _flow_activity(svc: Any, cid: str) -> list[dict[str, Any]]:
    """The messages automated flows sent (or held back) to ``cid``, from the flows' store
    when there is one (none is created for a page view)."""
    from segmentum.flows.store import flows_path
    from segmentum.service.flows import flows_of

    where = flows_path(svc.url, svc.settings)
    if where != ":memory:" and not Path(where).exists():
        return []
    return flows_of(svc).activity(cid)


def _person(wh: Any, cid: str) -> dict[str, Any]:
    c = _directory(wh)
    if c is None:
        return {}
    keep = [x for x in ("first_name", "last_name", "email", "city") if x in c.columns]
    rows = c.filter(c.customer_id == cid).select(*keep).limit(1).to_pyarrow().to_pylist()
    return {k: v for k, v in (rows[0] if rows else {}).items() if not i18n.is_missing(v)}


def _timeline(
    page: Page,
    wh: Any,
    cid: str,
    sent: list[dict[str, Any]] | None = None,
    flows: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Purchases, returns, events and messages of one customer, newest first (from the
    ``customer_invoices`` and ``customer_activity`` read models; ``sent``: the messages of
    segmentum's send log read just now, which replace the published ones; ``flows``: those
    of the automated flows, from their own store)."""
    _ = page._
    items: list[dict[str, Any]] = []
    if wh.has(INVOICES):
        t = wh.table(INVOICES)
        t = t.filter(t.customer_id == cid)
        for r in t.order_by(ibis.desc("timestamp")).limit(40).to_pyarrow().to_pylist():
            ret = (r["amount"] or 0) < 0
            items.append(
                {
                    "when": r["timestamp"],
                    "kind": "return" if ret else "purchase",
                    "what": (_("Return") if ret else _("Purchase")) + f" {r['invoice_id']}",
                    "detail": page.money(r["amount"])
                    + " · "
                    + page.ngettext("%(n)s line", "%(n)s lines", int(r["lines"] or 0))
                    % {"n": page.num(r["lines"])},
                }
            )
    rows: list[dict[str, Any]] = []
    if wh.has(ACTIVITY):
        a = wh.table(ACTIVITY)
        a = a.filter(a.customer_id == cid)
        rows = a.order_by(ibis.desc("when")).limit(40).to_pyarrow().to_pylist()
    if sent is not None:
        rows = [r for r in rows if r.get("outcome") is None] + sent
    names = campaign_names(wh, {str(r["what"]) for r in rows if r["kind"] == "message"})
    reasons = flow_words(page.lang)["reason"]
    for r in [*rows, *(flows or [])]:
        channel = page.label("channel", r["channel"]) if r.get("channel") else ""
        if r.get("flow"):  # a flow's message: sent, failed, or held back and why
            what = _("Flow %(name)s") % {"name": r["flow"]}
            outcome = r.get("outcome") or ""
            status = (
                page.label("outcome", outcome)
                if outcome in ("sent", "failed")
                else reasons.get(outcome, outcome)
            )
            detail = " · ".join(x for x in (channel, status) if x)
        elif r["kind"] == "message":
            name = r.get("name") or names.get(str(r["what"])) or r["what"]
            what = _("Campaign %(name)s") % {"name": name}
            # A message segmentum sent or held back says what became of it; one from
            # loaded results, the group it was in.
            outcome = r.get("outcome")
            status = page.label("outcome", outcome) if outcome else page.label("group", r["group"])
            detail = " · ".join(x for x in (channel, status) if x)
        else:
            # A known event type in the page's language; the shop's own as written.
            what = page.label("event_type", r["what"]) if r["what"] else _("Event")
            # An event's channel is where it happened (the website, the app); an email's
            # open or click keeps the message channel's name.
            ch = r.get("channel")
            kind = "sales_channel" if ch in i18n.SALES_CHANNELS else "channel"
            detail = page.label(kind, ch) if ch else ""
        items.append({"when": r["when"], "kind": r["kind"], "what": what, "detail": detail})
    items = [x for x in items if x["when"] is not None]
    items.sort(key=lambda x: x["when"], reverse=True)
    for x in items:
        x["when"] = page.date(x["when"])
    return items[:60]


def _reach_rows(lang: str, reach: dict[str, Any] | None) -> list[dict[str, str]]:
    """Reach per channel as a table: channel, reachable customers and their share."""
    if not reach:
        return []
    out = []
    size = reach.get("size") or 0
    for ch, buckets in (reach.get("channels") or {}).items():
        count = (buckets or {}).get("reachable", 0)
        out.append(
            {
                "channel": i18n.label(lang, "channel", ch),
                "customers": i18n.number(count, lang),
                "share": i18n.percent(count / size, lang) if size else i18n.MISSING,
            }
        )
    return out


def _distinct(svc: Any, column: str, account: bool = False) -> list[str]:
    """The most common values of ``column`` among the customers (or the accounts)."""
    from segmentum.segments.view import account_view, customer_view

    view, _ = customer_view(svc.wh)
    if account and "company_id" in view.columns:
        view = account_view(view)
    elif account:
        return []
    if column not in view.columns:
        return []
    f = view.filter(view[column].notnull())
    g = f.group_by(v=f[column].cast("string")).aggregate(n=f.count())
    return [r["v"] for r in g.order_by(ibis.desc("n")).limit(60).to_pyarrow().to_pylist()]


def _warnings(lang: str, rule: str, warnings: list[Any]) -> list[dict[str, Any]]:
    """The rule checker's warnings (a value no customer has), with the value as typed and the
    stored value it suggests, so the page can offer a one-click fix."""
    out = []
    for w in warnings:
        typed = re.match(r"'((?:[^']|'')*)'|\"([^\"]*)\"", rule[w.position :])
        hint = w.hint or ""
        found = re.search(
            r"did you mean '((?:[^']|\\')*)'\?|write \w+ (?:==|!=) '((?:[^']|\\')*)'", hint
        )
        out.append(
            {
                "message": i18n.translate_message(lang, w.message),
                "position": w.position,
                "hint": i18n.translate_message(lang, hint),
                "value": (typed.group(1) or typed.group(2) or "") if typed else "",
                "suggestion": (found.group(1) or found.group(2) or "") if found else "",
            }
        )
    return out


def _segment_detail(page: Page, svc: Any, store: Any, segment: str) -> dict[str, Any]:
    from types import SimpleNamespace

    from segmentum.precompute import cached_profile
    from segmentum.segments.discover import profile_labels, segment_labels

    seg = store.get(segment)
    cached = cached_profile(svc.wh, segment)
    prof: Any = None
    if cached is not None:
        prof = SimpleNamespace(
            tree_rules=cached["tree_rules"],
            segments=[
                SimpleNamespace(**{**p, "tests": [SimpleNamespace(**x) for x in p["tests"]]})
                for p in cached["segments"]
            ],
        )
    else:
        try:
            prof = profile_labels(svc.wh, segment_labels(svc.wh, segment), "segment")
        except (SegmentumError, ValueError):
            prof = None
    members = store.members(segment)
    size = int(members.count().to_pyarrow().as_py())
    ids = members.order_by("customer_id").limit(50).customer_id.to_pyarrow().to_pylist()
    inside = next((p for p in prof.segments if p.segment == "in"), None) if prof else None
    profile = None
    if inside is not None:
        profile = {
            "name": inside.name_es if page.lang == "es" else inside.name_en,
            "description": _describe(page, inside),
            "flags": [_flag_sentence(page, f) for f in inside.flags],
            "tests": [
                {
                    "feature": page.title(x.feature),
                    "test": page.label("test", x.test),
                    "effect": page.num(x.effect, 2),
                    "q": page.chance(x.q_value),
                    "segment": page.cell(x.feature, x.segment_value),
                    "rest": page.cell(x.feature, x.rest_value),
                }
                for x in inside.tests[:12]
            ],
            "tree_rules": _tree_text(page, prof.tree_rules),
        }
    return {"seg": seg, "size": size, "members": ids, "profile": profile}


_TREE_LINE = re.compile(
    r"(?P<lead>[| ]*)\|--- (?:class: (?P<cls>.*)|(?P<col>\S+) (?P<op><=|>)\s+(?P<at>\S+))"
)


def _tree_text(page: Page, rules: str) -> str:
    """scikit-learn's text of a decision tree ("|--- monetary <= 920.20", "class: in"), said
    as the page says things: column titles, the locale's numbers, "region = Andalucía" for
    a category's yes/no column, and the segment's side in words."""
    from segmentum.segments.discover import PROFILE_CATEGORICAL

    sides = {"in": page._("in the segment"), "out": page._("not in it")}
    out = []
    for line in rules.splitlines():
        m = _TREE_LINE.fullmatch(line.rstrip())
        if m is None:
            out.append(line)
            continue
        lead = m["lead"] + "|--- "
        if m["cls"] is not None:
            out.append(lead + sides.get(m["cls"], m["cls"]))
            continue
        col, op, at = m["col"], m["op"], m["at"]
        kind = next((c for c in PROFILE_CATEGORICAL if col.startswith(c + "_")), None)
        if kind is not None:  # a category's yes/no column: split at 0.5
            value = page.label(kind, col[len(kind) + 1 :])
            out.append(f"{lead}{page.title(kind)} {'≠' if op == '<=' else '='} {value}")
            continue
        try:
            number = page.num(float(at), 2)
        except ValueError:
            number = at
        out.append(f"{lead}{page.title(col)} {'≤' if op == '<=' else '>'} {number}")
    return "\n".join(out)


def _describe(page: Page, inside: Any) -> str:
    """What sets the segment apart, in the page's language: column titles and values as the
    page writes them (the profile's stored sentence names raw columns, with English numbers).
    The same selection as ``segments.profile``: significant, with an effect of 0.1 or more."""
    tests = [t for t in inside.tests if t.q_value < 0.05 and abs(t.effect) >= 0.1]
    parts = []
    for t in sorted(tests, key=lambda t: -abs(t.effect))[:4]:
        if t.kind == "number":
            parts.append(
                page._("%(feature)s %(segment)s against %(rest)s in the rest")
                % {
                    "feature": page.title(t.feature),
                    "segment": page.cell(t.feature, t.segment_value),
                    "rest": page.cell(t.feature, t.rest_value),
                }
            )
        else:
            parts.append(
                page._("%(feature)s: %(value)s, %(lift)s times as often")
                % {
                    "feature": page.title(t.feature),
                    "value": page.cell(t.feature, t.segment_value),
                    "lift": page.num(t.lift or 0.0, 1),
                }
            )
    # The profile compares customers with features (buyers): its share is of them, not of
    # every customer as the builder's is, so the base is said (15.7% here, 15.6% there).
    base = round(inside.size / inside.share) if inside.share else 0
    head = page._("%(size)s of the %(n)s customers profiled (%(share)s)") % {
        "size": page.num(inside.size),
        "n": page.num(base),
        "share": page.pct(inside.share),
    }
    if not parts:
        return head + ": " + page._("not clearly different from the rest")
    return head + ": " + "; ".join(parts)


# Persona card keys (segments.micro.PERSONA) back to the columns they describe.
PERSONA_COLUMNS = {
    "age band": "age_band",
    "gender": "gender",
    "place": "city",
    "behaviour": "rfm_segment",
    "value": "value_tier",
    "best time": "preferred_hour_band",
    "best day": "preferred_weekday",
    "channel": "preferred_channel",
    "device": "preferred_device",
    "lifestyle": "tags",
}


def _tree(page: Page, nodes: list[Any], dims: list[str]) -> dict[str, Any] | None:
    """Nodes of the micro-segment tree nested by path, for a collapsible list."""
    if not nodes:
        return None
    by_path: dict[str, dict[str, Any]] = {}
    root: dict[str, Any] | None = None
    for n in nodes:
        dim = dims[n.depth - 1] if 0 < n.depth <= len(dims) else ""
        persona = "; ".join(
            f"{page.title(PERSONA_COLUMNS.get(k, k))}: "
            + page.label(PERSONA_COLUMNS.get(k, k), v.get("value") if isinstance(v, dict) else v)
            for k, v in (n.persona or {}).items()
        )
        item = {
            "path": n.path,
            "rank": _state_rank(dim, n.value),
            "label": page.label(dim, n.value) if n.value is not None else page._("Everyone"),
            "dimension": page.title(dim) if dim else "",
            "customers": page.num(n.customers),
            "own": page.num(n.own),
            "revenue": page.money(n.revenue),
            "avg_clv": page.money(n.avg_clv),
            "persona": persona,
            "depth": n.depth,
            "children": [],
            "rule": " and ".join(
                rule_for(d, v) for d, v in zip(dims, n.path.split(" > "), strict=False)
            )
            if n.depth
            else "",
        }
        by_path[n.path] = item
        if n.depth == 0:
            root = item
    for n in nodes:
        if n.depth == 0:
            continue
        parent_path = " > ".join(n.path.split(" > ")[:-1]) if n.depth > 1 else ""
        parent = by_path.get(parent_path) if n.depth > 1 else root
        if parent is not None:
            parent["children"].append(by_path[n.path])
    for item in by_path.values():  # a class's states best first (stable: others as listed)
        item["children"].sort(key=lambda c: c["rank"])
    if root is None:
        root = {
            "label": page._("Everyone"),
            "children": sorted(
                (v for v in by_path.values() if v["depth"] == 1), key=lambda c: c["rank"]
            ),
            "depth": 0,
            "customers": "",
            "own": "",
            "revenue": "",
            "avg_clv": "",
            "persona": "",
            "dimension": "",
            "rule": "",
            "path": "",
        }
    return root


def _migration(page: Page, wh: Any, by: str, date_from: str, date_to: str) -> dict[str, Any]:
    from segmentum.history.cohorts import forecast
    from segmentum.history.migration import migration
    from segmentum.history.snapshots import month_before, snapshot_dates
    from segmentum.precompute import overview

    _ = page._
    dates = snapshot_dates(wh)
    ctx: dict[str, Any] = {"dates": [(str(d), page.date(d)) for d in dates]}
    if len(dates) < 2:
        ctx["empty"] = True
        return ctx
    cache = overview(wh)
    try:
        a = _dt.date.fromisoformat(date_from) if date_from else month_before(dates)
        b = _dt.date.fromisoformat(date_to) if date_to else dates[-1]
        if b <= a:  # said with the form's own labels, not the command line's --from/--to
            ctx["error"] = {
                "message": _("«%(to)s» must be a later date than «%(from)s».")
                % {"to": _("To"), "from": _("From")},
                "hint": _("Choose two snapshot dates from the lists."),
            }
            return ctx
        cm = cache.get("migration")
        if cm and by == "value_tier" and (cm["from"], cm["to"]) == (str(a), str(b)):
            m = cm
        else:
            m = migration(wh, a, b, by).to_dict()
    except ValueError:
        ctx["error"] = {"message": _("Choose two snapshot dates from the lists."), "hint": ""}
        return ctx
    except SegmentumError as exc:
        ctx["error"] = user_error(page, exc)
        return ctx
    ctx["date_from"], ctx["date_to"] = str(a), str(b)
    states = sorted(m["states"], key=lambda s: _state_rank(by, s))
    k = len(states)
    idx = {s: i for i, s in enumerate(states)}
    names = [page.label(by, s) for s in states]
    flows = m["flows"]
    ctx["chart"] = chart(
        "chart-sankey",
        [
            {
                "type": "sankey",
                "node": {
                    "label": [f"{n} ({page.date(a)})" for n in names]
                    + [f"{n} ({page.date(b)})" for n in names],
                    "color": [PALETTE[i % len(PALETTE)] for i in range(k)] * 2,
                },
                "link": {
                    "color": "rgba(0, 114, 178, 0.25)",
                    "source": [idx[f["source"]] for f in flows],
                    "target": [k + idx[f["target"]] for f in flows],
                    "value": [f["customers"] for f in flows],
                },
            }
        ],
        {"height": 520, "title": {"text": _("Where customers moved")}},
    )
    ctx["alerts"] = [
        {
            # No sales between the dates is a spend of 0, not an unknown one.
            k2: page.label(by, v)
            if k2 in ("state_from", "state_to")
            else page.cell(k2, 0 if k2 == "spend" and v is None else v)
            for k2, v in a_.items()
        }
        for a_ in (m.get("alerts") or [])[:20]
    ]
    # A high-value customer moving to medium has lost a tier, not become risky.
    ctx["alerts_title"] = (
        _("High-value customers who dropped to a lower tier")
        if by == "value_tier"
        else _("Valuable customers who became risky")
    )
    ctx["alert_cols"] = list((m.get("alerts") or [{}])[0].keys())[:6] if m.get("alerts") else []
    # The forecast always follows the chosen classification (never silently another one).
    ctx["forecast_by"] = page.title(by)
    try:
        cf = cache.get("forecast")
        if cf and by == "value_tier" and cf.get("classification", "value_tier") == by:
            fc = cf
        else:
            fc = forecast(wh, by).to_dict()
        periods = len(fc["projected"])
        ctx["forecast_cols"] = [_("Now")] + [
            _("Period +%(n)s") % {"n": i + 1} for i in range(periods)
        ]
        ctx["forecast"] = [
            {
                "state": page.label(by, s),
                "values": [page.num(fc["observed"][-1].get(s, 0))]
                + [page.num(round(p.get(s, 0))) for p in fc["projected"]],
            }
            for s in sorted(fc["states"], key=lambda s: _state_rank(by, s))
            if not str(s).startswith("(")
        ]
        if fc.get("backtest_mape") is not None:
            ctx["mape"] = _("Backtest error %(model)s (no-change baseline: %(baseline)s)") % {
                "model": page.pct(fc["backtest_mape"] / 100),
                "baseline": page.pct((fc.get("baseline_mape") or 0) / 100),
            }
    except SegmentumError as exc:
        ctx["forecast_error"] = user_error(page, exc)
    return ctx


SUPPRESSED_SHOWN = 20


def _suppressed(page: Page, svc: Any) -> dict[str, Any] | None:
    """Who must not be contacted, for the campaigns page: stored and waiting unsubscribes,
    bounces and loaded lists, the latest first; while a run holds the warehouse, as last
    published (None where the published read models predate the list: the page then leaves
    the card out rather than say nobody is on it)."""
    from segmentum.campaigns import unsubscribe
    from segmentum.schema import SUPPRESSIONS

    if svc.wh.read_only and not svc.wh.has(SUPPRESSIONS.name):
        return None
    got = unsubscribe.suppressed(svc.wh, svc.settings, SUPPRESSED_SHOWN, url=svc.url)
    return {
        "total": got.total,
        "count": page.num(got.total),
        "reasons": [
            (page.label("suppression_reason", k) if k else i18n.MISSING, page.num(n))
            for k, n in got.by_reason.items()
        ],
        "rows": [
            {
                "customer_id": r["customer_id"] or i18n.MISSING,
                "email": r["email"] or i18n.MISSING,
                "channel": page.label("channel", r["channel"] or "all"),
                "reason": page.label("suppression_reason", r["reason"]) if r["reason"] else "—",
                "since": page.date(r["added_at"].date() if r["added_at"] else None),
            }
            for r in got.rows
        ],
        "shown": page.num(len(got.rows)),
        "more": got.listed > len(got.rows),
        "emails": bool(svc.settings.export_personal_data),
        "hidden": got.emails_hidden,
    }


def _campaigns(page: Page, svc: Any, selected: str) -> dict[str, Any]:
    from segmentum.campaigns.audiences import TACTICS
    from segmentum.campaigns.core import CHANNELS, IMPORTED, Campaigns
    from segmentum.campaigns.measure import results
    from segmentum.segments.store import Segments

    cs = Campaigns(svc.wh, svc.settings)
    published = svc.wh.read_only

    def measured(camp: Any) -> dict[str, Any]:
        """The campaign's results (``Results.to_dict``), as published during a run."""
        if published:
            return published_results(svc.wh, camp.campaign_id) or {}
        r = results(svc.wh, camp.campaign_id, svc.settings, camp.cost_per_contact)
        return r.to_dict()

    rows = []
    for camp in cs.list():
        row: dict[str, Any] = {
            "id": camp.campaign_id,
            "name": camp.name,
            "tactic": page.label("tactic", camp.tactic),
            "channel": page.label("channel", camp.channel),
            "treated": i18n.MISSING,
            "control": i18n.MISSING,
            "uplift": i18n.MISSING,
            "p": i18n.MISSING,
            "roi": i18n.MISSING,
        }
        try:
            d = measured(camp)
            r = d.get("overall") or {}
            if r.get("treated"):  # sent: who was treated and compared, from the first send
                row.update(treated=page.num(r["treated"]), control=page.num(r["control"]))
            if r.get("treated") and d.get("ready", True):  # no outcomes yet: no uplift of 0
                row.update(
                    uplift=f"{i18n.points(r['uplift'], page.lang)} "
                    f"({i18n.points(r['uplift_low'], page.lang)}, "
                    f"{i18n.points(r['uplift_high'], page.lang)})",
                    p=page.chance(r["p_value"]),
                    roi=page.pct(r["roi"]) if _roi_shown(r) else i18n.MISSING,
                )
        except Exception:
            pass
        rows.append(row)
    ctx: dict[str, Any] = {
        "campaigns": rows,
        "defaults": _form_defaults(),
        "tactics": [(t, page.label("tactic", t)) for t in TACTICS],
        "channels": [(c, page.label("channel", c)) for c in CHANNELS],
        "saved_segments": [s.name for s in Segments(svc.wh, svc.settings).list()],
        "suppressed": None if selected else _suppressed(page, svc),
    }
    if selected:
        try:
            camp = cs.get(selected)
            if camp.tactic == IMPORTED:
                # Loaded with its results (the demo's past campaign): measured, never planned.
                ctx["imported"] = {
                    "id": camp.campaign_id,
                    "name": camp.name,
                    "results": _results_rows(page, measured(camp), svc.settings),
                }
                return ctx
            if not published and not cs.sent([camp.campaign_id]):
                # Never sent: it can be deleted (a sent one keeps its log and its results).
                ctx["deletable"] = {"id": camp.campaign_id, "name": camp.name}
            if published:
                # A sent campaign's plan is published with it; a new plan needs the warehouse
                # (its results meanwhile).
                stored = published_plan(svc.wh, camp.campaign_id)
                if stored is None:
                    ctx["plan_error"] = user_error(page, _busy_now(page))
                    ctx["results"] = _results_rows(page, measured(camp), svc.settings)
                    return ctx
                plan = cs.present(camp, stored, page.lang)
            else:
                plan = cs.dry_run(camp, sample=PLAN_EXAMPLES, lang=page.lang)
            if camp.channel == "sms":
                ctx["sms"] = _sms_receipts(page, svc, cs, camp, published)
            ctx["plan"] = {
                "id": camp.campaign_id,
                "name": plan["campaign"],
                "audience": page.num(plan["audience"]),
                "logged": plan.get("logged", False),
                # A file campaign's file, once written by a send, is downloaded from the page.
                "file": camp.channel == "file" and plan["outcomes"].get("sent", 0) > 0,
                # Messages still to go (planned, not yet sent): what "send now" would send.
                "pending": sum(plan["outcomes"].get(k, 0) for k in ("scheduled", "file")),
                "outcomes": [
                    {"outcome": page.label("outcome", k), "customers": page.num(v)}
                    for k, v in plan["outcomes"].items()
                ],
                # Drawn for the control group, and of them those compared (who would have
                # been messaged): said when some could not have been.
                "control": (
                    {
                        "drawn": page.num(plan["control_group"]),
                        "compared": page.num(plan["outcomes"].get("control", 0)),
                    }
                    if plan.get("control_group", 0) > plan["outcomes"].get("control", 0)
                    else None
                ),
                "examples": [
                    {
                        "customer_id": x["customer_id"],
                        # Times are kept in UTC: said, so 2:00 is not read as local time.
                        "when": f"{page.date(x['when'])} UTC"
                        if not i18n.is_missing(x["when"]) and str(x["when"]) not in ("NaT", "None")
                        else "",
                        "why": x["why"],
                        "subject": x["subject"],
                        "body": x.get("body", ""),
                    }
                    for x in plan["examples"]
                ],
            }
            with contextlib.suppress(Exception):
                ctx["results"] = _results_rows(page, measured(camp), svc.settings)
        except SegmentumError as exc:
            ctx["plan_error"] = user_error(page, exc)
            ctx["unknown"] = isinstance(exc, InputError) and "there is no campaign" in exc.message
    return ctx


def _flag_sentence(page: Page, flag: str) -> str:
    """What a segment profile's warning flag means for reading it, as a sentence."""
    sentences = {
        "small": page._("Few members: the differences below may be chance."),
        "not_distinct": page._("No feature tells these customers clearly apart from the others."),
        "unstable": page._(
            "The segment changes when other customers are sampled: read it with care."
        ),
    }
    return sentences.get(flag, i18n.segment_flag(page.lang, flag))


def _published_campaign(svc: Any, key: str) -> bool:
    """Whether the serving store can show campaign ``key`` as the warehouse would: one sent
    (its logged plan published) or imported (results only)."""
    from segmentum.campaigns.core import IMPORTED, Campaigns

    store = svc.serving
    if store is None or not store.published or not store.has(CAMPAIGN_PAGES):
        return False

    def answers(wh: Any) -> bool:
        try:
            camp = Campaigns(wh, svc.settings).get(key)
        except SegmentumError:
            # Every command publishes the campaigns it creates: one the store does not know
            # does not exist, which the store can say (a Spark job took seconds to say it).
            return True
        return camp.tactic == IMPORTED or published_plan(wh, camp.campaign_id) is not None

    return bool(store.read(answers))


def _sms_receipts(
    page: Page, svc: Any, cs: Any, camp: Any, published: bool
) -> dict[str, Any] | None:
    """An SMS campaign's sent messages by their last delivery receipt, as
    ``GET /v1/campaigns/{campaign}/sms-receipts`` counts them: receipts the service stored
    meanwhile folded in first, or, from the serving store (``published``: Spark, or a run
    holds the file), added to the published statuses. None when the store has none."""
    from segmentum.campaigns.sms import published_receipt_counts, receipt_counts, waiting_receipts

    if published:
        waiting = waiting_receipts(svc.url, svc.settings)
        counts = published_receipt_counts(svc.wh, camp.campaign_id, waiting)
        if counts is None:
            return None
    else:
        cs.fold_sms_receipts()
        counts = receipt_counts(cs.wh, camp.campaign_id)
    return {
        "sent": page.num(sum(counts.values())),
        "any": sum(counts.values()) > 0,
        "rows": [{"status": k, "customers": page.num(v)} for k, v in counts.items()],
    }


def _busy_now(page: Page) -> SegmentumError:
    return SegmentumError(
        page._("A run is updating the data: this needs the warehouse it holds."),
        page._("Try again when the run has finished; the page shows what was published."),
    )


def _results_rows(page: Page, d: dict[str, Any], settings: Settings) -> dict[str, Any] | None:
    """A campaign's results as the page shows them: the figures, then what they mean in words
    (:func:`measure.explain`); before there is anything to compare, why (no outcomes yet, no
    control group) instead of figures of zero."""
    from segmentum.campaigns.measure import explain

    overall = d.get("overall") or {}
    if not overall or not overall.get("treated"):
        return None
    if not d.get("ready", True):
        from segmentum.campaigns.measure import waiting

        note = i18n.sentence(i18n.translate_message(page.lang, d.get("note")) or "")
        return {"rows": [], "said": [note, waiting(d, settings, page.lang, on_page=True)]}
    keys = ("treated", "control", "conv_treated", "conv_control", "uplift", "p_value", "roi")
    out = []
    for k in keys:
        if k not in overall:
            continue
        v = overall[k]
        if k == "roi" and not _roi_shown(overall):
            text = i18n.MISSING  # the revenue difference could be chance: see the words below
        elif k.startswith("conv") or k == "roi":
            text = page.pct(v)
        elif k == "uplift":
            text = i18n.points(v, page.lang)
            if not i18n.is_missing(overall.get("uplift_low")):
                low, high = (
                    i18n.points(overall[x], page.lang) for x in ("uplift_low", "uplift_high")
                )
                text += f" ({low}, {high})"
        elif k == "p_value":
            text = page.chance(v)
        else:
            text = page.num(v)
        out.append({"key": k, "value": text})
        if k == "treated" and d.get("failed"):
            # Treated counts the messages that failed too (they were sent to try): say how many.
            out += [{"key": x, "value": page.num(d.get(x, 0))} for x in ("sent", "failed")]
    return {"rows": out, "said": explain(d, settings, page.lang)}


def _form_defaults() -> dict[str, dict[str, str]]:
    """The new-campaign form's message for each tactic until it is edited: the tactic's own
    subject, a neutral body (a win-back asks the customer back), in both languages."""
    from segmentum.campaigns.audiences import TACTICS
    from segmentum.campaigns.channels import DEFAULT_TEMPLATE, default_subject

    neutral = DEFAULT_TEMPLATE["body"]
    back = {
        "es": "{{ greeting }}, vuelve y descubre las novedades.",
        "en": "{{ greeting }}, come back and see what is new.",
    }
    out = {}
    for t in TACTICS:
        subject, body = default_subject(t), back if t == "winback" else neutral
        out[t] = {
            f"{part}_{lang}": text[lang]
            for part, text in (("subject", subject), ("body", body))
            for lang in ("es", "en")
        }
    return out


def _roi_shown(effect: Mapping[str, Any]) -> bool:
    """Whether an effect's ROI is a number to show: there is one, and its revenue difference
    is not chance (``revenue_clear``; 968% on a difference whose interval includes zero
    reads as a success it is not)."""
    return not i18n.is_missing(effect.get("roi")) and bool(effect.get("revenue_clear"))


def _failed_step(lang: str, failed: Any) -> str:
    """The step a run failed in and why, in ``lang`` ("" when none failed)."""
    if not failed:
        return ""
    name, error = failed
    return f"{i18n.step_name(lang, name)}: {i18n.translate_message(lang, error)}"


def _data(wh: Any, batch: str) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    if wh.has("pipeline_runs"):
        runs = (
            wh.table("pipeline_runs")
            .order_by(ibis.desc("started_at"))
            .limit(20)
            .to_pyarrow()
            .to_pylist()
        )
        for r in runs:
            steps = json.loads(r.get("steps") or "[]")
            failed = [x for x in steps if x.get("status") == "failed"]
            # Named in the page's language by data_page (the run log stores English).
            r["failed_step"] = (failed[0]["step"], failed[0].get("error", "")) if failed else ""
            r.pop("steps", None)
        ctx["runs"] = runs
    if wh.has("ingest_batches"):
        ctx["batches"] = wh.table("ingest_batches").order_by("loaded_at").to_pyarrow().to_pylist()
    # The published copy holds each load's first rows (page_models.QUARANTINE_RECENT).
    name = "quarantine" if wh.has("quarantine") else QUARANTINE_RECENT
    if wh.has(name):
        q = wh.table(name)
        if batch:
            q = q.filter(q.batch_id == batch)
        ctx["quarantine"] = q.order_by("source_row").limit(100).to_pyarrow().to_pylist()
    return ctx
