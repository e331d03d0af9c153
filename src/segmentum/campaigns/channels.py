"""Channels: files, email over SMTP, push and in-app through signed webhooks, web messages.

Messages are Jinja templates rendered in a sandbox (a template cannot reach Python), per
language (Spanish and English, both required) and optionally per segment. A template file is
YAML::

    subject: {es: "Te echamos de menos", en: "We miss you"}
    body:
      es: "{{ greeting }}: {{ reason }}{% if recommendation %}. Ve {{ recommendation }}{% endif %}"
      en: "{{ greeting }}: {{ reason }}{% if recommendation %}. See {{ recommendation }}{% endif %}"
    segments:                      # optional overrides by RFM segment
      Champions:
        subject: {es: "...", en: "..."}

:func:`check_template` runs when a campaign is created: a variable segmentum does not know,
or one some recipients lack (``first_name``, ``segment``, ``recommendation`` outside
cross-sell) written without a fallback, fails there with a clear error, so a person never
reads ``Hi nan``.
"""

from __future__ import annotations

import contextlib
import email.policy
import email.utils
import hashlib
import json
import re
import smtplib
import ssl
import threading
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import yaml
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from segmentum import i18n
from segmentum.campaigns.reasons import greeting, missing
from segmentum.config import Settings
from segmentum.errors import ConfigError, DeliveryError, InputError
from segmentum.history.log import post_signed

SPANISH = {
    "España",
    "Spain",
    "México",
    "Mexico",
    "Argentina",
    "Colombia",
    "Chile",
    "Perú",
    "Peru",
    "Uruguay",
    "Ecuador",
    "Venezuela",
    "Bolivia",
    "Paraguay",
    "Guatemala",
    "Costa Rica",
    "Panamá",
    "Honduras",
    "El Salvador",
    "Nicaragua",
    "República Dominicana",
    "Cuba",
}
# A campaign created without a template gets the subject of its tactic (never its internal
# name). Addressed to the customer like the default body ("tenemos algo para ti"): tú.
DEFAULT_SUBJECTS: dict[str, tuple[str, str]] = {
    "retention": i18n.N_("email subject", "Thank you for being with us"),
    "winback": i18n.N_("email subject", "We miss you"),
    "cross_sell": i18n.N_("email subject", "Something you may like"),
    "up_sell": i18n.N_("email subject", "Picked for you"),
    "acquisition": i18n.N_("email subject", "Nice to meet you"),
    "detractors": i18n.N_("email subject", "We want to do better"),
}
OTHER_SUBJECT = i18n.N_("email subject", "Something for you")
DEFAULT_TEMPLATE: dict[str, Any] = {
    "body": {
        "es": "{{ greeting }}, tenemos algo para ti."
        "{% if recommendation %} Te sugerimos {{ recommendation }}.{% endif %}",
        "en": "{{ greeting }}, we have something for you."
        "{% if recommendation %} We suggest {{ recommendation }}.{% endif %}",
    },
}
PERSONAL = ("first_name", "last_name", "email", "phone")
LANGUAGES = ("es", "en")
# What a template may use; the value each takes in the check at creation.
VARIABLES: dict[str, str] = {
    "campaign": "Campaign",
    "greeting": "Hola Ana",
    "first_name": "Ana",
    "segment": "Champions",
    "reason": "a reason",
    "recommendation": "an item",
    "customer_id": "C1",
    "unsubscribe_url": "https://crm.example.com/v1/unsubscribe?c=C1&t=0123",
}
_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class MissingValue(Exception):
    """A template printed a value this recipient does not have."""


class Missing:
    """A value a recipient lacks: false in ``if`` / ``or`` / ``default(..., true)``, and an
    error when printed, so a template can never write ``nan`` or ``None`` into a message."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        raise MissingValue(self.name)

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def _parts(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(where, language, text) of every text of a template, segment overrides included."""
    out = []
    for part in ("subject", "body", "sms"):
        for lang, text in (data.get(part) or {}).items():
            out.append((part, str(lang), str(text)))
    for seg, over in (data.get("segments") or {}).items():
        for part in ("subject", "body", "sms"):
            for lang, text in ((over or {}).get(part) or {}).items():
                out.append((f"segments.{seg}.{part}", str(lang), str(text)))
    return out


