"""SMS: GSM-7 / UCS-2 parts against the 3GPP TS 23.038 tables, each provider's request shape,
consent, quiet hours and sender id, an SMS campaign sent exactly once, and delivery receipts
counted: all against real HTTP servers on 127.0.0.1 and real DuckDB and SQLite files."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.conftest import held, serving

import segmentum
from killsends import customers, plan
from segmentum.campaigns import sms
from segmentum.campaigns.core import Campaigns
from segmentum.campaigns.measure import results
from segmentum.cli import main
from segmentum.config import Settings, load_settings
from segmentum.errors import ConfigError
from segmentum.service.app import create_app
from segmentum.service.auth import SESSION_COOKIE, create_key, create_session
from segmentum.service.state import StateStore, state_path

BASE = load_settings(env={}).with_overrides(discover_segments=False)
NOW = dt.datetime(2026, 1, 5, 11, 0)  # 12:00 in Madrid: outside quiet hours
TEMPLATE = {
    "subject": {"es": "Vuelve", "en": "Come back"},
    "body": {"es": "{{ greeting }}: te echamos de menos.", "en": "{{ greeting }}: we miss you."},
    "sms": {
        "es": "{{ greeting }}: vuelve con un 10% menos hoy. Baja: STOP",
        "en": "{{ greeting }}: come back for 10% off today. Stop: STOP",
    },
}


class SmsInbox:
    """A real HTTP endpoint on 127.0.0.1 standing in for a provider: records every request
    (method, path, query, headers, parsed body) and answers what ``reply`` says."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.reply: Callable[[dict[str, Any]], tuple[int, Any]] = lambda r: (
            200,
            {"id": f"m{len(self.seen)}"},
        )
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ctype = self.headers.get("Content-Type", "")
                body: Any = (
                    json.loads(raw)
                    if "json" in ctype
                    else dict(urllib.parse.parse_qsl(raw.decode()))
                )
                url = urllib.parse.urlsplit(self.path)
                req = {
                    "method": "POST",
                    "path": url.path,
                    "query": dict(urllib.parse.parse_qsl(url.query)),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
                outer.seen.append(req)
                if outer.delay:
                    time.sleep(outer.delay)
                code, answer = outer.reply(req)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def phones(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.seen:
            to = r["body"].get("to")
            out[to] = out.get(to, 0) + 1
        return out


@pytest.fixture(scope="module")
def provider() -> Iterator[SmsInbox]:
    box = SmsInbox()
    yield box
    box.server.shutdown()


@pytest.fixture
def inbox(provider: SmsInbox) -> SmsInbox:
    provider.seen.clear()
    provider.delay = 0.0
    provider.reply = lambda r: (200, {"id": f"m{len(provider.seen)}"})
    return provider


def settings_for(box: SmsInbox, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "sms_provider": "generic",
        "sms_url": f"{box.base}/sms",
        "sms_sender_id": "TIENDA",
        "sms_user": "acct",
        "sms_password": "pw",
        "sms_receipt_url": "https://crm.example.com/v1/sms/receipts",
        "sms_receipt_secret": "tok3n",
        **kw,
    }
    return BASE.with_overrides(**values)


# --------------------------------------------------------------------- length and encoding


def test_the_gsm7_tables_are_the_standards_128_and_10_characters() -> None:
    # The default alphabet has 128 code points, one of them the escape (not a character).
    assert len(sms.GSM7_BASIC) == 127 and "\x1b" not in sms.GSM7_BASIC
    assert set("\f^{}\\[~]|€") == sms.GSM7_EXTENSION
    assert not sms.GSM7_BASIC & sms.GSM7_EXTENSION
    # Spanish letters in the alphabet, and those that are not (its accents are grave ones).
    assert set("éÉñÑüÜ¡¿àèìòùÇ") <= sms.GSM7_BASIC
    assert not set("áíóúÁÍÓÚç`") & (sms.GSM7_BASIC | sms.GSM7_EXTENSION)


@pytest.mark.parametrize(
    ("text", "encoding", "parts", "units"),
    [
        ("a" * 160, "GSM-7", 1, 160),
        ("a" * 161, "GSM-7", 2, 161),
        ("a" * 306, "GSM-7", 2, 306),
        ("a" * 307, "GSM-7", 3, 307),
        ("€", "GSM-7", 1, 2),
        ("a" * 158 + "€", "GSM-7", 1, 160),
        ("a" * 159 + "€", "GSM-7", 2, 161),
        # An escape pair is never split: 152 + [ does not fit 153, so it opens part 2.
        ("a" * 152 + "[" + "a" * 10, "GSM-7", 2, 164),
        ("Año, señor, pingüino", "GSM-7", 1, 20),
        ("á", "UCS-2", 1, 1),
        ("a" * 69 + "á", "UCS-2", 1, 70),
        ("a" * 70 + "á", "UCS-2", 2, 71),
        ("á" * 134, "UCS-2", 2, 134),
        ("á" * 135, "UCS-2", 3, 135),
        ("😀" * 35, "UCS-2", 1, 70),
        ("😀" * 33 + "a" * 68, "UCS-2", 2, 134),  # 66 + 1, then 67
        ("😀" * 34 + "a" * 66, "UCS-2", 3, 134),  # the 34th emoji does not fit 67: not split
        ("", "GSM-7", 0, 0),
    ],
)
def test_parts_follow_the_gsm_03_38_rules(text: str, encoding: str, parts: int, units: int) -> None:
    m = sms.measure(text)
    assert (m.encoding, m.parts, m.units) == (encoding, parts, units)
    assert sms.segment_count(text) == (encoding, parts)


def test_an_emoji_pair_is_never_split_between_parts() -> None:
    # 66 code units of "a", then an emoji (2 units) does not fit the 67 left: a third part.
    assert sms.measure("a" * 66 + "😀" + "a" * 66 + "😀").parts == 3


# --------------------------------------------------------------------- checks


@pytest.mark.parametrize("good", ["TIENDA", "Tienda 24", "A", "ABCDEFGHIJK", "+34600111222"])
def test_valid_sender_ids_pass(good: str) -> None:
    assert sms.check_sender_id(good) == good


@pytest.mark.parametrize("bad", ["", "ABCDEFGHIJKL", "12345678901A!", "Tienda_24", "Señor", "12"])
def test_sender_ids_a_network_would_refuse_are_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        sms.check_sender_id(bad)


def test_quiet_hours_are_read_in_the_customers_own_zone() -> None:
    s = BASE  # 21:00 to 09:00
    # 20:30 UTC is 21:30 in Madrid (quiet until 09:00 = 08:00 UTC) and 17:30 in Buenos Aires.
    at = dt.datetime(2026, 1, 5, 20, 30)
    assert sms.quiet_until(at, "Europe/Madrid", s) == dt.datetime(2026, 1, 6, 8, 0)
    assert sms.quiet_until(at, "America/Argentina/Buenos_Aires", s) is None
    # 03:00 in Mexico City (UTC-6) waits until 09:00 the same day.
    assert sms.quiet_until(dt.datetime(2026, 1, 5, 9, 0), "America/Mexico_City", s) == (
        dt.datetime(2026, 1, 5, 15, 0)
    )
    # An unknown zone falls back to the business time zone (UTC here).
    assert sms.quiet_until(dt.datetime(2026, 1, 5, 22, 0), "Mars/Olympus", s) == (
        dt.datetime(2026, 1, 6, 9, 0)
    )
    # A window that does not cross midnight, and none at all.
    lunch = s.with_overrides(sms_quiet_start="14:00", sms_quiet_end="16:00")
    assert sms.quiet_until(dt.datetime(2026, 1, 5, 14, 30), "UTC", lunch) == (
        dt.datetime(2026, 1, 5, 16, 0)
    )
    off = s.with_overrides(sms_quiet_start="00:00", sms_quiet_end="00:00")
    assert sms.quiet_until(at, "Europe/Madrid", off) is None


# --------------------------------------------------------------------- providers


def _answer_for(name: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    return {
        "twilio": lambda r: (201, {"sid": "SM123", "status": "queued"}),
        "vonage": lambda r: (
            200,
            {"message-count": "1", "messages": [{"status": "0", "message-id": "V1"}]},
        ),
        "messagebird": lambda r: (201, {"id": "MB1"}),
        "infobip": lambda r: (
            200,
            {"messages": [{"messageId": "IB1", "status": {"groupName": "PENDING"}}]},
        ),
        "generic": lambda r: (202, {"message_id": "G1"}),
    }[name]


@pytest.mark.parametrize("name", sms.PROVIDERS)
def test_each_provider_gets_its_documented_request_shape(name: str, inbox: SmsInbox) -> None:
    urls = {
        "twilio": f"{inbox.base}/2010-04-01/Accounts/{{user}}/Messages.json",
        "infobip": inbox.base,  # the account's base URL: the path is added
    }
    s = settings_for(inbox, sms_provider=name, sms_url=urls.get(name, f"{inbox.base}/sms"))
    inbox.reply = _answer_for(name)
    with sms.SmsSender.from_settings(s) as sender:
        got = sender.send(
            "612 34 56 78", "Hola: ¿vienes? Ahorra 10€", "camp-1:C7", country="España"
        )
    assert got.ok, got
    assert (got.to, got.encoding, got.parts) == ("+34612345678", "GSM-7", 1)
    assert got.message_id in ("SM123", "V1", "MB1", "IB1", "G1")
    (req,) = inbox.seen
    h, b = req["headers"], req["body"]
    basic = "Basic " + __import__("base64").b64encode(b"acct:pw").decode()
    receipts = "https://crm.example.com/v1/sms/receipts/" + name
    if name == "twilio":
        assert req["path"] == "/2010-04-01/Accounts/acct/Messages.json"
        assert (
            h["content-type"] == "application/x-www-form-urlencoded" and h["authorization"] == basic
        )
        assert {k: b[k] for k in ("To", "From", "Body")} == {
            "To": "+34612345678",
            "From": "TIENDA",
            "Body": "Hola: ¿vienes? Ahorra 10€",
        }
        cb = urllib.parse.urlsplit(b["StatusCallback"])
        assert f"https://{cb.netloc}{cb.path}" == receipts
        assert dict(urllib.parse.parse_qsl(cb.query)) == {"token": "tok3n", "ref": "camp-1:C7"}
    elif name == "vonage":
        assert h["authorization"] == basic and req["path"] == "/sms"
        assert b == {
            "from": "TIENDA",
            "to": "34612345678",
            "text": "Hola: ¿vienes? Ahorra 10€",
            "type": "text",
            "client-ref": "camp-1:C7",
            "callback": receipts + "?token=tok3n",
        }
    elif name == "messagebird":
        assert h["authorization"] == "AccessKey pw" and "json" in h["content-type"]
        assert b == {
            "originator": "TIENDA",
            "recipients": ["34612345678"],
            "body": "Hola: ¿vienes? Ahorra 10€",
            "reference": "camp-1:C7",
            "datacoding": "plain",
            "reportUrl": receipts + "?token=tok3n",
        }
    elif name == "infobip":
        assert req["path"] == "/sms/2/text/advanced" and h["authorization"] == "App pw"
        assert b == {
            "messages": [
                {
                    "destinations": [{"to": "34612345678"}],
                    "from": "TIENDA",
                    "text": "Hola: ¿vienes? Ahorra 10€",
                    "callbackData": "camp-1:C7",
                    "notifyUrl": receipts + "?token=tok3n",
                    "notifyContentType": "application/json",
                }
            ]
        }
    else:
        assert h["authorization"] == basic and h["idempotency-key"] == "camp-1:C7"
        assert b == {
            "to": "+34612345678",
            "from": "TIENDA",
            "text": "Hola: ¿vienes? Ahorra 10€",
            "callback_url": receipts + "?token=tok3n",
            "reference": "camp-1:C7",
        }


def test_a_ucs2_message_is_flagged_unicode_where_the_provider_asks(inbox: SmsInbox) -> None:
    inbox.reply = _answer_for("vonage")
    s = settings_for(inbox, sms_provider="vonage")
    with sms.SmsSender.from_settings(s) as sender:
        got = sender.send("+34612345678", "Tu código: ábrelo", "k1")
    assert got.ok and got.encoding == "UCS-2" and inbox.seen[0]["body"]["type"] == "unicode"


def test_the_generic_provider_posts_a_form_with_a_bearer_token(inbox: SmsInbox) -> None:
    s = settings_for(
        inbox,
        sms_body_format="form",
        sms_auth="bearer",
        sms_generic_fields="msisdn={to_digits},sender={from},message={text},ref={ref},enc={encoding}",
    )
    with sms.SmsSender.from_settings(s) as sender:
        assert sender.send("+34612345678", "hola", "k2").ok
    (req,) = inbox.seen
    assert req["headers"]["authorization"] == "Bearer pw"
    assert req["body"] == {
        "msisdn": "34612345678",
        "sender": "TIENDA",
        "message": "hola",
        "ref": "k2",
        "enc": "GSM-7",
    }


def test_5xx_429_and_timeouts_are_retried_and_other_4xx_fail_for_good(inbox: SmsInbox) -> None:
    s = settings_for(inbox)
    answers = iter(
        [
            (503, {"error": "maintenance"}),
            (429, {"error": "slow down"}),
            (400, {"error": "invalid destination"}),
            (200, {"id": "ok"}),
        ]
    )
    inbox.reply = lambda r: next(answers)
    with sms.SmsSender.from_settings(s) as sender:
        got = [sender.send("+34612345678", "hola", f"k{i}") for i in range(4)]
    assert [g.status for g in got] == ["retry", "retry", "failed", "sent"]
    assert got[2].error == "HTTP 400: invalid destination"
    inbox.delay = 0.5
    with sms.SmsSender.from_settings(s, timeout=0.1) as sender:
        slow = sender.send("+34612345678", "hola", "k9")
    assert slow.status == "retry" and "timeout" in (slow.error or "")
    # Nobody listening: retried too.
    dead = s.with_overrides(sms_url=f"http://127.0.0.1:{_closed_port()}/sms")
    with sms.SmsSender.from_settings(dead) as sender:
        assert sender.send("+34612345678", "hola", "k10").status == "retry"


def test_vonage_errors_inside_a_200_answer_are_read(inbox: SmsInbox) -> None:
    codes = iter(["1", "3"])
    inbox.reply = lambda r: (
        200,
        {"messages": [{"status": next(codes), "error-text": "Throttled or invalid"}]},
    )
    s = settings_for(inbox, sms_provider="vonage")
    with sms.SmsSender.from_settings(s) as sender:
        first, second = (sender.send("+34612345678", "hola", f"v{i}") for i in range(2))
    assert (first.status, second.status) == ("retry", "failed")  # 1 throttled, 3 invalid


def test_too_long_messages_and_bad_numbers_fail_with_the_reason_and_nothing_is_posted(
    inbox: SmsInbox,
) -> None:
    s = settings_for(inbox, sms_max_parts=2)
    with sms.SmsSender.from_settings(s) as sender:
        long = sender.send("+34612345678", "á" * 135, "k1")
        bad = sender.send("12", "hola", "k2")
    assert long.status == "failed" and long.parts == 3
    assert "3 UCS-2 parts" in (long.error or "") and "sms_max_parts is 2" in (long.error or "")
    assert bad.status == "failed" and "not a valid phone number" in (bad.error or "")
    assert inbox.seen == []


def test_missing_provider_settings_are_named(inbox: SmsInbox) -> None:
    with pytest.raises(ConfigError, match="Account SID"):
        sms.SmsSender.from_settings(settings_for(inbox, sms_provider="twilio", sms_user=""))
    with pytest.raises(ConfigError, match="base URL"):
        sms.SmsSender.from_settings(settings_for(inbox, sms_provider="infobip", sms_url=""))
    with pytest.raises(ConfigError, match="sms_sender_id"):
        sms.SmsSender.from_settings(settings_for(inbox, sms_sender_id="Tienda_Online"))
    with pytest.raises(ConfigError, match="sms_receipt_secret"):
        sms.SmsSender.from_settings(settings_for(inbox, sms_receipt_secret=""))
    with pytest.raises(ConfigError, match="HH:MM"):
        sms.SmsSender.from_settings(settings_for(inbox, sms_quiet_start="9pm"))


def test_an_sms_template_needs_both_languages_and_known_variables() -> None:
    from segmentum.campaigns.channels import check_template, load_template
    from segmentum.errors import InputError

    only_sms = load_template({"sms": {"es": "Hola {{ greeting }}", "en": "Hi {{ greeting }}"}})
    assert only_sms["body"] == only_sms["sms"]  # an SMS-only template is complete
    with pytest.raises(InputError, match="sms has no en text"):
        load_template({"body": TEMPLATE["body"], "sms": {"es": "Hola"}})
    with pytest.raises(InputError, match="first_name"):
        check_template({**TEMPLATE, "sms": {"es": "{{ first_name }}", "en": "Hi"}}, "winback")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------- an SMS campaign


def build_campaign(path: Path, settings: Settings, n: int = 10) -> tuple[str, list[str]]:
    """A warehouse with one logged SMS winback campaign; returns its id and the phones that
    must each get it once (two customers without SMS consent, two in the control group)."""
    cust = customers(n)
    cust["consent_sms"] = cust.consent_email
    cust["timezone"] = ["Europe/Madrid" if c == "España" else "Europe/London" for c in cust.country]
    wh = segmentum.connect(f"duckdb:///{path}")
    try:
        wh.write("customers", cust)
        wh.write(
            "transactions",
            pd.DataFrame(
                {
                    "invoice_id": ["I1"],
                    "customer_id": cust.customer_id[:1],
                    "timestamp": pd.to_datetime(["2025-01-05"]),
                    "quantity": [1.0],
                    "amount": [20.0],
                }
            ),
        )
        cs = Campaigns(wh, settings)
        c = cs.create("Texto", "winback", "sms", template=TEMPLATE, control_share=0.2)
        p = plan(cust)
        cs.record_plan(c, p, NOW - dt.timedelta(hours=1))
    finally:
        wh.close()
    due = p[p.outcome == "scheduled"].customer_id
    return c.campaign_id, sorted(cust.set_index("customer_id").loc[due].phone)


@pytest.fixture(scope="module")
def campaign_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    path = tmp_path_factory.mktemp("sms") / "template.duckdb"
    cid, phones = build_campaign(path, BASE)
    return path, cid, phones


@pytest.fixture
def db(campaign_template: tuple[Path, str, list[str]], tmp_path: Path) -> Path:
    target = tmp_path / "w.duckdb"
    shutil.copy(campaign_template[0], target)
    return target


def test_an_sms_campaign_reaches_each_consenting_phone_once_in_their_language(
    db: Path, inbox: SmsInbox, campaign_template: tuple[Path, str, list[str]]
) -> None:
    _, cid, phones = campaign_template
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, settings_for(inbox))
        r = cs.send(cs.get("Texto"), now=NOW, immediately=True)
        assert (r.delivered, r.failed, r.control) == (len(phones), 0, 2)
        assert inbox.phones() == dict.fromkeys(phones, 1)
        texts = {x["body"]["to"]: x["body"]["text"] for x in inbox.seen}
        assert texts["+34600000002"].startswith("Hola Lucía: vuelve con un 10% menos")
        assert "+34600000003" not in texts and "+34600000007" not in texts  # no SMS consent
        assert texts["+34600000006"] == "Hi Emma: come back for 10% off today. Stop: STOP"
        assert texts["+34600000004"].startswith("Hola: vuelve")  # no first name: no nan
        assert all("nan" not in t and "None" not in t for t in texts.values())
        assert {x["headers"]["idempotency-key"] for x in inbox.seen} == {
            f"{cid}:{c}" for c in cs.log(cs.get("Texto")).query("status == 'sent'").customer_id
        }
        # A second send sends nothing again.
        again = cs.send(cs.get("Texto"), now=NOW, immediately=True)
        assert again.delivered == 0 and len(inbox.seen) == len(phones)
    finally:
        wh.close()


def test_a_message_left_sending_by_a_dead_process_and_a_503_are_sent_once_later(
    db: Path, inbox: SmsInbox, campaign_template: tuple[Path, str, list[str]]
) -> None:
    _, _, phones = campaign_template
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, settings_for(inbox))
        c = cs.get("Texto")
        first = cs.log(c).query("status == 'pending'").key.iloc[0]
        # What a send killed right after its claim leaves: a claim by a process that is gone.
        wh.run_sql(
            "UPDATE campaign_sends SET status = 'sending', claim_token = ?, claimed_at = ? "
            "WHERE key = ?",
            [f"{socket.gethostname()}/999999999/x", NOW, first],
        )
        calls = {"n": 0}

        def flaky(req: dict[str, Any]) -> tuple[int, Any]:
            calls["n"] += 1
            return (503, {"error": "busy"}) if calls["n"] == 2 else (200, {"id": "ok"})

        inbox.reply = flaky
        r = cs.send(c, now=NOW, immediately=True)
        assert r.resumed == 1 and r.retrying == 1 and r.delivered == len(phones) - 1
        r2 = cs.send(c, now=NOW, immediately=True)
        assert (r2.delivered, r2.failed) == (1, 0)
        delivered = [x["body"]["to"] for x in inbox.seen]
        # The 503 was answered, so that phone got one real message (and one refused attempt).
        assert sorted(set(delivered)) == phones and len(delivered) == len(phones) + 1
        assert (cs.log(c).query("outcome == 'scheduled'").status == "sent").all()
    finally:
        wh.close()


def test_a_refused_number_fails_for_good_and_consent_withdrawn_is_respected(
    db: Path, inbox: SmsInbox
) -> None:
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        wh.run_sql("UPDATE customers SET consent_sms = false WHERE customer_id = 'C0005'")
        inbox.reply = lambda r: (
            (400, {"error": "unknown number"})
            if r["body"]["to"] == "+34600000008"
            else (200, {"id": "ok"})
        )
        cs = Campaigns(wh, settings_for(inbox))
        c = cs.get("Texto")
        r = cs.send(c, now=NOW, immediately=True)
        log = cs.log(c).set_index("customer_id")
        assert log.loc["C0009", "status"] == "failed"
        assert log.loc["C0009", "error"] == "HTTP 400: unknown number"
        assert log.loc["C0005", "status"] == "not_sent"
        assert r.failed == 1 and r.retrying == 0
        assert "+34600000004" not in inbox.phones()
    finally:
        wh.close()


def test_results_count_messages_that_all_failed_as_failed_not_sent(
    db: Path,
    inbox: SmsInbox,
    campaign_template: tuple[Path, str, list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, cid, phones = campaign_template
    inbox.reply = lambda r: (400, {"error": "unknown number"})
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, settings_for(inbox))
        assert cs.send(cs.get("Texto"), now=NOW, immediately=True).failed == len(phones)
        r = results(wh, cid, BASE)
    finally:
        wh.close()
    n = len(phones)
    # The statistics still compare every treated member; the counts keep sent and failed apart.
    assert (r.sent, r.failed, r.treated, r.overall.treated) == (0, n, n, n)
    assert r.note == f"no results yet: 0 sent, {n} failed, 0 outcomes"
    w = ["-w", f"duckdb:///{db}"]
    assert main(["campaign", "results", "Texto", *w]) == 0
    assert f"0 sent, {n} failed" in capsys.readouterr().out
    assert main(["campaign", "results", "Texto", "--json", *w]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["sent"], d["failed"], d["treated"]) == (0, n, n)
    assert main(["campaign", "results", "Texto", "--lang", "es", *w]) == 0
    assert f"0 enviados, {n} fallidos" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("lang", "counts"),
    [
        ("es", "mensajes SMS 0 entregados, 0 fallidos, 0 caducados, {n} aún sin acuse de recibo"),
        ("en", "SMS 0 delivered, 0 failed, 0 expired, {n} without a receipt yet"),
    ],
)
def test_receipt_counts_are_words_that_agree_with_their_numbers(
    db: Path,
    inbox: SmsInbox,
    campaign_template: tuple[Path, str, list[str]],
    capsys: pytest.CaptureFixture[str],
    lang: str,
    counts: str,
) -> None:
    _, _, phones = campaign_template
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, settings_for(inbox))
        assert cs.send(cs.get("Texto"), now=NOW, immediately=True).delivered == len(phones)
    finally:
        wh.close()
    assert main(["campaign", "results", "Texto", "-w", f"duckdb:///{db}", "--lang", lang]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert counts.format(n=len(phones)) in out and "no_receipt" not in out, out


def test_quiet_hours_hold_messages_until_morning_where_each_customer_lives(
    db: Path, inbox: SmsInbox, campaign_template: tuple[Path, str, list[str]]
) -> None:
    _, _, phones = campaign_template
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, settings_for(inbox))
        c = cs.get("Texto")
        # 20:30 UTC: 21:30 in Madrid (quiet), 20:30 in London (not yet).
        evening = dt.datetime(2026, 1, 5, 20, 30)
        r = cs.send(c, now=evening, immediately=True)
        london = {x["body"]["to"] for x in inbox.seen}
        assert london == {"+34600000000", "+34600000003", "+34600000006", "+34600000009"} & set(
            phones
        )
        assert r.scheduled_later == len(phones) - len(london)
        held = cs.log(c).query("status == 'pending'")
        assert (held.scheduled_at == pd.Timestamp("2026-01-06 08:00")).all()  # 09:00 Madrid
        later = cs.send(c, now=dt.datetime(2026, 1, 6, 8, 0))
        assert later.delivered == len(held) and inbox.phones() == dict.fromkeys(phones, 1)
    finally:
        wh.close()


