"""Flows over the API and the dashboard: list, read, validate, create (from a template or YAML),
enable and disable, results per step, a customer's path; the playbook's "apply", which turns a
segment's recommendation into a draft flow; and, with ``flow_runner`` on, the ticks in a
background thread of the service.

Creating and switching flows needs the admin scope (they message customers); reading needs
read. Flows keep their state in their own SQLite file (:mod:`segmentum.flows.store`), so none
of this waits for a pipeline run that holds the warehouse.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from segmentum import i18n
from segmentum.errors import InputError, SegmentumError
from segmentum.flows import FlowError, Flows, Runner, catalog
from segmentum.flows.spec import trigger_of
from segmentum.flows.words import condition_words, flow_words, path_detail
from segmentum.service.core import Admin, ApiProblem, Read, Service

router = APIRouter(tags=["flows"])


class FlowIn(BaseModel):
    yaml: str | None = Field(default=None, max_length=200_000, description="The flow's YAML.")
    template: str | None = Field(default=None, examples=["abandoned_cart"])
    name: str | None = Field(default=None, description="With template: the new flow's name.")


class YamlIn(BaseModel):
    yaml: str = Field(max_length=200_000)


def flows_of(svc: Service) -> Flows:
    """The service's flows (one object per service: its SQLite file beside the warehouse)."""
    found = svc.__dict__.get("flows")
    if found is None:
        found = svc.__dict__["flows"] = Flows.for_warehouse(svc.url, svc.settings)
    return found


def _svc(request: Request) -> Service:
    svc: Service = request.app.state.svc
    return svc


def _problems(exc: FlowError) -> JSONResponse:
    return JSONResponse(
        {
            "status": 422,
            "detail": exc.message,
            "hint": exc.hint,
            "problems": [p.to_dict() for p in exc.problems],
        },
        status_code=422,
    )


def _text(body: FlowIn) -> tuple[str, str | None]:
    if body.template:
        if not body.name:
            raise InputError("give the new flow a name", 'e.g. {"template": "...", "name": "cart"}')
        return catalog.from_template(body.template, body.name), body.template
    if not body.yaml:
        raise InputError("send the flow's yaml, or a template and a name", "see docs/flows.md")
    return body.yaml, None


@router.get("/v1/flows")
def flows_list(request: Request, _: Read) -> list[dict[str, Any]]:
    """Every flow with its state and counts (entered, in the flow, sent, converted)."""
    return flows_of(_svc(request)).overview()


@router.get("/v1/flows/templates")
def flows_templates(_: Read) -> list[dict[str, Any]]:
    """The shipped templates (welcome, abandoned cart and browse, cross-sell, replenishment,
    win-back, VIP recognition, at-risk retention)."""
    return [{**t, "yaml": catalog.text(t["template"])} for t in catalog.describe()]


@router.post("/v1/flows/validate", response_model=None)
def flows_validate(request: Request, body: YamlIn, _: Read) -> Response:
    """Check a flow's YAML: ``{"valid": true}``, or 422 with every problem (line, field, hint)."""
    try:
        f = flows_of(_svc(request)).check(body.yaml, "yaml")
    except FlowError as exc:
        return _problems(exc)
    return JSONResponse({"valid": True, "name": f.name, "steps": len(f.steps)})


@router.post("/v1/flows", status_code=201, response_model=None)
def flows_create(request: Request, body: FlowIn, _: Admin) -> Response:
    """Create a draft flow (or update one of that name) from YAML or from a template."""
    text, origin = _text(body)
    try:
        f = flows_of(_svc(request)).save(text, source="yaml", origin=origin)
    except FlowError as exc:
        return _problems(exc)
    return JSONResponse(flows_of(_svc(request)).row(f.name), status_code=201)


@router.get("/v1/flows/{name}")
def flows_get(request: Request, name: str, _: Read) -> dict[str, Any]:
    return flows_of(_svc(request)).row(name)


@router.post("/v1/flows/{name}/enable")
def flows_enable(request: Request, name: str, _: Admin) -> dict[str, Any]:
    flows = flows_of(_svc(request))
    flows.set_status(name, "enabled")
    return flows.row(name)


