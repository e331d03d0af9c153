"""Flows: customers advanced per second by a tick, and messages per second through a real local
SMTP server, each against its practical limit (the bare SQLite transactions a step needs; the
bare SMTP conversation). Writes the "flows" section of docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_flows.py --customers 5000 --messages 300
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import machine, update_doc
from killsends import SlowInbox, start_smtp
from segmentum.campaigns.channels import Mailer
from segmentum.config import load_settings
from segmentum.flows import Flows, FlowStore

T0 = dt.datetime(2026, 1, 14, 10, 0)
STEPS = """
name: bench
trigger: {event: add_to_cart}
exit: {unsubscribed: false}
quiet_hours: false
steps:
  - split: {control: 10%}
  - wait: 1 hour
  - condition: "clv > 10 and not bought_since_entry"
  - wait: 1 day
  - condition: "churn_probability < 0.99"
  - send:  # nobody here agreed to push: skipped, so this part measures the engine alone
      channel: push
      subject: {es: "Hola", en: "Hi"}
      body: {es: "Hola", en: "Hi"}
"""
SEND = """
name: send
trigger: {event: checkout}
quiet_hours: false
steps:
  - send:
      channel: email
      subject: {es: "Tu carrito", en: "Your cart"}
      body: {es: "{{ greeting }}, tu carrito te espera.", en: "{{ greeting }}, your cart awaits."}
