"""The REST service (FastAPI): API keys, problem-details errors, jobs, and the dashboard.

Run it with ``segmentum serve`` (uvicorn on 127.0.0.1:8000). Every endpoint but ``/health``
needs an API key (header ``X-API-Key`` or ``Authorization: Bearer``, or a dashboard session),
with the scope the endpoint names. Errors are ``application/problem+json`` (RFC 9457):
``type``, ``title``, ``status``, ``detail`` and, for user mistakes, a ``hint``.

The server never holds a DuckDB warehouse open between requests (see :mod:`.core`), so every
CLI command works beside it; pipeline runs and uploads run as jobs in their own process
(:mod:`.jobs`).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
import tempfile
import traceback
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, File, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from segmentum import i18n
from segmentum.config import Settings, load_settings
from segmentum.errors import (
    ConfigError,
    SegmentumError,
    StoreUnreachableError,
    WarehouseBusyError,
    WarehouseError,
)
from segmentum.precompute import CACHE
from segmentum.schema import INGESTIBLE
from segmentum.service.core import (
    PROBLEM,
    ApiProblem,
    Read,
    Service,
    Write,
    busy,
    problem,
    translated,
    wants_spanish,
)
from segmentum.warehouse import Warehouse

T = TypeVar("T")

__all__ = ["PROBLEM", "ApiProblem", "Service", "create_app", "problem"]


class SegmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=63)
    rule: str = Field(min_length=1, max_length=4000)
    description: str = Field(default="", max_length=1000)
    level: str = Field(default="customer", pattern="^(customer|account)$")


class RuleIn(BaseModel):
    rule: str = Field(min_length=1, max_length=4000)
    #: What the rule describes: an account rule is previewed as its accounts' customers.
    level: Literal["customer", "account"] = "customer"


class SegmentEdit(BaseModel):
    """What ``PATCH /v1/segments/{name}`` changes: the rule, the description or both."""

    rule: str | None = Field(default=None, min_length=1, max_length=4000)
    description: str | None = Field(default=None, max_length=1000)


class CampaignIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    tactic: str
    channel: str
    target: str = ""
    control_share: float | None = Field(default=None, ge=0, lt=1)
    cost_per_contact: float = Field(default=0.0, ge=0)


def upload_name(filename: str | None) -> str:
    """The uploaded file's own name, or a 400 for one that is empty, ``.``, ``..``, a path, or
    carries control characters (it becomes a file name on the server)."""
    name = (filename or "").strip()
    if (
        not name
        or name in (".", "..")
        or Path(name).name != name
        or any(c in name for c in "/\\:")
        or any(ord(c) < 32 for c in name)
        or len(name) > 255
    ):
        raise ApiProblem(
            400,
            "Bad file name",
            f"the file name {name!r} cannot be used",
            "upload the file under its own name, like ventas.csv (no folders)",
        )
    return name


def save_upload(file: UploadFile, folder: Path, max_bytes: int) -> Path:
    """Copy the upload into ``folder`` under its checked name; 413 past ``max_bytes``."""
    path = folder / upload_name(file.filename)
    written = 0
    with path.open("wb") as out:
        while chunk := file.file.read(1 << 20):
            written += len(chunk)
            if written > max_bytes:
                raise ApiProblem(
                    413,
                    "File too large",
                    f"the file is larger than {max_bytes // (1 << 20)} MB",
                    "split it, or raise the upload_max_mb setting",
                )
            out.write(chunk)
    return path


def _json_scalar(v: Any) -> Any:
    """What ``json.dumps`` cannot write itself in a lookup row (PostgreSQL decimals, times)."""
    if isinstance(v, Decimal):
        return float(v)
    return str(v)


class _BodyLimit:
    """Refuses a body announced as too large (413) before reading a byte of it.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` wraps every request in a
    task group and a stream copy, which cost more than a whole customer lookup.
    """

    def __init__(self, app: Any, max_bytes: int, max_mb: int) -> None:
        self.app, self.max_bytes, self.max_mb = app, max_bytes, max_mb

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            size = headers.get(b"content-length", b"")
            if size.isdigit() and int(size) > self.max_bytes:
                response = problem(
                    413,
                    "File too large",
                    *translated(
                        wants_spanish(headers.get(b"accept-language")),
                        f"the request is larger than {self.max_mb} MB",
                        "split the file, or raise the upload_max_mb setting",
                    ),
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _validation_hint(error: Mapping[str, Any]) -> str:
    """What to send instead of a value the schema refuses: the values a closed list allows
    (a pattern such as ``^(all|segment)$``, a literal), else where the parameters are."""
    ctx = error.get("ctx") or {}
    choices = re.fullmatch(r"\^\(([\w|-]+)\)\$", str(ctx.get("pattern", "")))
    if choices:
        return f"use one of: {', '.join(choices.group(1).split('|'))}"
    if ctx.get("expected"):
        return f"use one of: {ctx['expected']}"
    return "see the parameters it takes: /docs"


def create_app(
    warehouse: Warehouse | str | None = None, settings: Settings | None = None
) -> FastAPI:
    """The service for ``warehouse`` (a URL, the setting by default, or an open warehouse)."""
    settings = settings or load_settings()
    svc = Service(warehouse or settings.warehouse, settings)
    svc.prepare()
    app = FastAPI(
        title="segmentum",
        version="0.1.0",
        description="Customer segmentation and classification: REST API. Every endpoint but "
        "/health needs an API key (X-API-Key header) with the scope it names.",
        # FastAPI's own pages load Swagger UI from a CDN and need no key: ours are in .docs.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.svc = svc
    max_upload = settings.upload_max_mb * (1 << 20)

    app.add_middleware(_BodyLimit, max_bytes=max_upload + (1 << 16), max_mb=settings.upload_max_mb)

    # ------------------------------------------------------------------ errors
    def _error_page(request: Request, exc: ApiProblem) -> Response:
        """A problem met by a dashboard page (the warehouse busy past the wait), as a page in
        its language with the same status and headers, not the API's JSON."""
        from segmentum.service.dashboard import Page, render

        page = Page(request, svc, None)
        detail, hint = translated(page.lang == "es", exc.detail, exc.hint)
        said = {"message": detail, "hint": hint}
        resp = render(page, "error.html", status=exc.status, error=said)
        resp.headers.update(exc.headers or {})
        return resp

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> Response:
        if request.method == "GET" and request.url.path.startswith("/dashboard"):
            return _error_page(request, exc)
        # As a user error: the detail and hint in Spanish when asked for, the title the same.
        spanish = wants_spanish(request.headers.get("accept-language"))
        return problem(
            exc.status, exc.title, *translated(spanish, exc.detail, exc.hint), exc.headers
        )

    @app.exception_handler(SegmentumError)
    async def _user_error(request: Request, exc: SegmentumError) -> Response:
        # The detail and hint in Spanish when the client asks for it (Accept-Language: es);
        # the title stays the same in every language, for programs to match on.
        spanish = wants_spanish(request.headers.get("accept-language"))
        if isinstance(exc, WarehouseBusyError):
            b = busy(settings.busy_wait_seconds)
            if request.method == "GET" and request.url.path.startswith("/dashboard"):
                return _error_page(request, b)
            return problem(b.status, b.title, *translated(spanish, b.detail, b.hint), b.headers)
        detail, hint = exc.message, exc.hint
        if spanish:  # a rule's error: its first line is the message, the rule and caret follow
            first, *rest = detail.split("\n")
            detail = "\n".join([i18n.translate_message("es", first), *rest])
            hint = i18n.translate_message("es", hint) if hint else hint
        if isinstance(exc, StoreUnreachableError):  # a server down: retry, not a state
            return problem(503, "Unavailable", detail, hint, {"Retry-After": "5"})
        if isinstance(exc, WarehouseError):
            return problem(409, "Not available yet", detail, hint)
        if isinstance(exc, ConfigError):
            return problem(409, "Not configured", detail, hint)
        status = 404 if "there is no" in exc.message else 422
        return problem(status, "Cannot do that", detail, hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        spanish = wants_spanish(request.headers.get("accept-language"))
        hint, said = _validation_hint(first), str(first.get("msg", "invalid"))
        if spanish:  # pydantic's words too, as far as the catalog knows them
            hint, said = i18n.translate_message("es", hint), i18n.translate_message("es", said)
        return problem(422, "Invalid request", f"{where}: {said}", hint)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own answers (no such route, a method the route does not take) said
        # as the others are, in the client's language.
        spanish = wants_spanish(request.headers.get("accept-language"))
        path = request.url.path
        if exc.status_code == 404 and str(exc.detail) == "Not Found":
            said = translated(
                spanish, f"there is no route {path}", "the routes are listed at /docs"
            )
            return problem(404, "Not found", *said)
        if exc.status_code == 405:
            said = translated(
                spanish,
                f"{request.method} is not allowed on {path}",
                "the routes are listed at /docs",
            )
            return problem(405, "Method not allowed", *said, dict(exc.headers or {}))
        return problem(exc.status_code, "Error", str(exc.detail), None, dict(exc.headers or {}))

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
    def stored(response: Response, fn: Callable[[], T], *tables: str) -> T:
        """``fn`` on the warehouse, or on the published read models where the warehouse would
        cost a Spark job per request or a run holds the DuckDB file (``tables``: what ``fn``
        reads there). An answer from an older publish says when in a header."""
        result, when = svc.fresh_or_published(fn, *tables)
        if when is not None:
            response.headers["X-Segmentum-Published-At"] = when
        return result

    def cached_or_computed(
        response: Response, kept: Callable[[], T | None], compute: Callable[[], T]
    ) -> T:
        """What the last run cached (``kept``), else ``compute`` on the warehouse: on Spark a
        job (a view the cache lacks), on a DuckDB file a run holds the busy answer."""

        def run() -> T | None:
            got = kept()
            if got is not None or svc.wh.read_only:
                return got
            return compute()

        got = stored(response, run, CACHE)
        if got is not None:
            return got
        if svc.batch_engine:
            return svc.locked(compute)
        raise busy(settings.busy_wait_seconds)

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/overview", tags=["overview"])
    def overview(_: Read) -> dict[str, Any]:
        return svc.overview()

    @app.get(
        "/v1/customers/{customer_id}",
        tags=["customers"],
        response_model=dict[str, Any],
        response_class=JSONResponse,
    )
    async def customer(customer_id: str, _: Read) -> Response:
        from segmentum.precompute import LOOKUP

        doc = svc.customer_document(customer_id)  # a primary-key read of tens of microseconds
        if isinstance(doc, str):
            return Response(doc, media_type="application/json")
        if doc is None:
            found = None
        elif svc.serving is not None and svc.serving.has(LOOKUP):
            # An indexed point query of about a millisecond: cheaper on the event loop than a
            # hop to the thread pool.
            found = svc.customer(customer_id)
        else:  # the warehouse may have to be opened, or waited for: not on the event loop
            found = await run_in_threadpool(svc.customer, customer_id)
        if found is None:
            raise ApiProblem(404, "Not found", f"there is no customer {customer_id!r}")
        # The row holds only JSON scalars, dates and lists of strings: serialised here, it skips
        # FastAPI's generic encoder, which took longer than the query itself.
        return Response(json.dumps(found, default=_json_scalar), media_type="application/json")

    @app.get("/v1/serving", tags=["service"])
    def serving_info(_: Read) -> dict[str, Any]:
        """When the read models the API answers from were published, and by which run."""
        info = svc.serving.info() if svc.serving is not None else None
        return {"published": info is not None, **(info or {})}

    @app.get("/v1/segments", tags=["segments"])
    def segments_list(response: Response, _: Read) -> list[dict[str, Any]]:
        from segmentum.segments.store import Segments

        found = stored(response, lambda: Segments(svc.wh, settings).list(), "segment_definitions")
        return [s.__dict__ for s in found]

    @app.post("/v1/segments", tags=["segments"], status_code=201)
    def segments_create(body: SegmentIn, _: Write) -> dict[str, Any]:
        """Save a segment and compute its members at once (``size`` in the answer), so its
        members, export and campaigns need no pipeline run first."""
        from segmentum.segments.store import Segments

        seg, size = svc.locked(
            lambda: Segments(svc.wh, settings).create_and_compute(
                body.name, body.rule, body.description, body.level
            )
        )
        return {**seg.__dict__, "size": size}

    @app.patch("/v1/segments/{name}", tags=["segments"])
    def segments_edit(name: str, body: SegmentEdit, _: Write) -> dict[str, Any]:
        """Change a saved segment's rule or description. A new rule is checked first (nothing
        is stored when it has an error) and the members of every segment are computed again
        at once (segments may be built on this one); ``size`` in the answer."""
        from segmentum.segments.store import Segments

        seg, size = svc.locked(
            lambda: Segments(svc.wh, settings).edit_and_size(name, body.rule, body.description)
        )
        return {**seg.__dict__, "size": size}

    @app.delete("/v1/segments/{name}", tags=["segments"], status_code=204)
    def segments_delete(name: str, _: Write) -> None:
        from segmentum.segments.store import Segments

        svc.locked(lambda: Segments(svc.wh, settings).delete(name))

    @app.post("/v1/segments/preview", tags=["segments"])
    def segments_preview(body: RuleIn, _: Read) -> dict[str, Any]:
        from segmentum.segments.store import Segments

        return svc.locked(
            lambda: Segments(svc.wh, settings).preview(body.rule, level=body.level).to_dict()
        )

    @app.get("/v1/segments/{name}/members", tags=["segments"])
    def segments_members(
        response: Response,
        name: str,
        _: Read,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict[str, Any]:
        from segmentum.segments.store import Segments

        def run() -> dict[str, Any]:
            m = Segments(svc.wh, settings).members(name)
            ids = m.order_by("customer_id").limit(limit).customer_id.to_pyarrow().to_pylist()
            return {"segment": name, "size": int(m.count().to_pyarrow().as_py()), "members": ids}

        return stored(response, run, "segment_definitions", "segment_members")

    @app.get("/v1/segments/{name}/profile", tags=["segments"])
    def segments_profile(response: Response, name: str, _: Read) -> dict[str, Any]:
        """The segment's members against the other customers, as the explorer shows it: the
        profile the last run cached for a saved segment, else computed now."""
        from segmentum.precompute import cached_profile
        from segmentum.segments.discover import profile_labels, segment_labels

        return cached_or_computed(
            response,
            lambda: cached_profile(svc.wh, name),
            lambda: profile_labels(svc.wh, segment_labels(svc.wh, name), "segment").to_dict(),
        )

    @app.get("/v1/micro-segments", tags=["segments"])
    def micro(
        response: Response,
        _: Read,
        dimensions: Annotated[str, Query(max_length=300)] = "",
        min_size: Annotated[int, Query(ge=1, le=1_000_000)] = 50,
    ) -> dict[str, Any]:
        """Micro-segments over ``dimensions`` (comma-separated, coarse to fine); none given:
        value_tier, region, city, age_band, or without a customers file the classes."""
        from segmentum.precompute import cached
        from segmentum.segments.micro import micro_segments

        dims = [d.strip() for d in dimensions.split(",") if d.strip()] or None

        def kept() -> dict[str, Any] | None:
            # The default tree as the last run cached it (the dashboard shows the same).
            tree = cached(svc.wh, "micro")
            if (
                tree
                and (dims is None or dims == list(tree["dimensions"]))
                and tree["min_size"] == min_size
            ):
                return dict(tree)
            return None

        return cached_or_computed(
            response,
            kept,
            lambda: micro_segments(svc.wh, dims, min_size=min_size, store=False).to_dict(),
        )

    @app.get("/v1/migration", tags=["history"])
    def migration_(
        response: Response,
        _: Read,
        date_from: Annotated[str, Query(alias="from")],
        date_to: Annotated[str, Query(alias="to")],
        by: str = "rfm_segment",
    ) -> dict[str, Any]:
        from segmentum.history.migration import migration

        a, b = as_of_param(date_from), as_of_param(date_to)
        assert a is not None and b is not None
        return stored(response, lambda: migration(svc.wh, a, b, by).to_dict(), "customer_classes")

    @app.get("/v1/campaigns", tags=["campaigns"])
    def campaigns_list(response: Response, _: Read) -> list[dict[str, Any]]:
        from segmentum.campaigns.core import Campaigns

        # As of the publish (a store without them had none then: those loaded with results
        # are listed from those).
        rows = stored(response, lambda: Campaigns(svc.wh, settings).list())
        return [{k: v for k, v in c.__dict__.items() if k != "template"} for c in rows]

    @app.post("/v1/campaigns", tags=["campaigns"], status_code=201)
    def campaigns_create(body: CampaignIn, _: Write) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        c = svc.locked(
            lambda: Campaigns(svc.wh, settings).create(
                body.name,
                body.tactic,
                body.channel,
                target=body.target,
                control_share=body.control_share,
                cost_per_contact=body.cost_per_contact,
            )
        )
        return {k: v for k, v in c.__dict__.items() if k != "template"}

    @app.delete("/v1/campaigns/{campaign}", tags=["campaigns"], status_code=204)
    def campaigns_delete(campaign: str, _: Write) -> None:
        """Delete a campaign never sent; a sent one (its log, its results) is kept: 422."""
        from segmentum.campaigns.core import Campaigns

        svc.locked(lambda: Campaigns(svc.wh, settings).delete(campaign))

    @app.get("/v1/campaigns/{campaign}/audience", tags=["campaigns"])
    def campaigns_audience(
        campaign: str, _: Read, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
    ) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        def run() -> dict[str, Any]:
            cs = Campaigns(svc.wh, settings)
            aud = cs.audience(cs.get(campaign))
            rows = aud.order_by(aud.priority.desc()).limit(limit).to_pyarrow().to_pylist()
            return {"size": int(aud.count().to_pyarrow().as_py()), "top": rows}

        return svc.locked(run)

    @app.post("/v1/campaigns/{campaign}/dry-run", tags=["campaigns"])
    def campaigns_dry_run(request: Request, campaign: str, _: Read) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        # Why each example is in the audience, in the client's language (Accept-Language);
        # the messages themselves in each recipient's.
        spanish = wants_spanish(request.headers.get("accept-language"))

        def run() -> dict[str, Any]:
            cs = Campaigns(svc.wh, settings)
            return cs.dry_run(cs.get(campaign), lang="es" if spanish else "en")

        if svc.batch_engine and svc.serving is not None:
            # Spark: a sent campaign's plan as published (a job per request takes seconds).
            svc.publish_own_changes()
            stored = svc.serving.read(
                lambda wh: Campaigns(wh, settings).published_dry_run(
                    campaign, lang="es" if spanish else "en"
                )
            )
            if stored is not None:
                return stored
        return svc.locked(run)

    @app.post("/v1/campaigns/{campaign}/send", tags=["campaigns"])
    def campaigns_send(campaign: str, _: Write, immediately: bool = False) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        def run() -> dict[str, Any]:
            cs = Campaigns(svc.wh, settings)
            return cs.send(cs.get(campaign), immediately=immediately).__dict__

        return svc.locked(run)

    @app.get("/v1/campaigns/{campaign}/results", tags=["campaigns"])
    def campaigns_results(campaign: str, _: Read) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns
        from segmentum.campaigns.measure import results
        from segmentum.page_models import published_results

        def run() -> dict[str, Any]:
            cs = Campaigns(svc.wh, settings)
            c = cs.get(campaign)
            return results(svc.wh, c.campaign_id, settings, c.cost_per_contact).to_dict()

        if svc.batch_engine and svc.serving is not None:
            # Spark: the results as the last run (or the command that changed them) published.
            svc.publish_own_changes()

            def published(wh: Any) -> dict[str, Any] | None:
                # A campaign the store does not know does not exist (every command publishes
                # those it creates): said from here, not after a Spark job.
                c = Campaigns(wh, settings).get(campaign)
                return published_results(wh, c.campaign_id)

            stored = svc.serving.read(published)
            if stored is not None:
                return stored
        return svc.locked(run)

    @app.get("/v1/web-message", tags=["campaigns"])
    def web_message(
        _: Read, visitor: Annotated[str, Query(min_length=1, max_length=200)]
    ) -> dict[str, Any]:
        from segmentum.campaigns.core import Campaigns

        return svc.locked(lambda: Campaigns(svc.wh, settings).web_message(visitor)) or {}

    @app.post("/v1/ingest/{table}", tags=["data"])
    def ingest_file(
        table: str,
        _: Write,
        file: Annotated[UploadFile, File()],
        response: Response,
        background: bool = False,
    ) -> Any:
        """Load a file as a job in its own process. The answer is the ingest reports when it
        ends, or, with ``background=true``, the job at once (202; poll ``/v1/jobs/{id}``)."""
        if table not in INGESTIBLE:
            raise ApiProblem(
                404, "Not found", f"there is no table {table!r}", "use " + ", ".join(INGESTIBLE)
            )
        folder = Path(tempfile.mkdtemp(prefix="segmentum-upload-"))
        try:
            path = save_upload(file, folder, max_upload)
            job = svc.jobs.start(
                "ingest",
                {
                    "table": table,
                    "path": str(path),
                    "name": path.name,
                    "upload_dir": str(folder),
                    # A caller waiting for the answer gets a quick 503 rather than a long hang.
                    **({} if background else {"wait_seconds": settings.busy_wait_seconds}),
                },
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if background:
            response.status_code = 202
            return job
        done = svc.jobs.wait(job["job_id"], timeout=24 * 3600)
        assert done is not None
        return job_answer(done)

    def job_answer(job: dict[str, Any]) -> Any:
        if job["status"] == "done":
            return job["reports"]
        if job.get("error_kind") == "WarehouseBusyError":
            raise busy(settings.busy_wait_seconds)
        status = 422 if job.get("error_kind") in ("InputError", "SegmentumError") else 500
        raise ApiProblem(status, "Cannot load the file", job.get("error", "the load failed"))

    @app.post("/v1/jobs/pipeline", tags=["jobs"], status_code=202)
    def run_pipeline(_: Write) -> dict[str, Any]:
        """Run the pipeline in its own process; poll ``/v1/jobs/{id}`` for steps and summary.
        The API keeps answering from the published read models meanwhile, and shows the new
        ones when the run publishes them."""
        return svc.jobs.start("pipeline")

    @app.get("/v1/jobs", tags=["jobs"])
    def jobs_list(_: Read, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        return svc.jobs.list(limit)

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    def job_status(job_id: str, _: Read) -> dict[str, Any]:
        job = svc.jobs.get(job_id)
        if job is None:
            raise ApiProblem(404, "Not found", f"there is no job {job_id!r}")
        return job

    @app.get("/v1/exports/segments/{name}.csv", tags=["data"], response_class=PlainTextResponse)
    def export_segment(name: str, key: Read, request: Request) -> PlainTextResponse:
        """A segment's members; with ``export_personal_data`` also their first name, email
        and phone, which then needs the write scope (as ad audiences do). Recorded for
        ``segmentum forget`` (docs/privacy.md)."""
        from segmentum.segments.reach import allowed_contacts
        from segmentum.segments.store import Segments

        personal = svc.settings.export_personal_data
        if personal and "write" not in key.scopes:
            raise ApiProblem(
                403,
                "Forbidden",
                "this key lacks the 'write' scope: the export holds names, emails and phones "
                "(export_personal_data is on)",
                "use a key with the write scope, as for ad audiences",
            )

        def run() -> tuple[str, list[Any]]:
            m = Segments(svc.wh, svc.settings).members(name)
            cols = ["customer_id"]
            if personal and svc.wh.has("customers"):
                # Contacts only where the customer allows that channel (docs/privacy.md).
                wanted = ("first_name", "email", "phone")
                c = allowed_contacts(svc.wh, m, svc.settings, wanted)
                m = m.left_join(c, "customer_id").drop("customer_id_right")
                cols = ["customer_id", *(x for x in wanted if x in c.columns)]
            df = m.select(*cols).order_by("customer_id").to_pandas()
            return df.to_csv(index=False), df["customer_id"].tolist()

        from segmentum.service.audiences import record_download

        text, ids = svc.locked(run)
        record_download(request, key.key_id, "segment export", ids, personal, segment=name)
        return PlainTextResponse(text, media_type="text/csv")

    @app.get("/v1/playbook", tags=["campaigns"])
    def playbook_view(
        _: Read,
        by: Annotated[
            str, Query(pattern="^(all|rfm_segment|value_potential|lifecycle_stage)$")
        ] = "all",
        uplift: Annotated[float | None, Query(ge=0, le=1)] = None,
    ) -> dict[str, Any]:
        """What to do with each segment (the shipped playbook), with its size, value at stake
        (CLV x ``assumed_uplift``, an assumption) and favoured categories."""
        from segmentum.campaigns.playbook import DIMENSIONS, playbook

        dims = DIMENSIONS if by == "all" else (by,)
        plays, used = svc.locked(lambda: playbook(svc.wh, dimensions=dims, uplift=uplift))
        return {
            "as_of": used.isoformat(),
            "assumption": "value_at_stake = clv_total x uplift; the uplift is assumed",
            "plays": [p.to_dict() for p in plays],
        }

    @app.get("/v1/segments/{name}/ad-audience", tags=["data"], response_model=None)
    def ad_audience(
        name: str,
        key: Write,
        request: Request,
        format: Annotated[str, Query(pattern="^(google|meta|tiktok)$")] = "google",
        summary: bool = False,
        region: Annotated[str | None, Query(pattern="^[A-Za-z]{2}$")] = None,
    ) -> Response:
        """A saved segment as a customer-match CSV (hashed; only customers with advertising
        consent). The report (exported, dropped by reason) is in the ``X-Segmentum-Report``
        header as JSON, or, with ``summary=true``, the whole answer."""
        from segmentum.campaigns.adaudiences import build

        def run() -> tuple[str, dict[str, Any], list[str]]:
            text, report, ids = build(svc.wh, name, format, settings, default_region=region)
            return text, report.to_dict(), ids

        from segmentum.service.audiences import csv_answer, record_download

        text, report, ids = svc.locked(run)
        if not summary:
            record_download(request, key.key_id, "ad audience", ids, platform=format, segment=name)
        return csv_answer(text, report, f"{name}-{format}", summary)

    from segmentum.service.keys import router as keys_router
    from segmentum.service.market import router as market_router
    from segmentum.service.webhooks import router as webhooks_router

    app.include_router(keys_router)
    app.include_router(market_router)
    app.include_router(webhooks_router)
    from segmentum.service.satisfaction import router as satisfaction_router

    app.include_router(satisfaction_router)
    from segmentum.service.events import mount_events

    mount_events(app, svc)  # POST /v1/events, GET /v1/realtime, the webhook worker thread
    from segmentum.service.sms import router as sms_router  # SMS receipts (docs/sms.md)

    app.include_router(sms_router)
    from segmentum.service.unsubscribe import router as unsubscribe_router  # docs/campaigns.md

    app.include_router(unsubscribe_router)
    from segmentum.service.audiences import router as audiences_router  # docs/ad-audiences.md

    app.include_router(audiences_router)
    from segmentum.service.flows import mount_flows  # docs/flows.md

    mount_flows(app, svc)
    if settings.api_docs:
        from segmentum.service.docs import mount_docs

        mount_docs(app)

    from segmentum.service.dashboard import mount_dashboard

    mount_dashboard(app, svc)
    return app