def test_the_sms_text_comes_from_the_templates_sms_part_and_is_measured(
    db: Path, inbox: SmsInbox
) -> None:
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, settings_for(inbox))
        c = cs.get("Texto")
        tpl = c.template_data
        lang_es = sms.render_text(tpl, "es", {"first_name": "Ana"})
        assert lang_es == "Hola Ana: vuelve con un 10% menos hoy. Baja: STOP"
        assert sms.measure(lang_es).to_dict() == {
            "encoding": "GSM-7",
            "parts": 1,
            "units": len(lang_es),
            "characters": len(lang_es),
        }
    finally:
        wh.close()


# --------------------------------------------------------------------- receipts


def test_receipts_and_unsubscribes_wait_in_the_services_own_state_file(tmp_path: Path) -> None:
    """The service and a command must find one state file whatever folder each starts in: on
    a Spark folder the receipts (and the unsubscribe links' secret) went to the working
    folder, so a send from elsewhere signed links the service then refused."""
    from segmentum.campaigns import unsubscribe as unsub

    for url in (f"duckdb:///{tmp_path / 'w.duckdb'}", f"pyspark:///{tmp_path / 'wh'}"):
        assert sms.receipts_path(url, BASE) == state_path(url, BASE), url
        assert unsub.store_path(url, BASE) == state_path(url, BASE), url
    assert sms.receipts_path(f"pyspark:///{tmp_path / 'wh'}", BASE) == str(
        tmp_path / "wh" / "segmentum.state.sqlite"
    )


