"""Sends are exactly-once across kills and processes, webhooks keep their keys, failures exit
non-zero, and no message ever says nan: all against real servers on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import segmentum
from killsends import Launcher, SlowInbox, build, chain, environment, start_smtp
from segmentum.campaigns.core import Campaigns
from segmentum.campaigns.measure import results
from segmentum.cli import main
from segmentum.config import load_settings
from segmentum.errors import ExitCode, InputError
from segmentum.history.log import deliver, log_changes

SETTINGS = load_settings(env={}).with_overrides(
    discover_segments=False, smtp_host="127.0.0.1", smtp_starttls=False
)
KILLS = 20
DELAY = 0.03  # seconds the server holds each message before answering


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A small warehouse with one logged email campaign, and who must get it once."""
    path = tmp_path_factory.mktemp("sends") / "template.duckdb"
    return path, build(path, SETTINGS)


@pytest.fixture
def db(template: tuple[Path, list[str]], tmp_path: Path) -> Path:
    target = tmp_path / "w.duckdb"
    shutil.copy(template[0], target)
    return target


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[SlowInbox, int]]:
    """One slow SMTP server on 127.0.0.1 for the module (each test starts it empty)."""
    box = SlowInbox(DELAY)
    ctl, port = start_smtp(box)
    yield box, port
    ctl.stop()


@pytest.fixture
def inbox(smtp: tuple[SlowInbox, int]) -> tuple[SlowInbox, int]:
    box, port = smtp
    box.got.clear()
    box.raw.clear()
    box.refuse = set()
    box.delay = DELAY
    return box, port


@pytest.fixture(scope="module")
def launcher(
    smtp: tuple[SlowInbox, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Launcher]:
    lau = Launcher(environment(smtp[1]), tmp_path_factory.mktemp("launcher"))
    yield lau
    lau.close()


def _settings(port: int, **kw: Any) -> Any:
    return SETTINGS.with_overrides(smtp_port=port, **kw)


# ------------------------------------------------------------------------- kill and resume


def test_a_send_killed_at_random_points_resumes_with_nothing_lost_and_at_most_one_duplicate(
    inbox: tuple[SlowInbox, int], launcher: Launcher, tmp_path: Path
) -> None:
    box, port = inbox
    db = tmp_path / "kills.duckdb"
    expected = build(db, SETTINGS, n=KILLS * 3 + 4)
    rows = chain(
        db, KILLS, box, launcher, expected, np.random.default_rng(16), env=environment(port)
    )
    *kills, last = rows
    assert last["final_exit"] == 0, last["final_output"]
    assert last["lost"] == 0 and not last["unexpected"], last
    # Each kill left at most one message delivered but not recorded (the one in flight), and
    # only those were sent twice.
    assert all(k["unrecorded"] <= 1 for k in kills), kills
    assert last["duplicates"] <= sum(k["unrecorded"] for k in kills) <= KILLS
    # The kills landed all along the send (during a process's work, not after it ended).
    assert sum(k["killed"] for k in kills) >= KILLS - 2
    assert sum(k["delivered_by_it"] > 0 for k in kills) >= KILLS // 3


def test_a_message_left_sending_by_a_dead_process_is_sent_again_and_the_rest_once(
    db: Path, inbox: tuple[SlowInbox, int], template: tuple[Path, list[str]]
) -> None:
    box, port = inbox
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, _settings(port))
        c = cs.get("Vuelve")
        first = cs.log(c).query("status == 'pending'").key.iloc[0]
        # What a send killed right after its claim leaves behind: a claim by a process gone.
        wh.run_sql(
            "UPDATE campaign_sends SET status = 'sending', claim_token = ?, claimed_at = ? "
            "WHERE key = ?",
            [f"{socket.gethostname()}/999999999/x", dt.datetime.now(), first],
        )
        r = cs.send(c, immediately=True)
        assert r.resumed == 1 and r.delivered == len(template[1]) and r.failed == 0
        assert box.counts() == dict.fromkeys(template[1], 1)
        log = cs.log(c)
        assert (log[log.outcome == "scheduled"].status == "sent").all()
        assert log.claim_token.isna().all()
    finally:
        wh.close()


