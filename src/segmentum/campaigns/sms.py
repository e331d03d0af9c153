"""SMS: message length and encoding, one HTTP adapter for many providers, quiet hours, receipts.

**Length and encoding** (3GPP TS 23.038, formerly GSM 03.38). A text made only of the GSM 7-bit
default alphabet goes out as GSM-7: 160 septets in one part, 153 per part once it needs more
(the other 7 carry the concatenation header). The characters of the extension table
(``^ { } [ ] ~ | € \\`` and form feed) take two septets each (an escape, then the character),
and are never split between two parts. Any other character turns the whole message into
UCS-2: 70 UTF-16 code units in one part, 67 per part beyond; an emoji outside the basic plane
takes two units. Spanish texts beware: ``é ñ Ñ ü ¡ ¿`` are GSM-7, but ``á í ó ú ç`` are not
(the alphabet has ``à ì ò ù Ç`` instead), so one ``á`` more than halves a part. A message
longer than ``sms_max_parts`` parts fails with its count, instead of being cut.

**Providers.** :class:`SmsSender` posts one message per request, in the request shape of the
configured provider: ``twilio`` (Messages API, form post), ``vonage`` (SMS API, form post),
``messagebird`` (REST messages API, JSON), ``infobip`` (``/sms/2/text/advanced``, JSON), or
``generic`` (any URL, form or JSON, fields named in ``sms_generic_fields``). The message's key
(``campaign:customer`` for campaigns) is the client reference the provider echoes in its
delivery receipt (Twilio has none: it rides in the receipt URL). A 2xx answer is sent; a
timeout, a lost connection, 408, 429 or 5xx leaves the message pending for the next send; any
other 4xx fails it for good, with the provider's reason.

**Quiet hours** are read in the customer's own time zone: a message due between
``sms_quiet_start`` and ``sms_quiet_end`` waits until the end of them.

**Receipts** arrive at the service (``/v1/sms/receipts/{provider}``), which stores them in its
own SQLite file (:class:`ReceiptStore`) because a pipeline job may hold the warehouse;
:func:`fold_receipts` copies them into the warehouse table ``sms_receipts`` on the next send or
results call, and :func:`receipt_counts` gives a campaign's delivered / failed / expired counts.
docs/sms.md explains the setup for users.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum.campaigns.adaudiences import country_code, normalize_phone
from segmentum.campaigns.sqlite_file import SqliteFile
from segmentum.config import Settings
from segmentum.errors import ConfigError, InputError
from segmentum.i18n import N_
from segmentum.warehouse import Warehouse

PROVIDERS = ("generic", "twilio", "vonage", "messagebird", "infobip")
GSM7, UCS2 = "GSM-7", "UCS-2"
# 3GPP TS 23.038 default alphabet, code points 0x00-0x7F in order (0x1B, the escape to the
# extension table, is not a character of a text and is left out).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs two septets (escape + character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
# (single-part capacity, per-part capacity of a concatenated message)
CAPACITY = {GSM7: (160, 153), UCS2: (70, 67)}
RECEIPT_STATUSES = ("delivered", "failed", "expired")
# What a person reads for a receipt status (dashboard, report).
LABELS = (
    N_("sms_status", "delivered"),
    N_("sms_status", "failed"),
    N_("sms_status", "expired"),
    N_("sms_status", "no receipt yet"),
)
RECEIPTS = "sms_receipts"
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{3,15}$")
_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


# ------------------------------------------------------------------------------ length


@dataclass(frozen=True)
class SmsLength:
    """How a text goes out: its encoding, parts, and units (septets or UTF-16 code units)."""

    encoding: str
    parts: int
    units: int
    characters: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encoding(text: str) -> str:
    """``GSM-7`` when every character is in the default alphabet or its extension, else
    ``UCS-2``."""
    ok = GSM7_BASIC | GSM7_EXTENSION
    return GSM7 if all(c in ok for c in text) else UCS2


def _costs(text: str, enc: str) -> list[int]:
    if enc == GSM7:
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [len(c.encode("utf-16-le")) // 2 for c in text]


def measure(text: str) -> SmsLength:
    """Encoding, parts and units of ``text`` as a phone network carries it.

    A character that takes two units (an extension character in GSM-7, an emoji in UCS-2) is
    never split across two parts, so a part may hold one unit less than its capacity.

    Examples
    --------
    >>> measure("a" * 160).parts, measure("a" * 161).parts
    (1, 2)
    >>> measure("€").units, measure("año").encoding, measure("café á").encoding
    (2, 'GSM-7', 'UCS-2')
    """
    enc = encoding(text)
    costs = _costs(text, enc)
    units = sum(costs)
    single, per_part = CAPACITY[enc]
    if units == 0:
        return SmsLength(enc, 0, 0, 0)
    if units <= single:
        return SmsLength(enc, 1, units, len(text))
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return SmsLength(enc, parts, units, len(text))


def segment_count(text: str) -> tuple[str, int]:
    """``(encoding, parts)`` of ``text``: ``("GSM-7", 1)``, ``("UCS-2", 3)``..."""
    m = measure(text)
    return m.encoding, m.parts


# ------------------------------------------------------------------------------ checks


def check_sender_id(sender: str) -> str:
    """The sender id, stripped, or a :class:`ConfigError` naming what is allowed."""
    value = sender.strip()
    if not value:
        raise ConfigError(
            "no SMS sender is configured",
            "set sms_sender_id to your number in E.164 (+34600111222) or an alphanumeric id "
            "of at most 11 characters (e.g. TIENDA)",
        )
    if _NUMERIC_SENDER.match(value.replace(" ", "")):
        return value.replace(" ", "")
    if not _ALPHA_SENDER.match(value):
        raise ConfigError(
            f"sms_sender_id={value!r} is not a valid sender",
            "an alphanumeric sender id has 1 to 11 letters (A-Z, a-z), digits and spaces, "
            "with at least one letter; a numeric one is a phone number such as +34600111222",
        )
    return value


def _clock(name: str, value: str) -> _dt.time:
    m = _TIME.match(value.strip())
    if not m:
        raise ConfigError(
            f"setting {name}={value!r} is not a time", "write it as HH:MM, e.g. 21:00"
        )
    return _dt.time(int(m.group(1)), int(m.group(2)))


def _zone(tz: str | None, fallback: str = "UTC") -> ZoneInfo:
    for name in (tz, fallback, "UTC"):
        if not name:
            continue
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def quiet_until(now_utc: _dt.datetime, tz: str | None, settings: Settings) -> _dt.datetime | None:
    """When ``now_utc`` (naive UTC) falls in the quiet hours of zone ``tz`` (the business time
    zone when unknown), the moment they end as naive UTC; else None.

    Examples
    --------
    >>> from segmentum.config import load_settings
    >>> s = load_settings(env={})  # quiet from 21:00 to 09:00
    >>> quiet_until(_dt.datetime(2026, 1, 5, 22, 30), "Europe/Madrid", s)
    datetime.datetime(2026, 1, 6, 8, 0)
    >>> quiet_until(_dt.datetime(2026, 1, 5, 12, 0), "Europe/Madrid", s) is None
    True
    """
    start = _clock("sms_quiet_start", settings.sms_quiet_start)
    end = _clock("sms_quiet_end", settings.sms_quiet_end)
    if start == end:
        return None
    zone = _zone(tz, settings.timezone)
    local = now_utc.replace(tzinfo=_dt.UTC).astimezone(zone)
    t = local.time().replace(tzinfo=None)
    quiet = start <= t < end if start < end else (t >= start or t < end)
    if not quiet:
        return None
    day = local.date() if t < end else local.date() + _dt.timedelta(days=1)
    until = _dt.datetime.combine(day, end, tzinfo=zone)
    return until.astimezone(_dt.UTC).replace(tzinfo=None)


def outside_quiet_hours(when_utc: _dt.datetime, tz: str | None, settings: Settings) -> _dt.datetime:
    """``when_utc`` itself, or the end of the quiet hours it falls in."""
    return quiet_until(when_utc, tz, settings) or when_utc


def phone_e164(raw: Any, country: Any = None, default_region: str = "") -> str | None:
    """The phone in E.164, using the customer's country (a code or a name in English or
    Spanish) for numbers written without ``+``; None when there is no valid number."""
    region = country_code(country) or default_region.lower()
    found = normalize_phone(raw, region.upper() or None)
    return found or None


def render_text(template: Mapping[str, Any], lang: str, context: Mapping[str, Any]) -> str:
    """The SMS text for one recipient: the template's ``sms`` text (per language and, when
    given, per segment), else its ``body``."""
    from segmentum.campaigns.channels import render

    tpl = dict(template)
    if tpl.get("sms"):
        tpl["body"] = tpl["sms"]
    segs = {}
    for name, over in (template.get("segments") or {}).items():
        over = dict(over or {})
        if over.get("sms"):
            over["body"] = over["sms"]
        elif template.get("sms"):
            over.pop("body", None)  # an email body override is not the SMS text
        segs[name] = over
    tpl["segments"] = segs
    return render(tpl, lang, context)[1]


# ------------------------------------------------------------------------------ sending


@dataclass
class SmsResult:
    """What happened to one message: ``sent`` (the provider took it), ``retry`` (send it
    again later: timeout, 5xx, rate limit) or ``failed`` (refused for good, with the reason)."""

    key: str
    status: str
    to: str | None
    encoding: str
    parts: int
    message_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "sent"

    @property
    def permanent(self) -> bool:
        return self.status == "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESET_URLS = {
    "twilio": "https://api.twilio.com/2010-04-01/Accounts/{user}/Messages.json",
    "vonage": "https://rest.nexmo.com/sms/json",
    "messagebird": "https://rest.messagebird.com/messages",
    "infobip": "",  # every account has its own base URL (xxxxx.api.infobip.com)
}
INFOBIP_PATH = "/sms/2/text/advanced"


def _fields(spec: str) -> list[tuple[str, str]]:
    out = []
    for item in spec.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(
                f"sms_generic_fields: {item!r} is not name={{placeholder}}",
                "write e.g. to={to},from={from},text={text},reference={ref}",
            )
        out.append((name.strip(), value.strip()))
    return out


class SmsSender:
    """Sends SMS through the configured provider, one HTTP request per message.

    Build it with :meth:`from_settings`; use it as a context manager (one connection pool for
    a whole send).

    Examples
    --------
    >>> from segmentum.config import load_settings
    >>> s = load_settings(env={}).with_overrides(sms_url="http://127.0.0.1:9/sms",
    ...                                          sms_sender_id="TIENDA")
    >>> SmsSender.from_settings(s).provider
    'generic'
    """

    def __init__(
        self,
        provider: str,
        url: str,
        sender_id: str,
        *,
        user: str = "",
        password: str = "",
        auth: str = "basic",
        auth_header: str = "X-API-Key",
        body_format: str = "json",
        fields: str = "",
        receipt_url: str = "",
        receipt_secret: str = "",
        max_parts: int = 3,
        default_region: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.provider = provider
        self.url = url
        self.sender_id = sender_id
        self.user = user
        self.password = password
        self.auth = auth
        self.auth_header = auth_header
        self.body_format = body_format
        self.fields = fields
        self.receipt_url = receipt_url
        self.receipt_secret = receipt_secret
        self.max_parts = max_parts
        self.default_region = default_region
        self.timeout = timeout
        self._client: httpx.Client | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 10.0) -> SmsSender:
        """A sender for the ``sms_*`` settings, checked: a missing URL or credential, or a
        sender id a network would refuse, is a :class:`ConfigError` naming the setting."""
        provider = settings.sms_provider
        if provider not in PROVIDERS:
            raise ConfigError(f"unknown sms_provider {provider!r}", "use " + ", ".join(PROVIDERS))
        url = settings.sms_url or PRESET_URLS.get(provider, "")
        if provider == "twilio":
            if not settings.sms_user or not settings.sms_password:
                raise ConfigError(
                    "Twilio needs your Account SID and Auth Token",
                    "set sms_user (AC...) and SEGMENTUM_SMS_PASSWORD (the Auth Token)",
                )
            url = url.replace("{user}", urllib.parse.quote(settings.sms_user, safe=""))
        if provider in ("vonage",) and not (settings.sms_user and settings.sms_password):
            raise ConfigError(
                "Vonage needs your API key and secret",
                "set sms_user (API key) and SEGMENTUM_SMS_PASSWORD (API secret)",
            )
        if provider in ("messagebird", "infobip") and not settings.sms_password:
            raise ConfigError(
                f"{provider} needs an API key",
                "set SEGMENTUM_SMS_PASSWORD to your access key (MessageBird) or API key (Infobip)",
            )
        if provider == "infobip" and url:
            parts = urllib.parse.urlsplit(url)
            if parts.path in ("", "/"):
                url = url.rstrip("/") + INFOBIP_PATH
        if not url:
            raise ConfigError(
                f"no SMS endpoint is configured for {provider}",
                "set sms_url (Infobip: your base URL, e.g. https://xxxxx.api.infobip.com)",
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"sms_url={url!r} is not an http(s) URL")
        if provider == "generic":
            _fields(settings.sms_generic_fields)
        if settings.sms_max_parts < 1:
            raise ConfigError("sms_max_parts must be 1 or more", "e.g. sms_max_parts = 3")
        if settings.sms_receipt_url and not settings.sms_receipt_secret:
            raise ConfigError(
                "sms_receipt_url is set but sms_receipt_secret is not: the service would "
                "refuse every receipt",
                "set SEGMENTUM_SMS_RECEIPT_SECRET to a long random token (openssl rand -hex 16)",
            )
        _clock("sms_quiet_start", settings.sms_quiet_start)
        _clock("sms_quiet_end", settings.sms_quiet_end)
        return cls(
            provider,
            url,
            check_sender_id(settings.sms_sender_id),
            user=settings.sms_user,
            password=settings.sms_password,
            auth=settings.sms_auth,
            auth_header=settings.sms_auth_header,
            body_format=settings.sms_body_format,
            fields=settings.sms_generic_fields,
            receipt_url=settings.sms_receipt_url,
            receipt_secret=settings.sms_receipt_secret,
            max_parts=settings.sms_max_parts,
            default_region=settings.sms_default_region,
            timeout=timeout,
        )

    # -------------------------------------------------------------------- connection
    def open(self) -> None:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SmsSender:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------- one message
    def callback(self, key: str) -> str:
        """The receipt URL this message names ('' when receipts are not configured)."""
        if not self.receipt_url:
            return ""
        base = self.receipt_url.rstrip("/")
        if not base.endswith("/" + self.provider):
            base = f"{base}/{self.provider}"
        query: dict[str, str] = {}
        if self.receipt_secret:
            query["token"] = self.receipt_secret
        if self.provider == "twilio":  # Twilio echoes no client reference: the URL carries it
            query["ref"] = key
        return base + ("?" + urllib.parse.urlencode(query) if query else "")

    def request(self, to: str, text: str, key: str) -> dict[str, Any]:
        """The HTTP request for one message: method, url, headers and ``data`` (a form) or
        ``json`` (what :meth:`send` posts; tests and docs show it)."""
        m = measure(text)
        digits = to.lstrip("+")
        cb = self.callback(key)
        headers: dict[str, str] = {"Accept": "application/json"}
        auth: tuple[str, str] | None = None
        out: dict[str, Any] = {"method": "POST", "url": self.url}
        if self.provider == "twilio":
            form = {"To": to, "From": self.sender_id, "Body": text}
            if cb:
                form["StatusCallback"] = cb
            out["data"] = form
            auth = (self.user, self.password)
        elif self.provider == "vonage":
            form = {"from": self.sender_id.lstrip("+"), "to": digits, "text": text}
            form["type"] = "unicode" if m.encoding == UCS2 else "text"
            form["client-ref"] = key
            if cb:
                form["callback"] = cb
            out["data"] = form
            auth = (self.user, self.password)
        elif self.provider == "messagebird":
            body: dict[str, Any] = {
                "originator": self.sender_id,
                "recipients": [digits],
                "body": text,
                "reference": key,
                "datacoding": "unicode" if m.encoding == UCS2 else "plain",
            }
            if cb:
                body["reportUrl"] = cb
            out["json"] = body
            headers["Authorization"] = f"AccessKey {self.password}"
        elif self.provider == "infobip":
            msg: dict[str, Any] = {
                "destinations": [{"to": digits}],
                "from": self.sender_id,
                "text": text,
                "callbackData": key,
            }
            if cb:
                msg["notifyUrl"] = cb
                msg["notifyContentType"] = "application/json"
            out["json"] = {"messages": [msg]}
            headers["Authorization"] = f"App {self.password}"
        else:
            values = {
                "to": to,
                "to_digits": digits,
                "from": self.sender_id,
                "text": text,
                "callback": cb,
                "ref": key,
                "encoding": m.encoding,
                "parts": str(m.parts),
            }
            body = {}
            for name, tpl in _fields(self.fields):
                try:
                    body[name] = tpl.format_map(values)
                except (KeyError, ValueError) as exc:
                    raise ConfigError(
                        f"sms_generic_fields: {name}={tpl} uses an unknown placeholder {exc}",
                        "use " + " ".join("{" + k + "}" for k in values),
                    ) from exc
            out["json" if self.body_format == "json" else "data"] = body
            headers["Idempotency-Key"] = key
            if self.auth == "basic" and (self.user or self.password):
                auth = (self.user, self.password)
            elif self.auth == "bearer":
                headers["Authorization"] = f"Bearer {self.password}"
            elif self.auth == "header":
                headers[self.auth_header] = self.password
        out["headers"] = headers
        if auth is not None:
            out["auth"] = auth
        return out

    def send(self, to: str, text: str, key: str, *, country: Any = None) -> SmsResult:
        """Send ``text`` to the phone ``to`` under the idempotency key ``key``.

        ``to`` may be written as people write numbers (``612 34 56 78``) when ``country`` (or
        ``sms_default_region``) says where; it goes out in E.164. Never raises for a message
        that could not be sent: the result says whether to retry.
        """
        m = measure(text)
        phone = phone_e164(to, country, self.default_region)

        def result(status: str, error: str | None = None, mid: str | None = None) -> SmsResult:
            return SmsResult(key, status, phone, m.encoding, m.parts, mid, error)

        if phone is None:
            return result("failed", f"{to!r} is not a valid phone number")
        if not text.strip():
            return result("failed", "the message is empty")
        if m.parts > self.max_parts:
            return result(
                "failed",
                f"the message takes {m.parts} {m.encoding} parts ({m.units} "
                f"{'septets' if m.encoding == GSM7 else 'UCS-2 units'}) and sms_max_parts is "
                f"{self.max_parts}: shorten the template"
                + (
                    " or avoid characters outside GSM-7 (e.g. á, ç, emoji)"
                    if m.encoding == UCS2
                    else ""
                ),
            )
        req = self.request(phone, text, key)
        self.open()
        assert self._client is not None
        try:
            resp = self._client.request(
                req["method"],
                req["url"],
                headers=req["headers"],
                data=req.get("data"),
                json=req.get("json"),
                auth=req.get("auth"),
            )
        except httpx.TimeoutException as exc:
            # It may have been taken: sent again on the next send (at most one duplicate).
            return result("retry", f"timeout: {exc}")
        except httpx.HTTPError as exc:
            return result("retry", f"cannot reach the SMS provider: {exc}")
        return self._answer(resp, result)

    def _answer(self, resp: httpx.Response, result: Any) -> SmsResult:
        code = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = None
        if code >= 300:
            reason = _error_text(body) or resp.text[:200].strip()
            status = "failed" if 400 <= code < 500 and code not in (408, 429) else "retry"
            return result(status, f"HTTP {code}" + (f": {reason}" if reason else ""))
        mid: str | None = None
        if self.provider == "vonage" and isinstance(body, dict):
            first = (body.get("messages") or [{}])[0]
            st = str(first.get("status", "0"))
            if st != "0":
                # 1 throttled and 5 internal error are worth retrying; the others will repeat.
                kind = "retry" if st in ("1", "5") else "failed"
                return result(kind, f"Vonage status {st}: {first.get('error-text', '')}".strip())
            mid = first.get("message-id")
        elif self.provider == "infobip" and isinstance(body, dict):
            first = (body.get("messages") or [{}])[0]
            group = str((first.get("status") or {}).get("groupName", ""))
            if group == "REJECTED":
                why = (first.get("status") or {}).get("description")
                return result("failed", f"Infobip: {why}")
            mid = first.get("messageId")
        elif isinstance(body, dict):
            for k in ("sid", "id", "message_id", "messageId"):
                if body.get(k):
                    mid = str(body[k])
                    break
        return result("sent", None, None if mid is None else str(mid))


def _error_text(body: Any) -> str:
    """The reason in a provider's error answer (Twilio ``message``, MessageBird ``errors``,
    Infobip ``requestError``, or a generic ``error``)."""
    if not isinstance(body, dict):
        return ""
    if body.get("message"):
        return str(body["message"])
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("description") or errors[0])
    req = body.get("requestError")
    if isinstance(req, dict):
        ex = req.get("serviceException") or req.get("policyException") or {}
        return str(ex.get("text") or ex)
    if body.get("error"):
        return str(body["error"])
    return ""


# ------------------------------------------------------------------------------ receipts


@dataclass(frozen=True)
class Receipt:
    """One final delivery status from a provider for the message with key ``ref``."""

    ref: str
    status: str  # delivered, failed, expired
    provider: str
    message_id: str | None = None
    raw_status: str | None = None
    error: str | None = None


# Provider status -> ours; statuses not listed are intermediate (queued, sent, buffered...).
STATUS_MAP: dict[str, dict[str, str]] = {
    "twilio": {
        "delivered": "delivered",
        "undelivered": "failed",
        "failed": "failed",
        "canceled": "failed",
    },
    "vonage": {
        "delivered": "delivered",
        "expired": "expired",
        "failed": "failed",
        "rejected": "failed",
    },
    "messagebird": {
        "delivered": "delivered",
        "expired": "expired",
        "delivery_failed": "failed",
    },
    "infobip": {
        "DELIVERED": "delivered",
        "UNDELIVERABLE": "failed",
        "REJECTED": "failed",
        "EXPIRED": "expired",
    },
    "generic": {
        "delivered": "delivered",
        "delivrd": "delivered",
        "failed": "failed",
        "undelivered": "failed",
        "undeliv": "failed",
        "undeliverable": "failed",
        "rejected": "failed",
        "rejectd": "failed",
        "expired": "expired",
    },
}


def _first(d: Mapping[str, Any], *names: str) -> str | None:
    for n in names:
        v = d.get(n)
        if v not in (None, ""):
            return str(v)
    return None


def parse_receipts(provider: str, params: Mapping[str, Any], payload: Any = None) -> list[Receipt]:
    """The final statuses in one receipt request (query and form fields in ``params``, a
    JSON body in ``payload``). Intermediate statuses give nothing; a receipt without a
    reference is an :class:`InputError`."""
    if provider not in PROVIDERS:
        raise InputError(f"unknown SMS provider {provider!r}", "use " + ", ".join(PROVIDERS))
    mapping = STATUS_MAP[provider]
    items: list[tuple[str | None, str | None, str | None, str | None]] = []
    if provider == "infobip":
        results = payload.get("results") if isinstance(payload, dict) else None
        for r in results or []:
            st = r.get("status") or {}
            group = str(st.get("groupName", ""))
            if group == "DELIVERED" and st.get("name") == "DELIVERED_TO_OPERATOR":
                group = "PENDING"  # reached the operator, not the phone: more will follow
            err = (r.get("error") or {}).get("name")
            items.append((_first(r, "callbackData"), group, _first(r, "messageId"), err))
    else:
        fields: dict[str, Any] = dict(params)
        if isinstance(payload, dict):
            fields.update(payload)
        rows = payload if isinstance(payload, list) else [fields]
        for f in rows:
            if not isinstance(f, Mapping):
                continue
            if provider == "twilio":
                items.append(
                    (
                        _first(f, "ref") or _first(params, "ref"),
                        _first(f, "MessageStatus", "SmsStatus"),
                        _first(f, "MessageSid", "SmsSid"),
                        _first(f, "ErrorCode"),
                    )
                )
            elif provider == "vonage":
                items.append(
                    (
                        _first(f, "client-ref", "client_ref"),
                        _first(f, "status"),
                        _first(f, "messageId", "message-id"),
                        _first(f, "err-code"),
                    )
                )
            elif provider == "messagebird":
                items.append(
                    (
                        _first(f, "reference"),
                        _first(f, "status"),
                        _first(f, "id"),
                        _first(f, "statusErrorCode"),
                    )
                )
            else:
                items.append(
                    (
                        _first(f, "ref", "reference", "client_ref", "client-ref"),
                        _first(f, "status"),
                        _first(f, "message_id", "messageId", "id"),
                        _first(f, "error", "error_code"),
                    )
                )
    out = []
    for ref, raw, mid, err in items:
        if not ref:
            raise InputError(
                f"a {provider} receipt without the message's reference",
                "send SMS through segmentum so the reference is set (see docs/sms.md)",
            )
        key = raw if provider == "infobip" else (raw or "").lower()
        ours = mapping.get(key or "")
        if ours is None:
            continue
        if err in ("0", "NO_ERROR"):
            err = None
        out.append(Receipt(ref, ours, provider, mid, raw, err))
    return out


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """Twilio's ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the Auth Token, of the
    full URL followed by every POST field's name and value, sorted by name."""
    data = url + "".join(k + str(params[k]) for k in sorted(params))
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


