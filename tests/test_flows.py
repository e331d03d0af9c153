"""Triggered flows against real parts: the demo warehouse (copied), a flows SQLite file, a
real SMTP server on 127.0.0.1, and a real process killed in the middle of a tick."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from killsends import SlowInbox, start_smtp
from segmentum.config import load_settings
from segmentum.flows import FlowError, Flows, FlowStore, catalog, parse_flow

SETTINGS = load_settings(env={}).with_overrides(
    smtp_host="127.0.0.1", smtp_starttls=False, frequency_cap=10
)
T0 = dt.datetime(2026, 1, 14, 10, 0)  # a Wednesday, 11:00 in Madrid


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[SlowInbox, int]]:
    box = SlowInbox(0.0)
    ctl, port = start_smtp(box)
    yield box, port
    ctl.stop()


@pytest.fixture
def inbox(smtp: tuple[SlowInbox, int]) -> tuple[SlowInbox, int]:
    box, port = smtp
    box.got.clear()
    box.delay = 0.0
    return box, port


@pytest.fixture(scope="module")
def synced(built_service_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo warehouse as built (no campaign sent from it yet) copied once, and a flows
    store synced from it once (each test copies the store)."""
    import segmentum

    root = tmp_path_factory.mktemp("flows")
    db = root / "w.duckdb"
    shutil.copyfile(built_service_db, db)
    store = root / "w.flows.sqlite"
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        Flows(FlowStore(store), SETTINGS).sync(wh, T0)
        people = (
            wh.table("customers")
            .select("customer_id", "email", "country", "timezone", "consent_email", "consent_push")
            .to_pandas()
        )
    finally:
        wh.close()
    _checkpoint(store)
    return {"db": db, "store": store, "people": people}


def _checkpoint(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def _flows(synced: dict[str, Any], tmp_path: Path, port: int, **kw: Any) -> Flows:
    target = tmp_path / "w.flows.sqlite"
    shutil.copyfile(synced["store"], target)
    return Flows(FlowStore(target), SETTINGS.with_overrides(smtp_port=port, **kw))


def _people(synced: dict[str, Any], country: str, n: int) -> pd.DataFrame:
    p = synced["people"]
    p = p[(p.country == country) & p.consent_email & p.email.notnull()]
    return p.sort_values("customer_id").head(n)


FLOW = """
name: cart
trigger: {event: add_to_cart}
exit: {converted: true}
quiet_hours: "21:00-09:00"
steps:
  - wait: 1 hour
  - condition: "clv > 0 or clv is null"
  - send:
      channel: email
      subject: {es: "Tu carrito", en: "Your cart"}
      body: {es: "{{ greeting }}, tu carrito te espera.", en: "{{ greeting }}, your cart awaits."}
"""


# ------------------------------------------------------------------------------ definitions


def test_a_flow_with_mistakes_names_each_by_line_and_field_with_what_to_write() -> None:
    text = """name: promo
trigger: {event: add_to_cart}
steps:
  - wait: 1 huor
  - condition: "clv >> 3"
  - condition: "count(purchases, last 7 days) > 1"
  - split: {control: 80%}
  - send: {channel: fax, subject: {es: a, en: b}, body: {es: "hola {{ nombre }}", en: hi}}
"""
    with pytest.raises(FlowError) as exc:
        parse_flow(text, "flows/promo.yaml")
    got = {(p.line, p.field): p for p in exc.value.problems}
    assert got[(4, "steps[0].wait")].hint.startswith("write a number and a unit")
    assert "position 6" in got[(5, "steps[1].condition")].message
    assert "not available here" in got[(6, "steps[2].condition")].message
    assert "50%" in got[(7, "steps[3].split")].hint
    assert got[(8, "steps[4].send.channel")].hint == "use email, push, inapp, sms"
    assert "nombre" in got[(8, "steps[4].send")].message
    assert str(exc.value).startswith("flows/promo.yaml, line 4, steps[0].wait:")
    with pytest.raises(FlowError, match=r"line 2, .*not valid YAML"):
        parse_flow("name: x\n  trigger: [", "bad.yaml")


def test_every_template_is_a_valid_bilingual_flow_with_a_control_group(
    synced: dict[str, Any], tmp_path: Path
) -> None:
    flows = _flows(synced, tmp_path, 25)
    cols, segs = flows.scope()
    assert len(catalog.names()) == 8
    for name in catalog.names():
        f = parse_flow(catalog.text(name), f"{name}.yaml", cols, segs)
        assert f.control_share >= 0.1, name
        assert any(s.kind == "send" for s in f.steps), name
        for s in f.steps:
            if s.kind == "send":
                assert s.template and all(s.template["body"][lang] for lang in ("es", "en"))
        made = flows.save(catalog.from_template(name, f"my_{name}"))
        assert made.name == f"my_{name}"
    assert "# Abandoned cart" in flows.row("my_abandoned_cart")["yaml"]  # comments kept


# ------------------------------------------------------------------------------ journeys


def test_a_customer_entering_a_segment_gets_the_email_after_the_wait(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int], copy_of: Any
) -> None:
    box, port = inbox
    flows = _flows(synced, tmp_path, port)
    flows.save(FLOW.replace("{event: add_to_cart}", "{segment: vip}"))
    flows.set_status("cart", "enabled")
    who = _people(synced, "España", 1).iloc[0]
    wh = copy_of(synced["db"])
    # The pipeline's membership log: this customer entered 'vip' in a new computation.
    wh.write(
        "segment_events",
        pd.DataFrame(
            {
                "segment": ["vip", "shoe_lovers"],
                "customer_id": [who.customer_id, who.customer_id],
                "event": ["enter", "enter"],
                "as_of": [dt.date(2026, 1, 14)] * 2,
                "previous_as_of": [dt.date(2026, 1, 7)] * 2,
                "run_id": ["r2"] * 2,
            }
        ),
    )
    # And another customer's RFM segment becomes Champions in the latest computation.
    flows.save(
        FLOW.replace("name: cart", "name: champs").replace(
            "{event: add_to_cart}", "{segment: Champions}"
        )
    )
    flows.set_status("champs", "enabled")
    other = _people(synced, "España", 40).customer_id.iloc[-1]
    wh.run_sql(
        "UPDATE customer_classes SET rfm_segment = 'Champions' WHERE customer_id = ? "
        "AND rfm_segment != 'Champions' AND as_of = (SELECT max(as_of) FROM customer_classes)",
        [other],
    )
    first = flows.tick(T0, wh=wh)
    assert first.synced and first.entered == 2 and first.sent == 0
    assert [r["customer_id"] for r in flows.runs("champs")] == [other]
    assert flows.tick(T0 + dt.timedelta(minutes=30)).sent == 0
    assert not box.got
    third = flows.tick(T0 + dt.timedelta(minutes=61))
    assert third.sent == 2 and third.errors == []
    [mail] = [m for m in box.got if m["To"] == who.email]
    assert mail["To"] == who.email and mail["Subject"] == "Tu carrito"
    assert "tu carrito te espera" in mail.get_content()
    assert mail["Message-ID"].startswith("<cart.")
    # Without unsubscribe_url the way out is a reply to the sender (a person handles it).
    assert mail["List-Unsubscribe"] == "<mailto:marketing@example.com?subject=unsubscribe>"
    steps = [(r["step"], r["what"]) for r in flows.path(who.customer_id)]
    assert steps == [(None, "entered"), (0, "wait"), (1, "condition"), (2, "sent"), (None, "done")]
    assert flows.tick(T0 + dt.timedelta(hours=3)).sent == 0  # idempotent: nothing more to do


