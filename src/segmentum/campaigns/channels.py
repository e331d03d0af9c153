"""Channels: files, email over SMTP, push and in-app through signed webhooks, web messages.

Messages are Jinja templates rendered in a sandbox (a template cannot reach Python), per
language (Spanish / English) and optionally per segment. A template file is YAML::

    subject: {es: "Te echamos de menos, {{ first_name }}", en: "We miss you, {{ first_name }}"}
    body:
      es: "Hola {{ first_name }}: {{ reason }}"
      en: "Hi {{ first_name }}: {{ reason }}"
    segments:                      # optional overrides by RFM segment
      Champions:
        subject: {es: "...", en: "..."}
"""

from __future__ import annotations

import contextlib
import json
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
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from segmentum.config import Settings
from segmentum.errors import ConfigError, InputError
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
DEFAULT_TEMPLATE: dict[str, Any] = {
    "subject": {"es": "{{ campaign }}", "en": "{{ campaign }}"},
    "body": {
        "es": "Hola {{ first_name or '' }}, tenemos algo para ti.",
        "en": "Hi {{ first_name or '' }}, we have something for you.",
    },
}
PERSONAL = ("first_name", "last_name", "email", "phone")
_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def load_template(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """A template from a YAML file or a mapping (default: a neutral bilingual message)."""
    if source is None or source == "":
        return DEFAULT_TEMPLATE
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        p = Path(source)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"{p}: cannot read the template: {exc}") from exc
    if "body" not in data:
        raise InputError("a template needs a body (with es and en texts)")
    for part in ("subject", "body"):
        for lang, text in (data.get(part) or {}).items():
            try:
                _env.from_string(str(text))
            except TemplateError as exc:
                raise InputError(f"template {part}.{lang}: {exc}") from exc
    return data


def language(country: str | None, default: str = "en") -> str:
    return "es" if country in SPANISH else default


def render(template: Mapping[str, Any], lang: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and body for one recipient, with the segment's override when there is one."""
    part = dict(template)
    seg = (template.get("segments") or {}).get(context.get("segment"))
    if seg:
        part.update(seg)

    def pick(key: str) -> str:
        texts = part.get(key) or {}
        text = texts.get(lang) or texts.get("en") or texts.get("es") or ""
        try:
            return _env.from_string(str(text)).render(**context)
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


def smtp_connection(settings: Settings) -> smtplib.SMTP:
    """An open SMTP connection: STARTTLS and login when configured."""
    if not settings.smtp_host:
        raise ConfigError("no SMTP server is configured", "set smtp_host (and smtp_port)")
    try:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30)
        smtp.ehlo()
        if settings.smtp_starttls:
            ctx = ssl.create_default_context(cafile=settings.smtp_cafile or None)
            smtp.starttls(context=ctx)
            smtp.ehlo()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
    except (OSError, smtplib.SMTPException) as exc:
        raise ConfigError(
            f"cannot use the SMTP server {settings.smtp_host}:{settings.smtp_port}: {exc}",
            "check smtp_host, smtp_port, smtp_starttls, smtp_user and smtp_password",
        ) from exc
    return smtp


def send_emails(
    settings: Settings, messages: list[dict[str, str]]
) -> tuple[list[str], dict[str, str]]:
    """Send ``messages`` (key, to, subject, body); return the keys sent and the failures."""
    sent: list[str] = []
    failed: dict[str, str] = {}
    if not messages:
        return sent, failed
    smtp = smtp_connection(settings)
    try:
        for m in messages:
            msg = EmailMessage()
            msg["From"] = settings.smtp_from
            msg["To"] = m["to"]
            msg["Subject"] = m["subject"]
            msg["Message-ID"] = f"<{m['key']}@segmentum>"
            msg.set_content(m["body"])
            try:
                smtp.send_message(msg)
                sent.append(m["key"])
            except smtplib.SMTPException as exc:
                failed[m["key"]] = str(exc)
    finally:
        with contextlib.suppress(smtplib.SMTPException):
            smtp.quit()
    return sent, failed


# ------------------------------------------------------------------------------------ push


def post_messages(
    url: str,
    secret: str,
    messages: list[dict[str, Any]],
    max_consecutive_failures: int = 3,
    **kw: Any,
) -> tuple[list[str], dict[str, str]]:
    """One signed POST per message (idempotency key = campaign:customer), with retries.

    After ``max_consecutive_failures`` messages fail in a row the rest are not attempted.
    """
    if not url:
        raise ConfigError(
            "no endpoint is configured for this channel",
            "set push_webhook_url or inapp_webhook_url",
        )
    sent: list[str] = []
    failed: dict[str, str] = {}
    streak = 0
    for i, m in enumerate(messages):
        body = json.dumps(m, default=str).encode()
        err = post_signed(url, secret, body, m["key"], **kw)
        if err is None:
            sent.append(m["key"])
            streak = 0
            continue
        failed[m["key"]] = err
        streak += 1
        if streak >= max_consecutive_failures:
            # The endpoint is down: stop hammering it; the rest stay pending for the next send.
            for rest in messages[i + 1 :]:
                failed[rest["key"]] = f"not attempted: endpoint failing ({err})"
            break
    return sent, failed


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
      document.body.appendChild(box);
    });
})();
"""


def serve_web_messages(
    lookup: Any, host: str = "127.0.0.1", port: int = 8765
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A small HTTP server: GET /v1/web-message?visitor=ID and GET /segmentum.js."""

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
            msg = lookup(visitor)
            self._send(200, json.dumps(msg or {}).encode(), "application/json")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
