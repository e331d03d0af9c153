"""The unsubscribe page every email links to (``unsubscribe_url``), and its one-click POST.

Public like the SMS receipt endpoint: a recipient has no API key. The link carries the
customer's id and its signature (:mod:`segmentum.campaigns.unsubscribe`), so nobody can
unsubscribe another person by editing the id. ``GET`` only shows the page with a button: mail
scanners open every link of a message, and must not unsubscribe anybody; the button, and the
one-click ``POST`` mail programs send (RFC 8058), record it. It is written to the service's
state file at once (a run may hold the warehouse), sent to the automated flows as an
``unsubscribe`` event (they stop mailing the customer), and copied into ``suppressions`` by the
next email send.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from segmentum import i18n
from segmentum.campaigns import unsubscribe as unsub
from segmentum.service.core import Service
from segmentum.service.dashboard import ENV, language

router = APIRouter(tags=["campaigns"])


def _svc(request: Request) -> Service:
    svc: Service = request.app.state.svc
    return svc


def _page(request: Request, state: str, customer: str = "", token: str = "") -> HTMLResponse:
    lang = language(request)
    t = i18n.translations(lang)
    html = ENV.get_template("unsubscribe.html").render(
        lang=lang, _=t.ugettext, state=state, customer=customer, token=token
    )
    status = 400 if state == "invalid" else 200
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _store(svc: Service) -> unsub.UnsubscribeStore:
    path = unsub.store_path(svc.url, svc.settings)
    return unsub.UnsubscribeStore(path, svc.settings.busy_wait_seconds)


@router.api_route(
    "/v1/unsubscribe", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
)
def unsubscribe_page(request: Request, c: str = "", t: str = "") -> HTMLResponse:
    """The page the link opens: a button to confirm (nothing is recorded yet)."""
    store = _store(_svc(request))
    if not unsub.valid(store.secret(), c, t):
        return _page(request, "invalid")
    if store.has(c):
        return _page(request, "done")
    return _page(request, "ask", c, t)


@router.post("/v1/unsubscribe", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_post(request: Request) -> HTMLResponse:
    """The page's button, or a mail program's one-click POST (``c`` and ``t`` in the URL)."""
    svc = _svc(request)
    fields: dict[str, Any] = dict(request.query_params)
    with contextlib.suppress(Exception):  # a one-click body or the page's form
        fields.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
    customer, token = str(fields.get("c") or ""), str(fields.get("t") or "")
    store = _store(svc)
    if not unsub.valid(store.secret(), customer, token):
        return _page(request, "invalid")
    if await run_in_threadpool(store.add, customer):
        engine = getattr(request.app.state, "realtime", None)
        if engine is not None:  # the flows stop mailing them now, not at the next send
            from segmentum.realtime.events import check_events

            rows, problems = check_events(
                [{"event_type": "unsubscribe", "customer_id": customer, "channel": "email"}]
            )
            if not problems:
                await run_in_threadpool(engine.track, rows)
    return _page(request, "done")