RECEIPT_SCHEMA = """
CREATE TABLE IF NOT EXISTS sms_receipts (
    receipt_id INTEGER PRIMARY KEY AUTOINCREMENT,
    ref TEXT NOT NULL,
    provider TEXT NOT NULL,
    message_id TEXT,
    status TEXT NOT NULL,
    raw_status TEXT,
    error TEXT,
    received_at TEXT NOT NULL,
    folded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sms_receipts_folded ON sms_receipts (folded);
"""


def receipts_path(url: str, settings: Settings) -> str:
    """The SQLite file receipts wait in: the service's state file (``state_store``, else
    beside a DuckDB warehouse file, inside a Spark warehouse's folder, else
    ``segmentum.state.sqlite`` here), so the service and the CLI find the same one whatever
    folder each runs in."""
    from segmentum.serving import sidecar_sqlite

    if settings.state_store:
        return settings.state_store
    found = sidecar_sqlite(url, "state")
    # An in-memory warehouse's state would be a new, empty database at every connection.
    return "segmentum.state.sqlite" if found == ":memory:" else found


class ReceiptStore(SqliteFile):
    """Receipts as they arrive, in a SQLite file (short transactions, WAL: written while a
    pipeline job holds the warehouse), until :func:`fold_receipts` copies them over."""

    schema = RECEIPT_SCHEMA
    waiting_table, waiting_id = "sms_receipts", "receipt_id"

    def add(self, receipts: list[Receipt], at: _dt.datetime | None = None) -> int:
        when = (at or _dt.datetime.now(_dt.UTC).replace(tzinfo=None)).isoformat()
        with self._connect() as con:
            con.executemany(
                "INSERT INTO sms_receipts (ref, provider, message_id, status, raw_status, "
                "error, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.ref, r.provider, r.message_id, r.status, r.raw_status, r.error, when)
                    for r in receipts
                ],
            )
        return len(receipts)

    def forget_folded(self, ids: list[int]) -> None:
        """Delete receipts now in the warehouse (where ``segmentum forget`` finds them)."""
        with self._connect() as con:
            con.executemany("DELETE FROM sms_receipts WHERE receipt_id = ?", [(i,) for i in ids])


