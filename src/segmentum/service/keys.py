"""Key management over the API (admin scope): create, list and revoke API keys.

The dashboard's key page is built on these; a revoked key stops working at the next request,
in every server process, and the browsers signed in with it are signed out.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from segmentum.service.auth import SCOPES, create_key, list_keys, revoke_key
from segmentum.service.core import Admin, ApiProblem, Service

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=4, examples=[["read"]])


def _svc(request: Request) -> Service:
    svc: Service = request.app.state.svc
    return svc


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key_id": row["key_id"],
        "name": row["name"],
        "scopes": row["scopes"].split(","),
        "created_at": row["created_at"].isoformat(),
        "revoked": row["revoked"],
        "revoked_at": row["revoked_at"],
    }


@router.get("")
def keys_list(request: Request, _: Admin) -> list[dict[str, Any]]:
    """Every key, newest last, without secrets."""
    return [_public(r) for r in list_keys(_svc(request).state)]


@router.post("", status_code=201)
def keys_create(request: Request, body: KeyIn, _: Admin) -> dict[str, Any]:
    """A new key; ``key`` is in this answer only (it is stored hashed)."""
    bad = [s for s in body.scopes if s not in SCOPES]
    if bad:
        raise ApiProblem(
            422,
            "Invalid request",
            f"unknown scope(s) {', '.join(bad)}",
            "use read, write, admin or track",
        )
    svc = _svc(request)
    key = create_key(svc.state, body.name, body.scopes)
    key_id = key.split("_")[1]
    row = next(r for r in list_keys(svc.state) if r["key_id"] == key_id)
    return {**_public(row), "key": key}


@router.delete("/{key_id}", status_code=204)
def keys_revoke(request: Request, key_id: str, who: Admin) -> None:
    """Revoke a key (not the one making the request: that would lock the admin out)."""
    if key_id == who.key_id:
        raise ApiProblem(
            409, "Conflict", "a key cannot revoke itself", "revoke it with another admin key"
        )
    svc = _svc(request)
    if not any(r["key_id"] == key_id for r in list_keys(svc.state)):
        raise ApiProblem(404, "Not found", f"there is no key {key_id!r}")
    revoke_key(svc.state, key_id)
