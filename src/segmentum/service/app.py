"""The REST service (FastAPI): API keys, problem-details errors, and the dashboard.

Run it with ``segmentum serve`` (uvicorn on 127.0.0.1:8000). Every endpoint but ``/health``
needs an API key (header ``X-API-Key`` or ``Authorization: Bearer``, or the dashboard's
cookie), with the scope the endpoint names. Errors are ``application/problem+json``
(RFC 9457): ``type``, ``title``, ``status``, ``detail`` and, for user mistakes, a ``hint``.

The warehouse connection is shared: writes and Ibis queries take a lock; the customer lookup
runs a parameterised SQL query on a per-thread DuckDB cursor, so lookups run in parallel.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import threading
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from segmentum.config import Settings, load_settings
from segmentum.errors import ConfigError, SegmentumError, WarehouseError
from segmentum.schema import INGESTIBLE
from segmentum.service.auth import ApiKey, KeyRing
from segmentum.warehouse import Warehouse, connect

PROBLEM = "application/problem+json"


class ApiProblem(Exception):
    def __init__(self, status: int, title: str, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.hint = status, title, detail, hint


def problem(status: int, title: str, detail: str, hint: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


class SegmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=63)
    rule: str = Field(min_length=1, max_length=4000)
    description: str = Field(default="", max_length=1000)
    level: str = Field(default="customer", pattern="^(customer|account)$")


class RuleIn(BaseModel):
    rule: str = Field(min_length=1, max_length=4000)


class CampaignIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    tactic: str
    channel: str
    target: str = ""
    control_share: float | None = Field(default=None, ge=0, lt=1)
    cost_per_contact: float = Field(default=0.0, ge=0)


def require(scope: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency that admits a request with a valid key carrying ``scope``."""

    async def dep(request: Request) -> ApiKey:
        svc: Service = request.app.state.svc
        key = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if not key and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        key = key or request.cookies.get("segmentum_key")
        found = svc.keys.verify(key)
        if found is None:
            raise ApiProblem(
                401,
                "Unauthorized",
                "a valid API key is required",
                "send it as X-API-Key; create one with: segmentum api-key create",
            )
        if scope not in found.scopes:
            raise ApiProblem(403, "Forbidden", f"this key lacks the {scope!r} scope")
        return found

    return dep


Read = Annotated[ApiKey, Depends(require("read"))]
Write = Annotated[ApiKey, Depends(require("write"))]


class Service:
    """State shared by the endpoints: the warehouse, its lock, the key ring, jobs."""

    def __init__(self, wh: Warehouse, settings: Settings) -> None:
        self.wh = wh
        self.settings = settings
        self.lock = threading.RLock()
        self._local = threading.local()
        self.keys = KeyRing(wh, self._fetch_keys)
        self.jobs: dict[str, dict[str, Any]] = {}

    def cursor(self) -> Any:
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self.wh.con.con.cursor()
            self._local.cur = cur
        return cur

    def _fetch_keys(self) -> list[dict[str, Any]]:
        """Keys read on this thread's own cursor: never waits for a long job's lock."""
        cur = self.cursor()
        found = cur.execute(
            "select count(*) from information_schema.tables where table_name = 'api_keys'"
        ).fetchone()
        if not found or not found[0]:
            return []
        res = cur.execute("select key_id, name, secret_sha256, scopes, revoked from api_keys")
        cols = [d[0] for d in res.description]
        return [dict(zip(cols, row, strict=True)) for row in res.fetchall()]

    def locked(self, fn: Callable[[], Any]) -> Any:
        with self.lock:
            return fn()