@router.post("/v1/flows/{name}/disable")
def flows_disable(request: Request, name: str, _: Admin) -> dict[str, Any]:
    flows = flows_of(_svc(request))
    flows.set_status(name, "disabled")
    return flows.row(name)


@router.get("/v1/flows/{name}/results")
def flows_results(request: Request, name: str, _: Read) -> dict[str, Any]:
    """Per step: reached, sent, skipped by reason, converted, and the uplift of the treated
    against the control group (Newcombe 95% interval; Fisher's exact test when small)."""
    return flows_of(_svc(request)).results(name)


@router.get("/v1/customers/{customer_id}/flows")
def flows_path(request: Request, customer_id: str, _: Read) -> list[dict[str, Any]]:
    """The customer's path through every flow, oldest first."""
    return flows_of(_svc(request)).path(customer_id)


# ---------------------------------------------------------------------------- the playbook


def template_for(tactic: str) -> str:
    """The flow template closest to a playbook tactic (its English wording)."""
    t = tactic.lower()
    for words, template in (
        (("vip", "recognition", "referral"), "vip_recognition"),
        (("win", "reactivat", "lapsed", "lost"), "win_back"),
        (("welcome", "onboard", "first"), "welcome"),
        (("replenish", "next purchase", "restock"), "replenishment"),
        (("cross-sell", "cross sell", "up-sell", "upsell", "loyal"), "post_purchase_cross_sell"),
        (("risk", "retain", "retention", "churn"), "at_risk_retention"),
    ):
        if any(w in t for w in words):
            return template
    return "vip_recognition"


def apply_play(flows: Flows, play: Any) -> str:
    """A draft flow from a segment's playbook entry: the matching template, triggered by
    entering the segment, with the playbook's channel and message; returns its name."""
    template = template_for(play.tactic.get("en", ""))
    base = re.sub(r"[^A-Za-z0-9_]+", "_", f"{play.segment}_{template}").strip("_").lower()
    taken = {r["name"] for r in flows.store.query("SELECT name FROM flows")}
    name = base[:70]
    n = 2
    while name in taken:
        name, n = f"{base[:66]}_{n}", n + 1
    channel = play.channel if play.channel in ("email", "push", "inapp", "sms") else None
    text = catalog.from_template(
        template, name, segment=play.segment, channel=channel, message=play.message or None
    )
    timing = play.timing or {}
    if timing:
        # The playbook's timing is advice in words: kept beside the flow for whoever edits it.
        note = "".join(f"# timing ({k}): {v}\n" for k, v in timing.items())
        text = text.replace("\n", "\n" + note, 1)
    flows.save(text, source=f"playbook {play.dimension} {play.segment}", origin="playbook")
    return name


# ---------------------------------------------------------------------------- mounting


def mount_flows(app: FastAPI, svc: Service) -> None:
    """The API routes, the dashboard pages, and the background runner when enabled."""
    app.include_router(router)
    _mount_pages(app, svc)
    if svc.settings.flow_runner:
        _start_runner(app, svc)


def _start_runner(app: FastAPI, svc: Service) -> None:
    def with_warehouse(fn: Any) -> Any:
        try:
            return svc.locked(lambda: fn(svc.wh))
        except ApiProblem:
            return None  # busy: the tick goes on with what flows copied last

    runner = Runner(
        flows_of(svc), interval=svc.settings.flow_tick_seconds, with_warehouse=with_warehouse
    )
    app.state.flow_runner = runner

    def loop() -> None:
        while not runner.stop.is_set():
            try:
                runner.run()
            except Exception:  # a tick that fails is retried, never kills the thread
                runner.stop.wait(runner.interval)

    thread = threading.Thread(target=loop, name="segmentum-flows", daemon=True)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        thread.start()
        try:
            async with inner(a) as state:
                yield state
        finally:
            runner.stop.set()

    app.router.lifespan_context = lifespan