"""


def _profiles(store: FlowStore, n: int) -> list[str]:
    """``n`` customers as a warehouse sync leaves them (contact, consent, zone, values)."""
    ids = [f"C{i:07d}" for i in range(n)]
    rows = [
        (
            cid,
            f"{cid.lower()}@example.com",
            "es" if i % 3 else "en",
            "Europe/Madrid",
            json.dumps({"email": 1, "push": 0}),
            json.dumps({"clv": 5.0 + i % 400, "churn_probability": (i % 100) / 100}),
        )
        for i, cid in enumerate(ids)
    ]
    with store.connect() as con:
        con.executemany(
            "INSERT INTO profiles (customer_id, email, language, tz, consent, attrs) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    return ids


def advance(n: int, folder: Path) -> tuple[float, float, int]:
    """Seconds for the ticks that move ``n`` customers through six steps, the seconds the
    bare SQLite transactions take for the same number of steps, and how many steps that is."""
    settings = load_settings(env={})
    flows = Flows(FlowStore(folder / "advance.flows.sqlite"), settings)
    ids = _profiles(flows.store, n)
    flows.save(STEPS)
    flows.set_status("bench", "enabled")
    with flows.store.connect() as con:
        con.executemany(
            "INSERT INTO triggers (source, kind, name, customer_id, at, ref) "
            "VALUES ('realtime', 'event', 'add_to_cart', ?, ?, ?)",
            [(c, "2026-01-14 10:00:00", f"t{c}") for c in ids],
        )
    t0 = time.perf_counter()
    reports = [
        flows.tick(T0),
        flows.tick(T0 + dt.timedelta(hours=1)),
        flows.tick(T0 + dt.timedelta(days=1, hours=1)),
    ]
    ours = time.perf_counter() - t0
    steps = sum(r.steps for r in reports)
    assert reports[0].entered == n, reports[0]
    # The limit: per step, the two statements the engine cannot do without (move the
    # customer, write the line of their path), committed 100 customers at a time as the
    # engine does, with no logic around them.
    con = sqlite3.connect(folder / "advance.flows.sqlite", isolation_level=None)
    con.execute("PRAGMA synchronous=NORMAL")
    runs = [r[0] for r in con.execute("SELECT run_id FROM runs")]
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        for i, run_id in enumerate(runs):
            if i % 100 == 0:
                con.execute("BEGIN IMMEDIATE")
            con.execute(
                "UPDATE runs SET step = step + 1, updated_at = ? WHERE run_id = ?", ("x", run_id)
            )
            con.execute(
                "INSERT INTO path (run_id, flow, customer_id, step, at, what) "
                "VALUES (?, 'bench', 'c', 0, 'x', 'wait')",
                (run_id,),
            )
            done += 1
            if i % 100 == 99 or done >= steps:
                con.execute("COMMIT")
            if done >= steps:
                break
        if con.in_transaction:
            con.execute("COMMIT")
    bare = time.perf_counter() - t0
    con.close()
    return ours, bare, steps


def sends(m: int, folder: Path) -> tuple[float, float]:
    """Seconds to send ``m`` emails through a flow, and the bare SMTP conversation."""
    inbox = SlowInbox(0.0)
    ctl, port = start_smtp(inbox)
    try:
        settings = load_settings(env={}).with_overrides(
            smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, frequency_cap=0
        )
        flows = Flows(FlowStore(folder / "send.flows.sqlite"), settings)
        ids = _profiles(flows.store, m)
        flows.save(SEND)
        flows.set_status("send", "enabled")
        with flows.store.connect() as con:
            con.executemany(
                "INSERT INTO triggers (source, kind, name, customer_id, at, ref) "
                "VALUES ('realtime', 'event', 'checkout', ?, ?, ?)",
                [(c, "2026-01-14 10:00:00", f"s{c}") for c in ids],
            )
        t0 = time.perf_counter()
        rep = flows.tick(T0)
        ours = time.perf_counter() - t0
        assert rep.sent == m and len(inbox.got) == m, rep
        mailer = Mailer(settings)
        t0 = time.perf_counter()
        for i in range(m):
            mailer.send(f"bare.{i}", f"c{i}@example.com", "Your cart", "Hi, your cart awaits.")
        mailer.close()
        bare = time.perf_counter() - t0
    finally:
        ctl.stop()
    return ours, bare


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--messages", type=int, default=300)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-flows-"))
    try:
        print(f"advancing {args.customers} customers through six steps:")
        ours, bare, steps = advance(args.customers, folder)
        print(f"  tick {ours:.2f} s, bare SQLite {bare:.2f} s ({steps} steps)")
        print(f"sending {args.messages} emails:")
        sent, smtp = sends(args.messages, folder)
        print(f"  tick {sent:.2f} s, bare SMTP {smtp:.2f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load = os.getloadavg()[0]
    lines = [
        "## Flows",
        "",
        f"Measured on {machine()} (load average {load:.0f}: other work shared the cores; an "
        "idle machine is faster). `benchmarks/bench_flows.py`: flows' state in a SQLite file "
        "(WAL); the steps of up to 100 customers are committed together, and every message is "
        "committed before and after it goes out.",
        "",
        f"**Advancing customers**: {args.customers:,} customers enter a flow of six steps "
        "(control split, wait, condition, wait, condition, a push nobody agreed to) and three ticks move them to the end "
        f"({steps:,} steps). The limit is the bare SQL a step needs (one update of the "
        "customer's state, one line of their path), committed 100 customers at a time, with "
        "no logic around it.",
        "",
        "| contender | time (s) | steps/s | customers/s (6 steps) |",
        "|---|---:|---:|---:|",
        f"| practical limit: the bare SQL of each step | {bare:.2f} | {steps / bare:,.0f} "
        f"| {steps / bare / 6:,.0f} |",
        f"| `Flows.tick` (triggers, conditions, path) | {ours:.2f} | {steps / ours:,.0f} "
        f"| {args.customers / ours:,.0f} |",
        "",
        f"**Sending**: {args.messages:,} customers reach an email step at once; one tick sends "
        "them through a local SMTP server (aiosmtpd on 127.0.0.1), each written `sending` "
        "with its idempotency key before the SMTP call and `sent` after. The limit is the same "
        "SMTP conversation with no bookkeeping.",
        "",
        "| contender | time (s) | messages/s |",
        "|---|---:|---:|",
        f"| practical limit: the bare SMTP conversation | {smtp:.2f} | {args.messages / smtp:,.0f} |",
        f"| `Flows.tick` (consent, cap, quiet hours, claim, send, mark) | {sent:.2f} "
        f"| {args.messages / sent:,.0f} |",
    ]
    update_doc("flows", "\n".join(lines))
    print("wrote the flows section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