def test_a_flows_email_links_to_the_same_unsubscribe_page_as_a_campaigns(
    synced: dict[str, Any], tmp_path: Path
) -> None:
    """The flows sign their links with the warehouse's one secret: a link from a flow's email
    opens the page a campaign's would."""
    from segmentum.campaigns import unsubscribe as unsub

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    s = SETTINGS.with_overrides(unsubscribe_url="https://crm.example.com/v1/unsubscribe")
    flows = Flows(FlowStore(tmp_path / "w.flows.sqlite"), s, url)
    headers = flows._links().headers("C 1")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = headers["List-Unsubscribe"][1:-1]
    secret = unsub.UnsubscribeStore(unsub.store_path(url, s)).secret()
    assert (
        link == f"https://crm.example.com/v1/unsubscribe?c=C+1&t={unsub.signature(secret, 'C 1')}"
    )
    assert unsub.Links(url, s).link("C 1") == link  # what a campaign's send writes
    body = unsub.with_footer("Hola", link, "es")
    assert body.endswith(f"Para dejar de recibir estos correos: {link}\n")
    assert unsub.with_footer(f"Baja: {link}", link, "es") == f"Baja: {link}"  # placed already


def test_a_customer_who_buys_during_the_wait_exits_before_the_send(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    box, port = inbox
    flows = _flows(synced, tmp_path, port)
    flows.save(FLOW)
    flows.set_status("cart", "enabled")
    a, b = _people(synced, "España", 2).customer_id
    for cid in (a, b):
        flows.record("event", "add_to_cart", cid, T0, source="realtime")
    flows.tick(T0)
    flows.record("event", "purchase", a, T0 + dt.timedelta(minutes=20), source="realtime")
    flows.tick(T0 + dt.timedelta(minutes=21))
    assert flows.runs("cart", "exited")[0]["exit_reason"] == "converted"
    assert flows.tick(T0 + dt.timedelta(hours=2)).sent == 1
    assert [m["To"] for m in box.got] == [synced["people"].set_index("customer_id").email[b]]
    assert flows.path(a)[-1]["what"] == "exited" and flows.path(a)[-1]["detail"] == "converted"


def test_the_control_group_gets_nothing_and_is_measured_against_the_treated(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    box, port = inbox
    flows = _flows(synced, tmp_path, port)
    flows.save(FLOW.replace("steps:\n", "steps:\n  - split: {control: 40%}\n"))
    flows.set_status("cart", "enabled")
    people = _people(synced, "España", 60)
    for cid in people.customer_id:
        flows.record("event", "add_to_cart", cid, T0, source="realtime")
    flows.tick(T0 + dt.timedelta(hours=2))
    runs = pd.DataFrame(flows.runs("cart"))
    treated = runs[runs.grp == "treatment"].customer_id
    control = runs[runs.grp == "control"].customer_id
    assert len(control) >= 10 and len(treated) >= 20
    sent_to = {m["To"] for m in box.got}
    emails = people.set_index("customer_id").email
    assert sent_to == set(emails[list(treated)])
    # Half of the treated buy within the attribution window, one in ten of the control.
    buyers = list(treated[::2]) + list(control[::10])
    for cid in buyers:
        flows.record("event", "purchase", cid, T0 + dt.timedelta(days=1), source="realtime")
    flows.tick(T0 + dt.timedelta(days=1, hours=1))
    res = flows.results("cart")
    send = res["steps"][-1]
    assert send["sent"] == len(treated)
    assert send["skipped"] == {"control": len(control)}
    eff = send["effect"]
    assert (eff["treated"], eff["control"]) == (len(treated), len(control))
    assert eff["converted_treated"] == len(treated[::2])
    assert eff["uplift"] == pytest.approx(
        len(treated[::2]) / len(treated) - len(control[::10]) / len(control)
    )
    assert eff["uplift_low"] < eff["uplift"] < eff["uplift_high"]
    assert 0 < eff["p_value"] < 0.05  # small control group: Fisher's exact test
    assert res["effect"]["control"] == len(control) and res["converted"] == len(buyers)


def test_quiet_hours_hold_a_message_until_the_customers_morning(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    box, port = inbox
    flows = _flows(synced, tmp_path, port)
    flows.save(FLOW)
    flows.set_status("cart", "enabled")
    madrid = _people(synced, "España", 1).customer_id.iloc[0]
    mexico = _people(synced, "México", 1).customer_id.iloc[0]
    night = dt.datetime(2026, 1, 14, 21, 30)  # 22:30 in Madrid, 15:30 in Mexico City
    for cid in (madrid, mexico):
        flows.record("event", "add_to_cart", cid, night, source="realtime")
    rep = flows.tick(night + dt.timedelta(hours=1))
    assert (rep.sent, rep.deferred) == (1, 1)
    held = flows.path(madrid)[-1]
    assert held["what"] == "deferred" and held["detail"] == "quiet hours until 2026-01-15 08:00:00"
    assert flows.tick(dt.datetime(2026, 1, 15, 7, 59)).sent == 0  # 08:59 in Madrid
    assert flows.tick(dt.datetime(2026, 1, 15, 8, 0)).sent == 1  # 09:00 in Madrid
    assert len(box.got) == 2


def test_results_count_the_messages_held_for_quiet_hours_until_they_go_out(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    _, port = inbox
    flows = _flows(synced, tmp_path, port)
    flows.save(FLOW)
    flows.set_status("cart", "enabled")
    madrid = _people(synced, "España", 3).customer_id
    mexico = _people(synced, "México", 2).customer_id
    night = dt.datetime(2026, 1, 14, 21, 30)  # 22:30 in Madrid, 15:30 in Mexico City
    for cid in (*madrid, *mexico):
        flows.record("event", "add_to_cart", cid, night, source="realtime")
    flows.tick(night + dt.timedelta(hours=1))
    send = flows.results("cart")["steps"][-1]
    # Every customer who reached the send is counted somewhere: sent, skipped or waiting.
    assert (send["reached"], send["sent"], send["waiting"]) == (5, 2, 3)
    assert send["reached"] == send["sent"] + sum(send["skipped"].values()) + send["waiting"]
    flows.tick(dt.datetime(2026, 1, 15, 8, 0))  # 09:00 in Madrid: the quiet hours are over
    send = flows.results("cart")["steps"][-1]
    assert (send["sent"], send["waiting"], send["deferred"]) == (5, 0, 3)


def test_a_customer_who_never_consented_leaves_for_no_consent_not_unsubscribed(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    box, port = inbox
    flows = _flows(synced, tmp_path, port)
    flows.save(FLOW)
    flows.set_status("cart", "enabled")
    p = synced["people"]
    never = p[~p.consent_email.fillna(False).astype(bool) & p.email.notnull()]
    never = never.sort_values("customer_id").customer_id.iloc[0]
    quit_ = _people(synced, "España", 1).customer_id.iloc[0]
    # This one withdrew consent the day before, outside any flow.
    flows.record("event", "unsubscribe", quit_, T0 - dt.timedelta(days=1), source="realtime")
    flows.tick(T0 - dt.timedelta(days=1))
    for cid in (never, quit_):
        flows.record("event", "add_to_cart", cid, T0, source="realtime")
    flows.tick(T0 + dt.timedelta(hours=2))
    reasons = {r["customer_id"]: r["exit_reason"] for r in flows.runs("cart")}
    assert reasons == {never: "no_consent", quit_: "unsubscribed"} and not box.got
    assert flows.results("cart")["exits"] == {"no_consent": 1, "unsubscribed": 1}
    # A store written before the two were told apart said "unsubscribed" for both: opening
    # it again corrects the one who never consented, once, and leaves the other.
    with flows.store.connect() as con:
        con.execute("UPDATE runs SET exit_reason = 'unsubscribed'")
        con.execute("UPDATE path SET detail = 'unsubscribed' WHERE what = 'exited'")
    with flows.store.connect() as con:
        con.execute("PRAGMA user_version = 0")
    again = FlowStore(flows.store.path)
    reasons = {r["customer_id"]: r["exit_reason"] for r in again.query("SELECT * FROM runs")}
    assert reasons == {never: "no_consent", quit_: "unsubscribed"}
    exits = again.query("SELECT customer_id, detail FROM path WHERE what = 'exited'")
    assert {r["customer_id"]: r["detail"] for r in exits} == reasons
    assert again.query("PRAGMA user_version")[0]["user_version"] == 1


def test_the_frequency_cap_counts_messages_of_every_flow(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    box, port = inbox
    flows = _flows(synced, tmp_path, port, frequency_cap=1, frequency_cap_days=7)
    flows.save(FLOW)
    flows.save(FLOW.replace("name: cart", "name: cart2"))
    flows.set_status("cart", "enabled")
    flows.set_status("cart2", "enabled")
    cid = _people(synced, "España", 1).customer_id.iloc[0]
    flows.record("event", "add_to_cart", cid, T0, source="realtime")
    rep = flows.tick(T0 + dt.timedelta(hours=2))
    assert (rep.sent, rep.skipped) == (1, 1)
    skipped = [r for r in flows.path(cid) if r["what"] == "skipped"]
    assert [r["detail"] for r in skipped] == ["capped"]
    assert len(box.got) == 1
    # The cap counts up to the tick's moment: one replayed for an earlier moment (a day's
    # ticks run again) does not count the message that went out after it.
    assert flows._capped(str(cid), T0 + dt.timedelta(hours=3))
    assert not flows._capped(str(cid), T0 + dt.timedelta(hours=1))
    # ... and a campaign planned the next day counts the flow's message against the same cap
    # (the warehouse beside this flows file reads it).
    import ibis

    import segmentum
    from segmentum.segments.reach import contact_status

    shutil.copyfile(synced["db"], tmp_path / "w.duckdb")
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        members = ibis.memtable({"customer_id": [str(cid)]})
        settings = SETTINGS.with_overrides(frequency_cap=1, frequency_cap_days=7)
        day_after = (T0 + dt.timedelta(days=1)).date()
        status = contact_status(wh, members, day_after, settings).to_pandas()
        assert status.status_email.tolist() == ["capped"]
        status = contact_status(wh, members, day_after, settings.with_overrides(frequency_cap=2))
        assert status.to_pandas().status_email.tolist() == ["reachable"]
    finally:
        wh.close()


def test_flows_count_a_campaigns_control_member_as_contacted_like_its_treated_ones(
    tmp_path: Path,
) -> None:
    """The flows' frequency cap reads the campaigns' send log: a control member who would have
    been messaged counts as contacted when the message would have gone out, as a treated one
    does when it went, so a flow does not reach a campaign's control group more than its
    treated group (the campaign's measured uplift would shrink by the flow's effect)."""
    import pyarrow as pa

    import segmentum
    from segmentum.campaigns import sendlog
    from segmentum.flows.sync import snapshot

    now = dt.datetime(2026, 3, 10, 12)
    rows = [  # customer, group, outcome, status, sent_at, scheduled_at
        ("t1", "treatment", "scheduled", "sent", now - dt.timedelta(days=1), None),
        ("c1", "control", "control", "not_sent", None, now - dt.timedelta(days=1)),
        ("c2", "control", "control", "not_sent", None, now + dt.timedelta(days=1)),  # not yet
        ("c3", "control", "no_consent", "not_sent", None, None),  # could not have been
        ("t2", "treatment", "scheduled", "pending", None, now + dt.timedelta(days=1)),
    ]
    log = {n: [None] * len(rows) for n in sendlog.SCHEMA.names}
    log.update(
        key=[f"K:{r[0]}" for r in rows],
        campaign_id=["K"] * len(rows),
        customer_id=[r[0] for r in rows],
        group=[r[1] for r in rows],
        outcome=[r[2] for r in rows],
        status=[r[3] for r in rows],
        sent_at=[r[4] for r in rows],
        scheduled_at=[r[5] for r in rows],
        channel=["email"] * len(rows),
        logged_at=[now - dt.timedelta(days=2)] * len(rows),
    )
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        wh.write("customers", pa.table({"customer_id": [r[0] for r in rows]}))
        wh.write(sendlog.SENDS, pa.table(log, schema=sendlog.SCHEMA))
        got = sorted(c for c, _, _ in snapshot(wh, now, SETTINGS).contacts)
        assert got == ["c1", "t1"]
        off = SETTINGS.with_overrides(protect_controls=False)
        assert sorted(c for c, _, _ in snapshot(wh, now, off).contacts) == ["t1"]
    finally:
        wh.close()


# ------------------------------------------------------------------------------ crash safety

KILLED_TICK = """
import sys
from segmentum.config import load_settings
from segmentum.flows import Flows, FlowStore
import datetime as dt
s = load_settings(env={}).with_overrides(
    smtp_host="127.0.0.1", smtp_port=int(sys.argv[2]), smtp_starttls=False, frequency_cap=10)
print("ready", flush=True)
Flows(FlowStore(sys.argv[1]), s).tick(dt.datetime.fromisoformat(sys.argv[3]))
"""


def test_a_tick_killed_mid_send_resumes_and_sends_each_message_once(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    box, port = inbox
    box.delay = 0.05  # the server holds each message a moment: a kill lands mid-send
    flows = _flows(synced, tmp_path, port)
    flows.save(FLOW)
    flows.set_status("cart", "enabled")
    people = _people(synced, "España", 30)
    for cid in people.customer_id:
        flows.record("event", "add_to_cart", cid, T0, source="realtime")
    flows.tick(T0)
    assert flows.path is not None and flows.store.path is not None
    when = (T0 + dt.timedelta(hours=2)).isoformat()
    kills = 0
    for wait_for in (5, 15):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_TICK, str(flows.store.path), str(port), when],
            stdout=subprocess.PIPE,
            env={**os.environ, "SEGMENTUM_CONFIG": "/nonexistent.toml"},
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60
        while len(box.got) < wait_for and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        kills += 1
    in_flight = flows.store.query("SELECT COUNT(*) AS n FROM messages WHERE status = 'sending'")
    assert in_flight[0]["n"] <= 1  # at most the one message in flight at the kill
    flows.tick(T0 + dt.timedelta(hours=2, minutes=1))
    counts = box.counts()
    expected = set(people.email)
    assert set(counts) == expected  # nothing lost
    assert sum(counts.values()) - len(expected) <= kills  # at most one repeat per kill
    # A repeat carries the first one's Message-ID, so a mail system drops it.
    ids: dict[str, set[str]] = {}
    for m in box.got:
        ids.setdefault(str(m["To"]), set()).add(str(m["Message-ID"]))
    assert all(len(v) == 1 for v in ids.values())
    runs = flows.runs("cart")
    assert {r["status"] for r in runs} == {"done"} and len(runs) == len(expected)
    sent = flows.store.query("SELECT COUNT(*) AS n FROM messages WHERE status = 'sent'")
    assert sent[0]["n"] == len(expected)
    assert json.loads(json.dumps(flows.results("cart")))["sent"] == len(expected)


def test_tracked_events_and_segment_transitions_of_the_realtime_store_trigger_flows(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    from segmentum.realtime.store import RealtimeStore

    box, port = inbox
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    flows = _flows(synced, tmp_path, port)
    flows.url = url
    flows.save(FLOW)
    flows.save(
        FLOW.replace("name: cart", "name: vip").replace("{event: add_to_cart}", "{segment: vip}")
    )
    flows.set_status("cart", "enabled")
    flows.set_status("vip", "enabled")
    a, b = _people(synced, "España", 2).customer_id
    rt = RealtimeStore.for_warehouse(url, SETTINGS)
    rt.record(
        [
            {
                "event_id": "e1",
                "customer_id": a,
                "event_type": "add_to_cart",
                "at": "2026-01-14T10:00:00.000000Z",
            },
            {
                "event_id": "e2",
                "anonymous_id": "v9",
                "event_type": "add_to_cart",
                "at": "2026-01-14T10:00:00.000000Z",
            },
        ]
    )
    with rt.connect(write=True) as con:  # what the real-time engine writes on a rule change
        for kind in ("enter", "exit"):
            con.execute(
                "INSERT INTO segment_transitions (customer_id, segment, kind, at) VALUES "
                "(?, 'vip', ?, ?)",
                (b, kind, f"2026-01-14T10:0{5 if kind == 'exit' else 0}:00.000000Z"),
            )
    rep = flows.tick(T0)
    assert rep.entered == 2  # the anonymous visitor cannot be messaged: not entered
    flows.tick(T0 + dt.timedelta(hours=2))
    assert flows.runs("vip")[0]["exit_reason"] == "left_segment"
    assert [m["To"] for m in box.got] == [synced["people"].set_index("customer_id").email[a]]
    assert flows.tick(T0 + dt.timedelta(hours=3)).triggers == 0  # each taken once


def test_the_command_line_creates_validates_enables_and_reports_a_flow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segmentum.cli import main

    w = ["-w", f"duckdb:///{tmp_path / 'shop.duckdb'}"]
    yaml_file = tmp_path / "cart.yaml"
    assert (
        main(["flow", "new", "cart", "--from", "abandoned_cart", "--file", str(yaml_file), *w]) == 0
    )
    assert (tmp_path / "shop.flows.sqlite").exists()  # beside the warehouse
    yaml_file.write_text(yaml_file.read_text().replace("wait: 1 hour", "wait: 1 huor"))
    capsys.readouterr()
    assert main(["flow", "validate", str(yaml_file), *w]) == 2
    out = capsys.readouterr().err
    assert "cart.yaml, line 15, steps[1].wait: '1 huor' is not a duration" in out
    assert main(["flow", "save", str(yaml_file), *w]) == 2  # nothing saved
    assert main(["flow", "enable", "cart", *w]) == 0
    assert main(["flow", "list", "--json", *w]) == 0
    [row] = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert (row["name"], row["status"], row["version"]) == ("cart", "enabled", 1)
    assert main(["flow", "tick", "--now", "2026-01-14 10:00", "--json", *w]) == 0
    assert json.loads(capsys.readouterr().out)["busy"] is False
    assert main(["flow", "results", "nope", *w]) == 2
    # The same journey read in Spanish: states, triggers, steps and counts through the
    # catalogs, the words the Flows page uses.
    capsys.readouterr()
    es = ["--lang", "es", *w]
    assert main(["flow", "templates", "--lang", "es"]) == 0
    assert main(["flow", "list", *es]) == 0
    assert main(["flow", "show", "cart", *es]) == 0
    assert main(["flow", "results", "cart", *es]) == 0
    assert main(["flow", "tick", "--now", "2026-01-14 11:00", *es]) == 0
    assert main(["flow", "path", "nobody", *es]) == 0
    assert main(["flow", "disable", "cart", *es]) == 0
    out = capsys.readouterr().out
    for spanish in (
        "plantilla",
        "qué hace",
        "activado",  # the state
        "versión 1",
        "mensajes enviados",
        "Llegar",  # the column is narrow: "Llegaron" may be cut
        "entraron 0",
        "Este cliente no ha entrado en ningún flujo",
        "cart desactivado",
        "1 hora",  # the wait, in the language
    ):
        assert spanish in out, (spanish, out)
    for english in ("what it does", "enabled", "version", "messages sent", "entered 0", "has not"):
        assert english not in out, english


def test_flow_validate_names_every_problem_in_spanish_under_lang_es(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from segmentum.cli import main

    w = ["-w", f"duckdb:///{tmp_path / 'shop.duckdb'}"]
    yaml_file = tmp_path / "cart.yaml"
    bad = FLOW.replace("wait: 1 hour", "wait: 1 huor").replace("clv > 0 or clv is null", "clv >> 3")
    yaml_file.write_text(bad, encoding="utf-8")
    assert main(["flow", "validate", str(yaml_file), *w, "--lang", "es"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "cart.yaml, línea 7, steps[0].wait: '1 huor' no es una duración" in err, err
    assert "(y 1 problema más)" in err and "escribe un número y una unidad" in err, err
    assert "en la posición 6 de 'clv >> 3'" in err, err
    assert "consulta el lenguaje de reglas" in err, err
    for english in ("line ", "is not a duration", "more problem", "at position", "write a"):
        assert english not in err, (english, err)


@pytest.mark.parametrize(
    ("what", "detail", "es", "en"),
    [
        ("entered", "event add_to_cart", "evento add_to_cart", "event add_to_cart"),
        ("entered", "enter segment lapsed", "entra en el segmento inactivo", None),
        ("wait", "until 2026-12-06 11:41:30", "hasta el 6 dic 2026 11:41", None),
        (
            "deferred",
            "quiet hours until 2026-12-06 12:00:00",
            "horas de descanso hasta el 6 dic 2026 12:00",
            "quiet hours until 2026-12-06 12:00:00",
        ),
        ("sent", "email", "correo electrónico", None),
        ("skipped", "no_consent", "sin consentimiento", "no consent"),
    ],
)
def test_a_path_step_reads_in_the_users_language(
    what: str, detail: str, es: str, en: str | None
) -> None:
    from segmentum.flows.words import path_detail

    assert path_detail("es", what, detail) == es
    if en is not None:
        assert path_detail("en", what, detail) == en


@pytest.mark.parametrize(
    ("rule", "es", "en"),
    [
        ("not bought_since_entry", "no ha comprado desde que entró en el flujo", None),
        ("bought_since_entry", "ha comprado desde que entró en el flujo", None),
        ("days_in_flow >= 3", "3 días o más en el flujo", "3 days or more in the flow"),
        (
            "days_in_flow<1500",
            "menos de 1.500 días en el flujo",
            "fewer than 1,500 days in the flow",
        ),
        ("value_tier != 'low'", None, None),  # any other rule is shown as written
    ],
)
def test_a_condition_on_the_flows_own_names_reads_in_words(
    rule: str, es: str | None, en: str | None
) -> None:
    from segmentum.flows.words import condition_words

    assert condition_words("es", rule) == es
    if en is not None or es is None:
        assert condition_words("en", rule) == en


# ------------------------------------------------------------------------------ service


def test_the_api_creates_validates_enables_and_reports_flows(server: dict[str, Any]) -> None:
    import httpx

    base, keys = server["url"], server["keys"]
    read, admin = {"X-API-Key": keys["read"]}, {"X-API-Key": keys["admin"]}
    body = {"template": "win_back", "name": "api_win_back"}
    assert httpx.post(base + "/v1/flows", json=body, headers=read, timeout=60).status_code == 403
    made = httpx.post(base + "/v1/flows", json=body, headers=admin, timeout=60)
    assert made.status_code == 201 and made.json()["status"] == "draft"
    bad = httpx.post(
        base + "/v1/flows/validate",
        json={"yaml": "name: x\ntrigger: {segment: vip}\nsteps:\n  - wait: later\n"},
        headers=read,
        timeout=60,
    )
    assert bad.status_code == 422
    assert (
        bad.json()["problems"][0]["line"] == 4
        and "duration" in bad.json()["problems"][0]["message"]
    )
    on = httpx.post(base + "/v1/flows/api_win_back/enable", headers=admin, timeout=60)
    assert on.json()["status"] == "enabled"
    res = httpx.get(base + "/v1/flows/api_win_back/results", headers=read, timeout=60).json()
    assert res["trigger"] == "enter segment lapsed" and res["control_share"] == 0.15
    assert [s["kind"] for s in res["steps"]][:2] == ["split", "send"]
    listed = httpx.get(base + "/v1/flows", headers=read, timeout=60).json()
    assert "api_win_back" in [f["name"] for f in listed]
    # The flow's page says its condition in words (the template's rule in English code
    # was shown as it is: "Condición: not bought_since_entry").
    cart = {"template": "abandoned_cart", "name": "api_cart"}
    assert httpx.post(base + "/v1/flows", json=cart, headers=admin, timeout=60).status_code == 201
    with httpx.Client(base_url=base, timeout=60) as browser:
        browser.get("/login")
        csrf = browser.cookies.get("segmentum_login_csrf")
        browser.post("/login", data={"key": keys["read"], "csrf": csrf})
        for lang, words in (
            ("es", 'Condición: <span title="not bought_since_entry">no ha comprado desde'),
            ("en", 'Condition: <span title="not bought_since_entry">has not bought since'),
        ):
            shown = browser.get("/dashboard/flows/api_cart", params={"lang": lang}).text
            assert words in shown, lang
    assert httpx.get(base + "/v1/flows/nope", headers=read, timeout=60).status_code in (
        400,
        404,
        422,
    )


def test_an_admin_applies_a_segments_playbook_as_a_draft_flow_in_the_browser(
    server: dict[str, Any],
) -> None:
    from urllib.parse import quote

    import httpx
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Chromium is not installed: `make test` installs it with apt-get"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        ctx = browser.new_context(locale="es-ES", extra_http_headers={"Accept-Language": "es-ES"})
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(server["url"] + "/login")
        page.fill("#key", server["keys"]["admin"])
        page.click("#sign-in")
        page.wait_for_url("**/dashboard")
        page.goto(server["url"] + "/dashboard/explorer?rule=" + quote("rfm_segment == 'Champions'"))
        page.wait_for_selector("#playbook")
        assert page.inner_text("#play-tactic").strip()  # the playbook's tactic, in Spanish
        assert "Gracias" in page.inner_text("#play-message")
        page.click("#apply-play")
        page.wait_for_url("**/dashboard/flows/*")
        assert page.locator("#created").is_visible()
        assert page.inner_text("#flow-status") == "borrador"
        name = page.url.split("/dashboard/flows/")[1].split("?")[0]
        page.click("#enable-flow")
        page.wait_for_selector("#disable-flow")
        assert page.inner_text("#flow-status") == "activado"
        # The trigger in Spanish words, not the YAML's English ("enter segment Champions"),
        # the class by its Spanish name.
        assert page.inner_text("#flow-trigger") == "entra en el segmento Campeones"
        assert page.locator("#flow-steps tbody tr").count() == 5
        page.goto(server["url"] + "/dashboard/flows?customer=" + quote("<b>C1</b>"))
        assert page.locator("#path-empty").is_visible()  # nobody went through it yet
        assert page.input_value("#path-customer") == "<b>C1</b>"
        templates = page.inner_text("#flow-templates")
        assert "evento add_to_cart" in templates and "3 días antes de" in templates
        assert "event:" not in templates and "segment:" not in templates
        browser.close()
    assert not errors, errors
    flow = httpx.get(
        server["url"] + f"/v1/flows/{name}",
        headers={"X-API-Key": server["keys"]["read"]},
        timeout=60,
    ).json()
    assert flow["status"] == "enabled" and flow["origin"] == "playbook"
    assert "segment: Champions" in flow["yaml"] and "tienes acceso anticipado" in flow["yaml"]


KILLED_PUSH = """
import sys, datetime as dt
from segmentum.config import load_settings
from segmentum.flows import Flows, FlowStore
s = load_settings(env={}).with_overrides(push_webhook_url=sys.argv[2], channel_secret="s3cret")
Flows(FlowStore(sys.argv[1]), s).tick(dt.datetime.fromisoformat(sys.argv[3]))
"""


def test_a_push_in_flight_at_a_kill_is_sent_again_under_the_same_idempotency_key(
    synced: dict[str, Any], tmp_path: Path
) -> None:
    import hashlib
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[tuple[str, dict[str, Any]]] = []
    taken = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            mac = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert self.headers["X-Segmentum-Signature"] == "sha256=" + mac
            got.append((self.headers["X-Segmentum-Delivery"], json.loads(body)))
            if len(got) == 1:  # the first one is taken, then answered too late: killed by then
                taken.set()
                time.sleep(3)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Quiet(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the late answer meets a closed socket: that is the point of this receiver

    srv = Quiet(("127.0.0.1", 0), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/push"
    flows = _flows(synced, tmp_path, 25, push_webhook_url=url, channel_secret="s3cret")
    push = FLOW.replace("channel: email", "channel: push").replace("\n  - wait: 1 hour", "")
    flows.save(push)
    flows.set_status("cart", "enabled")
    p = synced["people"]
    cid = p[(p.country == "España") & p.consent_push].customer_id.iloc[0]
    flows.record("event", "add_to_cart", cid, T0, source="realtime")
    when = T0.isoformat()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_PUSH, str(flows.store.path), url, when],
        env={**os.environ, "SEGMENTUM_CONFIG": "/nonexistent.toml"},
    )
    try:
        assert taken.wait(60)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        [left] = flows.store.query("SELECT status FROM messages")
        assert left["status"] == "sending"  # the outcome never came back
        rep = flows.tick(T0 + dt.timedelta(minutes=1))
    finally:
        srv.shutdown()
    assert rep.sent == 1
    assert len(got) == 2 and got[0][0] == got[1][0]  # the receiver can drop the repeat
    assert got[0][1]["body"] == got[1][1]["body"] and got[0][1]["customer_id"] == cid
    assert [r["what"] for r in flows.path(cid)][-2:] == ["sent", "done"]


def test_the_service_runs_flows_in_a_background_thread_when_enabled(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    import segmentum
    from segmentum.service.app import create_app

    db = tmp_path / "shop.duckdb"
    with segmentum.connect(f"duckdb:///{db}") as wh:
        wh.write("customers", pd.DataFrame({"customer_id": ["C1"], "email": ["c1@example.com"]}))
    settings = SETTINGS.with_overrides(flow_runner=True, flow_tick_seconds=0.05)
    flows = Flows.for_warehouse(f"duckdb:///{db}", settings)
    flows.save(FLOW.replace('  - condition: "clv > 0 or clv is null"\n', ""))
    flows.set_status("cart", "enabled")
    flows.record("event", "add_to_cart", "C1", dt.datetime.now(dt.UTC).replace(tzinfo=None))
    with TestClient(create_app(f"duckdb:///{db}", settings)):
        deadline = time.monotonic() + 30
        while not flows.runs("cart") and time.monotonic() < deadline:
            time.sleep(0.05)
    [run] = flows.runs("cart")
    assert run["customer_id"] == "C1" and run["step"] == 1  # entered, now waiting an hour


def test_a_birthday_or_an_expected_purchase_date_enters_customers_on_their_day(
    synced: dict[str, Any], tmp_path: Path
) -> None:
    flows = _flows(synced, tmp_path, 25)
    [row] = flows.store.query(
        "SELECT customer_id, birthday FROM profiles WHERE birthday IS NOT NULL "
        "ORDER BY customer_id LIMIT 1"
    )
    month, day = (int(x) for x in row["birthday"].split("-"))
    flows.save(FLOW.replace("{event: add_to_cart}", "{date: birthday, before: 2 days}"))
    flows.set_status("cart", "enabled")
    bday = dt.datetime(2027, month, day, 9, 0)
    flows.tick(bday - dt.timedelta(days=3))  # the first tick starts the daily clock
    rep = flows.tick(bday - dt.timedelta(days=2))
    ids = {r["customer_id"] for r in flows.runs("cart")}
    same = flows.store.query(
        "SELECT COUNT(*) AS n FROM profiles WHERE birthday = ?", (row["birthday"],)
    )
    assert row["customer_id"] in ids and rep.entered == same[0]["n"]
    assert flows.tick(bday - dt.timedelta(days=2, hours=-1)).entered == 0  # once a day
    [nxt] = flows.store.query(
        "SELECT next_purchase FROM profiles WHERE next_purchase IS NOT NULL "
        "ORDER BY next_purchase LIMIT 1"
    )
    flows.save(
        FLOW.replace("name: cart", "name: again").replace(
            "{event: add_to_cart}", "{date: expected_next_purchase, before: 3 days}"
        )
    )
    flows.set_status("again", "enabled")
    due = dt.date.fromisoformat(nxt["next_purchase"]) - dt.timedelta(days=3)
    flows.tick(dt.datetime.combine(due, dt.time(8)) - dt.timedelta(days=1))
    flows.tick(dt.datetime.combine(due, dt.time(8)))
    assert flows.runs("again")


def test_an_unsubscribe_event_takes_the_customer_out_of_the_flow(
    synced: dict[str, Any], tmp_path: Path, inbox: tuple[SlowInbox, int]
) -> None:
    box, port = inbox
    flows = _flows(synced, tmp_path, port)
    flows.save(FLOW)
    flows.set_status("cart", "enabled")
    cid = _people(synced, "España", 1).customer_id.iloc[0]
    flows.record("event", "add_to_cart", cid, T0, source="realtime")
    flows.tick(T0)
    flows.record("event", "unsubscribe", cid, T0 + dt.timedelta(minutes=5), source="realtime")
    flows.tick(T0 + dt.timedelta(hours=2))
    assert flows.runs("cart")[0]["exit_reason"] == "unsubscribed" and not box.got


def test_quiet_hours_follow_the_customers_zone_from_their_country_or_region() -> None:
    from segmentum.flows.quiet import quiet_until, zone_name

    assert zone_name(None, "México", "Noroeste") == "America/Tijuana"
    assert zone_name("Not/AZone", "España", "Islas Canarias") == "Atlantic/Canary"
    assert zone_name(None, "Perú", None) == "America/Lima"
    assert zone_name(None, "Atlantis", None, "Europe/Madrid") == "Europe/Madrid"
    night = (dt.time(21), dt.time(9))
    # 23:30 UTC in July is 01:30 in Madrid (summer time): quiet until 09:00 there, 07:00 UTC.
    assert quiet_until(dt.datetime(2026, 7, 1, 23, 30), "Europe/Madrid", night) == dt.datetime(
        2026, 7, 2, 7, 0
    )
    # 20:30 in Madrid in January (19:30 UTC) is not quiet yet; 21:00 is, until the morning.
    assert quiet_until(dt.datetime(2026, 1, 14, 19, 30), "Europe/Madrid", night) is None
    assert quiet_until(dt.datetime(2026, 1, 14, 20, 0), "Europe/Madrid", night) == dt.datetime(
        2026, 1, 15, 8, 0
    )
    assert quiet_until(dt.datetime(2026, 1, 14, 3, 0), "America/Mexico_City", None) is None


def test_an_sms_step_goes_out_through_the_sms_provider_adapter(
    synced: dict[str, Any], tmp_path: Path
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[dict[str, Any]] = []

    class Provider(BaseHTTPRequestHandler):  # a generic SMS provider's JSON API
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = b'{"id": "m-1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        flows = _flows(
            synced,
            tmp_path,
            25,
            sms_url=f"http://127.0.0.1:{srv.server_address[1]}/sms",
            sms_sender_id="TIENDA",
        )
        sms = (
            FLOW.replace("channel: email", "channel: sms")
            .replace("\n  - wait: 1 hour", "")
            .replace(
                "\n      body:",
                '\n      sms: {es: "{{ greeting }}: tu carrito (SMS)", en: "Your cart (SMS)"}'
                "\n      body:",
            )
        )
        flows.save(sms)
        flows.set_status("cart", "enabled")
        cid = flows.store.query(
            "SELECT customer_id FROM profiles WHERE json_extract(consent, '$.sms') = 1 "
            "AND phone IS NOT NULL AND tz = 'Europe/Madrid' ORDER BY customer_id LIMIT 1"
        )[0]["customer_id"]
        flows.record("event", "add_to_cart", cid, T0, source="realtime")
        assert flows.tick(T0).sent == 1
    finally:
        srv.shutdown()
    [msg] = got
    assert msg["to"].startswith("+34") and msg["from"] == "TIENDA"
    # The step's sms: text, not the body written for longer channels.
    assert "tu carrito (SMS)" in msg["text"] and msg["reference"].startswith("cart.")