def default_subject(tactic: str) -> dict[str, str]:
    """The subject, in each language, of a ``tactic`` campaign whose template has none."""
    context, text = DEFAULT_SUBJECTS.get(tactic, OTHER_SUBJECT)
    return {lang: i18n.translations(lang).upgettext(context, text) for lang in LANGUAGES}


# What to do about a template text Jinja cannot read (its own message says where).
SYNTAX_HINT = "check the {{ }} and {% %} marks of that text: every one opened is closed"


def load_template(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """A template from a YAML file or a mapping (default: a neutral bilingual message)."""
    if source is None or source == "":
        return DEFAULT_TEMPLATE
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        p = Path(source)
        if not p.is_file():
            raise InputError(
                f"{p}: no such file",
                "check the path (relative paths start where you run the command)",
            )
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{p}: cannot read the template: {exc}") from exc
    if not isinstance(data.get("body"), Mapping):
        if not isinstance(data.get("sms"), Mapping):
            raise InputError(
                "a template needs a body with es and en texts",
                'write body: {es: "Hola...", en: "Hi..."}',
            )
        data["body"] = data["sms"]  # an SMS-only template (see docs/sms.md)
    for part in ("subject", "body", "sms"):
        texts = data.get(part) or {}
        absent = [x for x in LANGUAGES if not str(texts.get(x) or "").strip()]
        if texts and absent:
            raise InputError(
                f"the template's {part} has no {' or '.join(absent)} text",
                "every message goes out in the recipient's language: write both es and en",
            )
    for where, lang, text in _parts(data):
        try:
            _env.from_string(text)
        except TemplateError as exc:
            raise InputError(f"template {where}.{lang}: {exc}", SYNTAX_HINT) from exc
    return data


# Tactics whose reason names a saved segment or a cluster: said to the marketer, never
# printed for the customer (``{{ reason }}`` takes the template's fallback).
NO_CUSTOMER_REASON = ("segment",)


def maybe_missing(tactic: str) -> tuple[str, ...]:
    """Variables some recipients of a ``tactic`` campaign lack."""
    names = ["first_name", "segment"]
    if tactic != "cross_sell":
        names.append("recommendation")
    if tactic in NO_CUSTOMER_REASON:
        names.append("reason")
    return tuple(names)


def check_template(data: Mapping[str, Any], tactic: str) -> None:
    """Fail now, with what to write instead, if the template could not be rendered for some
    recipient: an unknown variable, or one some recipients lack printed without a fallback."""
    for where, lang, text in _parts(data):
        unknown = sorted(meta.find_undeclared_variables(_env.parse(text)) - VARIABLES.keys())
        if unknown:
            raise InputError(
                f"template {where}.{lang} uses {', '.join(unknown)}, which segmentum does not know",
                f"use {', '.join(VARIABLES)}",
            )
        tpl = _env.from_string(text)
        for name in maybe_missing(tactic):
            try:
                tpl.render(**{**VARIABLES, name: Missing(name)})
            except MissingValue as exc:
                if name == "reason":
                    raise InputError(
                        f"template {where}.{lang} writes {{{{ reason }}}}, which a segment "
                        "campaign cannot fill in for its customers (a segment's name is not "
                        "for them)",
                        "write why in your own words, or {{ reason or '...' }}",
                    ) from exc
                raise InputError(
                    f"template {where}.{lang} writes {{{{ {name} }}}}, which some recipients "
                    "do not have",
                    f"write {{{{ {name} or '...' }}}} or {{% if {name} %}}...{{% endif %}}"
                    + (" (or {{ greeting }})" if name == "first_name" else ""),
                ) from exc
            except TemplateError as exc:
                raise InputError(f"template {where}.{lang}: {exc}", SYNTAX_HINT) from exc


def language(country: Any, default: str = "en") -> str:
    """The language a recipient reads: Spanish in a Spanish-speaking country, English in any
    other; ``default`` (the shop's ``language`` setting) when the country is not known (no
    customers file, or an empty country)."""
    if country in SPANISH:
        return "es"
    if country is None or pd.isna(country) or not str(country).strip():
        return default if default in LANGUAGES else "en"
    return "en"


def render(template: Mapping[str, Any], lang: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and body for one recipient, with the segment's override when there is one.

    A missing value (None, NaN, NaT, blank) reaches the template as :class:`Missing`: it
    takes a template's fallback, and printing it raises instead of writing ``nan``.
    """
    ctx: dict[str, Any] = {k: Missing(k) for k in VARIABLES}
    ctx.update({k: Missing(k) if missing(v) else v for k, v in context.items()})
    if "greeting" not in context:
        ctx["greeting"] = greeting(lang, context.get("first_name"))
    part = dict(template)
    seg = (template.get("segments") or {}).get(context.get("segment"))
    if seg:
        part.update(seg)

    def pick(key: str) -> str:
        texts = part.get(key) or {}
        text = texts.get(lang) or texts.get("en") or texts.get("es") or ""
        try:
            return _env.from_string(str(text)).render(**ctx)
        except MissingValue as exc:
            raise InputError(
                f"template {key}.{lang} needs {exc} and this recipient has none",
                f"write {{{{ {exc} or '...' }}}} in the template",
            ) from exc
        except TemplateError as exc:
            raise InputError(f"template {key}.{lang} failed for this recipient: {exc}") from exc

    return pick("subject"), pick("body")


# ------------------------------------------------------------------------------------ files


def write_files(
    audience: pd.DataFrame, out: Path, name: str, settings: Settings, formats: Iterable[str]
) -> list[Path]:
    """Audience files; personal data only with the setting ``export_personal_data``."""
    df = audience.copy()
    if not settings.export_personal_data:
        df = df.drop(columns=[c for c in PERSONAL if c in df.columns])
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = out / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(p, index=False)
        elif fmt == "parquet":
            df.to_parquet(p, index=False)
        elif fmt == "json":
            df.to_json(p, orient="records", lines=True, date_format="iso", force_ascii=False)
        else:
            raise InputError(f"unknown file format {fmt!r}", "use csv, parquet or json")
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------------ email


# What looks like an email address or an international phone number in a server's answer.
_CONTACT = re.compile(r"[^\s<>'\"(),;:\[\]{}]+@[^\s<>'\"(),;:\[\]{}]+|\+\d[\d\s.()-]{6,}\d")


def scrub(text: str) -> str:
    """``text`` without the email addresses and phone numbers in it: a delivery's error is
    logged and printed, and a recipient's address must not be (it is personal data).

    >>> scrub("address refused: {'ana@example.com': (550, '5.1.1 <ana@example.com> unknown')}")
    "address refused: {'<address>': (550, '5.1.1 <<address>> unknown')}"
    >>> scrub("21211 invalid 'To' number +34 606 826 684")
    "21211 invalid 'To' number <phone>"
    """
    return _CONTACT.sub(lambda m: "<address>" if "@" in m.group() else "<phone>", text)


class Failed(Exception):
    """One message was not delivered; ``permanent`` ones are not retried. The message says
    why without the recipient's address or phone (:func:`scrub`)."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(scrub(message))
        self.permanent = permanent


def message_id(key: str, sender: str = "") -> str:
    """The ``Message-ID`` of the message ``key`` (``campaign:customer``, a flow's step): the
    same on every re-send of that message, so a mail system can drop the repeat, and different
    for every other message. RFC 5322 allows only letters, digits and a few signs around its
    ``@``, so the key is hashed, after a readable prefix; the domain is the sender's.

    >>> message_id("vuelve-correo-c2499f:10007", "Tienda <hola@tienda.es>")
    '<vuelve-correo-c2499f.851d8429ffbc7dfbe3b1524c@tienda.es>'
    >>> message_id("x:1") == message_id("x:1") != message_id("x:2")
    True
    """
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", key.split(":")[0].split(".")[0]).strip("-")[:40]
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2]
    if not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", domain):
        domain = "segmentum"
    return f"<{prefix or 'm'}.{digest}@{domain}>"


def smtp_connection(settings: Settings) -> smtplib.SMTP:
    """An open SMTP connection: STARTTLS and login when configured.

    A server that cannot be reached is a :class:`DeliveryError` (try again later); a server
    that refuses the login or the TLS certificate is a :class:`ConfigError` (fix a setting).
    """
    if not settings.smtp_host:
        raise ConfigError("no SMTP server is configured", "set smtp_host (and smtp_port)")
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(
            f"cannot reach the SMTP server {where}: {exc}",
            "check that it is running and that smtp_host and smtp_port point to it; nothing "
            "was lost: run the send again",
        ) from exc
    try:
        smtp.ehlo()
        if settings.smtp_starttls:
            ctx = ssl.create_default_context(cafile=settings.smtp_cafile or None)
            smtp.starttls(context=ctx)
            smtp.ehlo()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
    except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError) as exc:
        smtp.close()
        raise DeliveryError(
            f"the SMTP server {where} closed the connection: {exc}",
            "try again later; nothing was lost: run the send again",
        ) from exc
    except (OSError, smtplib.SMTPException) as exc:
        smtp.close()
        raise ConfigError(
            f"cannot use the SMTP server {where}: {exc}",
            "check smtp_host, smtp_port, smtp_starttls, smtp_cafile, smtp_user and smtp_password",
        ) from exc
    return smtp


