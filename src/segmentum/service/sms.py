"""SMS delivery receipts over HTTP: providers call ``/v1/sms/receipts/{provider}``, and a
campaign's receipt counts are read at ``/v1/campaigns/{campaign}/sms-receipts``.

Providers cannot send an API key, so the receipt endpoint is open to anyone who knows its
secret: the ``token`` in its query string (``sms_receipt_secret``, set in the URL segmentum
gives the provider with every message). Twilio's requests are also checked against their
``X-Twilio-Signature`` (HMAC-SHA1 with the Auth Token over ``sms_receipt_url``). Receipts are
written to the service's SQLite state, never to the warehouse a pipeline job may hold; the next
send or results call folds them in (:func:`segmentum.campaigns.sms.fold_receipts`).
"""

from __future__ import annotations

import hmac
import json
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from segmentum.campaigns.sms import (
    PROVIDERS,
    ReceiptStore,
    parse_receipts,
    published_receipt_counts,
    receipt_counts,
    receipts_path,
    twilio_signature,
    waiting_receipts,
)
from segmentum.errors import InputError
from segmentum.service.core import ApiProblem, Read, Service

router = APIRouter(tags=["sms"])


def _svc(request: Request) -> Service:
    svc: Service = request.app.state.svc
    return svc


def _public_url(base: str, provider: str, query: str) -> str:
    """The URL the provider called, as configured (a proxy may have changed scheme or host)."""
    url = base.rstrip("/")
    if not url.endswith("/" + provider):
        url = f"{url}/{provider}"
    return url + (f"?{query}" if query else "")


@router.post("/v1/sms/receipts/{provider}", operation_id="sms_receipt_post")
async def sms_receipt(request: Request, provider: str) -> JSONResponse:
    """Store a provider's delivery receipt (JSON, form or query fields). Answers 200 with how
    many final statuses it held (intermediate ones, such as ``sent`` or ``buffered``, count
    0), 401 without the right ``token``, 403 with a wrong Twilio signature."""
    svc = _svc(request)
    settings = svc.settings
    if provider not in PROVIDERS:
        raise ApiProblem(404, "Not found", f"there is no SMS provider {provider!r}")
    if not settings.sms_receipt_secret:
        raise ApiProblem(
            409,
            "Not configured",
            "SMS receipts are off: sms_receipt_secret is not set",
            "set SEGMENTUM_SMS_RECEIPT_SECRET and sms_receipt_url (see docs/sms.md)",
        )
    token = request.query_params.get("token", "")
    if not hmac.compare_digest(token.encode(), settings.sms_receipt_secret.encode()):
        raise ApiProblem(401, "Unauthorized", "the receipt URL's token is missing or wrong")
    params: dict[str, Any] = dict(request.query_params)
    params.pop("token", None)
    payload: Any = None
    form: dict[str, str] = {}
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        raw = await request.body()
        if "json" in ctype:
            try:
                payload = json.loads(raw or b"null")
            except ValueError as exc:
                raise ApiProblem(422, "Invalid request", "the receipt is not valid JSON") from exc
        elif raw:
            form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace")))
            params.update(form)
    signature = request.headers.get("x-twilio-signature")
    if provider == "twilio" and signature is not None and settings.sms_password:
        url = _public_url(
            settings.sms_receipt_url or str(request.url).split("?")[0], provider, request.url.query
        )
        expected = twilio_signature(url, form, settings.sms_password)
        if not hmac.compare_digest(expected, signature):
            raise ApiProblem(403, "Forbidden", "the X-Twilio-Signature does not match")
    receipts = parse_receipts(provider, params, payload)
    if receipts:
        path = receipts_path(svc.url, settings)
        store = ReceiptStore(path, settings.busy_wait_seconds)
        await run_in_threadpool(store.add, receipts)
    return JSONResponse({"stored": len(receipts)})


# Some providers (Vonage, by default) report with a GET and the fields in the query.
router.add_api_route(
    "/v1/sms/receipts/{provider}", sms_receipt, methods=["GET"], operation_id="sms_receipt_get"
)


def _sms_campaign(cs: Any, key: str) -> Any:
    """The campaign ``key``; refused when it sends no SMS (it has no receipts to count)."""
    c = cs.get(key)
    if c.channel != "sms":
        raise InputError(
            f"campaign {c.name!r} sends by {c.channel}, not SMS: it has no delivery receipts",
            f"see its results: GET /v1/campaigns/{c.campaign_id}/results",
        )
    return c


@router.get("/v1/campaigns/{campaign}/sms-receipts")
def sms_receipt_counts(request: Request, campaign: str, _: Read) -> dict[str, Any]:
    """The campaign's sent SMS by their last receipt: delivered, failed, expired, no_receipt
    (receipts stored meanwhile are folded into the warehouse first; on Spark they are added
    to the statuses the last run published instead: a Spark job per request takes seconds)."""
    from segmentum.campaigns.core import Campaigns

    svc = _svc(request)

    def run() -> dict[str, Any]:
        cs = Campaigns(svc.wh, svc.settings)
        c = _sms_campaign(cs, campaign)
        folded = cs.fold_sms_receipts()
        return {
            "campaign_id": c.campaign_id,
            "folded": folded,
            "receipts": receipt_counts(svc.wh, c.campaign_id),
        }

    if svc.batch_engine and svc.serving is not None:
        svc.publish_own_changes()
        waiting = waiting_receipts(svc.url, svc.settings)

        def published(wh: Any) -> dict[str, Any] | None:
            c = _sms_campaign(Campaigns(wh, svc.settings), campaign)  # unknown: 404 here
            counts = published_receipt_counts(wh, c.campaign_id, waiting)
            if counts is None:
                return None
            return {"campaign_id": c.campaign_id, "folded": 0, "receipts": counts}

        stored = svc.serving.read(published)
        if stored is not None:
            return stored
    return svc.locked(run)
