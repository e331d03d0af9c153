"""Ad audiences from behaviour and value over the API (write scope, like the segment export):
retargeting audiences from events and look-alike seeds of the best customers by CLV.

Each answers the customer-match CSV, with the report (exported, dropped by reason) in the
``X-Segmentum-Report`` header, or with ``summary=true`` the report alone. The retargeting
answer's products file is ``GET ...&file=products``. Every file with customers in it is
recorded with the key that asked (:func:`record_download`), for ``segmentum forget``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from segmentum.service.core import ApiProblem, Service, Write

router = APIRouter(tags=["data"])
Platform = Annotated[str, Query(pattern="^(google|meta|tiktok)$")]
Region = Annotated[str | None, Query(pattern="^[A-Za-z]{2}$")]


def _svc(request: Request) -> Service:
    svc: Service = request.app.state.svc
    return svc


def record_download(
    request: Request,
    key_id: str,
    kind: str,
    customer_ids: Iterable[object],
    personal_data: bool = True,
    *,
    segment: str | None = None,
    platform: str | None = None,
) -> str | None:
    """Record that this request downloaded a file with these customers (API or dashboard), in
    the state store, for ``segmentum forget`` (docs/privacy.md); the download id."""
    svc = _svc(request)
    path = request.url.path
    return svc.state.record_download(
        key_id=key_id,
        via="dashboard" if path.startswith("/dashboard") else "api",
        endpoint=path,
        kind=kind,
        customer_ids=customer_ids,
        personal_data=personal_data,
        segment=segment,
        platform=platform,
        keep_days=svc.settings.download_retention_days,
    )


def csv_answer(text: str, report: dict[str, Any], name: str, summary: bool) -> Response:
    """An audience CSV with its report in ``X-Segmentum-Report``, or the report alone."""
    if summary:
        return JSONResponse(report)
    return PlainTextResponse(
        text,
        media_type="text/csv",
        headers={
            "X-Segmentum-Report": json.dumps(report),
            "Content-Disposition": f'attachment; filename="{name}.csv"',
        },
    )


@router.get("/v1/audiences/retargeting", response_model=None)
def retargeting_audience(
    request: Request,
    key: Write,
    kind: Annotated[str, Query(pattern="^(viewed|carted)$")] = "carted",
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
    platform: Platform = "meta",
    until: _dt.date | None = None,
    file: Annotated[str, Query(pattern="^(audience|products)$")] = "audience",
    summary: bool = False,
    region: Region = None,
) -> Response:
    """Customers who ``kind`` a product in the last ``days`` days (up to ``until``, default
    the latest event) without buying it, as a customer-match CSV; ``file=products`` gives the
    products instead (product_id, customers, last_event_at: no personal data)."""
    from segmentum.campaigns.adaudiences import export_retargeting

    svc = _svc(request)
    end = None if until is None else _dt.datetime.combine(until, _dt.time(23, 59, 59))

    def run() -> tuple[str, str, dict[str, Any], list[str]]:
        text, products, r = export_retargeting(
            svc.wh,
            kind,
            days,
            platform,
            svc.settings,
            until=end,
            default_region=region,
            write=False,
        )
        return text, products, r.to_dict(), r.customer_ids

    text, products, report, ids = svc.locked(run)
    name = f"retarget-{kind}-{days}d-{platform}"
    if file == "products":  # products and counts: nobody named
        return csv_answer(products, report, name + "-products", summary)
    if not summary:
        what = str(report["segment"])
        record_download(
            request, key.key_id, "retargeting audience", ids, segment=what, platform=platform
        )
    return csv_answer(text, report, name, summary)


@router.get("/v1/audiences/seed", response_model=None)
def seed_audience(
    request: Request,
    key: Write,
    top: Annotated[int | None, Query(ge=1)] = None,
    top_percent: Annotated[float | None, Query(gt=0, le=100)] = None,
    platform: Platform = "meta",
    summary: bool = False,
    region: Region = None,
) -> Response:
    """The ``top`` best customers by CLV (or the best ``top_percent`` %) as a look-alike seed;
    Meta's file carries the CLV as its ``value`` column (value-based look-alikes)."""
    from segmentum.campaigns.adaudiences import export_seed

    if (top is None) == (top_percent is None):
        raise ApiProblem(422, "Invalid request", "give either top or top_percent", "e.g. top=1000")
    svc = _svc(request)

    def run() -> tuple[str, dict[str, Any], list[str]]:
        text, r = export_seed(
            svc.wh,
            platform,
            svc.settings,
            top=top,
            top_percent=top_percent,
            default_region=region,
            write=False,
        )
        return text, r.to_dict(), r.customer_ids

    text, report, ids = svc.locked(run)
    if not summary:
        what = str(report["segment"])
        record_download(
            request, key.key_id, "look-alike seed", ids, segment=what, platform=platform
        )
    return csv_answer(text, report, str(report["segment"]) + f"-{platform}", summary)