def _said(answer: bytes | str) -> str:
    """A server's answer as text (not a Python bytes literal)."""
    return answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)


_HEADERS = email.policy.default.clone(max_line_length=998)


class Mailer:
    """One SMTP connection for a send, one message at a time (reconnects once if dropped)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None

    def open(self) -> None:
        if self.smtp is None:
            self.smtp = smtp_connection(self.settings)

    def send(
        self,
        key: str,
        to: str,
        subject: str,
        body: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Deliver one message; :class:`Failed` says whether to retry it later. ``headers``:
        more of them (the unsubscribe ones, :mod:`segmentum.campaigns.unsubscribe`)."""
        # Lines up to RFC 5322's 998 characters: a long List-Unsubscribe URL folded at 78
        # became encoded words, which mail programs do not read as a link.
        msg = EmailMessage(policy=_HEADERS)
        msg["From"] = self.settings.smtp_from
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = email.utils.formatdate(usegmt=True)
        # The same Message-ID on a re-send lets a mail system drop the duplicate.
        msg["Message-ID"] = message_id(key, self.settings.smtp_from)
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(body)
        self.open()
        assert self.smtp is not None
        try:
            self.smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            answers = list(exc.recipients.values())
            code, said = min(answers, key=lambda a: a[0])
            raise Failed(f"address refused: {code} {_said(said)}", code >= 500) from exc
        except smtplib.SMTPResponseException as exc:
            code = exc.smtp_code
            raise Failed(f"SMTP {code}: {_said(exc.smtp_error)}", code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # The connection dropped: this message may or may not have arrived; retried later.
            self.close()
            raise Failed(f"connection lost: {exc}", False) from exc

    def close(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.smtp.quit()
            self.smtp = None


# ------------------------------------------------------------------------------------ push


def permanent(error: str) -> bool:
    """An HTTP error the endpoint will give again (4xx other than timeout and rate limit)."""
    return error.startswith("HTTP 4") and error not in ("HTTP 408", "HTTP 429")


class Poster:
    """Signed POSTs to a push or in-app endpoint, one message at a time, with retries."""

    def __init__(self, url: str, secret: str, *, retries: int = 2, backoff: float = 0.2) -> None:
        if not url:
            raise ConfigError(
                "no endpoint is configured for this channel",
                "set push_webhook_url or inapp_webhook_url",
            )
        self.url, self.secret, self.retries, self.backoff = url, secret, retries, backoff

    def open(self) -> None:
        pass

    def send(self, message: dict[str, Any]) -> None:
        """POST one message (idempotency key ``campaign:customer``); :class:`Failed` if not."""
        body = json.dumps(message, default=str).encode()
        err = post_signed(
            self.url, self.secret, body, message["key"], retries=self.retries, backoff=self.backoff
        )
        if err is not None:
            raise Failed(err, permanent(err))

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------ web

SNIPPET = """\
(function () {
  var s = document.currentScript, base = s.getAttribute("data-endpoint");
  var visitor = s.getAttribute("data-visitor") || localStorage.getItem("segmentum_visitor");
  if (!base || !visitor) return;
  fetch(base + "/v1/web-message?visitor=" + encodeURIComponent(visitor))
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (m) {
      if (!m || !m.message) return;
      var box = document.createElement("div");
      box.className = "segmentum-message";
      box.setAttribute("role", "status");
      box.style.cssText = "position:fixed;bottom:16px;right:16px;max-width:320px;" +
        "padding:12px 16px;background:#fff;border:1px solid #ccc;border-radius:8px;" +
        "box-shadow:0 2px 8px rgba(0,0,0,.2)";
      box.textContent = m.message;
      if (m.survey) ask(box, m);
      document.body.appendChild(box);
    });
  // A short survey under the message: buttons 0-10 or the options; one click answers.
  function ask(box, m) {
    var q = document.createElement("p"), row = document.createElement("div");
    q.textContent = m.survey.question;
    var values = m.survey.kind === "nps" ? [0,1,2,3,4,5,6,7,8,9,10] : m.survey.options;
    values.forEach(function (v) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = String(v);
      b.onclick = function () {
        var body = {visitor: visitor, campaign_id: m.campaign_id};
        body[m.survey.kind === "nps" ? "nps" : "answer"] = v;
        fetch(base + m.survey.answer_url, {method: "POST",
          headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})
          .then(function () {
            box.textContent = m.language === "es" ? "¡Gracias!" : "Thank you!";
          });
      };
      row.appendChild(b);
    });
    box.appendChild(q);
    box.appendChild(row);
  }
})();
"""


def serve_web_messages(
    lookup: Any, host: str = "127.0.0.1", port: int = 8765, answer: Any = None
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A small HTTP server: GET /v1/web-message?visitor=ID and GET /segmentum.js; with
    ``answer``, POST /v1/web-message/answer stores a survey answer (JSON body; see
    :mod:`segmentum.satisfaction.survey`)."""
    # One warehouse connection serves every request thread: one request at a time uses it.
    busy = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/segmentum.js":
                self._send(200, SNIPPET.encode(), "application/javascript")
                return
            if url.path != "/v1/web-message":
                self._send(404, b'{"error": "not found"}', "application/json")
                return
            visitor = (parse_qs(url.query).get("visitor") or [""])[0]
            if not visitor:
                self._send(400, b'{"error": "visitor is required"}', "application/json")
                return
            with busy:
                msg = lookup(visitor)
            self._send(200, json.dumps(msg or {}).encode(), "application/json")

        def do_OPTIONS(self) -> None:  # the browser asks before posting JSON to another origin
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, POST")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.end_headers()

        def do_POST(self) -> None:
            if answer is None or urlparse(self.path).path != "/v1/web-message/answer":
                self._send(404, b'{"error": "not found"}', "application/json")
                return
            size = int(self.headers.get("Content-Length") or 0)
            if size > 10_000:
                self._send(413, b'{"error": "answer too large"}', "application/json")
                return
            try:
                payload = json.loads(self.rfile.read(size) or b"{}")
                if not isinstance(payload, dict):
                    raise ValueError("expected a JSON object")
                with busy:
                    row = answer(payload)
            except (ValueError, InputError) as exc:
                body = json.dumps({"error": str(exc)}, ensure_ascii=False).encode()
                self._send(400, body, "application/json")
                return
            self._send(200, json.dumps(row, default=str).encode(), "application/json")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
