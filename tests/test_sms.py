"""SMS: GSM-7 / UCS-2 parts against the 3GPP TS 23.038 tables, each provider's request shape,
consent, quiet hours and sender id, an SMS campaign sent exactly once, and delivery receipts
counted: all against real HTTP servers on 127.0.0.1 and real DuckDB and SQLite files."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from segmentum.campaigns import sms
from segmentum.config import Settings, load_settings
from segmentum.errors import ConfigError

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


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
