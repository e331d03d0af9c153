"""What every route of the service shares: its state (:class:`Service`), errors as problem
details, and the key / session check with scopes.

The service never holds a DuckDB warehouse file open between requests: read models come from
the serving store (:mod:`segmentum.serving`), keys and sessions from the state store
(:mod:`.state`), and what must touch the warehouse (saving a segment, a preview, a campaign)
opens it for that request only, waiting up to ``busy_wait_seconds`` when a command holds it,
then answering 503 with ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hmac
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from segmentum import i18n
from segmentum.config import Settings
from segmentum.errors import WarehouseBusyError
from segmentum.service.auth import SESSION_COOKIE, ApiKey, KeyRing, Sessions, verify_key
from segmentum.service.jobs import Jobs
from segmentum.service.state import StateStore
from segmentum.serving import ServingStore, serving_path, warehouse_file
from segmentum.warehouse import Warehouse, connect

PROBLEM = "application/problem+json"
T = TypeVar("T")


class ApiProblem(Exception):
    """An HTTP error with a problem-details body (RFC 9457)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.hint = status, title, detail, hint
        self.headers = headers


def problem(
    status: int,
    title: str,
    detail: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def wants_spanish(accept_language: str | bytes | None) -> bool:
    """Whether a client asked for Spanish (``Accept-Language: es...``): its errors then carry
    their detail and hint in Spanish; the title stays the same, for programs to match on."""
    if isinstance(accept_language, bytes):
        accept_language = accept_language.decode("latin-1")
    return (accept_language or "").strip().lower().startswith("es")


def translated(spanish: bool, detail: str, hint: str | None) -> tuple[str, str | None]:
    """A problem's detail and hint in the client's language (see :func:`wants_spanish`)."""
    if not spanish:
        return detail, hint
    return i18n.translate_message("es", detail), i18n.translate_message("es", hint) or None


def busy(seconds: float, detail: str | None = None) -> ApiProblem:
    """503 with Retry-After: the warehouse is held by a command or a job."""
    return ApiProblem(
        503,
        "Busy",
        detail or "the warehouse is busy: a pipeline run or another command is using it",
        "retry in a few seconds; lookups and the dashboard's cached pages keep working",
        headers={"Retry-After": str(max(1, round(seconds)))},
    )


class Service:
    """State shared by the routes: settings, stores, the key ring, sessions, jobs.

    Parameters
    ----------
    warehouse
        A URL (``segmentum serve``): a DuckDB file is then opened per use and closed again; a
        server engine (PostgreSQL, Spark) is connected once. Or an open :class:`Warehouse`
        (embedding the app in a program that already holds it), used as it is.
    settings
        The service's settings.
    """

    def __init__(self, warehouse: Warehouse | str, settings: Settings) -> None:
        self.settings = settings
        self._shared: Warehouse | None = warehouse if isinstance(warehouse, Warehouse) else None
        url = warehouse.url if isinstance(warehouse, Warehouse) else warehouse
        file = warehouse_file(url)
        # Children and other processes must find the same files whatever their working folder.
        self.url = f"duckdb:///{file.absolute()}" if file is not None else url
        self.per_use = self._shared is None and file is not None
        # Spark: pages and lookups read the serving store (a Spark job per request is seconds).
        self.batch_engine = url.startswith(("pyspark", "spark")) or (
            isinstance(warehouse, Warehouse) and warehouse.engine == "pyspark"
        )
        self.lock = threading.RLock()
        self._local = threading.local()
        self.state = StateStore.for_warehouse(self.url, settings)
        self.keys = KeyRing(self.state)
        self.sessions = Sessions(
            self.state,
            ttl=_dt.timedelta(minutes=settings.session_minutes),
            max_hours=settings.session_max_hours,
        )
        target = serving_path(self.url, settings.serving_store)
        self.serving = ServingStore(target) if target is not None else None
        self.jobs = Jobs(self.state, self.url, settings)
        self.jobs.held_open = self._shared is not None and file is not None
        self.lookup_ready = False
        # A local Spark folder this service opens itself (``segmentum serve -w pyspark:///``)
        # is let go after each use: one process at a time may hold it, and the nightly run
        # must find it free. One given to the app stays as its owner left it.
        self._lets_go = self._shared is None and self.batch_engine
        self._depth = 0

    def prepare(self) -> None:
        """At start-up: carry keys over from a warehouse's old ``api_keys`` table, and publish
        the read models of a warehouse built before there was a serving store. Skipped while
        a command holds the warehouse (the next run publishes)."""
        from segmentum.history.snapshots import snapshot_dates
        from segmentum.page_models import SNAPSHOT_KPIS
        from segmentum.precompute import LOOKUP, publish_read_models
        from segmentum.service.auth import import_keys

        def stale(store: ServingStore) -> bool:
            # Published before the page read models existed, or before a backfill added
            # snapshots (``segmentum history backfill`` after the run, as ``make run`` does).
            if not store.published or not store.has(SNAPSHOT_KPIS):
                return True
            return store.read(snapshot_dates) != snapshot_dates(self.wh)

        def run() -> None:
            import_keys(self.wh, self.state)
            if self.serving is not None and self.wh.has(LOOKUP) and stale(self.serving):
                publish_read_models(self.wh, self.settings)

        if self.per_use:
            with contextlib.suppress(ApiProblem):
                self.locked(run)

    # ------------------------------------------------------------------ the warehouse
    @property
    def wh(self) -> Warehouse:
        """The warehouse, inside :meth:`locked` (for a DuckDB file it is open only there)."""
        current: Warehouse | None = getattr(self._local, "wh", None)
        if current is not None:
            return current
        if self.per_use:
            raise RuntimeError("svc.wh is only open inside svc.locked(...)")
        if self._shared is None:
            self._shared = connect(self.url, memory_limit=self.settings.memory_limit)
        return self._shared

    def _open(self) -> Warehouse:
        """Open the DuckDB file, waiting up to ``busy_wait_seconds`` for whoever holds it."""
        wait = self.settings.busy_wait_seconds
        end = time.monotonic() + wait
        while True:
            try:
                return connect(self.url, memory_limit=self.settings.memory_limit, lock_wait=0)
            except WarehouseBusyError as exc:
                if time.monotonic() >= end:
                    raise busy(max(wait, 1.0), exc.message.split(" (process")[0]) from exc
                time.sleep(0.1)

    def locked(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` with the warehouse open as :attr:`wh` (one call at a time per process)."""
        with self.lock:
            if not self.per_use or getattr(self._local, "wh", None) is not None:
                self._depth += 1
                try:
                    return fn()
                finally:
                    self._depth -= 1
                    if self._depth == 0:
                        self._let_go()
            wh = self._open()
            self._local.wh = wh
            try:
                return fn()
            finally:
                self._local.wh = None
                wh.close()

    def fresh_or_published(self, fn: Callable[[], T], *tables: str) -> tuple[T, str | None]:
        """``fn`` on the warehouse (as :meth:`locked`); when a job or a command holds it, at
        once on the last published read models instead, if they hold ``tables``.

        Returns the result and, for the published path of a busy DuckDB file, when it was
        published (pages say so), else None. Inside ``fn``, :attr:`wh` is whichever of the two
        it runs on.
        """
        if self.serving is None or not (self.per_use or self.batch_engine):
            return self.locked(fn), None
        if self.batch_engine and getattr(self._local, "wh", None) is not None:
            return fn(), None
        # Spark answers from the published copy first: a page must not start a Spark job
        # (seconds of planning) per request. A DuckDB file is read fresh unless it is busy.
        if not self.batch_engine:
            with self.lock:
                if getattr(self._local, "wh", None) is not None:
                    return fn(), None
                try:
                    wh = connect(self.url, memory_limit=self.settings.memory_limit, lock_wait=0)
                except WarehouseBusyError:
                    wh = None
                if wh is not None:
                    self._local.wh = wh
                    try:
                        return fn(), None
                    finally:
                        self._local.wh = None
                        wh.close()
        self.publish_own_changes()
        store = self.serving
        info = store.info() if store.published else None
        if info is None or not all(store.has(t) for t in tables):
            if self.batch_engine:  # never published yet: the warehouse itself
                return self.locked(fn), None
            raise busy(self.settings.busy_wait_seconds)

        def on_store(published: Warehouse) -> T:
            self._local.wh = published
            try:
                return fn()
            finally:
                self._local.wh = None

        result = store.read(on_store)
        # Spark's pages always read the published copy (kept current by every command): no
        # page says it shows an older publish there.
        when = None if self.batch_engine else str(info["published_at"])
        return result, when  # type: ignore[return-value]

    def _let_go(self) -> None:
        """Spark folder of its own: publish what this service wrote, then let the folder go
        (the next use opens it again)."""
        wh = self._shared
        if not self._lets_go or wh is None:
            return
        from segmentum.warehouse import release_spark_folder

        try:
            self.publish_own_changes()
        finally:
            if release_spark_folder(wh):
                self._shared = None

    def publish_own_changes(self) -> None:
        """Spark: what this service wrote to the warehouse (a segment saved from the explorer,
        a campaign sent) goes into the serving store its pages read, before the next page."""
        wh = self._shared
        if not self.batch_engine or wh is None or not wh.changed:
            return
        from segmentum.precompute import refresh_published

        with self.lock:
            refresh_published(wh, self.settings)

    # ------------------------------------------------------------------ read models
    def read_models(self, fn: Callable[[Warehouse], T], *tables: str) -> T:
        """``fn`` on the serving store when it holds ``tables``, else on the warehouse.

        Use it for what the pipeline precomputes (``customer_lookup``, ``dashboard_cache``):
        it keeps answering while a run or a command holds the warehouse.
        """
        self.publish_own_changes()
        store = self.serving
        if store is not None and all(store.has(t) for t in tables or ("_published",)):
            return store.read(fn)  # type: ignore[return-value]
        return self.locked(lambda: fn(self.wh))

    def overview(self) -> dict[str, Any]:
        """The latest cached overview (built from the warehouse when never published)."""
        from segmentum.precompute import CACHE, overview

        return self.read_models(overview, CACHE)

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """One row of ``customer_lookup``: from the serving store when published (a point query
        on this thread's cursor, in parallel with others), else from the warehouse."""
        from segmentum.precompute import LOOKUP, build_lookup, lookup_row

        store = self.serving
        doc = self.customer_document(customer_id)
        if isinstance(doc, str):
            return dict(json.loads(doc))
        if doc is None:
            return None
        if store is not None and store.has(LOOKUP):
            cur = store.cursor()
            if cur is not None:
                return lookup_row(cur, "?", customer_id)

        def from_warehouse() -> dict[str, Any] | None:
            wh = self.wh
            if not self.lookup_ready:
                if not wh.has(LOOKUP):
                    build_lookup(wh)
                self.lookup_ready = True
            return lookup_row(self._cursor(wh), wh.placeholder, customer_id)

        if self.per_use:
            return self.locked(from_warehouse)
        if self.lookup_ready:
            return from_warehouse()  # a per-thread cursor: no need to queue behind the lock
        return self.locked(from_warehouse)

    def customer_document(self, customer_id: str) -> str | bool | None:
        """The customer's lookup row as published JSON text (sent by the API as it is); None
        for an unknown customer, False when no documents are published (then use
        :meth:`customer`)."""
        from segmentum.precompute import LOOKUP

        if self.serving is None:
            return False
        return self.serving.document(LOOKUP, customer_id)

    def _cursor(self, wh: Warehouse) -> Any:
        if self.per_use:
            return wh.con.con.cursor()
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = wh.con.con.cursor()
            self._local.cur = cur
        return cur


def credentials(request: Request) -> ApiKey | None:
    """The key a request carries: X-API-Key, a Bearer token, or a live dashboard session."""
    svc: Service = request.app.state.svc
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if key:
        return verify_key(svc.state, key)
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        s = svc.sessions.get(sid)
        if s is None:
            return None
        # A cookie is sent by the browser on its own: a change needs the session's CSRF token
        # too, which only the dashboard's own pages know.
        sent = request.headers.get("x-csrf-token", "")
        safe = request.method in ("GET", "HEAD", "OPTIONS")
        if not safe and not hmac.compare_digest(sent, s.csrf):
            raise ApiProblem(
                403, "Forbidden", "missing or wrong CSRF token", "send the X-CSRF-Token header"
            )
        return ApiKey(s.key_id, "", s.scopes)
    return None


def require(scope: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency that admits a request with a valid key carrying ``scope``."""

    async def dep(request: Request) -> ApiKey:
        found = credentials(request)
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
Admin = Annotated[ApiKey, Depends(require("admin"))]
