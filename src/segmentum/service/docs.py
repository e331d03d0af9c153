"""The API's own documentation, served from the package: Swagger UI at ``/docs``, ReDoc at
``/redoc``, the schema at ``/openapi.json``; all three need a key, nothing comes from a CDN.

The JavaScript is the one the ``fastapi-offline`` package ships; the pages and their start-up
scripts are in ``apidocs/`` (no inline script, so a strict Content-Security-Policy holds).
The ``api_docs`` setting switches all of it off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from segmentum.service.core import ApiProblem, Read

HERE = Path(__file__).parent / "apidocs"
VENDOR = Path(fastapi_offline.__file__).parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": VENDOR / "swagger-ui-bundle.js",
    "swagger-ui.css": VENDOR / "swagger-ui.css",
    "redoc.standalone.js": VENDOR / "redoc.standalone.js",
    "favicon.png": VENDOR / "favicon.png",
    "swagger-init.js": HERE / "swagger-init.js",
    "redoc-init.js": HERE / "redoc-init.js",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def mount_docs(app: FastAPI) -> None:
    """Add the documentation routes (call with ``FastAPI(docs_url=None, redoc_url=None,
    openapi_url=None)``, so FastAPI's own CDN pages are not there)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    def openapi(_: Read) -> JSONResponse:
        return JSONResponse(app.openapi())

    def page(name: str) -> HTMLResponse:
        html = (HERE / name).read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": CSP})

    @router.get("/docs")
    def swagger(_: Read) -> HTMLResponse:
        return page("swagger.html")

    @router.get("/redoc")
    def redoc(_: Read) -> HTMLResponse:
        return page("redoc.html")

    @router.get("/docs/assets/{name}")
    def asset(name: str) -> Any:
        path = ASSETS.get(name)
        if path is None:
            raise ApiProblem(404, "Not found", f"there is no asset {name!r}")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    app.include_router(router)