def _mount_pages(app: FastAPI, svc: Service) -> None:
    import secrets

    from segmentum.service.auth import SESSION_COOKIE
    from segmentum.service.dashboard import Page, forbidden, render, user_error

    def page_of(request: Request) -> Page | Response:
        s = svc.sessions.get(request.cookies.get(SESSION_COOKIE))
        if s is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
        return Page(request, svc, s)

    def is_admin(page: Page) -> bool:
        return page.session is not None and "admin" in page.session.scopes

    async def admin_form(request: Request) -> tuple[Page | Response, Any]:
        page = page_of(request)
        if not isinstance(page, Page):
            return page, None
        form = await request.form()
        if not is_admin(page):
            err = {"message": page._("Only an admin key can do this."), "hint": ""}
            return render(page, "error.html", status=403, error=err), None
        assert page.session is not None
        if not secrets.compare_digest(str(form.get("csrf", "")), page.session.csrf):
            return forbidden(page), None
        return page, form

    def list_context(page: Page, **extra: Any) -> dict[str, Any]:
        flows = flows_of(svc)
        rows = flows.overview()
        for r in rows:
            r["description_text"] = (r.get("description") or {}).get(page.lang, "")
            r["trig"] = None
            if r.get("trigger"):
                with contextlib.suppress(SegmentumError):
                    r["trig"] = flows.flow(r["name"]).trigger
        templates = [
            {
                "name": t["template"],
                "description": (t["description"] or {}).get(page.lang, t["template"]),
                "trigger": trigger_of(t["trigger"]),
            }
            for t in catalog.describe()
        ]
        return {
            "current": "flows",
            "words": flow_words(page.lang),
            "flows": rows,
            "templates": templates,
            "admin": is_admin(page),
            "detail": None,
            **extra,
        }

    def detail_context(page: Page, name: str, **extra: Any) -> dict[str, Any]:
        flows = flows_of(svc)
        row = flows.row(name)
        ctx = list_context(page, **extra)
        try:
            f = flows.flow(name)
            res = flows.results(name)
        except FlowError as exc:
            ctx["detail"] = {"row": row, "error": user_error(page, exc)}
            return ctx
        ctx["detail"] = {
            "row": row,
            "trigger": f.trigger,
            "description": (f.description or {}).get(page.lang, ""),
            "control_share": f.control_share,
            "results": res,
            # A condition on the flow's own names said in words (its rule in the tooltip).
            "conditions": {
                s.index: words
                for s in f.steps
                if s.kind == "condition" and (words := condition_words(page.lang, s.rule))
            },
        }
        return ctx

    @app.get("/dashboard/flows", include_in_schema=False)
    def flows_page(request: Request, created: str = "", customer: str = "") -> Response:
        page = page_of(request)
        if not isinstance(page, Page):
            return page
        customer = customer.strip()[:200]
        path = flows_of(svc).path(customer) if customer else None
        if path:  # each detail and time as the page's language writes them
            path = [
                {
                    **r,
                    "at": r["at"] if page.lang == "en" else page.date(r["at"]),
                    "detail": path_detail(page.lang, r["what"], r["detail"]),
                }
                for r in path
            ]
        ctx = list_context(page, created=created, customer=customer, path=path)
        return render(page, "flows.html", **ctx)

    @app.get("/dashboard/flows/{name}", include_in_schema=False)
    def flow_page(request: Request, name: str, created: str = "") -> Response:
        page = page_of(request)
        if not isinstance(page, Page):
            return page
        try:
            ctx = detail_context(page, name, created=created)
        except SegmentumError as exc:
            return render(page, "error.html", status=404, error=user_error(page, exc))
        return render(page, "flows.html", **ctx)

    @app.post("/dashboard/flows", include_in_schema=False)
    async def flow_create(request: Request) -> Response:
        page, form = await admin_form(request)
        if not isinstance(page, Page):
            return page
        template = str(form.get("template", "")).strip()
        name = str(form.get("name", "")).strip()[:80]
        text = str(form.get("yaml", ""))[:200_000]
        flows = flows_of(svc)
        try:
            if template:
                if not name:
                    raise InputError(
                        page._("Give the new flow a name."),
                        page._("Letters, digits and _ . -, e.g. cart_reminder"),
                    )
                text = catalog.from_template(template, name)
            f = flows.save(text, source="yaml", origin=template or None, replace=not template)
        except FlowError as exc:
            problems = [
                {
                    "line": p.line,
                    "field": p.field,
                    "message": i18n.flow_problem_message(page.lang, p.message),
                    "hint": i18n.translate_message(page.lang, p.hint) if p.hint else None,
                }
                for p in exc.problems
            ]
            ctx = list_context(page, problems=problems, form={"yaml": text, "name": name})
            return render(page, "flows.html", status=422, **ctx)
        except SegmentumError as exc:
            ctx = list_context(page, form_error=user_error(page, exc), form={"yaml": text})
            return render(page, "flows.html", status=422, **ctx)
        target = f"/dashboard/flows/{f.name}?" + urlencode({"created": "1"})
        return RedirectResponse(target, status_code=303)

    @app.post("/dashboard/flows/{name}/status", include_in_schema=False)
    async def flow_status(request: Request, name: str) -> Response:
        page, form = await admin_form(request)
        if not isinstance(page, Page):
            return page
        status = str(form.get("status", ""))
        try:
            if status not in ("enabled", "disabled"):
                raise InputError(page._("Choose enable or disable."))
            flows_of(svc).set_status(name, status)
        except SegmentumError as exc:
            ctx = detail_context(page, name, form_error=user_error(page, exc))
            return render(page, "flows.html", status=422, **ctx)
        return RedirectResponse(f"/dashboard/flows/{name}", status_code=303)

    @app.post("/dashboard/playbook/apply", include_in_schema=False)
    async def playbook_apply(request: Request) -> Response:
        page, form = await admin_form(request)
        if not isinstance(page, Page):
            return page
        dimension = str(form.get("dimension", ""))
        segment = str(form.get("segment", ""))
        try:
            play = next(
                (p for p in playbook_for(svc, dimension) if p.segment == segment and p.in_playbook),
                None,
            )
            if play is None:
                raise InputError(
                    page._("This segment has no playbook entry."),
                    page._("Add one to the playbook file, or create a flow from a template."),
                )
            name = apply_play(flows_of(svc), play)
        except SegmentumError as exc:
            return render(page, "error.html", status=422, error=user_error(page, exc))
        target = f"/dashboard/flows/{name}?" + urlencode({"created": "playbook"})
        return RedirectResponse(target, status_code=303)