_RECEIPT_ARROW = pa.schema(
    [
        ("receipt_id", pa.int64()),
        ("key", pa.string()),
        ("customer_id", pa.string()),
        ("provider", pa.string()),
        ("message_id", pa.string()),
        ("status", pa.string()),
        ("raw_status", pa.string()),
        ("error", pa.string()),
        ("received_at", pa.timestamp("us")),
    ]
)


def fold_receipts(wh: Warehouse, store: ReceiptStore) -> int:
    """Copy the receipts waiting in ``store`` into the warehouse table ``sms_receipts``.

    Copied receipts are deleted from the store. Safe to repeat after a crash between the copy
    and the delete: a receipt already in the warehouse (same ``receipt_id``) is not copied
    twice.
    """
    rows = store.unfolded()
    if not rows:
        return 0
    # The customer each message went to, from the send log (so the right to erasure finds
    # their receipts); a message sent by other means (a flow) keeps its key only.
    who: dict[str, str] = {}
    if wh.has("campaign_sends"):
        s = wh.table("campaign_sends")
        keys = sorted({r["ref"] for r in rows})
        found = s.filter(s.key.isin(keys)).select("key", "customer_id").to_pyarrow().to_pylist()
        who = {x["key"]: x["customer_id"] for x in found}
    table = pa.Table.from_pylist(
        [
            {
                "receipt_id": r["receipt_id"],
                "key": r["ref"],
                "customer_id": who.get(r["ref"]),
                "provider": r["provider"],
                "message_id": r["message_id"],
                "status": r["status"],
                "raw_status": r["raw_status"],
                "error": r["error"],
                "received_at": _dt.datetime.fromisoformat(r["received_at"]),
            }
            for r in rows
        ],
        schema=_RECEIPT_ARROW,
    )
    if wh.has(RECEIPTS):
        t = wh.table(RECEIPTS)
        ids = [r["receipt_id"] for r in rows]
        seen = {
            x["receipt_id"]
            for x in t.filter(t.receipt_id.isin(ids)).select("receipt_id").to_pyarrow().to_pylist()
        }
        table = table.filter(pa.array([i not in seen for i in table["receipt_id"].to_pylist()]))
        if table.num_rows:
            wh.insert(RECEIPTS, table)
    else:
        wh.write(RECEIPTS, table)
    store.forget_folded([r["receipt_id"] for r in rows])
    return len(rows)


