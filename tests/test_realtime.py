"""Real-time segments: events in through the real service, live membership, signed enter / exit
webhooks to a real receiver on 127.0.0.1, and the tracked events into the warehouse once.

One copy of the session's demo warehouse (``service_db``, its read models published) is served
for the module by uvicorn in a thread; no pipeline runs here.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import SERVICE_SETTINGS, Receiver, serving

import segmentum
from segmentum import i18n
from segmentum.cli import main
from segmentum.realtime.deliver import Worker
from segmentum.realtime.drain import drain
from segmentum.realtime.engine import Engine
from segmentum.realtime.events import check_events
from segmentum.realtime.store import RealtimeStore, parse_iso
from segmentum.realtime.sync import build_history, sync
from segmentum.segments.store import Segments
from segmentum.service.app import create_app
from segmentum.service.auth import SESSION_COOKIE, create_key, create_session
from segmentum.service.state import StateStore
from segmentum.serving import ServingStore, _bases, publish

CART = (
    "exists(event == 'cart_abandoned', last 2 hours) and count(purchases, last 2 hours) == 0 "
    "and frequency >= 1"
)
ORIGIN = "https://shop.example.com"


@pytest.fixture(scope="module")
def live(service_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The service on a copy of the demo warehouse with its published read models, a track,
    a read and an admin key, and a receiver subscribed to a live ``cart_2h`` (abandoned a cart in the last 2 hours, bought nothing since)."""
    root = tmp_path_factory.mktemp("realtime")
    db = root / "shop.duckdb"
    shutil.copyfile(service_db, db)
    for tail in (".serving.duckdb", ".serving.duckdb.docs.sqlite"):
        shutil.copyfile(service_db.with_name(service_db.stem + tail), root / f"shop{tail}")
    # The documents' base files, read where they lie (named in the documents file).
    bases = _bases(service_db.with_name(service_db.stem + ".serving.duckdb"))
    for base in bases:
        shutil.copyfile(base, root / base.name)
    [lookup] = [b for b in bases if b.name.endswith(".customer_lookup.base")]
    url = f"duckdb:///{db}"
    settings = SERVICE_SETTINGS.with_overrides(realtime_retry_seconds=0.05, track_origins=ORIGIN)
    state = StateStore.for_warehouse(url, settings)
    keys = {k: create_key(state, f"{k} key", [k]) for k in ("track", "read", "admin")}
    receiver = Receiver()
    wh = segmentum.connect(url)
    try:  # saved before the service starts: its first start hands it to the live side
        Segments(wh, settings).create("cart_2h", CART, "abandoned a cart, bought nothing since")
    finally:
        wh.close()
    app = create_app(url, settings)
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as http:

        def call(method: str, path: str, key: str, **kw: Any) -> httpx.Response:
            headers = {"X-API-Key": keys[key], **kw.pop("headers", {})}
            return http.request(method, path, headers=headers, **kw)

        r = call("POST", "/v1/segments/cart_2h/webhooks", "admin", json={"url": receiver.url})
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        docs = sqlite3.connect(root / lookup.name)  # written whole: every customer there
        buyers = [
            k
            for k, d in docs.execute("SELECT k, doc FROM customer_lookup ORDER BY k LIMIT 200")
            if (json.loads(d).get("frequency") or 0) >= 1
        ]
        docs.close()
        yield {
            "url": url,
            "app": app,
            "call": call,
            "http": http,
            "keys": keys,
            "receiver": receiver,
            "buyers": buyers,
            "store": RealtimeStore.for_warehouse(url, settings),
            "settings": settings,
        }
    receiver.server.shutdown()


