"""The events API: ``POST /v1/events`` (a key with the ``track`` scope) records what customers
do, re-evaluates their live segments at once, and queues the enter / exit webhooks, which a
background thread of the service sends (:mod:`segmentum.realtime.deliver`).

Pages send events from the browser with ``/static/segmentum-track.js`` and a key that can only
track; the ``track_origins`` setting names the sites allowed to (CORS). ``GET /v1/realtime``
(read scope) says which segments run live, and how full the queues are.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from segmentum.config import Settings
from segmentum.errors import SegmentumError
from segmentum.realtime.deliver import Worker
from segmentum.realtime.engine import Engine
from segmentum.realtime.events import batch_of, check_events
from segmentum.realtime.store import RealtimeStore, get_meta
from segmentum.service.auth import ApiKey
from segmentum.service.core import (
    PROBLEM,
    ApiProblem,
    Read,
    Service,
    require,
    translated,
    wants_spanish,
)
from segmentum.warehouse import connect

router = APIRouter(tags=["events"])
Track = Annotated[ApiKey, Depends(require("track"))]
# A generous ceiling per event (4 KB of properties and the fields around them).
BYTES_PER_EVENT = 8192


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.realtime
    return engine


def _cors(request: Request, settings: Settings) -> dict[str, str]:
    """The CORS headers for a page's request, or 403 for a page on a site not allowed."""
    origin = request.headers.get("origin")
    if origin is None:  # a server, not a browser
        return {}
    allowed = {o.strip().rstrip("/") for o in settings.track_origins.split(",") if o.strip()}
    if origin.rstrip("/") not in allowed and "*" not in allowed:
        raise ApiProblem(
            403,
            "Forbidden",
            f"pages on {origin} may not send events",
            "add the site to the track_origins setting (e.g. https://shop.example.com)",
        )
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@router.options("/v1/events", include_in_schema=False)
def events_preflight(request: Request) -> Response:
    """The browser's CORS preflight: allowed for the ``track_origins`` sites only."""
    headers = _cors(request, _engine(request).settings)
    headers.update(
        {
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "content-type, x-api-key",
            "Access-Control-Max-Age": "600",
        }
    )
    return Response(status_code=204, headers=headers)


@router.post("/v1/events")
async def events_track(request: Request, _: Track) -> JSONResponse:
    """Record one event or a batch (``{"events": [...]}``, at most ``realtime_batch_max``).

    Each event: ``event_type`` and ``customer_id`` or ``anonymous_id``; optional ``event_id``
    (a repeated id is stored once), ``timestamp`` (ISO 8601 with its offset; default now),
    ``product_id``, ``amount``, ``invoice_id`` (required on a ``purchase``), ``properties``
    (a small JSON object), ``device``, ``channel``, ``campaign_id``. A batch with any invalid
    event is refused whole (422), every problem named by the event's index and field.
    The answer counts what was accepted and lists the segment transitions it caused.
    """
    engine = _engine(request)
    settings = engine.settings
    cors = _cors(request, settings)
    limit = settings.realtime_batch_max
    body = await request.body()
    if len(body) > limit * BYTES_PER_EVENT:
        raise ApiProblem(
            413,
            "Too large",
            f"the request is larger than {limit * BYTES_PER_EVENT // 1024:,} KB",
            "send smaller batches",
            cors,
        )
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(
            422,
            "Invalid events",
            f"the body is not JSON: {str(exc)[:120]}",
            'send {"events": [{"event_type": "page_view", "customer_id": "C1"}]}',
            cors,
        ) from exc
    try:
        events = batch_of(payload, limit)
    except ValueError as exc:
        status = 413 if "at most" in str(exc) else 422
        raise ApiProblem(status, "Invalid events", str(exc), "send smaller batches", cors) from exc
    rows, problems = check_events(events, timezone=settings.timezone, earliest=_earliest(settings))
    if problems:
        n = len({p.index for p in problems})
        spanish = wants_spanish(request.headers.get("accept-language"))
        detail, hint = translated(
            spanish,
            f"{n:,} of {len(events):,} events have problems; nothing was stored",
            "fix them and send the batch again (an event_id already stored is counted once)",
        )
        errors = [p.to_dict() for p in problems[:100]]
        for e in errors:
            e["message"], e["hint"] = translated(spanish, e["message"], e["hint"])
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Invalid events",
                "status": 422,
                "detail": detail,
                "hint": hint,
                "errors": errors,
            },
            status_code=422,
            media_type=PROBLEM,
            headers=cors,
        )
    try:
        result = await run_in_threadpool(engine.track, rows)
    except sqlite3.OperationalError as exc:  # another process held the store past busy_seconds
        raise ApiProblem(
            503,
            "Busy",
            f"the event store is busy ({exc})",
            "send the batch again in a second: its event ids keep it from counting twice",
            {**cors, "Retry-After": "1"},
        ) from exc
    return JSONResponse(result.to_dict(), headers=cors)


@router.get("/v1/realtime", tags=["segments"])
def realtime_status(request: Request, _: Read) -> dict[str, Any]:
    """Which saved segments run live (and why the others do not), the last event, the queue
    of events waiting for the next pipeline run, and the webhook outbox."""
    out = _engine(request).store.status()
    out["worker_running"] = request.app.state.realtime_worker.running
    return out


def _earliest(settings: Settings) -> Any:
    import datetime as _dt

    try:
        return _dt.date.fromisoformat(str(settings.earliest_date))
    except ValueError:
        return _dt.date(1990, 1, 1)


def mount_events(app: FastAPI, svc: Service) -> None:
    """Add the events API to ``app``: the engine, and the worker thread that runs while the
    app is served."""
    from segmentum.realtime.sync import sync

    settings = svc.settings
    store = RealtimeStore.for_warehouse(svc.url, settings)
    engine = Engine(store, svc.serving, settings)
    worker = Worker(
        engine,
        retry_seconds=settings.realtime_retry_seconds,
        max_attempts=settings.realtime_max_attempts,
    )
    app.state.realtime = engine
    app.state.realtime_worker = worker
    inner = app.router.lifespan_context

    def first_sync() -> None:
        # A warehouse published before the live side existed: mirror its segments and
        # subscriptions once (skipped while a command holds it: the next publish does it).
        with store.connect() as con:
            if get_meta(con, "segments_version") is not None:
                return
        if svc.batch_engine:
            return  # Spark: the run's publish mirrors them; a start-up must not start Spark
        if not svc.per_use:
            with contextlib.suppress(ApiProblem, SegmentumError):
                svc.locked(lambda: sync(svc.wh, settings, store=store))
            return
        try:
            wh = connect(svc.url, memory_limit=settings.memory_limit, lock_wait=0)
        except SegmentumError:
            return
        try:
            with contextlib.suppress(SegmentumError):
                sync(wh, settings, store=store)
        finally:
            wh.close()

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        await run_in_threadpool(first_sync)
        worker.start()
        try:
            async with inner(a) as state:
                yield state
        finally:
            await run_in_threadpool(worker.stop)

    app.router.lifespan_context = lifespan
    app.include_router(router)