def receipt_status(wh: Warehouse, campaign_id: str | None = None) -> ir.Table | None:
    """Every sent SMS (``campaign_id``, ``key``) with its last receipt: ``status`` (delivered,
    failed, expired, or ``no_receipt``), ``received_at`` and ``receipt_id`` (null without
    one). ``campaign_id``: that campaign's only. None before any send (computed in the
    warehouse)."""
    if not wh.has("campaign_sends"):
        return None
    s = wh.table("campaign_sends")
    sent = s.filter((s.status == "sent") & (s.channel == "sms"))
    if campaign_id is not None:
        sent = sent.filter(sent.campaign_id == campaign_id)
    sent = sent.select("campaign_id", "key")
    if not wh.has(RECEIPTS):
        return sent.mutate(
            status=ibis.literal("no_receipt"),
            received_at=ibis.null("timestamp"),
            receipt_id=ibis.null("int64"),
        )
    r = wh.table(RECEIPTS)
    order = [ibis.desc(r.received_at), ibis.desc(r.receipt_id)]
    w = ibis.window(group_by=r.key, order_by=order)
    last = r.mutate(_rk=ibis.row_number().over(w))
    last = last.filter(last._rk == 0).select(
        _key="key", _status="status", received_at="received_at", receipt_id="receipt_id"
    )
    j = sent.left_join(last, sent.key == last._key)
    return j.select(
        "campaign_id",
        "key",
        status=j._status.fill_null("no_receipt"),
        received_at=j.received_at,
        receipt_id=j.receipt_id.cast("int64"),
    )


