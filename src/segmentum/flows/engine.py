"""The flows engine: triggers in, each customer moved step by step, every message sent once.

``Flows.tick(now)`` does one round: it takes the triggers that arrived (real-time segment
transitions and tracked events, batch enter / exit events from the pipeline's membership log,
dates), enters customers into the enabled flows, records conversions, exits and unsubscribes,
then runs every step that is due by ``now``. It is idempotent and safe to call from any number
of processes (one at a time does the work, under a lease); the scheduler, ``segmentum flow
run`` and the tests all call it, the tests with an explicit ``now``.

Every change of a customer's state is written in the same SQLite transaction as the line of
their path that says what happened (the steps of up to 100 customers commit together), so a
process killed at any moment resumes where it stopped. A message is written ``sending`` under
its idempotency key (``flow.run.step``) before the channel is called and ``sent`` after; a
``sending`` message left by a dead process is sent again under the same key (webhook receivers
drop the repeat; an SMTP server gets the same Message-ID): nothing is lost, and at most the one
message in flight at a kill is repeated.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from segmentum.campaigns import channels as ch
from segmentum.campaigns import unsubscribe as unsub
from segmentum.campaigns.reasons import greeting
from segmentum.campaigns.sendlog import _alive
from segmentum.config import Settings, load_settings
from segmentum.errors import ConfigError, DeliveryError, InputError, SegmentumError, WarehouseError
from segmentum.flows import evaluate, quiet
from segmentum.flows.spec import DEFAULT_COLUMNS, FLOW_NAMES, Flow, Step, parse_flow, parse_quiet
from segmentum.flows.store import UNSUBSCRIBE_EVENTS, UNSUBSCRIBE_TRIGGER, FlowStore
from segmentum.warehouse import Warehouse

PURCHASE_EVENTS = ("purchase", "order_completed", "checkout_completed")
MAX_ATTEMPTS = 5
# Classes whose changes between two syncs are segment enter / exit triggers.
CLASS_TRIGGERS = ("rfm_segment", "lifecycle_stage", "value_potential")
BATCH = 500


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None, microsecond=0)


def ts(d: _dt.datetime) -> str:
    return d.replace(microsecond=0).isoformat(sep=" ")


def parse_ts(s: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(s)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, _dt.datetime | _dt.date):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    if hasattr(v, "as_integer_ratio") and not isinstance(v, int | float):  # Decimal
        return float(v)
    return v


@dataclass
class TickReport:
    """What one tick did."""

    busy: bool = False
    synced: bool = False
    triggers: int = 0
    entered: int = 0
    steps: int = 0
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    exited: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Flows:
    """The flows of one warehouse: their definitions, their customers, their ticks.

    Parameters
    ----------
    store
        The flows' SQLite state (:meth:`for_warehouse` puts it beside the warehouse).
    settings
        Channels (SMTP, webhooks), frequency cap, quiet hours.
    url
        The warehouse's URL: where the real-time store is found (None: no real-time triggers).
    """

    def __init__(self, store: FlowStore, settings: Settings, url: str | None = None) -> None:
        self.store = store
        self.settings = settings
        self.url = url
        self.token = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._channels: dict[str, Any] = {}
        self._down: dict[str, str] = {}
        self._scope: tuple[dict[str, str], list[str] | None] | None = None
        self._unsub: unsub.Links | None = None

    @classmethod
    def for_warehouse(cls, url: str, settings: Settings | None = None) -> Flows:
        settings = settings or load_settings()
        return cls(FlowStore.for_warehouse(url, settings), settings, url)

    # ------------------------------------------------------------------ definitions
    def scope(self) -> tuple[dict[str, str], list[str] | None]:
        """The columns (with their rule types) and segments a condition may use: those of
        the last warehouse sync, else the customer view's usual columns."""
        if self._scope is not None:  # inside a tick: read once
            return self._scope
        cols = {r["name"]: r["kind"] for r in self.store.query("SELECT name, kind FROM columns")}
        segs = self.store.query("SELECT value FROM cursors WHERE name = 'segments'")
        names = json.loads(segs[0]["value"]) if segs else None
        return (cols or dict(DEFAULT_COLUMNS)), names

    def check(self, text: str, source: str = "<flow>") -> Flow:
        cols, segs = self.scope()
        return parse_flow(text, source, cols, segs)

    def save(
        self, text: str, *, source: str = "<flow>", origin: str | None = None, replace: bool = True
    ) -> Flow:
        """Create a flow (a draft) or update one from its YAML; an enabled flow stays enabled,
        and customers already in it go on from the step they are at."""
        flow = self.check(text, source)
        now = ts(utcnow())
        with self.store.connect() as con:
            old = con.execute("SELECT status FROM flows WHERE name = ?", (flow.name,)).fetchone()
            if old is not None and not replace:
                raise InputError(
                    f"a flow named {flow.name!r} exists already",
                    "choose another name, or edit that flow",
                )
            if old is None:
                con.execute(
                    "INSERT INTO flows (name, yaml, status, version, origin, created_at, "
                    "updated_at) VALUES (?, ?, 'draft', 1, ?, ?, ?)",
                    (flow.name, text, origin, now, now),
                )
            else:
                con.execute(
                    "UPDATE flows SET yaml = ?, version = version + 1, updated_at = ? "
                    "WHERE name = ?",
                    (text, now, flow.name),
                )
        return flow

    def row(self, name: str) -> dict[str, Any]:
        found = self.store.query("SELECT * FROM flows WHERE name = ?", (name,))
        if not found:
            known = [r["name"] for r in self.store.query("SELECT name FROM flows ORDER BY name")]
            raise InputError(
                f"there is no flow named {name!r}",
                ("flows: " + ", ".join(known)) if known else "create one: segmentum flow new",
            )
        return found[0]

    def flow(self, name: str) -> Flow:
        r = self.row(name)
        return parse_flow(r["yaml"], f"flow {name}", *self.scope())

    def set_status(self, name: str, status: str) -> None:
        """``enabled``: customers enter from the next trigger on (earlier ones are not
        replayed); ``disabled``: nobody enters and customers in it pause where they are."""
        if status not in ("enabled", "disabled", "draft"):
            raise InputError(f"{status!r} is not a flow state", "enabled, disabled or draft")
        self.flow(name)  # a flow that no longer checks cannot be enabled
        with self.store.connect() as con:
            seq = con.execute("SELECT COALESCE(MAX(seq), 0) FROM triggers").fetchone()[0]
            con.execute(
                "UPDATE flows SET status = ?, updated_at = ?, "
                "start_seq = CASE WHEN status != 'enabled' AND ? = 'enabled' THEN ? "
                "ELSE start_seq END WHERE name = ?",
                (status, ts(utcnow()), status, seq, name),
            )

    def overview(self) -> list[dict[str, Any]]:
        """Every flow with its state and counts."""
        rows = self.store.query(
            "SELECT f.name, f.status, f.version, f.origin, f.updated_at, "
            "(SELECT COUNT(*) FROM runs r WHERE r.flow = f.name) AS entered, "
            "(SELECT COUNT(*) FROM runs r WHERE r.flow = f.name AND r.status = 'active') "
            "AS active, "
            "(SELECT COUNT(*) FROM messages m WHERE m.flow = f.name AND m.status = 'sent') "
            "AS sent, "
            "(SELECT COUNT(*) FROM runs r WHERE r.flow = f.name AND r.converted_at IS NOT NULL) "
            "AS converted FROM flows f ORDER BY f.name"
        )
        for r in rows:
            try:
                f = parse_flow(self.row(r["name"])["yaml"], r["name"])
                r["trigger"] = f.trigger.describe()
                r["channels"] = f.channels
                r["description"] = dict(f.description)
            except InputError as exc:
                r["trigger"], r["channels"], r["description"] = None, [], {}
                r["error"] = exc.message
        return rows

    # ------------------------------------------------------------------ triggers
    def record(
        self,
        kind: str,
        name: str,
        customer_id: str,
        at: _dt.datetime,
        ref: str | None = None,
        source: str = "manual",
        properties: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record one trigger (``enter`` / ``exit`` a segment, an ``event``); False when a
        trigger with the same ``ref`` was recorded before."""
        ref = ref or f"{source}:{kind}:{name}:{customer_id}:{ts(at)}"
        with self.store.connect() as con:
            return (
                con.execute(
                    "INSERT OR IGNORE INTO triggers (source, kind, name, customer_id, at, ref, "
                    "properties) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        source,
                        kind,
                        name,
                        str(customer_id),
                        ts(at),
                        ref,
                        json.dumps(properties or {}, default=str),
                    ),
                ).rowcount
                > 0
            )

    def pull_realtime(self) -> int:
        """Copy new real-time segment transitions and tracked events into the triggers (the
        cursor moves in the same transaction, so none is taken twice or missed)."""
        if not self.url:
            return 0
        try:
            from segmentum.realtime.store import RealtimeStore
        except ImportError:
            return 0
        rt = RealtimeStore.for_warehouse(self.url, self.settings)
        got = 0
        for cursor, fetch in (
            ("rt_transitions", rt.transitions_since),
            ("rt_events", rt.events_since),
        ):
            while True:
                after = int(self._cursor(cursor) or 0)
                rows = list(fetch(after, BATCH))
                if not rows:
                    break
                with self.store.connect() as con:
                    for r in rows:
                        if cursor == "rt_transitions":
                            vals = (
                                "realtime",
                                str(r["kind"]),
                                str(r["segment"]),
                                str(r["customer_id"]),
                                ts(_as_dt(r["at"])),
                                f"rt:t:{r['seq']}",
                                "{}",
                            )
                        else:
                            if not r.get("customer_id"):
                                continue  # an anonymous visitor cannot be messaged
                            props = {k: r.get(k) for k in ("product_id", "amount", "invoice_id")}
                            raw = r.get("properties")
                            props["properties"] = (
                                json.loads(raw) if isinstance(raw, str) and raw else raw
                            )
                            vals = (
                                "realtime",
                                "event",
                                str(r["event_type"]),
                                str(r["customer_id"]),
                                ts(_as_dt(r["at"])),
                                f"rt:e:{r.get('event_id') or r['seq']}",
                                json.dumps(props, default=str),
                            )
                        got += con.execute(
                            "INSERT OR IGNORE INTO triggers (source, kind, name, customer_id, "
                            "at, ref, properties) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            vals,
                        ).rowcount
                    self._set_cursor(con, cursor, str(max(int(r["seq"]) for r in rows)))
                if len(rows) < BATCH:
                    break
        return got

    def _cursor(self, name: str) -> str | None:
        found = self.store.query("SELECT value FROM cursors WHERE name = ?", (name,))
        return found[0]["value"] if found else None

    @staticmethod
    def _set_cursor(con: sqlite3.Connection, name: str, value: str) -> None:
        con.execute(
            "INSERT INTO cursors (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # ------------------------------------------------------------------ the warehouse
    def sync(self, wh: Warehouse, now: _dt.datetime | None = None, force: bool = False) -> bool:
        """Copy what flows need from the warehouse into their own store: each customer's
        contact, consent, time zone, language, values for conditions and segments, last
        purchase; campaign sends for the frequency cap; new enter / exit events of the
        membership log as triggers. Skipped (False) when nothing changed since the last one.
        """
        from segmentum.flows.sync import signature, snapshot

        now = now or utcnow()
        sig = signature(wh)
        if not force and sig == self._cursor("sync_signature"):
            return False
        last = self._cursor("batch_as_of")
        snap = snapshot(wh, now, self.settings, last)
        # Batch enter / exit of the built-in classes (RFM segment, lifecycle stage, value x
        # potential), found by comparing each customer's class with the one synced before.
        before = {
            r["customer_id"]: json.loads(r["attrs"] or "{}")
            for r in self.store.query("SELECT customer_id, attrs FROM profiles")
        }
        changes: list[tuple[str, str, str, str]] = []
        for p in snap.profiles:
            old = before.get(p[0])
            if not old:
                continue
            new = json.loads(p[11])
            for dim in CLASS_TRIGGERS:
                a, b = old.get(dim), new.get(dim)
                if a != b:
                    if a:
                        changes.append(("exit", str(a), p[0], f"class:{dim}:{a}:exit"))
                    if b:
                        changes.append(("enter", str(b), p[0], f"class:{dim}:{b}:enter"))
        with self.store.connect() as con:
            for kind, value, cid, ref in changes:
                con.execute(
                    "INSERT OR IGNORE INTO triggers (source, kind, name, customer_id, at, ref, "
                    "properties) VALUES ('batch', ?, ?, ?, ?, ?, '{}')",
                    (kind, value, cid, ts(now), f"{ref}:{cid}:{ts(now)}"),
                )
            con.execute("DELETE FROM columns")
            con.executemany(
                "INSERT INTO columns (name, kind) VALUES (?, ?)", sorted(snap.columns.items())
            )
            self._set_cursor(con, "segments", json.dumps(sorted(snap.segments)))
            con.executemany(
                "INSERT INTO profiles (customer_id, email, phone, first_name, language, tz, "
                "birthday, next_purchase, last_purchase_at, consent, suppressed, attrs, segments) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(customer_id) DO UPDATE SET email = excluded.email, "
                "phone = excluded.phone, first_name = excluded.first_name, "
                "language = excluded.language, tz = excluded.tz, birthday = excluded.birthday, "
                "next_purchase = excluded.next_purchase, "
                # a purchase tracked in real time may be newer than the warehouse knows
                "last_purchase_at = CASE WHEN profiles.last_purchase_at IS NULL "
                "OR excluded.last_purchase_at > profiles.last_purchase_at "
                "THEN excluded.last_purchase_at ELSE profiles.last_purchase_at END, "
                "consent = excluded.consent, suppressed = excluded.suppressed, "
                "attrs = excluded.attrs, segments = excluded.segments",
                snap.profiles,
            )
            con.execute("DELETE FROM contacts WHERE source LIKE 'campaign:%'")
            con.executemany(
                "INSERT OR IGNORE INTO contacts (customer_id, at, source) VALUES (?, ?, ?)",
                snap.contacts,
            )
            for segment, cid, event, as_of in snap.membership:
                con.execute(
                    "INSERT OR IGNORE INTO triggers (source, kind, name, customer_id, at, "
                    "ref, properties) VALUES ('batch', ?, ?, ?, ?, ?, '{}')",
                    (event, segment, cid, ts(now), f"batch:{segment}:{cid}:{event}:{as_of}"),
                )
            # The first sync only marks where the log stands: its past is not replayed.
            self._set_cursor(con, "batch_as_of", snap.newest or last or "")
            self._set_cursor(con, "sync_signature", sig)
        return True

    # ------------------------------------------------------------------ the tick
    def tick(self, now: _dt.datetime | None = None, wh: Warehouse | None = None) -> TickReport:
        """One round: sync from ``wh`` when given, take new triggers, enter, exit and move
        every customer whose next step is due by ``now``."""
        now = (now or utcnow()).replace(microsecond=0)
        rep = TickReport()
        if not self._lease():
            rep.busy = True
            return rep
        try:
            if wh is not None:
                rep.synced = self.sync(wh, now)
            try:
                self.pull_realtime()
            except (sqlite3.Error, OSError, WarehouseError) as exc:
                rep.errors.append(f"real-time store: {exc}")
            flows = self._enabled(rep)
            self._scope = self.scope()
            self._take_triggers(flows, now, rep)
            self._dates(flows, now, rep)
            self._exits(flows, now, rep)
            self._advance(flows, now, rep)
        finally:
            self._scope = None
            self._close_channels()
            self._release()
        return rep

    def _lease(self) -> bool:
        """Take the tick lease (one process at a time does a tick); a lease whose holder is
        dead, or older than ``send_lease_seconds``, is taken over."""
        wall = time.time()
        with self.store.connect() as con:
            held = con.execute("SELECT token, until FROM leases WHERE name = 'tick'").fetchone()
            if held is not None and held["token"] != self.token and held["until"] > wall:
                host, _, rest = str(held["token"]).partition("/")
                pid = rest.partition("/")[0]
                if pid.isdigit() and _alive(host, int(pid)):
                    return False
            con.execute(
                "INSERT INTO leases (name, token, until) VALUES ('tick', ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET token = excluded.token, until = excluded.until",
                (self.token, wall + max(self.settings.send_lease_seconds, 30)),
            )
        return True

    def _release(self) -> None:
        self.store.execute("DELETE FROM leases WHERE name = 'tick' AND token = ?", (self.token,))

    def _enabled(self, rep: TickReport | None = None) -> dict[str, tuple[Flow, int]]:
        cols, segs = self.scope()
        out: dict[str, tuple[Flow, int]] = {}
        for r in self.store.query(
            "SELECT name, yaml, start_seq FROM flows WHERE status = 'enabled'"
        ):
            try:
                out[r["name"]] = (parse_flow(r["yaml"], r["name"], cols, segs), r["start_seq"])
            except InputError as exc:
                # A flow that stopped checking (a column gone from the warehouse) waits, and
                # says why: its customers pause where they are.
                if rep is not None:
                    rep.errors.append(f"flow {r['name']} is paused: {exc.message}")
        return out

    # triggers -> entries
    def _take_triggers(
        self, flows: dict[str, tuple[Flow, int]], now: _dt.datetime, rep: TickReport
    ) -> None:
        while True:
            after = int(self._cursor("triggers") or 0)
            rows = self.store.query(
                "SELECT * FROM triggers WHERE seq > ? ORDER BY seq LIMIT ?", (after, BATCH)
            )
            if not rows:
                return
            with self.store.connect() as con:
                for t in rows:
                    rep.triggers += 1
                    self._trigger(con, t, flows, now, rep)
                self._set_cursor(con, "triggers", str(rows[-1]["seq"]))

    def _trigger(
        self,
        con: sqlite3.Connection,
        t: Mapping[str, Any],
        flows: dict[str, tuple[Flow, int]],
        now: _dt.datetime,
        rep: TickReport,
    ) -> None:
        kind, name, cid = t["kind"], t["name"], t["customer_id"]
        at = min(parse_ts(t["at"]), now)
        if kind == "exit":
            for f, _ in flows.values():
                if (
                    f.trigger.kind == "segment"
                    and f.trigger.on == "enter"
                    and f.trigger.name == name
                ):
                    con.execute(
                        "UPDATE runs SET left_at = ? WHERE flow = ? AND customer_id = ? "
                        "AND status = 'active' AND left_at IS NULL AND entered_at <= ?",
                        (ts(at), f.name, cid, ts(at)),
                    )
        if kind == "event" and name in PURCHASE_EVENTS:
            con.execute("INSERT OR IGNORE INTO profiles (customer_id) VALUES (?)", (cid,))
            con.execute(
                "UPDATE profiles SET last_purchase_at = ? WHERE customer_id = ? AND "
                "(last_purchase_at IS NULL OR last_purchase_at < ?)",
                (ts(at), cid, ts(at)),
            )
        if kind == "event" and name in UNSUBSCRIBE_EVENTS:
            con.execute(
                "UPDATE runs SET unsubscribed_at = ? WHERE customer_id = ? AND status = 'active'",
                (ts(at), cid),
            )
            props = json.loads(t.get("properties") or "{}")
            chan = ((props.get("properties") or {}) if isinstance(props, dict) else {}).get(
                "channel"
            )
            row = con.execute(
                "SELECT consent FROM profiles WHERE customer_id = ?", (cid,)
            ).fetchone()
            if row is not None:
                consent = json.loads(row[0] or "{}")
                for c in [chan] if chan else list(ch_names()):
                    consent[c] = 0
                con.execute(
                    "UPDATE profiles SET consent = ? WHERE customer_id = ?",
                    (json.dumps(consent), cid),
                )
        for f, start in flows.values():
            if t["seq"] <= start:
                continue
            tr = f.trigger
            hit = (tr.kind == "segment" and kind == tr.on and name == tr.name) or (
                tr.kind == "event" and kind == "event" and name == tr.name
            )
            if hit and self._enter(con, f, cid, at, t["ref"], now, tr.describe()):
                rep.entered += 1

    def _enter(
        self,
        con: sqlite3.Connection,
        f: Flow,
        cid: str,
        at: _dt.datetime,
        ref: str,
        now: _dt.datetime,
        why: str,
    ) -> bool:
        last = con.execute(
            "SELECT status, entered_at FROM runs WHERE flow = ? AND customer_id = ? "
            "ORDER BY entered_at DESC LIMIT 1",
            (f.name, cid),
        ).fetchone()
        if last is not None:
            if last["status"] == "active" or f.reentry == "never":
                return False
            if (
                isinstance(f.reentry, _dt.timedelta)
                and parse_ts(last["entered_at"]) > at - f.reentry
            ):
                return False
        span = sum((s.duration for s in f.steps if s.duration), _dt.timedelta())
        run_id = hashlib.sha256(f"{f.name}|{ref}".encode()).hexdigest()[:20]
        n = con.execute(
            "INSERT OR IGNORE INTO runs (run_id, flow, customer_id, status, step, due_at, "
            "entered_at, convert_until, trigger_ref, updated_at) "
            "VALUES (?, ?, ?, 'active', 0, ?, ?, ?, ?, ?)",
            (run_id, f.name, cid, ts(at), ts(at), ts(at + span + f.attribution), ref, ts(now)),
        ).rowcount
        if n:
            _log(con, run_id, f.name, cid, None, now, "entered", why)
        return bool(n)

    def enter(self, name: str, customer_id: str, at: _dt.datetime | None = None) -> bool:
        """Put one customer into a flow by hand (a test send, a support request)."""
        f = self.flow(name)
        at = at or utcnow()
        with self.store.connect() as con:
            return self._enter(
                con, f, customer_id, at, f"manual:{customer_id}:{ts(at)}", at, "by hand"
            )

    def _dates(
        self, flows: dict[str, tuple[Flow, int]], now: _dt.datetime, rep: TickReport
    ) -> None:
        """Date triggers: once a day per flow, the customers whose date (shifted by the
        flow's before / after) is that day; days missed while nothing ran are caught up."""
        for f, _ in flows.values():
            if f.trigger.kind != "date":
                continue
            key = f"date:{f.name}"
            last = self._cursor(key)
            today = now.date()
            first = today if last is None else _dt.date.fromisoformat(last) + _dt.timedelta(days=1)
            first = max(first, today - _dt.timedelta(days=7))
            day = first
            while day <= today:
                target = day - _dt.timedelta(days=f.trigger.offset_days)
                if f.trigger.name == "birthday":
                    mds = [target.strftime("%m-%d")]
                    if target.month == 2 and target.day == 28 and not _leap(target.year):
                        mds.append("02-29")
                    marks = ",".join("?" for _ in mds)
                    ids = self.store.query(
                        f"SELECT customer_id FROM profiles WHERE birthday IN ({marks})", mds
                    )
                else:
                    ids = self.store.query(
                        "SELECT customer_id FROM profiles WHERE next_purchase = ?",
                        (target.isoformat(),),
                    )
                at = max(
                    _dt.datetime.combine(day, _dt.time()),
                    now if day == today else _dt.datetime.combine(day, _dt.time()),
                )
                with self.store.connect() as con:
                    for r in ids:
                        cid = r["customer_id"]
                        if self._enter(
                            con, f, cid, at, f"date:{day}:{cid}", now, f.trigger.describe()
                        ):
                            rep.entered += 1
                    self._set_cursor(con, key, day.isoformat())
                day += _dt.timedelta(days=1)

    # conversions and exits
    def _exits(
        self, flows: dict[str, tuple[Flow, int]], now: _dt.datetime, rep: TickReport
    ) -> None:
        with self.store.connect() as con:
            con.execute(
                "UPDATE runs SET converted_at = (SELECT p.last_purchase_at FROM profiles p "
                "WHERE p.customer_id = runs.customer_id) WHERE converted_at IS NULL "
                "AND convert_until >= ? AND EXISTS (SELECT 1 FROM profiles p WHERE "
                "p.customer_id = runs.customer_id AND p.last_purchase_at > runs.entered_at "
                "AND p.last_purchase_at <= runs.convert_until)",
                (ts(now - _dt.timedelta(days=400)),),
            )
        rows = self.store.query(
            "SELECT * FROM runs WHERE status = 'active' AND (converted_at IS NOT NULL "
            "OR left_at IS NOT NULL OR unsubscribed_at IS NOT NULL)"
        )
        for r in rows:
            if r["flow"] not in flows:
                continue
            reason = _exit_reason(flows[r["flow"]][0], r)
            if reason:
                with self.store.connect() as con:
                    if _finish(con, r, "exited", reason, now):
                        rep.exited += 1

    # steps
    def _advance(
        self, flows: dict[str, tuple[Flow, int]], now: _dt.datetime, rep: TickReport
    ) -> None:
        if not flows:
            return
        marks = ",".join("?" for _ in flows)
        seen: set[str] = set()
        while True:
            # Runs still due after their turn (waiting on a busy channel) are skipped over.
            due = self.store.query(
                f"SELECT * FROM runs WHERE status = 'active' AND due_at <= ? AND flow IN ({marks}) "
                "ORDER BY due_at, run_id LIMIT ?",
                (ts(now), *flows, BATCH + len(seen)),
            )
            due = [r for r in due if r["run_id"] not in seen]
            if not due:
                return
            # The steps of many customers in one transaction; a send commits first (see _send).
            with self.store.batch():
                for i, r in enumerate(due, 1):
                    seen.add(r["run_id"])
                    self._run(flows[r["flow"]][0], r, now, rep)
                    if i % 100 == 0:
                        self.store.commit()  # other writers get a turn

    def _run(self, f: Flow, run: dict[str, Any], now: _dt.datetime, rep: TickReport) -> None:
        """Move one customer through every step that is due."""
        while run["status"] == "active":
            reason = _exit_reason(f, run)
            if reason:
                with self.store.connect() as con:
                    if _finish(con, run, "exited", reason, now):
                        rep.exited += 1
                return
            if run["step"] >= len(f.steps):
                with self.store.connect() as con:
                    _finish(con, run, "done", "completed", now)
                return
            s = f.steps[run["step"]]
            due = parse_ts(run["due_at"])
            if due > now:
                return
            rep.steps += 1
            if s.kind == "wait":
                assert s.duration is not None
                until = due + s.duration
                self._next(run, now, "wait", f"until {ts(until)}", due_at=until)
                continue
            if s.kind == "split":
                grp = "control" if _draw(f.name, run["customer_id"]) < s.control else "treatment"
                self._next(run, now, "split", grp, grp=grp)
                continue
            if s.kind == "condition":
                ok = self._holds(s, run, now)
                if ok or s.if_false == "continue":
                    self._next(run, now, "condition", "true" if ok else "false")
                    continue
                with self.store.connect() as con:
                    _log(
                        con,
                        run["run_id"],
                        f.name,
                        run["customer_id"],
                        s.index,
                        now,
                        "condition",
                        "false",
                    )
                    if _finish(con, run, "exited", "condition_false", now):
                        rep.exited += 1
                return
            if not self._send(f, s, run, now, rep):
                return

    def _next(
        self,
        run: dict[str, Any],
        now: _dt.datetime,
        what: str,
        detail: str,
        *,
        due_at: _dt.datetime | None = None,
        grp: str | None = None,
    ) -> None:
        """Step done: move to the next one (one transaction with its line in the path)."""
        step = run["step"]
        new_due = ts(due_at) if due_at is not None else run["due_at"]
        with self.store.connect() as con:
            n = con.execute(
                "UPDATE runs SET step = ?, due_at = ?, grp = COALESCE(?, grp), deferred = 0, "
                "updated_at = ? WHERE run_id = ? AND step = ? AND status = 'active'",
                (step + 1, new_due, grp, ts(now), run["run_id"], step),
            ).rowcount
            if n:
                _log(con, run["run_id"], run["flow"], run["customer_id"], step, now, what, detail)
        run["step"] = step + 1 if n else run["step"]
        run["due_at"] = new_due
        if grp:
            run["grp"] = grp
        if not n:  # another process moved it: stop here, the next tick reads it afresh
            run["status"] = "stale"

    def _profile(self, cid: str) -> dict[str, Any] | None:
        found = self.store.query("SELECT * FROM profiles WHERE customer_id = ?", (cid,))
        return found[0] if found else None

    def _holds(self, s: Step, run: Mapping[str, Any], now: _dt.datetime) -> bool:
        prof = self._profile(run["customer_id"]) or {}
        values: dict[str, Any] = json.loads(prof.get("attrs") or "{}")
        values["bought_since_entry"] = bool(
            prof.get("last_purchase_at") and prof["last_purchase_at"] > run["entered_at"]
        )
        values["days_in_flow"] = (now - parse_ts(run["entered_at"])).total_seconds() / 86400
        cols, _ = self.scope()
        kinds = {**cols, **FLOW_NAMES}
        segs = set(json.loads(prof.get("segments") or "[]"))
        assert s.node is not None
        return evaluate.holds(s.node, values, segs, kinds)

    # sending
    def _send(
        self, f: Flow, s: Step, run: dict[str, Any], now: _dt.datetime, rep: TickReport
    ) -> bool:
        """One send step; True when the customer may go on to the next step now."""
        assert s.channel is not None and s.template is not None
        cid = run["customer_id"]
        key = f"{f.name}.{run['run_id']}.{s.index}"
        msg = self.store.query("SELECT * FROM messages WHERE key = ?", (key,))
        m = msg[0] if msg else None
        if m is not None and m["status"] in ("sent", "failed"):
            self._next(run, now, m["status"], s.channel)
            return run["status"] == "active"
        if run.get("grp") == "control":
            rep.skipped += 1
            self._next(run, now, "skipped", "control")
            return run["status"] == "active"
        prof = self._profile(cid)
        if m is None:
            blocked = _blocked(prof, s.channel)
            if blocked:
                rep.skipped += 1
                if blocked in ("no_consent", "suppressed") and f.exits.unsubscribed:
                    # Never having consented is not unsubscribing: each leaves with its reason.
                    why = "unsubscribed" if self._unsubscribed(cid, blocked) else "no_consent"
                    with self.store.connect() as con:
                        _log(con, run["run_id"], f.name, cid, s.index, now, "skipped", blocked)
                        if _finish(con, run, "exited", why, now):
                            rep.exited += 1
                    return False
                self._next(run, now, "skipped", blocked)
                return run["status"] == "active"
            if self._capped(cid, now):
                rep.skipped += 1
                self._next(run, now, "skipped", "capped")
                return run["status"] == "active"
            assert prof is not None
            wake = quiet.quiet_until(now, prof.get("tz"), self._quiet(f))
            if wake is not None:
                rep.deferred += 1
                with self.store.connect() as con:
                    con.execute(
                        "UPDATE runs SET due_at = ?, deferred = 1, updated_at = ? "
                        "WHERE run_id = ? AND status = 'active'",
                        (ts(wake), ts(now), run["run_id"]),
                    )
                    _log(
                        con,
                        run["run_id"],
                        f.name,
                        cid,
                        s.index,
                        now,
                        "deferred",
                        f"quiet hours until {ts(wake)}",
                    )
                return False
        if s.channel in self._down:
            return False
        self.store.commit()  # what happened before is on disk before anything goes out
        if not self._claim(key, run, s, now):
            return False
        self.store.commit()  # the claim is on disk before the channel is called
        assert prof is not None
        error, permanent = self._deliver(f, s, key, prof, run)
        retry = False
        with self.store.connect() as con:
            if error is None:
                con.execute(
                    "UPDATE messages SET status = 'sent', sent_at = ?, error = NULL, "
                    "claim_token = NULL WHERE key = ? AND claim_token = ?",
                    (ts(now), key, self.token),
                )
                rep.sent += 1
            else:
                attempts = con.execute(
                    "SELECT attempts FROM messages WHERE key = ?", (key,)
                ).fetchone()[0]
                final = permanent or attempts >= MAX_ATTEMPTS
                con.execute(
                    "UPDATE messages SET status = ?, error = ?, claim_token = NULL "
                    "WHERE key = ? AND claim_token = ?",
                    ("failed" if final else "retry", error, key, self.token),
                )
                if not final:
                    wait = _dt.timedelta(minutes=5 * 2 ** (attempts - 1))
                    con.execute(
                        "UPDATE runs SET due_at = ?, updated_at = ? WHERE run_id = ?",
                        (ts(now + wait), ts(now), run["run_id"]),
                    )
                    _log(con, run["run_id"], f.name, cid, s.index, now, "retry", error)
                    retry = True
                else:
                    rep.failed += 1
        if retry:
            self.store.commit()
            return False
        self._next(
            run,
            now,
            "sent" if error is None else "failed",
            s.channel if error is None else str(error),
        )
        self.store.commit()  # the outcome is on disk before the next message goes out
        return run["status"] == "active"

    def _claim(self, key: str, run: Mapping[str, Any], s: Step, now: _dt.datetime) -> bool:
        """Write the message ``sending`` under this process's claim before it goes out."""
        with self.store.connect() as con:
            m = con.execute(
                "SELECT status, claim_token, claimed_at FROM messages WHERE key = ?", (key,)
            ).fetchone()
            if (
                m is not None
                and m["status"] == "sending"
                and m["claim_token"] not in (None, self.token)
            ):
                host, _, rest = str(m["claim_token"]).partition("/")
                pid = rest.partition("/")[0]
                age = time.time() - float(m["claimed_at"] or 0)
                if (
                    pid.isdigit()
                    and _alive(host, int(pid))
                    and age < self.settings.send_lease_seconds
                ):
                    return False  # another live process has it in flight
            con.execute(
                "INSERT INTO messages (key, run_id, flow, step, customer_id, channel, status, "
                "claim_token, claimed_at, attempts) VALUES (?, ?, ?, ?, ?, ?, 'sending', ?, ?, 1) "
                "ON CONFLICT(key) DO UPDATE SET status = 'sending', "
                "claim_token = excluded.claim_token, claimed_at = excluded.claimed_at, "
                "attempts = messages.attempts + 1",
                (
                    key,
                    run["run_id"],
                    run["flow"],
                    s.index,
                    run["customer_id"],
                    s.channel,
                    self.token,
                    str(time.time()),
                ),
            )
        return True

    def _deliver(
        self, f: Flow, s: Step, key: str, prof: Mapping[str, Any], run: Mapping[str, Any]
    ) -> tuple[str | None, bool]:
        """Hand one message to its channel: (error or None, whether the error is permanent)."""
        lang = prof.get("language") or "en"
        attrs = json.loads(prof.get("attrs") or "{}")
        context = {
            "campaign": f.name,
            "first_name": prof.get("first_name"),
            "greeting": greeting(lang, prof.get("first_name")),
            "segment": attrs.get("rfm_segment_es" if lang == "es" else "rfm_segment"),
            "reason": (f.description or {}).get(lang) or f.name,
            "recommendation": attrs.get("top_category"),
            "customer_id": run["customer_id"],
        }
        cid = str(run["customer_id"])
        links = self._links()
        if s.channel == "email":
            context["unsubscribe_url"] = links.for_template(cid, lang)
        assert s.template is not None and s.channel is not None
        try:
            subject, body = ch.render(s.template, lang, context)
            sender = self._channel(s.channel)
            if s.channel == "email":
                body = unsub.with_footer(body, links.link(cid, lang), lang)
                sender.send(key, str(prof["email"]), subject, body, links.headers(cid, lang))
            elif s.channel == "sms":
                from segmentum.campaigns.sms import render_text  # the template's sms: text

                text = render_text(s.template, lang, context)
                sender.send(key, str(prof["phone"]), text, attrs.get("country"))
            else:
                sender.send(
                    {
                        "key": key,
                        "flow": f.name,
                        "step": s.index,
                        "customer_id": run["customer_id"],
                        "language": lang,
                        "title": subject,
                        "body": body,
                    }
                )
        except ch.Failed as exc:
            return str(exc), exc.permanent
        except (ConfigError, DeliveryError) as exc:
            self._down[s.channel] = exc.message
            return exc.message, False
        except InputError as exc:
            return exc.message, True
        return None, False

    def _links(self) -> unsub.Links:
        """The unsubscribe links of this warehouse's emails (one secret for every sender)."""
        if self._unsub is None:
            self._unsub = unsub.Links(self.url, self.settings)
        return self._unsub

    def _channel(self, name: str) -> Any:
        if name not in self._channels:
            if name == "email":
                sender: Any = ch.Mailer(self.settings)
                sender.open()
            elif name == "sms":
                sender = _sms_sender(self.settings)
            else:
                url = (
                    self.settings.push_webhook_url
                    if name == "push"
                    else self.settings.inapp_webhook_url
                )
                sender = ch.Poster(url, self.settings.channel_secret)
            self._channels[name] = sender
        return self._channels[name]

    def _close_channels(self) -> None:
        for sender in self._channels.values():
            with contextlib.suppress(Exception):
                sender.close()
        self._channels.clear()
        self._down.clear()

    def _unsubscribed(self, cid: str, blocked: str) -> bool:
        """Whether a customer the channel refuses chose so: on the suppression list, or an
        unsubscribe event of theirs came in (before this run, too); without either they never
        gave consent, which is no unsubscribing."""
        if blocked == "suppressed":
            return True
        # Written as the store's partial index triggers_unsubscribe is, so it is used.
        return bool(
            self.store.query(
                f"SELECT 1 FROM triggers WHERE customer_id = ? AND {UNSUBSCRIBE_TRIGGER} LIMIT 1",
                (cid,),
            )
        )

    def _quiet(self, f: Flow) -> tuple[_dt.time, _dt.time] | None:
        if f.quiet_hours != "default":
            return f.quiet_hours  # type: ignore[return-value]
        setting = str(getattr(self.settings, "flow_quiet_hours", "21:00-09:00") or "")
        if setting.strip().lower() in ("", "none", "off", "false"):
            return None
        return parse_quiet(setting)

    def _capped(self, cid: str, now: _dt.datetime) -> bool:
        """Whether the customer already got ``frequency_cap`` messages, from flows and
        campaigns together, in the ``frequency_cap_days`` up to ``now`` (a tick replayed for a
        past moment does not count what went out after it)."""
        cap = self.settings.frequency_cap
        if cap <= 0:
            return False
        since = ts(now - _dt.timedelta(days=self.settings.frequency_cap_days))
        until = ts(now)
        got = self.store.query(
            "SELECT (SELECT COUNT(*) FROM messages WHERE customer_id = ? AND status = 'sent' "
            "AND sent_at > ? AND sent_at <= ?) + (SELECT COUNT(*) FROM contacts "
            "WHERE customer_id = ? AND at > ? AND at <= ?) AS n",
            (cid, since, until, cid, since, until),
        )
        return int(got[0]["n"]) >= cap

    # ------------------------------------------------------------------ reading
    def path(self, customer_id: str) -> list[dict[str, Any]]:
        """Every line of a customer's path through every flow, oldest first."""
        return self.store.query(
            "SELECT p.flow, p.run_id, p.step, p.at, p.what, p.detail FROM path p "
            "WHERE p.customer_id = ? ORDER BY p.id",
            (customer_id,),
        )

    def activity(self, customer_id: str, limit: int = 40) -> list[dict[str, Any]]:
        """The messages flows sent a customer, tried and failed, or held back (control group,
        no consent, frequency cap...), newest first, read now: rows as the customer timeline
        shows activity (``when``, ``kind`` message, ``flow`` and ``what``: the flow's name,
        ``channel``, ``group``, ``outcome``: sent, failed or why it was held back)."""
        rows = self.store.query(
            "SELECT m.flow, m.step, m.channel, m.status AS outcome, "
            "COALESCE(m.sent_at, m.claimed_at) AS at, r.grp FROM messages m "
            "LEFT JOIN runs r ON r.run_id = m.run_id "
            "WHERE m.customer_id = ? AND m.status IN ('sent', 'failed') "
            "UNION ALL "
            "SELECT p.flow, p.step, NULL, p.detail, p.at, r.grp FROM path p "
            "LEFT JOIN runs r ON r.run_id = p.run_id "
            "WHERE p.customer_id = ? AND p.what = 'skipped' "
            "ORDER BY at DESC LIMIT ?",
            (customer_id, customer_id, limit),
        )
        steps: dict[str, tuple[Step, ...]] = {}
        out = []
        for r in rows:
            channel = r["channel"]
            if channel is None:  # held back: the path keeps the step, its flow the channel
                if r["flow"] not in steps:
                    try:
                        steps[r["flow"]] = self.flow(r["flow"]).steps
                    except SegmentumError:  # a flow deleted or no longer valid
                        steps[r["flow"]] = ()
                found = [s for s in steps[r["flow"]] if s.index == r["step"]]
                channel = found[0].channel if found else None
            out.append(
                {
                    "when": parse_ts(r["at"]) if r["at"] else None,
                    "kind": "message",
                    "flow": r["flow"],
                    "what": r["flow"],
                    "channel": channel,
                    "group": r["grp"],
                    "outcome": r["outcome"],
                }
            )
        return out

    def runs(self, name: str, status: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs WHERE flow = ?" + (" AND status = ?" if status else "")
        return self.store.query(
            sql + " ORDER BY entered_at, run_id", (name, status) if status else (name,)
        )

    def results(self, name: str) -> dict[str, Any]:
        from segmentum.flows.results import flow_results

        return flow_results(self, self.flow(name))


def ch_names() -> Iterable[str]:
    return ("email", "sms", "push", "inapp", "web")


def _as_dt(v: Any) -> _dt.datetime:
    if isinstance(v, _dt.datetime):
        return v.astimezone(_dt.UTC).replace(tzinfo=None) if v.tzinfo else v
    d = _dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    return d.astimezone(_dt.UTC).replace(tzinfo=None) if d.tzinfo else d


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _draw(flow: str, customer_id: str) -> float:
    """A fixed draw in [0, 1) per flow and customer: the same customer always lands in the
    same group of a flow, whichever process runs the split."""
    h = hashlib.sha256(f"{flow}|{customer_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _exit_reason(f: Flow, run: Mapping[str, Any]) -> str | None:
    if f.exits.converted and run.get("converted_at"):
        return "converted"
    if f.exits.left_segment and run.get("left_at"):
        return "left_segment"
    if f.exits.unsubscribed and run.get("unsubscribed_at"):
        return "unsubscribed"
    return None


def _blocked(prof: Mapping[str, Any] | None, channel: str) -> str | None:
    if prof is None or (prof.get("attrs") in (None, "{}") and not prof.get("email")):
        return "unknown_customer"
    if channel == "email" and not (prof.get("email") or "").strip():
        return "no_address"
    if channel == "sms" and not (prof.get("phone") or "").strip():
        return "no_address"
    consent = json.loads(prof.get("consent") or "{}")
    if not consent.get(channel):
        return "no_consent"
    suppressed = json.loads(prof.get("suppressed") or "[]")
    if channel in suppressed or "all" in suppressed:
        return "suppressed"
    return None


def _log(
    con: sqlite3.Connection,
    run_id: str,
    flow: str,
    cid: str,
    step: int | None,
    at: _dt.datetime,
    what: str,
    detail: str | None,
) -> None:
    con.execute(
        "INSERT INTO path (run_id, flow, customer_id, step, at, what, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run_id, flow, cid, step, ts(at), what, detail),
    )


def _finish(
    con: sqlite3.Connection, run: dict[str, Any], status: str, reason: str, now: _dt.datetime
) -> bool:
    n = con.execute(
        "UPDATE runs SET status = ?, exit_reason = ?, exited_at = ?, updated_at = ? "
        "WHERE run_id = ? AND status = 'active'",
        (status, reason, ts(now), ts(now), run["run_id"]),
    ).rowcount
    if n:
        _log(
            con,
            run["run_id"],
            run["flow"],
            run["customer_id"],
            None,
            now,
            "exited" if status == "exited" else "done",
            reason,
        )
    run["status"] = status
    return bool(n)


class _Sms:
    """SMS through :mod:`segmentum.campaigns.sms` (its provider adapter, parts and encoding),
    failing the way the other channels do."""

    def __init__(self, settings: Settings) -> None:
        from segmentum.campaigns.sms import SmsSender

        self.sender = SmsSender.from_settings(settings)

    def send(self, key: str, to: str, text: str, country: Any = None) -> None:
        res = self.sender.send(to, text, key, country=country)
        if not res.ok:
            raise ch.Failed(str(res.error or res.status), res.permanent)

    def close(self) -> None:
        self.sender.close()


def _sms_sender(settings: Settings) -> Any:
    return _Sms(settings)


class Runner:
    """Ticks in a loop until stopped: ``segmentum flow run`` and the service's background
    thread. ``with_warehouse(fn)`` runs ``fn`` on the open warehouse when it is free (and
    raises or returns None when it is busy), so flows keep going during a pipeline run."""

    def __init__(
        self,
        flows: Flows,
        interval: float = 10.0,
        sync_every: float = 60.0,
        with_warehouse: Callable[[Callable[[Warehouse], Any]], Any] | None = None,
    ) -> None:
        self.flows = flows
        self.interval = interval
        self.sync_every = sync_every
        self.with_warehouse = with_warehouse
        self.stop = threading.Event()
        self.last: TickReport | None = None

    def once(self, sync: bool) -> TickReport:
        if sync and self.with_warehouse is not None:
            try:
                got = self.with_warehouse(lambda wh: self.flows.tick(wh=wh))
                if isinstance(got, TickReport):
                    return got
            except WarehouseError:
                pass
            except Exception as exc:
                if "busy" not in str(exc).lower():
                    raise
        return self.flows.tick()

    def run(self, on_tick: Callable[[TickReport], None] | None = None) -> None:
        last_sync = -math.inf
        while not self.stop.is_set():
            sync = time.monotonic() - last_sync >= self.sync_every
            rep = self.once(sync)
            if sync:
                last_sync = time.monotonic()
            self.last = rep
            if on_tick is not None:
                on_tick(rep)
            self.stop.wait(self.interval)
