"""API keys and dashboard sessions, kept in the service's state store (:mod:`.state`).

A key looks like ``sgm_<id>_<secret>``. Only SHA-256 of the secret is stored (the secret is 32
random bytes, so a plain hash is safe); the key is shown once, when created. Every request
checks its key against the store (a primary-key lookup in SQLite, tens of microseconds), so a
key revoked by another process (``segmentum api-key revoke``) stops working at once.

A dashboard session is an opaque random id in an HTTP-only cookie; the server keeps only its
hash, the key it belongs to, its CSRF token and when it expires (``session_minutes`` idle,
``session_max_hours`` at most). Revoking a key ends its sessions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segmentum.errors import InputError
from segmentum.service.state import StateStore
from segmentum.warehouse import Warehouse

if TYPE_CHECKING:
    from starlette.requests import Request

KEYS = "api_keys"
SCOPES = ("read", "write", "admin", "track")
# admin implies write implies read; track (sending events, e.g. from a web page) implies nothing
# else, and only admin implies it
IMPLIED = {
    "read": {"read"},
    "write": {"read", "write"},
    "admin": {"read", "write", "admin", "track"},
    "track": {"track"},
}
SESSION_COOKIE = "segmentum_session"


@dataclass
class ApiKey:
    key_id: str
    name: str
    scopes: list[str]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def state_of(where: StateStore | Warehouse) -> StateStore:
    """The state store of a warehouse (its keys carried over, see :func:`import_keys`)."""
    if isinstance(where, StateStore):
        return where
    store = StateStore.for_warehouse(where.url)
    import_keys(where, store)
    return store


def import_keys(wh: Warehouse, store: StateStore) -> int:
    """Copy the keys a warehouse kept in its own ``api_keys`` table (before there was a state
    store) into ``store``, once; returns how many were new."""
    if wh.engine == "pyspark" or not wh.has(KEYS):
        return 0
    rows = wh.table(KEYS).to_pyarrow().to_pylist()
    with store.connect() as con:
        before = con.total_changes
        con.executemany(
            "INSERT OR IGNORE INTO api_keys (key_id, name, secret_sha256, scopes, "
            "created_at, revoked) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    r["key_id"],
                    r["name"],
                    r["secret_sha256"],
                    r["scopes"],
                    str(r["created_at"])[:19],
                    int(bool(r["revoked"])),
                )
                for r in rows
            ],
        )
        return con.total_changes - before


def _expand(scopes: str) -> list[str]:
    return sorted(set().union(*(IMPLIED[s] for s in scopes.split(",") if s in IMPLIED)))


# ---------------------------------------------------------------------- keys
def create_key(where: StateStore | Warehouse, name: str, scopes: list[str]) -> str:
    """Create a key and return it (the only time it is visible)."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise InputError(
            f"unknown scope(s) {', '.join(bad) or '(none)'}", "use read, write, admin or track"
        )
    if not name.strip():
        raise InputError("a key needs a name", "say who or what uses it: --name marketing")
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    state_of(where).execute(
        "INSERT INTO api_keys (key_id, name, secret_sha256, scopes, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (key_id, name.strip(), _hash(secret), ",".join(sorted(set(scopes))), _now()),
    )
    return f"sgm_{key_id}_{secret}"


def revoke_key(where: StateStore | Warehouse, key_id: str) -> None:
    """Revoke a key: it stops working at the next request, and its sessions end."""
    store = state_of(where)
    with store.connect() as con:
        changed = con.execute(
            "UPDATE api_keys SET revoked = 1, revoked_at = coalesce(revoked_at, ?) "
            "WHERE key_id = ?",
            (_now(), key_id),
        ).rowcount
        con.execute("DELETE FROM sessions WHERE key_id = ?", (key_id,))
    if not changed:
        raise InputError(f"no key {key_id!r}", "list them: segmentum api-key list")


def list_keys(where: StateStore | Warehouse) -> list[dict[str, Any]]:
    """Every key without its secret: id, name, scopes, created_at, revoked."""
    rows = state_of(where).query(
        "SELECT key_id, name, scopes, created_at, revoked, revoked_at FROM api_keys "
        "ORDER BY created_at, key_id"
    )
    for r in rows:
        r["created_at"] = _dt.datetime.fromisoformat(r["created_at"])
        r["revoked"] = bool(r["revoked"])
    return rows