def playbook_for(svc: Service, dimension: str) -> list[Any]:
    """The playbook of one dimension, computed once per data date (it reads the warehouse:
    while a job holds it, the last one computed is used)."""
    from segmentum.campaigns.playbook import DIMENSIONS, playbook

    if dimension not in DIMENSIONS:
        return []
    memo: dict[Any, Any] = svc.__dict__.setdefault("playbook_memo", {})
    info = svc.serving.info() if svc.serving is not None and svc.serving.published else None
    key = (dimension, (info or {}).get("run_id"))
    if key not in memo:
        with contextlib.suppress(ApiProblem):
            memo[key] = svc.locked(lambda: playbook(svc.wh, dimensions=(dimension,))[0])
    if key in memo:
        return list(memo[key])
    stale = [v for (d, _), v in memo.items() if d == dimension]
    return list(stale[-1]) if stale else []


_CLASS_RULE = re.compile(
    r"^\s*(rfm_segment|value_potential|lifecycle_stage)\s*==\s*'((?:[^']|'')+)'\s*$"
)


def playbook_context(page: Any, svc: Service, rule: str) -> dict[str, Any] | None:
    """What the explorer shows beside a class segment (``rfm_segment == 'Champions'``, as the
    overview's charts link it): its playbook entry in the page's language, with numbers."""
    m = _CLASS_RULE.match(rule or "")
    if m is None:
        return None
    dimension, segment = m.group(1), m.group(2).replace("''", "'")
    try:
        plays = playbook_for(svc, dimension)
    except Exception:  # the playbook is an extra: the explorer works without it
        return None
    play = next((p for p in plays if p.segment == segment), None)
    if play is None:
        return None
    lang = page.lang
    return {
        "dimension": dimension,
        "segment": segment,
        "in_playbook": play.in_playbook,
        "tactic": play.tactic.get(lang, ""),
        "channel": page.label("channel", play.channel) if play.channel else "",
        "timing": play.timing.get(lang, ""),
        "message": play.message.get(lang, ""),
        "incentive": play.incentive_advice.get(lang, ""),
        "favours": ", ".join(str(f["category"]) for f in play.favours),
        "size": page.num(play.size),
        "value_at_stake": page.money(play.value_at_stake),
        "uplift": page.pct(play.uplift, 0),
        "template": template_for(play.tactic.get("en", "")),
        "admin": page.session is not None and "admin" in page.session.scopes,
    }