def create_app(
    warehouse: Warehouse | str | None = None, settings: Settings | None = None
) -> FastAPI:
    settings = settings or load_settings()
    wh = (
        warehouse
        if isinstance(warehouse, Warehouse)
        else connect(warehouse or settings.warehouse, memory_limit=settings.memory_limit)
    )
    svc = Service(wh, settings)
    app = FastAPI(
        title="segmentum",
        version="0.1.0",
        description="Customer segmentation and classification: REST API. Every endpoint but "
        "/health needs an API key (X-API-Key header) with the scope it names.",
    )
    app.state.svc = svc

    # ------------------------------------------------------------------ errors
    @app.exception_handler(ApiProblem)
    async def _api_problem(_: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.hint)

    @app.exception_handler(SegmentumError)
    async def _user_error(_: Request, exc: SegmentumError) -> JSONResponse:
        if isinstance(exc, WarehouseError):
            return problem(409, "Not available yet", exc.message, exc.hint)
        if isinstance(exc, ConfigError):
            return problem(409, "Not configured", exc.message, exc.hint)
        status = 404 if "there is no" in exc.message else 422
        return problem(status, "Cannot do that", exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return problem(422, "Invalid request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "Error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        traceback.print_exception(exc)
        return problem(500, "Internal error", type(exc).__name__)

    def as_of_param(value: str | None) -> _dt.date | None:
        if value is None:
            return None
        try:
            return _dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ApiProblem(422, "Invalid request", f"as_of {value!r} is not a date") from exc

    # ------------------------------------------------------------------ endpoints
    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/overview", tags=["overview"])
    def overview(_: Read) -> dict[str, Any]:
        from segmentum.precompute import overview as q

        return svc.locked(lambda: q(wh))

    @app.get("/v1/customers/{customer_id}", tags=["customers"])
    async def customer(customer_id: str, _: Read) -> dict[str, Any]:
        # An indexed point query of about a millisecond: cheaper on the event loop than a
        # hop to the thread pool.
        from segmentum.precompute import customer_lookup

        found = customer_lookup(svc, customer_id)
        if found is None:
            raise ApiProblem(404, "Not found", f"there is no customer {customer_id!r}")
        return found

    @app.get("/v1/segments", tags=["segments"])
    def segments_list(_: Read) -> list[dict[str, Any]]:
        from segmentum.segments.store import Segments

        return [s.__dict__ for s in svc.locked(lambda: Segments(wh, settings).list())]

    @app.post("/v1/segments", tags=["segments"], status_code=201)
    def segments_create(body: SegmentIn, _: Write) -> dict[str, Any]:
        from segmentum.segments.store import Segments

        seg = svc.locked(
            lambda: Segments(wh, settings).create(
                body.name, body.rule, body.description, body.level
            )
        )
        return seg.__dict__

    @app.delete("/v1/segments/{name}", tags=["segments"], status_code=204)
    def segments_delete(name: str, _: Write) -> None:
        from segmentum.segments.store import Segments

        svc.locked(lambda: Segments(wh, settings).delete(name))

    @app.post("/v1/segments/preview", tags=["segments"])
    def segments_preview(body: RuleIn, _: Read) -> dict[str, Any]:
        from segmentum.segments.store import Segments

        return svc.locked(lambda: Segments(wh, settings).preview(body.rule).to_dict())

    @app.get("/v1/segments/{name}/members", tags=["segments"])
    def segments_members(
        name: str, _: Read, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> dict[str, Any]:
        from segmentum.segments.store import Segments

        def run() -> dict[str, Any]:
            m = Segments(wh, settings).members(name)
            ids = m.order_by("customer_id").limit(limit).customer_id.to_pyarrow().to_pylist()
            return {"segment": name, "size": int(m.count().to_pyarrow().as_py()), "members": ids}

        return svc.locked(run)

    @app.get("/v1/segments/{name}/profile", tags=["segments"])
    def segments_profile(name: str, _: Read) -> dict[str, Any]:
        from segmentum.segments.discover import profile_labels, segment_labels

        return svc.locked(lambda: profile_labels(wh, segment_labels(wh, name), "segment").to_dict())

    @app.get("/v1/micro-segments", tags=["segments"])
    def micro(
        _: Read,
        dimensions: Annotated[str, Query(max_length=300)] = "value_tier,region,city",
        min_size: Annotated[int, Query(ge=1, le=1_000_000)] = 50,
    ) -> dict[str, Any]:
        from segmentum.segments.micro import micro_segments

        dims = [d.strip() for d in dimensions.split(",") if d.strip()]
        return svc.locked(
            lambda: micro_segments(wh, dims, min_size=min_size, store=False).to_dict()
        )

    @app.get("/v1/migration", tags=["history"])
    def migration_(
        _: Read,
        date_from: Annotated[str, Query(alias="from")],
        date_to: Annotated[str, Query(alias="to")],
        by: str = "rfm_segment",
    ) -> dict[str, Any]:
        from segmentum.history.migration import migration

        a, b = as_of_param(date_from), as_of_param(date_to)
        assert a is not None and b is not None
        return svc.locked(lambda: migration(wh, a, b, by).to_dict())

    @app.get("/v1/campaigns", tags=["campaigns"])
    def campaigns_list(_: Read) -> list[dict[str, Any]]:
        from segmentum.campaigns.core import Campaigns

        rows = svc.locked(lambda: Campaigns(wh, settings).list())
        return [{k: v for k, v in c.__dict__.items() if k != "template"} for c in rows]

    @app.post("/v1/campaigns", tags=["campaigns"], status_code=201)
    def campaigns_create(body: CampaignIn, _: Write) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        c = svc.locked(
            lambda: Campaigns(wh, settings).create(
                body.name,
                body.tactic,
                body.channel,
                target=body.target,
                control_share=body.control_share,
                cost_per_contact=body.cost_per_contact,
            )
        )
        return {k: v for k, v in c.__dict__.items() if k != "template"}

    @app.get("/v1/campaigns/{campaign}/audience", tags=["campaigns"])
    def campaigns_audience(
        campaign: str, _: Read, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        def run() -> dict[str, Any]:
            cs = Campaigns(wh, settings)
            aud = cs.audience(cs.get(campaign))
            rows = aud.order_by(aud.priority.desc()).limit(limit).to_pyarrow().to_pylist()
            return {"size": int(aud.count().to_pyarrow().as_py()), "top": rows}

        return svc.locked(run)

    @app.post("/v1/campaigns/{campaign}/dry-run", tags=["campaigns"])
    def campaigns_dry_run(campaign: str, _: Read) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        def run() -> dict[str, Any]:
            cs = Campaigns(wh, settings)
            return cs.dry_run(cs.get(campaign))

        return svc.locked(run)

    @app.post("/v1/campaigns/{campaign}/send", tags=["campaigns"])
    def campaigns_send(campaign: str, _: Write, immediately: bool = False) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        def run() -> dict[str, Any]:
            cs = Campaigns(wh, settings)
            return cs.send(cs.get(campaign), immediately=immediately).__dict__

        return svc.locked(run)

    @app.get("/v1/campaigns/{campaign}/results", tags=["campaigns"])
    def campaigns_results(campaign: str, _: Read) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns
        from segmentum.campaigns.measure import results

        def run() -> dict[str, Any]:
            cs = Campaigns(wh, settings)
            c = cs.get(campaign)
            return results(wh, c.campaign_id, settings, c.cost_per_contact).to_dict()

        return svc.locked(run)

    @app.get("/v1/web-message", tags=["campaigns"])
    def web_message(
        _: Read, visitor: Annotated[str, Query(min_length=1, max_length=200)]
    ) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        return svc.locked(lambda: Campaigns(wh, settings).web_message(visitor)) or {}

    @app.post("/v1/ingest/{table}", tags=["data"])
    def ingest_file(
        table: str, _: Write, file: Annotated[UploadFile, File()]
    ) -> list[dict[str, Any]]:
        from segmentum.ingest import ingest

        if table not in INGESTIBLE:
            raise ApiProblem(
                404, "Not found", f"there is no table {table!r}", "use " + ", ".join(INGESTIBLE)
            )
        name = Path(file.filename or "upload.csv").name
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(file.file.read())
            reports = svc.locked(lambda: ingest(table, path, warehouse=wh, settings=settings))
        return [r.to_dict() for r in reports]

    @app.post("/v1/jobs/pipeline", tags=["jobs"], status_code=202)
    def run_pipeline(_: Write) -> dict[str, Any]:
        from segmentum import pipeline

        job_id = uuid.uuid4().hex[:12]
        job: dict[str, Any] = {"job_id": job_id, "status": "running", "steps": []}
        svc.jobs[job_id] = job

        class Recorder:
            def step(self, name: str, detail: str = "") -> None:
                job["steps"].append(name)

        def work() -> None:
            try:
                s = svc.locked(lambda: pipeline.run(wh, settings=settings, progress=Recorder()))
                job.update(status="done", summary=s.to_dict())
            except Exception as exc:  # a failed run is reported, never silent
                job.update(
                    status="failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc)
                )

        threading.Thread(target=work, daemon=True).start()
        return job

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    def job_status(job_id: str, _: Read) -> dict[str, Any]:
        if job_id not in svc.jobs:
            raise ApiProblem(404, "Not found", f"there is no job {job_id!r}")
        return svc.jobs[job_id]

    @app.get("/v1/exports/segments/{name}.csv", tags=["data"], response_class=PlainTextResponse)
    def export_segment(name: str, _: Read) -> PlainTextResponse:
        from segmentum.segments.store import Segments

        def run() -> str:
            m = Segments(wh, settings).members(name)
            cols = ["customer_id"]
            if settings.export_personal_data and wh.has("customers"):
                c = wh.table("customers").select("customer_id", "first_name", "email", "phone")
                m = m.left_join(c, "customer_id").drop("customer_id_right")
                cols = ["customer_id", "first_name", "email", "phone"]
            return m.select(*cols).order_by("customer_id").to_pandas().to_csv(index=False)

        return PlainTextResponse(svc.locked(run), media_type="text/csv")

    from segmentum.service.dashboard import mount_dashboard

    mount_dashboard(app, svc)
    return app