def _wait(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def _local(minutes_ago: float, hours: int = 1) -> str:
    """A time ``minutes_ago`` written as a shop's server writes it: local, with its offset."""
    zone = _dt.timezone(_dt.timedelta(hours=hours))
    when = _dt.datetime.now(zone) - _dt.timedelta(minutes=minutes_ago)
    return when.isoformat(timespec="seconds")


def _live_numbers(live: dict[str, Any], lang: str) -> dict[str, str]:
    """The explorer's live numbers for ``cart_2h`` (a read session); the last event received
    is checked against the store here, in the page's words."""
    s = create_session(live["app"].state.svc.sessions, live["keys"]["read"])
    assert s is not None
    r = live["http"].get(
        "/dashboard/explorer",
        params={"segment": "cart_2h", "lang": lang},
        cookies={SESSION_COOKIE: s.sid},
    )
    page = r.text
    got = dict(re.findall(r'<dd data-live="([\w-]+)">([^<]*)</dd>', page))
    received = live["store"].status()["last_event"]["received_at"]
    when = i18n.date(parse_iso(received).replace(tzinfo=None), lang)
    words = {"es": ("Miembros ahora (en vivo)", "hora UTC"), "en": ("Members now (live)", "UTC")}
    assert got.pop("last-event") == f"{when} ({words[lang][1]})"
    assert words[lang][0] in page
    return got


def test_a_tracked_cart_abandonment_enters_and_a_purchase_exits_with_signed_webhooks_once(
    live: dict[str, Any],
) -> None:
    call, receiver, store = live["call"], live["receiver"], live["store"]
    cid = live["buyers"][0]
    batch = {
        "events": [
            {
                "event_id": "j-1",
                "customer_id": cid,
                "event_type": "product_view",
                "timestamp": _local(12),
                "product_id": 85123.0,
            },
            {
                "event_id": "j-2",
                "customer_id": cid,
                "event_type": "cart_abandoned",
                "timestamp": _local(10),
                "properties": {"cart_value": 80.5},
                "channel": "web",
            },
        ]
    }
    r = call("POST", "/v1/events", "track", json=batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["read"], body["accepted"], body["duplicates"]) == (2, 2, 0)
    mine = [(t["segment"], t["kind"]) for t in body["transitions"] if t["segment"] == "cart_2h"]
    assert mine == [("cart_2h", "enter")]
    assert _wait(lambda: len(receiver.seen) == 1)
    enter = receiver.seen[0]
    assert enter["ok"] and enter["body"]["realtime"] is True
    assert enter["body"]["events"][0] | {"at": None, "as_of": None, "transition_seq": None} == {
        "segment": "cart_2h",
        "customer_id": cid,
        "event": "enter",
        "cause_event_id": "j-2",
        "at": None,
        "as_of": None,
        "transition_seq": None,
    }
    assert _live_numbers(live, "es") == {"members": "1", "waiting": "0"}

    # The worker goes down; the purchase's exit waits in the outbox, and the endpoint fails once.
    live["app"].state.realtime_worker.stop()
    receiver.fail = 1
    purchase = {
        "event_id": "j-3",
        "customer_id": cid,
        "event_type": "purchase",
        "invoice_id": "990001.0",
        "amount": "59.90",
        "timestamp": _local(1),
    }
    r = call("POST", "/v1/events", "track", json=purchase)
    assert [t["kind"] for t in r.json()["transitions"] if t["segment"] == "cart_2h"] == ["exit"]
    assert r.json()["webhooks_queued"] == 1
    assert _live_numbers(live, "en") == {"members": "0", "waiting": "1"}
    again = call("POST", "/v1/events", "track", json=batch).json()  # a client's retry
    assert (again["accepted"], again["duplicates"], again["transitions"]) == (0, 2, [])
    time.sleep(0.2)
    assert len(receiver.seen) == 1

    worker = Worker(live["app"].state.realtime, retry_seconds=0.05).start()  # the restart
    live["app"].state.realtime_worker = worker
    assert _wait(lambda: len(receiver.seen) == 2)
    time.sleep(0.3)  # nothing more comes
    assert len(receiver.seen) == 2 and receiver.fail == 0
    assert len({s["key"] for s in receiver.seen}) == 2 and all(s["ok"] for s in receiver.seen)
    assert receiver.seen[1]["body"]["events"][0]["event"] == "exit"
    mine = [
        (t["kind"], t["cause_event_id"])
        for t in store.transitions_since(0)
        if t["customer_id"] == cid and t["segment"] == "cart_2h"
    ]
    assert mine == [("enter", "j-2"), ("exit", "j-3")]
    rows = store.query("SELECT status, attempts FROM webhook_outbox ORDER BY id")
    assert rows == [{"status": "delivered", "attempts": 1}, {"status": "delivered", "attempts": 2}]


def test_bad_events_are_refused_whole_naming_the_event_and_field(live: dict[str, Any]) -> None:
    call, store = live["call"], live["store"]
    before = store.status()["events"]
    bad = {
        "events": [
            {"customer_id": "C1", "event_type": "page_view"},
            {"event_type": "page_view"},
            {"customer_id": "C1", "event_type": "page_view", "timestamp": "ayer"},
            {"customer_id": "C1", "event_type": "purchase", "amount": 10},
        ]
    }
    r = call("POST", "/v1/events", "track", json=bad)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem")
    problems = r.json()
    assert "3 of 4 events" in problems["detail"] and "nothing was stored" in problems["detail"]
    assert [(e["index"], e["field"]) for e in problems["errors"]] == [
        (1, "customer_id"),
        (2, "timestamp"),
        (3, "invoice_id"),
    ]
    assert all(e["hint"] for e in problems["errors"])
    assert call("POST", "/v1/events", "track", content=b"{not json").status_code == 422
    too_many = {"events": [{"customer_id": "C1", "event_type": "page_view"}] * 1001}
    assert call("POST", "/v1/events", "track", json=too_many).status_code == 413
    assert store.status()["events"] == before


def test_the_events_refusals_read_in_spanish_for_a_spanish_client(live: dict[str, Any]) -> None:
    """A bad batch, a body that is not JSON, too many events, a site not allowed: each said in
    Spanish (detail, hint and each event's problem) to Accept-Language: es; the title and the
    field names stay the same for programs."""
    call = live["call"]
    es = {"Accept-Language": "es-ES,es;q=0.9"}
    bad = {"events": [{"event_type": "page_view"}, {"customer_id": "C1", "event_type": "x y"}]}
    r = call("POST", "/v1/events", "track", json=bad, headers=es)
    body = r.json()
    assert r.status_code == 422 and body["title"] == "Invalid events", body
    assert body["detail"] == "2 de 2 eventos tienen problemas; no se ha guardado nada", body
    assert body["hint"].startswith("corrígelos y envía el lote de nuevo"), body
    said = [(e["field"], e["message"]) for e in body["errors"]]
    assert said == [
        ("customer_id", "falta (y también anonymous_id)"),
        ("event_type", "'x y' no es un tipo de evento"),
    ], said
    assert body["errors"][1]["hint"].startswith("usa minúsculas"), body
    r = call("POST", "/v1/events", "track", content=b"{not json", headers=es)
    assert r.json()["detail"].startswith("el cuerpo no es JSON: "), r.json()
    assert r.json()["hint"].startswith('envía {"events": '), r.json()
    too_many = {"events": [{"customer_id": "C1", "event_type": "page_view"}] * 1001}
    r = call("POST", "/v1/events", "track", json=too_many, headers=es)
    assert r.status_code == 413, r.text
    assert (
        r.json()["detail"] == "el lote tiene 1.001 eventos; se aceptan como mucho 1.000 de una vez"
    )
    assert r.json()["hint"] == "envía lotes más pequeños"
    elsewhere = {**es, "Origin": "https://evil.example"}
    r = call("POST", "/v1/events", "track", json=bad, headers=elsewhere)
    assert r.status_code == 403 and r.json()["title"] == "Forbidden"
    assert r.json()["detail"] == "las páginas de https://evil.example no pueden enviar eventos"
    assert r.json()["hint"].startswith("añade el sitio al ajuste track_origins")


def test_only_track_and_admin_keys_send_events_and_a_track_key_reads_nothing(
    live: dict[str, Any],
) -> None:
    call = live["call"]
    event = {"anonymous_id": "cookie-1", "event_type": "page_view"}
    assert call("POST", "/v1/events", "read", json=event).status_code == 403
    assert call("POST", "/v1/events", "admin", json=event).status_code == 200
    assert call("GET", f"/v1/customers/{live['buyers'][0]}", "track").status_code == 403
    assert call("GET", "/v1/realtime", "track").status_code == 403


def test_pages_of_the_configured_site_only_may_send_events(live: dict[str, Any]) -> None:
    call, http = live["call"], live["http"]
    pre = http.options(
        "/v1/events",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in pre.headers["access-control-allow-headers"]
    event = {"anonymous_id": "cookie-2", "event_type": "page_view"}
    ok = call("POST", "/v1/events", "track", json=event, headers={"Origin": ORIGIN})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    evil = http.post(
        "/v1/events",
        json=event,
        headers={"Origin": "https://evil.example", "X-API-Key": live["keys"]["track"]},
    )
    assert evil.status_code == 403 and "track_origins" in evil.json()["hint"]
    assert http.get("/static/segmentum-track.js").status_code == 200


def test_a_member_leaves_when_the_abandoned_cart_falls_out_of_the_window(
    live: dict[str, Any],
) -> None:
    call, store = live["call"], live["store"]
    cid = live["buyers"][1]
    # Abandoned 2 hours ago less a few seconds: a member now, and not once they have passed
    # (a second's margin was too little on a loaded machine: the event arrived already out).
    event = {"customer_id": cid, "event_type": "cart_abandoned", "timestamp": _local(120 - 6 / 60)}
    r = call("POST", "/v1/events", "track", json=event)
    assert [t["kind"] for t in r.json()["transitions"] if t["segment"] == "cart_2h"] == ["enter"]

    def mine() -> list[dict[str, Any]]:
        return [
            t
            for t in store.transitions_since(0)
            if t["customer_id"] == cid and t["segment"] == "cart_2h"
        ]

    assert _wait(lambda: [t["kind"] for t in mine()] == ["enter", "exit"], 20)
    exit_ = mine()[-1]
    assert exit_["cause_event_id"] is None  # the clock, not an event


def test_segments_say_whether_they_run_live_and_why_not(
    live: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    segments = {
        s["name"]: s for s in live["call"]("GET", "/v1/realtime", "read").json()["segments"]
    }
    assert segments["cart_2h"]["realtime"] is True
    batch = [s for s in segments.values() if not s["realtime"]]
    assert batch and all(s["reason"] for s in batch)
    assert main(["realtime", "status", "--json", "-w", live["url"]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {s["name"] for s in out["segments"]} == set(segments)
    assert out["outbox"]["failed"] == 0
    with httpx.Client(base_url=str(live["http"].base_url), timeout=30) as browser:
        browser.get("/login")
        csrf = browser.cookies.get("segmentum_login_csrf", "")
        browser.post("/login", data={"key": live["keys"]["admin"], "csrf": csrf})
        page = browser.get("/dashboard/explorer?segment=vip").text
        assert "Solo por lotes: sin ventana de eventos o compras" in page


def test_tracked_events_reach_the_warehouse_once_on_the_next_run(
    live: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {
            "event_id": "w-1",
            "customer_id": "12350.0",
            "event_type": "email_click",
            "timestamp": "2026-03-01T09:30:00Z",
            "campaign_id": "SPRING",
        },
        {
            "event_id": "w-2",
            "anonymous_id": "cookie-9",
            "event_type": "page_view",
            "timestamp": "2026-03-01T10:30:00+01:00",
            "device": "mobile",
        },
    ]
    file = tmp_path / "events.jsonl"
    file.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    assert main(["events", "track", str(file), "-w", live["url"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 2
    waiting = live["store"].status()["pending_warehouse"]
    wh = segmentum.connect(live["url"])
    try:
        ev = wh.table("events")
        before, sales = ev.count().execute(), wh.table("transactions").count().execute()
        steps: list[tuple[str, str]] = []

        class Steps:
            def step(self, name: str, detail: str = "") -> None:
                steps.append((name, detail))

        # what the pipeline's "tracked events" step runs
        reports = drain(wh, live["settings"], Steps())
        assert sum(r.rows_read for r in reports) == waiting
        # The progress names the events by their range and store, not a temporary file.
        read = [d for name, d in steps if name == "read"]
        store = str(live["store"].path)
        assert len(read) == 1, steps
        assert re.fullmatch(rf"tracked events \d+ to \d+ from {re.escape(store)}", read[0]), steps
        assert not any("segmentum-tracked-" in d for _, d in steps), steps
        assert all(r.rows_read == r.accepted + r.quarantined for r in reports)
        assert ev.count().execute() == before + sum(r.accepted for r in reports)
        assert drain(wh, live["settings"]) == []  # nothing twice
        got = ev.filter(ev.event_id.isin(["w-1", "w-2"])).order_by("event_id").execute()
        assert list(got.customer_id.fillna("")) == ["12350", ""]  # 12350.0 is customer 12350
        assert list(got.campaign_id.fillna("")) == ["SPRING", ""]
        # UTC moves to the business zone (UTC here); another offset keeps the local time written
        assert [str(t) for t in got.timestamp] == ["2026-03-01 09:30:00", "2026-03-01 10:30:00"]
        assert wh.table("transactions").count().execute() == sales  # sales: the export's alone
    finally:
        wh.close()
    assert live["store"].status()["pending_warehouse"] == 0


def test_a_live_purchase_already_in_the_published_orders_counts_once(tmp_path: Path) -> None:
    """``count(purchases, last 7 days)`` from the published orders plus live purchases, one
    per invoice: the export's order tracked live again is not a second purchase."""
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    settings = SERVICE_SETTINGS
    yesterday = _dt.datetime.now(_dt.UTC).replace(tzinfo=None) - _dt.timedelta(days=1)
    wh.con.create_table(
        "transactions",
        wh.con.sql(
            "select 'A' as customer_id, 'INV-1' as invoice_id, 1 as line, 2.0 as quantity, "
            f"30.0 as amount, TIMESTAMP '{yesterday:%Y-%m-%d %H:%M:%S}' as timestamp"
        ),
    )
    wh.write("customer_lookup", wh.con.sql("select 'A' as customer_id, 1 as frequency"))
    wh.con.create_table(
        "segment_definitions",
        wh.con.sql(
            "select 'twice' as name, 'count(purchases, last 7 days) >= 2' as rule, "
            "'' as description, 'customer' as level, NULL::TIMESTAMP as created_at, "
            "NULL::TIMESTAMP as updated_at"
        ),
    )
    assert build_history(wh, settings) == 1
    target = tmp_path / "w.serving.duckdb"
    docs = {"customer_lookup": "customer_id", "realtime_history": "customer_id"}
    publish(wh, target, docs, documents=docs)
    store = RealtimeStore(tmp_path / "w.realtime.sqlite")
    assert sync(wh, settings, store=store)
    wh.close()
    engine = Engine(store, ServingStore(target), settings)

    def buy(event_id: str, invoice: str) -> list[str]:
        rows, problems = check_events(
            [
                {
                    "event_id": event_id,
                    "customer_id": "A",
                    "event_type": "purchase",
                    "invoice_id": invoice,
                    "amount": 30,
                }
            ]
        )
        assert not problems
        return [f"{t.segment}:{t.kind}" for t in engine.track(rows).transitions]

    assert buy("p-1", "INV-1") == []  # the exported order itself: still one purchase
    assert buy("p-2", "INV-2") == ["twice:enter"]


def test_hour_windows_run_in_batch_too(wh: Any) -> None:
    from segmentum.segments import rules as R

    now = _dt.datetime(2026, 3, 2)
    wh.con.create_table(
        "ev",
        wh.con.sql(
            "select * from (values ('A', TIMESTAMP '2026-03-01 23:30:00', 'cart_abandoned'), "
            "('B', TIMESTAMP '2026-03-01 20:00:00', 'cart_abandoned')) t(customer_id, timestamp, "
            "event_type)"
        ),
    )
    rule = "exists(event == 'cart_abandoned', last 2 hours)"
    call = R.calls(R.parse(rule))[0]
    got = R.window_aggregates([call], wh.table("ev"), "events", now.date(), {call: rule})
    out = dict(got.order_by("customer_id").execute().values.tolist())
    assert out == {"A": 1.0}  # B abandoned 4 hours before the day's end
    with pytest.raises(R.RuleError, match="whole number of hours"):
        R.parse("exists(event == 'x', last 0 hours)")


def test_forgetting_a_customer_erases_what_was_tracked_live(live: dict[str, Any]) -> None:
    from segmentum.privacy import forget

    cid, store = live["buyers"][2], live["store"]
    event = {"customer_id": cid, "event_type": "cart_abandoned"}
    assert live["call"]("POST", "/v1/events", "track", json=event).status_code == 200
    wh = segmentum.connect(live["url"])
    try:
        planned = forget(wh, cid, dry_run=True)
    finally:
        wh.close()
    assert planned.deleted["realtime tracked_events"] == 1
    assert planned.deleted["realtime segment_transitions"] >= 1  # entered cart_2h
    assert store.forget(cid) == {
        k.split(" ", 1)[1]: v for k, v in planned.deleted.items() if k.startswith("realtime ")
    }
    assert store.events_of(cid, _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)) == []


@pytest.mark.parametrize(
    ("lang", "not_json", "problem"),
    [
        (
            "es",
            ("eventos.jsonl, línea 2: no es JSON", "escribe un evento por línea"),
            ("1 problema, no se ha registrado nada; el primero: evento 1, event_type: falta",),
        ),
        (
            "en",
            ("eventos.jsonl, line 2: not JSON", "write one event a line"),
            ("1 problem, nothing recorded; first: event 1, event_type: is missing",),
        ),
    ],
)
def test_events_track_says_what_is_wrong_with_a_file_in_the_users_language(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    lang: str,
    not_json: tuple[str, ...],
    problem: tuple[str, ...],
) -> None:
    monkeypatch.chdir(tmp_path)
    w = ["-w", f"duckdb:///{tmp_path / 'shop.duckdb'}", "--lang", lang]
    Path("eventos.jsonl").write_text('{"anonymous_id": "v-9", "event_type": "page_view"}\n{oops\n')
    assert main(["events", "track", "eventos.jsonl", *w]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert all(text in err for text in not_json), err
    Path("eventos.jsonl").write_text('{"anonymous_id": "v-9"}\n')
    assert main(["events", "track", "eventos.jsonl", *w]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert all(text in err for text in problem) and "problem(s)" not in err, err