def verify_key(store: StateStore, key: str | None) -> ApiKey | None:
    """The key's identity and scopes, or None if it is unknown, malformed or revoked."""
    if not key or not key.startswith("sgm_") or key.count("_") < 2:
        return None
    _, key_id, secret = key.split("_", 2)
    rows = store.read(
        "SELECT name, secret_sha256, scopes, revoked FROM api_keys WHERE key_id = ?", (key_id,)
    )
    if not rows or rows[0]["revoked"]:
        return None
    if not hmac.compare_digest(rows[0]["secret_sha256"], _hash(secret)):
        return None
    return ApiKey(key_id, rows[0]["name"], _expand(rows[0]["scopes"]))


class KeyRing:
    """``verify(key)`` against the store on every call (no cache to go stale)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def verify(self, key: str | None) -> ApiKey | None:
        return verify_key(self.store, key)

    def refresh(self) -> None:
        """Nothing to refresh: kept for callers of the cached ring this replaced."""


# ---------------------------------------------------------------------- sessions
@dataclass
class Session:
    """A signed-in browser. ``key`` is the raw key only in the answer to :meth:`Sessions.create`
    (it is never stored); the scopes are read again from the key on every request."""

    sid: str
    key: str
    key_id: str
    scopes: list[str]
    csrf: str
    created: float
    seen: float


class Sessions:
    """Server-side dashboard sessions in the state store, ended by sign-out, by revoking their
    key, after ``ttl`` idle, and at most ``max_hours`` after sign-in.

    Parameters
    ----------
    store
        The state store (None: a private in-memory one).
    ttl
        Idle time after which a session ends.
    max_hours
        Age after which a session ends, however active.
    """

    def __init__(
        self,
        store: StateStore | None = None,
        ttl: _dt.timedelta = _dt.timedelta(hours=1),
        max_hours: float = 12,
    ) -> None:
        self.store = store or StateStore(":memory:")
        self.ttl = ttl.total_seconds()
        self.max_age = int(max_hours * 3600)

    def create(self, key: str, key_id: str, scopes: list[str]) -> Session:
        now = time.time()
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.store.connect() as con:
            con.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            con.execute(
                "INSERT INTO sessions (sid_sha256, key_id, csrf, created_at, seen_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (_hash(sid), key_id, csrf, now, now, self._expiry(now, now)),
            )
        return Session(sid, key, key_id, scopes, csrf, now, now)

    def _expiry(self, created: float, seen: float) -> float:
        return min(seen + self.ttl, created + self.max_age)

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id (its idle clock restarted), or None."""
        if not sid:
            return None
        now, h = time.time(), _hash(sid)
        with self.store.connect() as con:
            row = con.execute(
                "SELECT s.key_id, s.csrf, s.created_at, s.expires_at, k.scopes, k.revoked "
                "FROM sessions s LEFT JOIN api_keys k ON k.key_id = s.key_id "
                "WHERE s.sid_sha256 = ?",
                (h,),
            ).fetchone()
            if row is None:
                return None
            if row["expires_at"] < now or row["revoked"] is None or row["revoked"]:
                con.execute("DELETE FROM sessions WHERE sid_sha256 = ?", (h,))
                return None
            con.execute(
                "UPDATE sessions SET seen_at = ?, expires_at = ? WHERE sid_sha256 = ?",
                (now, self._expiry(row["created_at"], now), h),
            )
        return Session(
            sid,
            "",
            row["key_id"],
            _expand(row["scopes"]),
            row["csrf"],
            row["created_at"],
            now,
        )

    def end(self, sid: str) -> None:
        self.store.execute("DELETE FROM sessions WHERE sid_sha256 = ?", (_hash(sid),))

    def end_key(self, key_id: str) -> None:
        """Sign out every browser that used a key (when it is revoked)."""
        self.store.execute("DELETE FROM sessions WHERE key_id = ?", (key_id,))


def create_session(sessions: Sessions, key: str) -> Session | None:
    """Sign in with ``key``: a new session, or None if the key is not valid."""
    found = verify_key(sessions.store, key)
    if found is None:
        return None
    return sessions.create(key, found.key_id, found.scopes)


def end_session(sessions: Sessions, sid: str | None) -> None:
    """Sign out (nothing happens for an unknown or expired session)."""
    if sid:
        sessions.end(sid)


def session_key(request: Request) -> ApiKey | None:
    """The key behind the request's session cookie, if the session is live and the key valid."""
    svc = request.app.state.svc
    s = svc.sessions.get(request.cookies.get(SESSION_COOKIE))
    if s is None:
        return None
    names = svc.state.query("SELECT name FROM api_keys WHERE key_id = ?", (s.key_id,))
    return ApiKey(s.key_id, names[0]["name"] if names else "", s.scopes)
