"""SMS benchmark: messages per second through the SMS adapter and a whole SMS campaign send,
against the practical limit of bare HTTP posts to the same local receiver.

    python benchmarks/bench_sms.py [--messages 1000] [--campaign 300]

Everything is real: a keep-alive HTTP/1.1 receiver on 127.0.0.1 that answers at once (a
provider that never slows you down), a DuckDB file for the campaign, the SQLite receipt store.
Contenders, each over the same receiver:

- the limit: one ``httpx.Client`` posting the same JSON body again and again (no encoding
  check, no phone parsing, no bookkeeping);
- ``SmsSender.send``: length and encoding, E.164 phone, the provider's request, the answer
  read (the generic JSON shape; the presets differ only in the body);
- ``segmentum campaign send`` over SMS: render the template, consent and quiet-hour checks, and
  the claim / send / mark of the send log, each committed (two commits a message).

Also timed: ``segment_count`` on texts of one to three parts, and folding receipts from the
service's SQLite store into the warehouse. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from common import ROOT, machine, update_doc

sys.path.insert(0, str(ROOT / "tests"))
import segmentum
from killsends import customers, plan
from segmentum.campaigns import sms
from segmentum.campaigns.core import Campaigns
from segmentum.config import load_settings

TEMPLATE = {
    "sms": {
        "es": "{{ greeting }}: vuelve esta semana con un 10% menos. Baja: STOP",
        "en": "{{ greeting }}: come back this week for 10% off. Stop: STOP",
    }
}


class Receiver:
    """Answers every POST with 200 and a small JSON body, on a kept-alive connection."""

    def __init__(self) -> None:
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK hold every answer about 40 ms on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.count += 1
                body = b'{"id": "m"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def bare(url: str, n: int) -> float:
    body = json.dumps(
        {"to": "+34612345678", "from": "TIENDA", "text": "Hola: vuelve", "reference": "k"}
    )
    headers = {"Content-Type": "application/json"}
    with httpx.Client() as client:
        client.post(url, content=body, headers=headers)  # the connection, outside the timing
        t0 = time.perf_counter()
        for _ in range(n):
            client.post(url, content=body, headers=headers).raise_for_status()
        return time.perf_counter() - t0


def adapter(settings: object, n: int) -> float:
    with sms.SmsSender.from_settings(settings) as sender:  # type: ignore[arg-type]
        sender.send("+34612345678", "warm", "warm")
        t0 = time.perf_counter()
        for i in range(n):
            got = sender.send("612 34 56 78", "Hola Ana: vuelve esta semana", f"k{i}", country="ES")
            assert got.ok, got
        return time.perf_counter() - t0


def campaign(settings: object, n: int, folder: Path) -> float:
    path = folder / "campaign.duckdb"
    cust = customers(n + 2)  # the first two are the control group
    cust["consent_email"] = True
    cust["consent_sms"] = True
    cust["timezone"] = "Europe/Madrid"
    wh = segmentum.connect(f"duckdb:///{path}")
    try:
        wh.write("customers", cust)
        cs = Campaigns(wh, settings)  # type: ignore[arg-type]
        c = cs.create("Texto", "winback", "sms", template=TEMPLATE, control_share=0.0)
        now = dt.datetime(2026, 1, 5, 11, 0)
        cs.record_plan(c, plan(cust), now)
        t0 = time.perf_counter()
        r = cs.send(c, now=now, immediately=True)
        took = time.perf_counter() - t0
        assert r.delivered == n and r.failed == 0, r
        return took
    finally:
        wh.close()


def folding(n: int, folder: Path) -> float:
    path = folder / "fold.duckdb"
    store = sms.ReceiptStore(folder / "fold.state.sqlite")
    store.add([sms.Receipt(f"c:{i}", "delivered", "generic") for i in range(n)])
    wh = segmentum.connect(f"duckdb:///{path}")
    try:
        t0 = time.perf_counter()
        assert sms.fold_receipts(wh, store) == n
        return time.perf_counter() - t0
    finally:
        wh.close()


def counting(n: int) -> float:
    texts = ["a" * 150, "¿Dónde está mi pedido? " * 6, "Oferta 10€ [hoy] " * 20]
    t0 = time.perf_counter()
    for i in range(n):
        sms.segment_count(texts[i % 3])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--campaign", type=int, default=300)
    args = ap.parse_args()
    rx = Receiver()
    settings = load_settings(env={}).with_overrides(
        discover_segments=False,
        sms_provider="generic",
        sms_url=rx.url,
        sms_sender_id="TIENDA",
        sms_auth="none",
        sms_quiet_start="00:00",
        sms_quiet_end="00:00",
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    try:
        limit = bare(rx.url, args.messages)
        print(f"  bare posts: {args.messages / limit:,.0f}/s", flush=True)
        ours = adapter(settings, args.messages)
        print(f"  SmsSender.send: {args.messages / ours:,.0f}/s", flush=True)
        whole = campaign(settings, args.campaign, folder)
        print(f"  campaign send: {args.campaign / whole:,.0f}/s", flush=True)
        fold = folding(10_000, folder)
        count = counting(100_000)
    finally:
        rx.server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    load = os.getloadavg()[0]
    lines = [
        "## SMS",
        "",
        f"{machine()}; load average {load:.0f} on {os.cpu_count()} cores during the run (an "
        "idle machine is faster). A local HTTP/1.1 receiver answers every message at once; "
        "`python benchmarks/bench_sms.py`.",
        "",
        "| contender | messages | time (s) | messages/s | ratio to the limit |",
        "|---|---:|---:|---:|---:|",
        f"| practical limit: bare HTTP posts of the same body, one kept-alive connection "
        f"| {args.messages:,} | {limit:.2f} | {args.messages / limit:,.0f} | 1.00x |",
        f"| `SmsSender.send` (encoding, E.164, the provider's request, the answer read) "
        f"| {args.messages:,} | {ours:.2f} | {args.messages / ours:,.0f} "
        f"| {ours / limit:.2f}x |",
        f"| `segmentum campaign send` over SMS (render, consent, quiet hours, claim / send / "
        f"mark committed per message, DuckDB) | {args.campaign:,} | {whole:.2f} "
        f"| {args.campaign / whole:,.0f} | {(whole / args.campaign) / (limit / args.messages):.2f}x |",
        "",
        f"`segment_count`: {100_000 / count:,.0f} texts/s (one to three parts, GSM-7 and "
        f"UCS-2). Folding 10,000 receipts from the service's SQLite store into the warehouse: "
        f"{fold:.2f} s.",
        "",
        "A real provider answers in tens to hundreds of milliseconds and allows a set rate "
        "(Twilio queues a long code at about 1 message a second; short codes and alphanumeric "
        "senders more): the provider, not segmentum, is the limit in practice.",
    ]
    update_doc("sms", "\n".join(lines))


if __name__ == "__main__":
    main()