def test_consent_withdrawn_after_planning_is_respected_at_sending(
    db: Path, inbox: tuple[SlowInbox, int], template: tuple[Path, list[str]]
) -> None:
    box, port = inbox
    box.delay = 0
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        wh.run_sql("UPDATE customers SET consent_email = false WHERE customer_id = 'C0003'")
        cs = Campaigns(wh, _settings(port))
        c = cs.get("Vuelve")
        r = cs.send(c, immediately=True)
        log = cs.log(c).set_index("customer_id")
    finally:
        wh.close()
    assert "c0003@example.com" not in box.counts()
    assert r.delivered == len(template[1]) - 1 and r.failed == 0
    # Each message's time is when it went: after its claim, in the order they went.
    sent = log[log.status == "sent"].sort_values("claimed_at")
    assert (sent.sent_at >= sent.claimed_at).all(), sent[["claimed_at", "sent_at"]]
    assert sent.sent_at.is_monotonic_increasing and sent.sent_at.nunique() == len(sent)
    assert log.loc["C0003", "status"] == "not_sent"
    assert "consent" in str(log.loc["C0003", "error"])


# ------------------------------------------------------------------------- two senders at once


def test_two_sends_of_one_campaign_at_once_deliver_each_message_once(
    db: Path, inbox: tuple[SlowInbox, int], launcher: Launcher, template: tuple[Path, list[str]]
) -> None:
    box, _ = inbox
    argv = ["campaign", "send", "Vuelve", "--immediately", "-w", f"duckdb:///{db}"]
    outs = [db.with_suffix(f".{i}.log") for i in range(2)]
    pids = [launcher.start(argv, out) for out in outs]
    codes = [launcher.wait(p) for p in pids]
    texts = [o.read_text() for o in outs]
    assert box.counts() == dict.fromkeys(template[1], 1)
    assert set(codes) <= {ExitCode.OK, ExitCode.WAREHOUSE}, texts
    for code, text in zip(codes, texts, strict=True):
        if code == ExitCode.WAREHOUSE:  # the file is held by the other send: a clear "busy"
            assert "busy" in text and "Traceback" not in text


def test_a_cli_send_while_the_api_sends_the_same_campaign_delivers_each_once(
    db: Path, inbox: tuple[SlowInbox, int], launcher: Launcher, template: tuple[Path, list[str]]
) -> None:
    from conftest import serving
    from segmentum.service.app import create_app
    from segmentum.service.auth import create_key

    box, port = inbox
    wh = segmentum.connect(f"duckdb:///{db}")
    key = create_key(wh, "admin", ["admin"])
    app = create_app(wh, _settings(port))
    got: dict[str, Any] = {}
    with serving(app) as url:

        def api() -> None:
            got["r"] = httpx.post(
                f"{url}/v1/campaigns/Vuelve/send",
                params={"immediately": True},
                headers={"X-API-Key": key},
                timeout=60,
            )

        t = threading.Thread(target=api)
        t.start()
        while not box.got and t.is_alive():
            time.sleep(0.005)
        out = db.with_suffix(".cli.log")
        code = launcher.wait(
            launcher.start(
                ["campaign", "send", "Vuelve", "--immediately", "-w", f"duckdb:///{db}"], out
            )
        )
        t.join(60)
    wh.close()
    assert got["r"].status_code == 200, got["r"].text
    assert box.counts() == dict.fromkeys(template[1], 1)
    assert code in (ExitCode.OK, ExitCode.WAREHOUSE), out.read_text()


@pytest.mark.postgres
def test_two_sends_on_postgres_claim_rows_and_deliver_each_message_once(
    postgres_url: str, inbox: tuple[SlowInbox, int], launcher: Launcher, tmp_path: Path
) -> None:
    box, port = inbox
    wh = segmentum.connect(postgres_url)
    try:
        from killsends import TEMPLATE, customers, plan

        cust = customers(14)
        wh.write("customers", cust)
        cs = Campaigns(wh, _settings(port))
        c = cs.create("Vuelve", "winback", "email", template=TEMPLATE, control_share=0.2)
        p = plan(cust)
        cs.record_plan(c, p, dt.datetime(2026, 1, 5))
    finally:
        wh.close()
    expected = sorted(
        cust.set_index("customer_id").loc[p[p.outcome == "scheduled"].customer_id].email
    )
    argv = ["campaign", "send", "Vuelve", "--immediately", "-w", postgres_url]
    outs = [tmp_path / f"pg-send-{i}.log" for i in range(2)]
    pids = [launcher.start(argv, out) for out in outs]
    codes = [launcher.wait(pid) for pid in pids]
    assert codes == [0, 0], [o.read_text() for o in outs]
    assert box.counts() == dict.fromkeys(expected, 1)


# ------------------------------------------------------------------------- failures and exit codes


