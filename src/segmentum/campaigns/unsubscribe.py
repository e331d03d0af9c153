"""Unsubscribing from email: a link in every message, the one-click header, and the list.

Every marketing email segmentum sends (campaigns and flows) carries a way out:

- the ``List-Unsubscribe`` header (RFC 2369) with the link, and ``List-Unsubscribe-Post:
  List-Unsubscribe=One-Click`` (RFC 8058), which mail programs show as an "unsubscribe" button
  and large mailbox providers ask of bulk senders;
- the same link in the body: where the template places ``{{ unsubscribe_url }}``, else in a
  line added at its end, in the recipient's language.

The link is ``unsubscribe_url`` (the public address of the service's ``/v1/unsubscribe``)
with the customer's id and a signature of it (HMAC-SHA256 with a secret made on first use and
kept in the service's state file): nobody can unsubscribe somebody else by editing the id.
Without ``unsubscribe_url`` the header offers a reply to the sender address instead
(``mailto:``), whose requests a person handles.

A click is recorded in the state file at once (the warehouse may be held by a run), then
copied into the warehouse's ``suppressions`` (reason ``unsubscribed``, channel ``email``) by
:func:`fold`, which every run, dry run and email send runs first; a message planned before
the click is not sent (``not_sent``, "unsubscribed"), and later plans leave the customer out
as ``suppressed``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

import ibis
import pyarrow as pa

from segmentum.campaigns.sqlite_file import SqliteFile
from segmentum.config import Settings
from segmentum.schema import SUPPRESSIONS
from segmentum.warehouse import Warehouse

SCHEMA = """
CREATE TABLE IF NOT EXISTS unsubscribe_secret (secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS unsubscribes (
    unsubscribe_id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    at TEXT NOT NULL,
    folded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS unsubscribes_customer ON unsubscribes (customer_id);
"""
#: Why a planned message was not sent after its recipient unsubscribed.
SKIPPED = "unsubscribed"


def store_path(url: str, settings: Settings) -> str:
    """The state file the service and the commands share (where SMS receipts wait too)."""
    from segmentum.campaigns.sms import receipts_path

    return receipts_path(url, settings)


class UnsubscribeStore(SqliteFile):
    """The unsubscribes recorded by the service, until :func:`fold` copies them over, and the
    secret the links are signed with. A SQLite file: written while a run holds the
    warehouse."""

    schema = SCHEMA
    waiting_table, waiting_id = "unsubscribes", "unsubscribe_id"

    def secret(self) -> bytes:
        """The signing secret, made on first use (one per state file)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # two first uses at once make one secret
            row = con.execute("SELECT secret FROM unsubscribe_secret").fetchone()
            if row is None:
                made = secrets.token_hex(32)
                con.execute("INSERT INTO unsubscribe_secret VALUES (?)", (made,))
                return made.encode()
            return str(row["secret"]).encode()

    def add(self, customer_id: str, channel: str = "email", at: _dt.datetime | None = None) -> bool:
        """Record an unsubscribe; False when the customer had already (a second click)."""
        when = (at or _dt.datetime.now(_dt.UTC).replace(tzinfo=None)).isoformat()
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            seen = con.execute(
                "SELECT 1 FROM unsubscribes WHERE customer_id = ? AND channel = ?",
                (customer_id, channel),
            ).fetchone()
            if seen is not None:
                return False
            con.execute(
                "INSERT INTO unsubscribes (customer_id, channel, at) VALUES (?, ?, ?)",
                (customer_id, channel, when),
            )
            return True

    def has(self, customer_id: str, channel: str = "email") -> bool:
        """Whether the customer unsubscribed from ``channel`` (folded or not)."""
        with self._connect() as con:
            row = con.execute(
                "SELECT 1 FROM unsubscribes WHERE customer_id = ? AND channel IN (?, 'all')",
                (customer_id, channel),
            ).fetchone()
            return row is not None

    def mark_folded(self, ids: list[int]) -> None:
        """Copied into the warehouse: kept here (the flows read them), not copied again."""
        with self._connect() as con:
            con.executemany(
                "UPDATE unsubscribes SET folded = 1 WHERE unsubscribe_id = ?", [(i,) for i in ids]
            )


def signature(secret: bytes, customer_id: str) -> str:
    return hmac.new(secret, f"email:{customer_id}".encode(), hashlib.sha256).hexdigest()[:32]


def valid(secret: bytes, customer_id: str, token: str) -> bool:
    # A link copied by hand often takes the sentence's full stop or the header's ">" along.
    token = token.strip().rstrip(".,;)>").removesuffix("%3E").removesuffix("%3e")
    return bool(customer_id) and hmac.compare_digest(signature(secret, customer_id), token)


class Links:
    """The unsubscribe link and headers of each recipient of one send."""

    def __init__(self, url: str | None, settings: Settings) -> None:
        # Without the warehouse's URL there is no state file to sign with: no link.
        self.base = settings.unsubscribe_url.strip() if url else ""
        self.sender = settings.smtp_from
        self._secret = (
            UnsubscribeStore(store_path(str(url), settings), settings.busy_wait_seconds).secret()
            if self.base
            else b""
        )

    def link(self, customer_id: str, lang: str | None = None) -> str | None:
        """The customer's signed link (None without ``unsubscribe_url``); ``lang``: the
        language its page opens in (the message's)."""
        if not self.base:
            return None
        fields = {"c": customer_id, "t": signature(self._secret, customer_id)}
        if lang:
            fields["lang"] = lang
        query = urllib.parse.urlencode(fields)
        return f"{self.base}{'&' if '?' in self.base else '?'}{query}"

    def for_template(self, customer_id: str, lang: str | None = None) -> str:
        """What ``{{ unsubscribe_url }}`` writes: the link, else a reply to the sender."""
        link = self.link(customer_id, lang)
        if link is not None:
            return link
        return f"mailto:{email_address(self.sender)}?subject=unsubscribe"

    def headers(self, customer_id: str, lang: str | None = None) -> dict[str, str]:
        """``List-Unsubscribe`` (and one-click where there is a link) for one message."""
        link = self.link(customer_id, lang)
        if link is None:
            address = email_address(self.sender)
            if not address:
                return {}
            return {"List-Unsubscribe": f"<mailto:{address}?subject=unsubscribe>"}
        return {
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }


def email_address(sender: str) -> str:
    """The bare address of a From value (``Tienda <hola@tienda.es>`` -> ``hola@tienda.es``)."""
    import email.utils

    return email.utils.parseaddr(sender)[1]


def with_footer(body: str, link: str | None, lang: str) -> str:
    """The body with the unsubscribe link, in a line of its own at its end unless the
    template already placed it."""
    if not link or link in body:
        return body
    from segmentum import i18n

    said = i18n.translations(lang).ugettext("To stop receiving these emails: %(link)s")
    return f"{body.rstrip()}\n\n-- \n{said % {'link': link}}\n"


def fold(wh: Warehouse, store: UnsubscribeStore) -> int:
    """Copy the recorded unsubscribes into the warehouse's ``suppressions``; returns how many.
    Safe to repeat: each is copied once (marked folded in the store afterwards)."""
    rows = store.unfolded()
    if not rows:
        return 0
    values: dict[str, Any] = {
        "customer_id": [r["customer_id"] for r in rows],
        "channel": [r["channel"] for r in rows],
        "reason": ["unsubscribed"] * len(rows),
        "added_at": [_dt.datetime.fromisoformat(r["at"]) for r in rows],
        "batch_id": ["unsubscribe"] * len(rows),  # where the rows came from: not a file
    }
    schema = SUPPRESSIONS.ibis_schema
    table = pa.table(
        {
            name: pa.array(values.get(name, [None] * len(rows)), dtype.to_pyarrow())
            for name, dtype in schema.items()
        }
    )
    stored = wh.ensure(SUPPRESSIONS)
    new = wh.from_arrow(table, "unsubscribes")
    # A crash between the copy and the mark: the rows already there are not added again.
    same = [
        new.customer_id == stored.customer_id,
        new.channel == stored.channel,
        new.added_at == stored.added_at,
        stored.reason == "unsubscribed",
    ]
    wh.insert(SUPPRESSIONS.name, new.anti_join(stored, same))
    store.mark_folded([int(r["unsubscribe_id"]) for r in rows])
    return len(rows)


def _waiting_store(url: str, settings: Settings) -> UnsubscribeStore | None:
    return UnsubscribeStore.existing(store_path(url, settings), settings.busy_wait_seconds)


def waiting(url: str, settings: Settings) -> bool:
    """Whether unsubscribes wait in the state file of the warehouse at ``url``."""
    store = _waiting_store(url, settings)
    return store is not None and bool(store.unfolded())


def fold_waiting(wh: Warehouse, settings: Settings) -> int:
    """:func:`fold` the unsubscribes waiting for ``wh`` (none without a state file)."""
    store = _waiting_store(wh.url, settings)
    return 0 if store is None else fold(wh, store)


@dataclass
class Suppressed:
    """Who must not be contacted (:func:`suppressed`): ``total`` people (a customer, or an
    address without one, counted once however many rows name them), the rows by reason (most
    first), and the latest ``rows`` (customer, email, channel, reason, day)."""

    total: int
    by_reason: dict[str, int]
    rows: list[dict[str, Any]]
    emails_hidden: bool

    @property
    def listed(self) -> int:
        """The rows on the list (a person with a bounce and an unsubscribe is two): what
        ``rows`` shows the latest of, so "more" compares with this, not with ``total``."""
        return sum(self.by_reason.values())


def suppressed(
    wh: Warehouse, settings: Settings, limit: int = 50, url: str | None = None
) -> Suppressed:
    """The suppression list as stored, with the unsubscribes waiting in the state file (the
    service records clicks while a run holds the warehouse; the next send or run copies them
    over): read only, so a page can show them without writing. Email addresses are personal
    data: given only with the setting ``export_personal_data``. ``url``: the warehouse's,
    whose state file holds the clicks, where ``wh`` is its published read models."""
    store = _waiting_store(url or wh.url, settings)
    waiting = [
        {
            "customer_id": r["customer_id"],
            "email": None,
            "channel": r["channel"],
            "reason": "unsubscribed",
            "added_at": _dt.datetime.fromisoformat(r["at"]),
        }
        for r in (store.unfolded() if store is not None else [])
    ]
    by_reason: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    people = 0
    new_ids = {r["customer_id"] for r in waiting}
    if wh.has(SUPPRESSIONS.name):
        t = wh.table(SUPPRESSIONS.name)
        reasons = t.group_by(reason=t.reason.fill_null("")).aggregate(n=t.count())
        by_reason = {r["reason"]: int(r["n"]) for r in reasons.to_pyarrow().to_pylist()}
        who = t.customer_id.fill_null("@" + t.email.fill_null(""))
        people = int(t.aggregate(n=who.nunique()).to_pyarrow()["n"][0].as_py() or 0)
        if new_ids:
            known = t.filter(t.customer_id.isin(sorted(new_ids))).select("customer_id")
            new_ids -= {r["customer_id"] for r in known.distinct().to_pyarrow().to_pylist()}
        cols = ["customer_id", "email", "channel", "reason", "added_at"]
        latest = t.select(*cols).order_by(ibis.desc("added_at")).limit(limit)
        rows = latest.to_pyarrow().to_pylist()
    if waiting:
        by_reason["unsubscribed"] = by_reason.get("unsubscribed", 0) + len(waiting)
    newest = sorted(waiting + rows, key=lambda r: r["added_at"] or _dt.datetime.min)[::-1]
    rows = newest[:limit]
    hidden = not settings.export_personal_data and any(r["email"] for r in rows)
    if not settings.export_personal_data:
        for r in rows:
            r["email"] = None
    ordered = dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
    return Suppressed(people + len(new_ids), ordered, rows, hidden)