def test_receipts_from_every_provider_are_stored_while_the_warehouse_is_held_and_counted(
    db: Path, inbox: SmsInbox, tmp_path: Path
) -> None:
    s = settings_for(inbox, sms_receipt_url="http://testserver/v1/sms/receipts")
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, s)
        c = cs.get("Texto")
        cs.send(c, now=NOW, immediately=True)
        keys = sorted(cs.log(c).query("status == 'sent'").key)
    finally:
        wh.close()
    url = f"duckdb:///{db}"
    assert sms.receipts_path(url, s) == state_path(url, s)  # the service's own state file
    state = StateStore.for_warehouse(url, s)
    key = create_key(state, "reader", ["read"])
    app = create_app(url, s)
    holder = segmentum.connect(url)  # a pipeline job holding the warehouse meanwhile
    try:
        with serving(app) as base:
            rx = f"{base}/v1/sms/receipts"
            posted = [
                httpx.post(
                    f"{rx}/vonage?token=tok3n",
                    data={"client-ref": keys[0], "messageId": "V1", "status": "delivered"},
                ),
                httpx.get(
                    f"{rx}/messagebird",
                    params={"token": "tok3n", "reference": keys[1], "id": "M", "status": "expired"},
                ),
                httpx.post(
                    f"{rx}/infobip?token=tok3n",
                    json={
                        "results": [
                            {
                                "callbackData": keys[2],
                                "messageId": "I",
                                "status": {"groupName": "UNDELIVERABLE", "name": "X"},
                            },
                            {  # only at the operator: not final, not counted
                                "callbackData": keys[3],
                                "status": {
                                    "groupName": "DELIVERED",
                                    "name": "DELIVERED_TO_OPERATOR",
                                },
                            },
                        ]
                    },
                ),
                httpx.post(
                    f"{rx}/generic?token=tok3n", json={"reference": keys[3], "status": "DELIVRD"}
                ),
                httpx.post(  # sent, then delivered: the last one counts
                    f"{rx}/vonage?token=tok3n",
                    data={"client-ref": keys[1], "status": "delivered"},
                ),
            ]
            assert [p.status_code for p in posted] == [200] * 5, [p.text for p in posted]
            assert [p.json()["stored"] for p in posted] == [1, 1, 1, 1, 1]
            # Twilio: the reference rides in the URL, and the signature is checked.
            form = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}
            query = urllib.parse.urlencode({"token": "tok3n", "ref": keys[4]})
            signed = sms.twilio_signature(
                f"http://testserver/v1/sms/receipts/twilio?{query}", form, "pw"
            )
            ok = httpx.post(
                f"{rx}/twilio?{query}", data=form, headers={"X-Twilio-Signature": signed}
            )
            forged = httpx.post(
                f"{rx}/twilio?{query}", data=form, headers={"X-Twilio-Signature": "bad"}
            )
            assert (ok.status_code, forged.status_code) == (200, 403)
            no_token = httpx.post(f"{rx}/vonage", data={"client-ref": keys[0], "status": "failed"})
            assert no_token.status_code == 401
            holder.close()
            counts = httpx.get(
                f"{base}/v1/campaigns/Texto/sms-receipts", headers={"X-API-Key": key}
            )
            # The dashboard's campaign page shows the same counts, in both languages.
            session = create_session(app.state.svc.sessions, key)
            assert session is not None
            pages = {
                lang: httpx.get(
                    f"{base}/dashboard/campaigns",
                    params={"c": c.campaign_id, "lang": lang},
                    cookies={SESSION_COOKIE: session.sid},
                    timeout=60,
                ).text
                for lang in ("es", "en")
            }
        assert counts.status_code == 200, counts.text
        body = counts.json()
        assert body["folded"] == 6
        assert body["receipts"] == {
            "delivered": 3,  # keys 0, 1 (expired, then delivered), 3
            "failed": 2,  # keys 2 and 4
            "expired": 0,
            "no_receipt": len(keys) - 5,
        }
        for lang, words in (
            ("es", ("Entregados", "Fallidos", "Caducados", "Sin acuse todavía")),
            ("en", ("Delivered", "Failed", "Expired", "No receipt yet")),
        ):
            card = pages[lang].split('id="sms-receipts"')[1].split("</article>")[0]
            shown = re.findall(r'data-receipt="(\w+)"><td>([^<]+)</td><td>([^<]+)</td>', card)
            assert shown == [
                (k, w, str(body["receipts"][k]))
                for k, w in zip(body["receipts"], words, strict=True)
            ], lang
            assert f"{len(keys)} SMS" in card
    finally:
        holder.close()
    # Folding again copies nothing twice, and a send reports the same counts.
    wh = segmentum.connect(url)
    try:
        cs = Campaigns(wh, s)
        assert cs.fold_sms_receipts() == 0
        assert sms.ReceiptStore(sms.receipts_path(url, s)).unfolded() == []  # all moved over
        assert cs.send(cs.get("Texto"), now=NOW).receipts == body["receipts"]
        # Each receipt names its customer, the column ``segmentum forget`` erases rows by.
        stored = wh.table("sms_receipts").select("key", "customer_id").to_pyarrow().to_pylist()
        assert {x["key"]: x["customer_id"] for x in stored} == {
            k: k.split(":", 1)[1] for k in keys[:5]
        }
    finally:
        wh.close()