def test_an_unreachable_smtp_server_exits_5_and_keeps_everything_pending(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from killsends import free_port

    monkeypatch.setenv("SEGMENTUM_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SEGMENTUM_SMTP_PORT", str(free_port()))  # nothing listens there
    monkeypatch.setenv("SEGMENTUM_SMTP_STARTTLS", "false")
    code = main(["campaign", "send", "Vuelve", "--immediately", "-w", f"duckdb:///{db}"])
    err = capsys.readouterr().err
    assert code == ExitCode.DELIVERY == 5 and "cannot reach the SMTP server" in err
    wh = segmentum.connect(f"duckdb:///{db}")
    log = Campaigns(wh, SETTINGS).log(Campaigns(wh, SETTINGS).get("Vuelve"))
    wh.close()
    assert (log[log.outcome == "scheduled"].status == "pending").all()


def test_refused_recipients_exit_1_when_some_failed_and_5_when_all_failed(
    db: Path,
    inbox: tuple[SlowInbox, int],
    template: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, port = inbox
    for k, v in environment(port).items():
        if k.startswith("SEGMENTUM_"):
            monkeypatch.setenv(k, v)
    expected = template[1]
    box.refuse = set(expected[:2])
    argv = ["campaign", "send", "Vuelve", "--immediately", "-w", f"duckdb:///{db}"]
    assert main(argv) == ExitCode.PARTIAL == 1
    out = capsys.readouterr()
    assert f"2 of {len(expected)} messages failed" in out.err
    assert set(box.counts()) == set(expected[2:])
    wh = segmentum.connect(f"duckdb:///{db}")
    cs = Campaigns(wh, SETTINGS)
    log = cs.log(cs.get("Vuelve"))
    wh.close()
    failed = log[log.status == "failed"]
    assert len(failed) == 2 and failed.error.str.contains("550").all()
    # A second campaign where the server refuses everyone: nothing delivered, exit 5.
    wh = segmentum.connect(f"duckdb:///{db}")
    cs = Campaigns(wh, SETTINGS)
    c = cs.create("Todos", "winback", "email", template=cs.get("Vuelve").template_data)
    from killsends import customers, plan

    cs.record_plan(c, plan(customers(14)), dt.datetime(2026, 1, 5))
    wh.close()
    box.refuse = set(expected)
    box.got.clear()
    assert main(["campaign", "send", "Todos", "--immediately", "-w", f"duckdb:///{db}"]) == 5
    assert not box.got and "messages failed" in capsys.readouterr().err


# ------------------------------------------------------------------------- webhooks


class LateReceiver:
    """A webhook endpoint on 127.0.0.1 that takes each POST and answers after the client has
    given up (while ``late``), recording every body with its idempotency key."""

    def __init__(self, late: float) -> None:
        self.late = late
        self.seen: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.seen.append(
                    {"key": self.headers["X-Segmentum-Delivery"], "body": json.loads(body)}
                )
                time.sleep(outer.late)
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    pass  # the client hung up

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _members(wh: Any, day: dt.date, ids: list[str]) -> None:
    rows = pd.DataFrame({"segment": "vip", "customer_id": ids, "as_of": day})
    if wh.has("segment_members"):
        wh.insert("segment_members", rows)
    else:
        wh.write("segment_members", rows)


def test_a_webhook_answered_late_is_retried_unchanged_under_the_same_key(tmp_path: Path) -> None:
    wh = segmentum.connect(f"duckdb:///{tmp_path / 'hooks.duckdb'}")
    rec = LateReceiver(late=1.0)
    try:
        d1, d2, d3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)
        _members(wh, d1, [f"C{i}" for i in range(0, 30)])
        _members(wh, d2, [f"C{i}" for i in range(10, 40)])
        first = log_changes(wh, d2, "r2", queue=True)
        r = deliver(wh, rec.url, "s3cret", batch_size=8, retries=1, backoff=0.01, timeout=0.2)
        # The receiver took every batch (twice: the client retried) but answered too late.
        assert r.delivered == 0 and r.pending == first["enter"] + first["exit"] == 20
        # New events arrive before the next delivery: they must not join the old batches.
        _members(wh, d3, [f"C{i}" for i in range(15, 45)])
        log_changes(wh, d3, "r3", queue=True)
        rec.late = 0.0
        r = deliver(wh, rec.url, "s3cret", batch_size=8, retries=1, backoff=0.01, timeout=2)
        assert r.pending == 0
        keys_of: dict[str, set[str]] = {}
        bodies: dict[str, set[str]] = {}
        for s in rec.seen:
            bodies.setdefault(s["key"], set()).add(json.dumps(s["body"], sort_keys=True))
            for e in s["body"]["events"]:
                event = f"{e['segment']}:{e['customer_id']}:{e['event']}:{e['as_of']}"
                keys_of.setdefault(event, set()).add(s["key"])
        assert all(len(k) == 1 for k in keys_of.values())  # one key per event, ever
        assert all(len(b) == 1 for b in bodies.values())  # a key always carries the same body
        assert len(keys_of) == wh.table("webhook_outbox").count().to_pyarrow().as_py()
    finally:
        rec.server.shutdown()
        wh.close()


# ------------------------------------------------------------------------- what a person reads


def test_messages_never_show_nan_and_speak_the_recipients_language(
    db: Path, inbox: tuple[SlowInbox, int], template: tuple[Path, list[str]]
) -> None:
    box, port = inbox
    box.delay = 0
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, _settings(port, currency="EUR"))
        r = cs.send(cs.get("Vuelve"), immediately=True)
    finally:
        wh.close()
    assert r.delivered == len(template[1])
    bodies = {str(m["To"]): m.get_content().strip() for m in box.got}
    for body in bodies.values():
        for bad in ("nan", "None", "NaT", "Te sugerimos", "We suggest"):
            assert bad not in body, body
        if body.startswith("Hola"):  # no English inside a Spanish message
            assert "lapsed" not in body and "high value" not in body, body
    # C0005's first name is NaN and they are Spanish: a neutral greeting, a Spanish reason.
    assert bodies["c0005@example.com"] == (
        "Hola: inactivo tras gastar 1.148\xa0€ (valor alto); última compra hace 94 días."
    )
    assert bodies["c0003@example.com"].startswith("Hola Lucía: inactivo tras gastar 1.074\xa0€")
    # C0007 is British with a name; C0010 is British without one: "Hello", never "Hi nan".
    assert bodies["c0007@example.com"].startswith("Hi Emma: lapsed after spending €1,222")
    assert bodies["c0010@example.com"].startswith("Hello: lapsed after spending €1,333")


