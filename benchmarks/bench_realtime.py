"""Real-time segments: delay from an event's POST to its segment's webhook at 200 events/s,
idle and while a pipeline job holds the warehouse.

    python benchmarks/bench_realtime.py                      # 20,000-customer demo warehouse
    python benchmarks/bench_realtime.py --customers 100000 --seconds 60

Starts ``segmentum serve`` in its own process on 127.0.0.1 and a webhook receiver in this one,
which notes when each delivery arrives. An open-loop client posts one event every 5 ms whatever
the answers (so a slow server shows as queueing, not as a lower rate): for each customer a
page view, an abandoned cart (entering the live segment ``bench_cart``), a product view and a
purchase (leaving it), a second apart, so half the events move a customer. The delay of a webhook counts from
the moment its event was due to be posted to the moment the receiver has read it. Then a
pipeline job starts (``POST /v1/jobs/pipeline``) and the load runs again while it holds the
warehouse. The practical limit is the same record-and-evaluate of one event in-process, without
HTTP. Target: p99 under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench_service import _get, pct, prepare_demo
from common import DATA, ROOT, machine, update_doc

RATE, SECONDS, PORT, HOOK_PORT = 200, 60, 8766, 8767
CONNECTIONS = 16
RULE = "exists(event == 'cart_abandoned', last 1 hours) and count(purchases, last 1 hours) == 0"
STEPS = ("page_view", "cart_abandoned", "product_view", "purchase")


class Hooks:
    """The receiving end: when each delivery for each cause event arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}  # cause event id -> arrival (perf_counter)
        self.keys: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept alive, as a real endpoint would

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.perf_counter()
                for e in body["events"]:
                    outer.arrived.setdefault(str(e["cause_event_id"]), now)
                outer.keys.append(self.headers["X-Segmentum-Delivery"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", HOOK_PORT), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def prepare(db: Path) -> tuple[str, str, list[str]]:
    """The live segment with the receiver subscribed, read models published, a track key and
    an admin key; the customers to drive (buyers, so their profile is published)."""
    import segmentum
    from segmentum.history.webhooks import subscribe, subscriptions, unsubscribe
    from segmentum.precompute import publish_read_models
    from segmentum.segments.store import Segments
    from segmentum.service.auth import create_key
    from segmentum.service.state import StateStore

    for tail in ("", "-wal", "-shm"):  # a previous run's customers bought within the hour
        db.with_name(db.stem + ".realtime.sqlite" + tail).unlink(missing_ok=True)
    wh = segmentum.connect(f"duckdb:///{db}")
    store = Segments(wh)
    if "bench_cart" in {s.name for s in store.list()}:
        store.edit("bench_cart", RULE)
    else:
        store.create("bench_cart", RULE, "benchmark: abandoned a cart in the last hour")
    for s in subscriptions(wh, "bench_cart"):
        unsubscribe(wh, s.subscription_id)
    subscribe(wh, "bench_cart", f"http://127.0.0.1:{HOOK_PORT}/hook")
    t0 = time.perf_counter()
    publish_read_models(wh)
    print(f"  published the read models in {time.perf_counter() - t0:.1f} s")
    state = StateStore.for_warehouse(wh.url)
    keys = create_key(state, "bench track", ["track"]), create_key(state, "bench", ["admin"])
    lk = wh.table("customer_lookup")
    ids = lk.filter(lk.frequency > 0).customer_id.to_pyarrow().to_pylist()
    wh.close()
    return keys[0], keys[1], [str(i) for i in ids]


def limit(db: Path, ids: list[str], n: int = 2000) -> tuple[list[float], list[float]]:
    """In-process, no HTTP: record one event and re-evaluate its customer (one SQLite
    transaction), and the rule evaluation alone."""
    from segmentum.config import load_settings
    from segmentum.realtime.engine import Engine
    from segmentum.realtime.evaluate import Customer
    from segmentum.realtime.events import check_events
    from segmentum.realtime.store import RealtimeStore, now_utc
    from segmentum.serving import ServingStore, serving_path

    settings = load_settings()
    url = f"duckdb:///{db}"
    store = RealtimeStore.for_warehouse(url, settings)
    target = serving_path(url)
    assert target is not None
    engine = Engine(store, ServingStore(target), settings)
    whole, rule = [], []
    for i in range(n):
        cid = ids[-1 - (i // 4) % len(ids)]
        kind = STEPS[i % 4]
        extra = (
            {"invoice_id": f"L-{uuid.uuid4().hex[:10]}", "amount": 20} if kind == "purchase" else {}
        )
        rows, _ = check_events([{"customer_id": cid, "event_type": kind, **extra}])
        t0 = time.perf_counter()
        engine.track(rows)
        whole.append((time.perf_counter() - t0) * 1000)
        with store.connect() as con:
            plans, names = engine.plans(con)
        events = store.events_of(cid, now_utc().replace(hour=0))
        doc = engine.document("customer_lookup", cid)
        t0 = time.perf_counter()
        c = Customer(doc, events, [], now_utc(), None, names)
        for p in plans:
            c.live[p.name] = c.matches(p)
        rule.append((time.perf_counter() - t0) * 1000)
    store.execute("DELETE FROM webhook_outbox WHERE status = 'pending'")  # not for the receiver
    return whole, rule


async def load(key: str, ids: list[str], seconds: int) -> tuple[dict[str, float], list[float], int]:
    """Open loop: event i is due at ``start + i / RATE``; returns each event's due time by
    event id, the POST latencies and the number of failed POSTs."""
    due_of: dict[str, float] = {}
    lat: list[float] = []
    errors = 0
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        while (item := await queue.get()) is not None:
            due, raw = item
            try:
                status = await asyncio.wait_for(_get(reader, writer, raw), 30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
            lat.append((time.perf_counter() - due) * 1000)
            errors += status != 200
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    start = time.perf_counter()
    run = uuid.uuid4().hex[:6]
    wave = RATE  # a customer's four events a second apart: sent in order, not all at once
    for i in range(RATE * seconds):
        cid = ids[(i % wave + wave * (i // (4 * wave))) % len(ids)]
        kind = STEPS[(i // wave) % 4]
        event: dict[str, Any] = {"event_id": f"{run}-{i}", "customer_id": cid, "event_type": kind}
        if kind == "purchase":
            event.update(invoice_id=f"B-{run}-{i}", amount=42.5)
        body = json.dumps(event).encode()
        raw = (
            f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        due = start + i / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due_of[event["event_id"]] = due
        queue.put_nowait((due, raw))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return due_of, lat, errors


def delays(hooks: Hooks, due_of: dict[str, float]) -> tuple[list[float], int, int]:
    """Webhook delays (ms) of the moving events, how many were expected and how many came."""
    moving = [e for e in due_of if (int(e.rsplit("-", 1)[1]) // RATE) % 4 in (1, 3)]
    time.sleep(3)  # the last deliveries
    got = [(hooks.arrived[e] - due_of[e]) * 1000 for e in moving if e in hooks.arrived]
    return got, len(moving), len(got)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=SECONDS)
    args = parser.parse_args()
    db = prepare_demo(args.customers)
    track, admin, ids = prepare(db)
    need = RATE * args.seconds // 4 * 2 + 2000 // 4
    if len(ids) < need:
        print(
            f"  only {len(ids):,} buyers for {need:,} customer cycles: some repeat within the hour"
        )
    half = len(ids) // 2
    idle_ids, job_ids = ids[:half], ids[half:]
    print(f"real-time: {RATE} events/s for {args.seconds} s, {args.customers:,} customers")
    whole, rule = limit(db, job_ids)
    hooks = Hooks()
    log = (DATA / "bench-realtime-server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "segmentum.cli",
            "serve",
            "--port",
            str(PORT),
            "-w",
            f"duckdb:///{db}",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "SEGMENTUM_DISCOVER_SEGMENTS": "false"},
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        due, post, post_err = asyncio.run(load(track, idle_ids, args.seconds))
        idle, idle_n, idle_got = delays(hooks, due)
        head = {"X-API-Key": admin}
        t0 = time.perf_counter()
        job = httpx.post(f"{base}/v1/jobs/pipeline", headers=head, timeout=60).json()
        time.sleep(3)  # into the run: the job holds the warehouse
        hooks.arrived.clear()
        due, jpost, jpost_err = asyncio.run(load(track, job_ids, args.seconds))
        status = httpx.get(f"{base}/v1/jobs/{job['job_id']}", headers=head, timeout=60).json()
        through = status["status"] == "running"
        during, job_n, job_got = delays(hooks, due)
        while status["status"] == "running":
            time.sleep(1)
            status = httpx.get(f"{base}/v1/jobs/{job['job_id']}", headers=head, timeout=60).json()
        took = time.perf_counter() - t0
        print(
            f"  pipeline job {status['status']} in {took:.0f} s (running through the load: {through})"
        )
        dup = len(hooks.keys) - len(set(hooks.keys))
    finally:
        server.terminate()
        server.wait(10)
        hooks.server.shutdown()

    def row(name: str, xs: list[float], extra: str) -> str:
        return (
            f"| {name} | {len(xs):,} | {pct(xs, 0.5):.1f} | {pct(xs, 0.99):.1f} | "
            f"{max(xs):.1f} | {extra} |"
        )

    lines = [
        "| measured | count | p50 (ms) | p99 (ms) | max (ms) | |",
        "|---|---:|---:|---:|---:|---|",
        row("practical limit: record + evaluate one event in-process (no HTTP)", whole, ""),
        row("of which the rule evaluation alone", rule, ""),
        row(
            f"event POST to webhook received, open loop at {RATE}/s for {args.seconds} s",
            idle,
            f"{idle_got:,} of {idle_n:,} webhooks",
        ),
        row("the event POST itself", post, f"{post_err} errors"),
        row(
            f"event POST to webhook received, while a pipeline job runs ({took:.0f} s)",
            during,
            f"{job_got:,} of {job_n:,} webhooks",
        ),
        row("the event POST itself, during the job", jpost, f"{jpost_err} errors"),
    ]
    for line in lines[2:]:
        print("  " + line)
    body = (
        f"A live segment (`{RULE}`) on a {args.customers:,}-customer demo warehouse; "
        f"`segmentum serve` in its own process, the client and a webhook receiver in another, "
        f"all on one machine ({machine()}; load average {os.getloadavg()[0]:.1f} when it ended: "
        f"the machine was shared). Each customer sends a page view, an abandoned cart (enters), "
        f"a product view and a purchase (exits): half the events move a customer and each move "
        f"is one signed webhook. Delays count from when the event was due to be posted (open "
        f"loop) to when the receiver had read the webhook. The pipeline job runs in its own "
        f"process and holds the warehouse throughout the second load"
        f"{'' if through else ' (it ended before the load did)'}; it also loaded the events "
        f"tracked so far into the warehouse. Duplicate deliveries seen: {dup}. Target: p99 under "
        f"1 s.\n\n" + "\n".join(lines)
    )
    update_doc("realtime", "## Real-time segments\n\n" + body)


if __name__ == "__main__":
    main()