def test_receipts_are_counted_from_the_published_store_while_a_run_holds_the_warehouse(
    db: Path, inbox: SmsInbox
) -> None:
    """While a run holds the warehouse (and always on Spark) the campaign page reads the
    serving store: an SMS campaign's receipt counts were missing there. The statuses the last
    publish kept plus the receipts stored since give the counts a fold would give."""
    from segmentum.precompute import publish_read_models
    from segmentum.serving import ServingStore, serving_path

    s = settings_for(inbox)
    url = f"duckdb:///{db}"
    receipts = sms.ReceiptStore(sms.receipts_path(url, s))
    t1 = NOW + dt.timedelta(minutes=5)
    with segmentum.connect(url) as wh:
        cs = Campaigns(wh, s)
        c = cs.get("Texto")
        cs.send(c, now=NOW, immediately=True)
        log = cs.log(c)
        keys = sorted(log.query("status == 'sent'").key)
        unsent = sorted(log.query("status != 'sent'").key)  # the control group's
        receipts.add(
            [
                sms.Receipt(keys[0], "delivered", "generic"),
                sms.Receipt(keys[1], "expired", "generic"),
                sms.Receipt(keys[2], "failed", "generic"),
            ],
            at=t1,
        )
        assert cs.fold_sms_receipts() == 3
        publish_read_models(wh, s)
    # Receipts that arrive after the publish, while a run holds the warehouse.
    receipts.add(
        [
            sms.Receipt(keys[1], "delivered", "generic"),  # later than the kept "expired"
            sms.Receipt(keys[3], "failed", "generic"),
            sms.Receipt(keys[3], "delivered", "generic"),  # same time, later id: this one
            sms.Receipt(unsent[0], "delivered", "generic"),  # not sent: not counted
            sms.Receipt("other-campaign:" + keys[4].split(":", 1)[1], "failed", "generic"),
        ],
        at=t1 + dt.timedelta(minutes=5),
    )
    receipts.add([sms.Receipt(keys[2], "delivered", "generic")], at=t1 - dt.timedelta(minutes=1))
    waiting = sms.waiting_receipts(url, s)
    assert len(waiting) == 6
    target = serving_path(url, s.serving_store)
    assert target is not None
    store = ServingStore(target)
    published = store.read(lambda w: sms.published_receipt_counts(w, c.campaign_id, waiting))
    expected = {"delivered": 3, "failed": 1, "expired": 0, "no_receipt": len(keys) - 4}
    assert published == expected
    key = create_key(StateStore.for_warehouse(url, s), "reader", ["read"])
    app = create_app(url, s)
    session = create_session(app.state.svc.sessions, key)
    assert session is not None
    holder = held(db)
    try:
        with serving(app) as base:
            page = httpx.get(
                f"{base}/dashboard/campaigns",
                params={"c": c.campaign_id, "lang": "es"},
                cookies={SESSION_COOKIE: session.sid},
                timeout=60,
            ).text
            # The API lists the campaigns from the store too, saying when it was published.
            listed = httpx.get(f"{base}/v1/campaigns", headers={"X-API-Key": key}, timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert listed.status_code == 200 and listed.headers["x-segmentum-published-at"]
    assert [x["campaign_id"] for x in listed.json()] == [c.campaign_id]
    assert 'id="published-note"' in page  # read from the serving store
    card = page.split('id="sms-receipts"')[1].split("</article>")[0]
    shown = re.findall(r'data-receipt="(\w+)"><td>[^<]+</td><td>([^<]+)</td>', card)
    assert shown == [(k, str(v)) for k, v in expected.items()]
    # Folding them into the warehouse gives the same counts.
    with segmentum.connect(url) as wh:
        cs = Campaigns(wh, s)
        assert cs.fold_sms_receipts() == 6
        assert sms.receipt_counts(wh, c.campaign_id) == expected


def test_a_send_killed_with_sigkill_mid_way_resumes_with_each_phone_served_once_or_twice_at_most(
    db: Path, inbox: SmsInbox, campaign_template: tuple[Path, str, list[str]]
) -> None:
    """A real ``segmentum campaign send`` process, killed while the provider holds a message."""
    _, _, phones = campaign_template
    inbox.delay = 0.3  # the provider takes each message, then answers 300 ms later
    s = settings_for(inbox)
    env = {
        "SEGMENTUM_DISCOVER_SEGMENTS": "false",
        "SEGMENTUM_SMS_URL": s.sms_url,
        "SEGMENTUM_SMS_SENDER_ID": s.sms_sender_id,
        "SEGMENTUM_SMS_USER": "acct",
        "SEGMENTUM_SMS_PASSWORD": "pw",
        "SEGMENTUM_SMS_QUIET_START": "00:00",  # the clock of the machine: no quiet hours
        "SEGMENTUM_SMS_QUIET_END": "00:00",
    }
    argv = ["campaign", "send", "Texto", "--immediately", "-w", f"duckdb:///{db}"]
    # The command's own main in a forked process (segmentum is imported already: a new
    # interpreter would spend seconds importing it), killed as any process is.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.environ.update(env)
        from segmentum.cli import main

        os._exit(main(argv))
    deadline = time.monotonic() + 60
    while len(inbox.seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)  # inside the provider's 300 ms: the message in flight is taken, unanswered
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), "the send ended before it could be killed"
    taken = len(inbox.seen)
    assert 3 <= taken < len(phones)
    inbox.delay = 0.0
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        cs = Campaigns(wh, s.with_overrides(sms_quiet_start="00:00", sms_quiet_end="00:00"))
        r = cs.send(cs.get("Texto"), immediately=True)
        assert r.resumed == 1 and r.failed == 0
        got = inbox.phones()
        assert set(got) == set(phones)  # nothing lost
        assert sum(got.values()) - len(phones) <= 1  # only the one in flight, at most, twice
        assert (cs.log(cs.get("Texto")).query("outcome == 'scheduled'").status == "sent").all()
    finally:
        wh.close()