def test_templates_that_could_print_nan_fail_at_creation(db: Path) -> None:
    wh = segmentum.connect(f"duckdb:///{db}")
    cs = Campaigns(wh, SETTINGS)
    try:
        bare = {"body": {"es": "Hola {{ first_name }}", "en": "Hi {{ first_name }}"}}
        with pytest.raises(InputError, match=r"writes \{\{ first_name \}\}"):
            cs.create("A", "winback", "email", template=bare)
        tip = {
            "body": {"es": "Te sugerimos {{ recommendation }}", "en": "Try {{ recommendation }}"}
        }
        with pytest.raises(InputError, match="recommendation"):
            cs.create("B", "winback", "email", template=tip)
        cs.create("C", "cross_sell", "email", template=tip)  # cross-sell always has one
        with pytest.raises(InputError, match="does not know"):
            cs.create("D", "winback", "email", template={"body": {"es": "{{ nombre }}", "en": "x"}})
        with pytest.raises(InputError, match="no en text"):
            cs.create("E", "winback", "email", template={"body": {"es": "Hola"}})
    finally:
        wh.close()


def test_results_before_any_delivery_say_so_instead_of_nan(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wh = segmentum.connect(f"duckdb:///{db}")
    cs = Campaigns(wh, SETTINGS)
    r = results(wh, cs.get("Vuelve").campaign_id, SETTINGS)
    wh.close()
    assert not r.ready and r.note == "no results yet: 0 sent, 0 failed, 0 outcomes"
    assert r.overall.p_value is None and r.overall.uplift is None
    assert main(["campaign", "results", "Vuelve", "-w", f"duckdb:///{db}"]) == 0
    out = capsys.readouterr().out
    assert "no results yet: 0 sent, 0 failed, 0 outcomes" in out and "nan" not in out.lower()


def test_every_email_links_to_unsubscribing_and_a_click_stops_what_was_planned_before(
    db: Path, inbox: tuple[SlowInbox, int]
) -> None:
    """Marketing email must offer a way out: the List-Unsubscribe header (one click in mail
    programs, RFC 8058) and a link in the body, in the recipient's language. The link's page
    records it (a GET only asks: mail scanners open links), a forged or cut link is refused,
    and the customer's message of a campaign planned before the click is not sent."""
    import urllib.parse

    import httpx
    from tests.conftest import serving

    from killsends import TEMPLATE, customers, plan
    from segmentum.campaigns import unsubscribe as unsub
    from segmentum.service.app import create_app

    box, port = inbox
    box.delay = 0.0
    public = "https://crm.example.com/v1/unsubscribe"
    s = _settings(port, unsubscribe_url=public)
    url = f"duckdb:///{db}"
    with segmentum.connect(url) as wh:
        cs = Campaigns(wh, s)
        cs.send(cs.get("Vuelve"), now=dt.datetime(2026, 1, 5, 12, 0), immediately=True)
    assert box.got
    # As the wire carries it: a plain <URL>, not RFC 2047 words a mail program cannot follow.
    assert all(
        b"\nList-Unsubscribe: <https://crm.example.com/v1/unsubscribe?c=" in r for r in box.raw
    )
    links = {}
    for m in box.got:
        header = str(m["List-Unsubscribe"])
        assert header.startswith(f"<{public}?c=") and header.endswith(">"), header
        assert str(m["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
        link = header[1:-1]
        body = m.get_body().get_content()
        assert link in body  # the same link in the message itself
        spanish = "Para dejar de recibir estos correos" in body
        english = "To stop receiving these emails" in body
        assert spanish != english, body
        cid = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["c"][0]
        links[cid] = link
    gone = sorted(links)[0]
    store = unsub.UnsubscribeStore(unsub.store_path(url, s))
    app = create_app(url, s)
    with serving(app) as base, httpx.Client(timeout=60) as http:

        def at(link: str) -> str:
            return link.replace("https://crm.example.com", base)

        asked = http.get(at(links[gone]), headers={"Accept-Language": "es"})
        assert asked.status_code == 200 and 'data-state="ask"' in asked.text
        assert http.head(at(links[gone])).status_code == 200  # link checkers ask with HEAD
        # The page opens in the message's language; a full stop copied along is forgiven.
        lang = urllib.parse.parse_qs(urllib.parse.urlsplit(links[gone]).query)["lang"][0]
        assert f'<html lang="{lang}">' in http.get(at(links[gone]) + ".").text
        assert "¿Dejar de recibir estos correos?" in asked.text
        assert store.unfolded() == []  # opening the link records nothing
        other = sorted(links)[1]
        forged = at(links[gone]).replace(f"c={gone}", f"c={other}")
        assert http.get(forged).status_code == 400
        cut = at(links[gone]).split("&lang=")[0][:-5]  # the signature cut short
        refused = http.get(cut, headers={"Accept-Language": "en"})
        assert refused.status_code == 400 and "This link is not valid" in refused.text
        assert http.post(cut).status_code == 400 and store.unfolded() == []
        # A hostile id with a valid signature is shown as text.
        hostile = '"><script>alert(1)</script>'
        sig = unsub.signature(store.secret(), hostile)
        page = http.get(f"{base}/v1/unsubscribe", params={"c": hostile, "t": sig}).text
        assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
        # The mail program's one-click POST (RFC 8058), then a second click: once.
        done = http.post(at(links[gone]), data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and 'data-state="done"' in done.text
        again = http.post(at(links[gone]), data={"List-Unsubscribe": "One-Click"})
        assert again.status_code == 200
        # The automated flows hear of it at once: an unsubscribe event of the customer's.
        heard = app.state.realtime.store.events_of(gone, dt.datetime(2020, 1, 1))
        assert [e["event_type"] for e in heard] == ["unsubscribe"]
        shown = http.get(at(links[gone]), headers={"Accept-Language": "es"}).text
        assert 'data-state="done"' in shown and "no recibirás más estos correos" in shown
    assert [r["customer_id"] for r in store.unfolded()] == [gone]
    assert unsub.waiting(url, s)  # what the next run's "unsubscribes" step folds first
    # A campaign planned before the click (the customer scheduled in it) is sent: not to them.
    box.got.clear()
    with segmentum.connect(url) as wh:
        cs = Campaigns(wh, s)
        later = cs.create("Otra vez", "winback", "email", template=TEMPLATE, control_share=0.2)
        cs.record_plan(later, plan(customers(14)), dt.datetime(2026, 1, 4, 12, 0))
        report = cs.send(later, now=dt.datetime(2026, 1, 6, 12, 0), immediately=True)
        log = cs.log(later).set_index("customer_id")
        shown_after = cs.dry_run(later)
        kept = wh.table("suppressions").to_pyarrow().to_pylist()
    assert log.loc[gone, "status"] == "not_sent" and log.loc[gone, "error"] == unsub.SKIPPED
    assert report.not_sent == 1  # said by the send, and by its plan as done since: suppressed
    assert shown_after["outcomes"].get("suppressed") == 1, shown_after["outcomes"]
    mailed = {str(m["To"]) for m in box.got}
    assert f"{gone.lower()}@example.com" not in mailed and report.delivered == len(mailed) > 0
    assert [(r["customer_id"], r["channel"], r["reason"]) for r in kept] == [
        (gone, "email", "unsubscribed")
    ]
    assert store.unfolded() == [] and not unsub.waiting(url, s)  # copied over once
