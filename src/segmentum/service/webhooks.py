"""Webhook subscriptions over the API (admin scope): subscribe a URL to one segment's enter /
exit events, list them, unsubscribe. The dashboard's segment page offers the same.

The signing secret is in the answer to the subscription only (it is kept to sign, never listed).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from segmentum.service.core import Admin, Service

router = APIRouter(tags=["webhooks"])


class SubscriptionIn(BaseModel):
    url: str = Field(min_length=1, max_length=2000, examples=["https://crm.example.com/hooks"])
    since: _dt.date | None = Field(
        default=None,
        description="Send the changes computed after this date (default: from now on).",
    )


def _svc(request: Request) -> Service:
    svc: Service = request.app.state.svc
    return svc


@router.get("/v1/segments/{name}/webhooks")
def webhooks_list(request: Request, name: str, _: Admin) -> list[dict[str, Any]]:
    """The segment's subscriptions, oldest first, without secrets."""
    from segmentum.history.webhooks import subscriptions

    svc = _svc(request)
    return [s.public() for s in svc.locked(lambda: subscriptions(svc.wh, name))]


@router.post("/v1/segments/{name}/webhooks", status_code=201)
def webhooks_subscribe(
    request: Request, name: str, body: SubscriptionIn, _: Admin
) -> dict[str, Any]:
    """Subscribe ``url``; ``secret`` (for the ``X-Segmentum-Signature`` check) is in this
    answer only."""
    from segmentum.history.webhooks import subscribe

    svc = _svc(request)
    return svc.locked(lambda: subscribe(svc.wh, name, body.url, since=body.since)).public()


@router.delete("/v1/webhooks/{subscription_id}", status_code=204)
def webhooks_unsubscribe(request: Request, subscription_id: str, _: Admin) -> None:
    from segmentum.history.webhooks import unsubscribe

    svc = _svc(request)
    svc.locked(lambda: unsubscribe(svc.wh, subscription_id))