def test_an_sms_campaign_on_the_demo_is_planned_outside_quiet_hours_with_its_parts(
    service_db: Path,
    copy_of: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wh = copy_of(service_db)
    s = BASE.with_overrides(sms_sender_id="TIENDA", sms_url="http://127.0.0.1:9/sms")
    cs = Campaigns(wh, s)
    c = cs.create("Texto demo", "winback", "sms", template=TEMPLATE)
    now = dt.datetime(2026, 1, 5, 21, 0)
    plan_ = cs.dry_run(c, now=now, sample=100_000)
    examples = plan_["examples"]
    assert len(examples) == plan_["outcomes"]["scheduled"] > 0
    cust = wh.table("customers").to_pandas().set_index("customer_id")
    for e in examples:  # never inside the customer's quiet hours
        assert sms.quiet_until(e["when"], cust.loc[e["customer_id"], "timezone"], s) is None
    # Planned only where there is SMS consent and a phone.
    ids = [e["customer_id"] for e in examples]
    assert cust.loc[ids, "consent_sms"].all() and cust.loc[ids, "phone"].notna().all()
    assert plan_["outcomes"]["no_consent"] > 0
    assert all(e["subject"] == "" and e["parts"] >= 1 for e in examples)
    assert {e["encoding"] for e in examples} <= {"GSM-7", "UCS-2"}
    assert all(e["body"].startswith(("Hola", "Hi", "Hello")) for e in examples)
    # The text dry run says what each example is billed as, not only --json.
    url = wh.url
    wh.close()
    monkeypatch.setenv("SEGMENTUM_SMS_SENDER_ID", "TIENDA")
    monkeypatch.setenv("SEGMENTUM_SMS_URL", "http://127.0.0.1:9/sms")
    assert main(["campaign", "send", "Texto demo", "--dry-run", "-w", url, "--lang", "es"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert re.search(r"\((GSM-7|UCS-2), \d+ partes?\)", said), said
