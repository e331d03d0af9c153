"""The dashboard's admin pages: API keys (list, create with scopes, revoke) and webhook
subscriptions of a segment. Admin sessions only; every form carries the session's CSRF token.

Keys go through the same functions as ``/v1/keys`` (:mod:`.auth`); a new key is shown once, in
the answer to the form that made it, and never put in a URL or a cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from segmentum.errors import SegmentumError
from segmentum.service.auth import SCOPES, Session, create_key, list_keys, revoke_key
from segmentum.service.dashboard import Page, checked_form, render, user_error


def mount(
    app: FastAPI,
    svc: Any,
    page_or_login: Callable[[Request], Page | RedirectResponse],
    csrf_ok: Callable[[Request, Session, str | None], bool],
) -> None:
    def admin_page(request: Request) -> Page | Response:
        """The page for an admin session; a sign-in for none; a 403 page for other keys."""
        page = page_or_login(request)
        if not isinstance(page, Page):
            return page
        if page.session is None or "admin" not in page.session.scopes:
            err = {"message": page._("Only an admin key can do this."), "hint": ""}
            return render(page, "error.html", status=403, error=err)
        return page

    def keys_context(page: Page, **extra: Any) -> dict[str, Any]:
        assert page.session is not None
        rows = [
            {
                "id": r["key_id"],
                "name": r["name"],
                "scopes": ", ".join(page.label("scope", x) for x in r["scopes"].split(",")),
                "created": page.date(r["created_at"]),
                "revoked": page.date(r["revoked_at"]) if r["revoked"] else "",
                "own": r["key_id"] == page.session.key_id,
            }
            for r in list_keys(svc.state)
        ]
        return {
            "current": "keys",
            "keys": rows,
            "scopes": [(s, page.label("scope", s)) for s in SCOPES],
            **extra,
        }

    # ------------------------------------------------------------------ API keys
    @app.get("/dashboard/keys", include_in_schema=False)
    def keys_page(request: Request, revoked: str = "") -> Response:
        page = admin_page(request)
        if not isinstance(page, Page):
            return page
        return render(page, "keys.html", **keys_context(page, revoked=revoked))

    @app.post("/dashboard/keys", include_in_schema=False)
    async def keys_create(request: Request) -> Response:
        got = await checked_form(request, admin_page(request), csrf_ok)
        if not isinstance(got, tuple):
            return got
        page, form = got
        assert page.session is not None
        name = str(form.get("name", "")).strip()[:200]
        scopes = [str(s) for s in form.getlist("scopes") if str(s) in SCOPES]
        try:
            if not scopes:
                raise SegmentumError(
                    page._("Choose at least one scope."),
                    page._("read: look up; write: save segments and send; admin: manage keys"),
                )
            key = create_key(svc.state, name, scopes)
        except SegmentumError as exc:
            ctx = keys_context(page, form_error=user_error(page, exc), form={"name": name})
            return render(page, "keys.html", status=422, **ctx)
        # Shown in this answer only: it is stored hashed and cannot be shown again.
        made = {"key": key, "name": name, "id": key.split("_")[1]}
        return render(page, "keys.html", status=201, **keys_context(page, made=made))

    @app.post("/dashboard/keys/{key_id}/revoke", include_in_schema=False)
    async def keys_revoke(request: Request, key_id: str) -> Response:
        got = await checked_form(request, admin_page(request), csrf_ok)
        if not isinstance(got, tuple):
            return got
        page = got[0]
        assert page.session is not None
        try:
            if key_id == page.session.key_id:
                raise SegmentumError(
                    page._("You cannot revoke the key you are signed in with."),
                    page._("Sign in with another admin key to revoke this one."),
                )
            revoke_key(svc.state, key_id)
        except SegmentumError as exc:
            ctx = keys_context(page, form_error=user_error(page, exc))
            return render(page, "keys.html", status=409, **ctx)
        return RedirectResponse("/dashboard/keys?" + urlencode({"revoked": key_id}), 303)

    # ------------------------------------------------------------------ webhooks
    @app.post("/dashboard/segments/{name}/webhooks", include_in_schema=False)
    async def webhook_subscribe(request: Request, name: str) -> Response:
        from segmentum.history.webhooks import subscribe
        from segmentum.service.dashboard_pages import explorer_context

        got = await checked_form(request, admin_page(request), csrf_ok)
        if not isinstance(got, tuple):
            return got
        page, form = got
        assert page.session is not None
        url = str(form.get("url", "")).strip()[:2000]

        def run() -> dict[str, Any]:
            try:
                sub = subscribe(svc.wh, name, url)
                extra: dict[str, Any] = {
                    "new_webhook": {"url": sub.url, "secret": sub.secret, "id": sub.subscription_id}
                }
            except SegmentumError as exc:
                extra = {"webhook_error": user_error(page, exc), "webhook_url": url}
            return {**explorer_context(page, svc, name, ""), **extra}

        ctx = svc.locked(run)
        status = 201 if "new_webhook" in ctx else 422
        return render(page, "explorer.html", status=status, current="explorer", **ctx)

    @app.post("/dashboard/segments/{name}/webhooks/{sub_id}/delete", include_in_schema=False)
    async def webhook_unsubscribe(request: Request, name: str, sub_id: str) -> Response:
        from segmentum.history.webhooks import unsubscribe

        got = await checked_form(request, admin_page(request), csrf_ok)
        if not isinstance(got, tuple):
            return got
        page = got[0]
        assert page.session is not None
        try:
            svc.locked(lambda: unsubscribe(svc.wh, sub_id))
        except SegmentumError as exc:
            return render(page, "error.html", status=404, error=user_error(page, exc))
        target = "/dashboard/explorer?" + urlencode({"segment": name}) + "#webhooks"
        return RedirectResponse(target, 303)
