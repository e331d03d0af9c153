"""API keys: created with the CLI, stored hashed, with scopes read / write / admin.

A key looks like ``sgm_<id>_<secret>``. Only SHA-256 of the secret is stored (the secret is 32
random bytes, so a plain hash is safe); the key is shown once, when created.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ibis
import pyarrow as pa

from segmentum.errors import InputError
from segmentum.warehouse import Warehouse

KEYS = "api_keys"
SCOPES = ("read", "write", "admin")
# admin implies write implies read
IMPLIED = {"read": {"read"}, "write": {"read", "write"}, "admin": {"read", "write", "admin"}}


@dataclass
class ApiKey:
    key_id: str
    name: str
    scopes: list[str]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(wh: Warehouse, name: str, scopes: list[str]) -> str:
    """Create a key and return it (the only time it is visible)."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise InputError(
            f"unknown scope(s) {', '.join(bad) or '(none)'}", "use read, write or admin"
        )
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    row = pa.table(
        {
            "key_id": [key_id],
            "name": [name],
            "secret_sha256": [_hash(secret)],
            "scopes": [",".join(sorted(scopes))],
            "created_at": pa.array(
                [_dt.datetime.now(_dt.UTC).replace(tzinfo=None)], pa.timestamp("us")
            ),
            "revoked": [False],
        }
    )
    if wh.has(KEYS):
        wh.insert(KEYS, row)
    else:
        wh.write(KEYS, row)
    return f"sgm_{key_id}_{secret}"


def revoke_key(wh: Warehouse, key_id: str) -> None:
    if not wh.has(KEYS):
        raise InputError(f"no key {key_id!r}")
    t = wh.table(KEYS)
    if not int(t.filter(t.key_id == key_id).count().to_pyarrow().as_py()):
        raise InputError(f"no key {key_id!r}", "list them: segmentum api-key list")
    new = t.mutate(revoked=ibis.ifelse(t.key_id == key_id, True, t.revoked))
    wh.write(KEYS, wh.materialize(new, "keys"))


def list_keys(wh: Warehouse) -> list[dict[str, object]]:
    if not wh.has(KEYS):
        return []
    t = wh.table(KEYS).drop("secret_sha256")
    return t.order_by("created_at").to_pyarrow().to_pylist()


class KeyRing:
    """Verifies keys against the stored hashes (loaded once, refreshed on a miss)."""

    def __init__(
        self, wh: Warehouse, fetch: Callable[[], list[dict[str, Any]]] | None = None
    ) -> None:
        self.wh = wh
        self.fetch = fetch or self._fetch
        self._keys: dict[str, tuple[str, str, list[str], bool]] = {}
        self.refresh()

    def _fetch(self) -> list[dict[str, Any]]:
        return self.wh.table(KEYS).to_pyarrow().to_pylist() if self.wh.has(KEYS) else []

    def refresh(self) -> None:
        self._keys = {
            r["key_id"]: (r["secret_sha256"], r["name"], r["scopes"].split(","), r["revoked"])
            for r in self.fetch()
        }

    def verify(self, key: str | None) -> ApiKey | None:
        if not key or not key.startswith("sgm_") or key.count("_") < 2:
            return None
        _, key_id, secret = key.split("_", 2)
        if key_id not in self._keys:
            self.refresh()
        entry = self._keys.get(key_id)
        if entry is None or entry[3]:
            return None
        if not hmac.compare_digest(entry[0], _hash(secret)):
            return None
        scopes = sorted(set().union(*(IMPLIED[s] for s in entry[2] if s in IMPLIED)))
        return ApiKey(key_id, entry[1], scopes)