def _no_counts() -> dict[str, int]:
    return {**dict.fromkeys(RECEIPT_STATUSES, 0), "no_receipt": 0}


def _counted(status: ir.Table) -> dict[str, int]:
    out = _no_counts()
    g = status.group_by("status").aggregate(n=status.count())
    for row in g.to_pyarrow().to_pylist():
        out[str(row["status"])] = int(row["n"])
    return out


def receipt_counts(wh: Warehouse, campaign_id: str) -> dict[str, int]:
    """A campaign's SMS by the last receipt of each: delivered, failed, expired, and
    ``no_receipt`` for sent messages with none yet (computed in the warehouse)."""
    status = receipt_status(wh, campaign_id)
    return _no_counts() if status is None else _counted(status)


def waiting_receipts(url: str, settings: Settings) -> list[dict[str, Any]]:
    """The receipts the service stored for the warehouse at ``url`` and no fold has copied
    into it yet (none without a receipt store)."""
    store = ReceiptStore.existing(receipts_path(url, settings), settings.busy_wait_seconds)
    return [] if store is None else store.unfolded()


def published_receipt_counts(
    store: Warehouse, campaign_id: str, waiting: list[dict[str, Any]]
) -> dict[str, int] | None:
    """:func:`receipt_counts` from a serving store (``store``: its ``sms_receipt_status``, as
    the last run or command published it) and the receipts ``waiting`` in the
    :class:`ReceiptStore` since (not folded into the warehouse yet): each sent message counts
    under its last receipt of both. None when the store holds no statuses (published before
    they were kept)."""
    from segmentum.page_models import SMS_STATUS

    if not store.has(SMS_STATUS):
        return None
    t = store.table(SMS_STATUS)
    t = t.filter(t.campaign_id == campaign_id)
    counts = _counted(t)
    prefix = f"{campaign_id}:"
    # The latest waiting receipt of each of this campaign's messages.
    latest: dict[str, tuple[_dt.datetime, int, str]] = {}
    for r in waiting:
        ref = str(r["ref"])
        if not ref.startswith(prefix):
            continue
        at = _dt.datetime.fromisoformat(str(r["received_at"]))
        got = (at, int(r["receipt_id"]), str(r["status"]))
        if ref not in latest or got[:2] > latest[ref][:2]:
            latest[ref] = got
    if not latest:
        return counts
    rows = t.filter(t.key.isin(sorted(latest))).to_pyarrow().to_pylist()
    for row in rows:  # messages not sent (a failed send) have no row: not counted, as above
        at, rid, status = latest[row["key"]]
        kept = row["received_at"]
        if kept is not None and (kept, int(row["receipt_id"] or 0)) >= (at, rid):
            continue  # already folded in before the publish (or older than what was)
        counts[str(row["status"])] -= 1
        counts[status] = counts.get(status, 0) + 1
    return counts
