"""Kill-and-resume trials of ``segmentum campaign send`` against a slow local SMTP server.

Shared by tests/test_sends.py (which asserts the guarantee) and benchmarks/bench_sends.py
(which records the numbers). Everything is real: a DuckDB file, an SMTP server on 127.0.0.1,
``segmentum campaign send`` processes killed with SIGKILL.

Importing segmentum takes seconds on a busy machine, so most trials start their processes from
a :class:`Launcher`: a parent that imported segmentum once forks one child per command, and the
child runs the command line's own ``main``. A trial can also start the installed ``segmentum``
executable (``real=True``).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import email
import email.policy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from aiosmtpd.controller import Controller

import segmentum
from segmentum.campaigns.core import Campaigns
from segmentum.config import Settings

TEMPLATE = {
    "subject": {"es": "Te echamos de menos", "en": "We miss you"},
    "body": {
        "es": "{{ greeting }}: {{ reason }}.{% if recommendation %} Te sugerimos "
        "{{ recommendation }}.{% endif %}",
        "en": "{{ greeting }}: {{ reason }}.{% if recommendation %} We suggest "
        "{{ recommendation }}.{% endif %}",
    },
}
NAMES = ["Martina", None, "Lucía", "Oliver", float("nan"), "Hugo", "Emma", "", "Pablo", None]


class SlowInbox:
    """An SMTP handler that takes each message, then answers ``delay`` seconds later.

    A message counts as delivered once the server has it, before it answers: a sender killed
    in that window never learns it went through (the case that costs one duplicate).
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.got: list[Any] = []
        self.raw: list[bytes] = []  # each message as it came over the wire
        self.refuse: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(bytes(envelope.content))
        self.got.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 OK"

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(str(m["To"]) for m in self.got)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_smtp(inbox: SlowInbox) -> tuple[Controller, int]:
    port = free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    return ctl, port


def customers(n: int) -> pd.DataFrame:
    """``n`` customers: some without a first name, some Spanish, two without email consent."""
    ids = [f"C{i:04d}" for i in range(1, n + 1)]
    return pd.DataFrame(
        {
            "customer_id": ids,
            "first_name": [NAMES[i % len(NAMES)] for i in range(n)],
            "last_name": [f"Apellido{i}" for i in range(n)],
            "email": [f"{c.lower()}@example.com" for c in ids],
            "phone": [f"+3460000{i:04d}" for i in range(n)],
            "country": ["España" if i % 3 else "United Kingdom" for i in range(n)],
            "consent_email": [i not in (3, 7) for i in range(n)],
        }
    )


def plan(cust: pd.DataFrame, control: int = 2) -> pd.DataFrame:
    """A winback plan for ``cust``: the first ``control`` held out, no consent not contacted."""
    rows = []
    for i, r in enumerate(cust.itertuples()):
        outcome = "control" if i < control else ("scheduled" if r.consent_email else "no_consent")
        rows.append(
            {
                "customer_id": r.customer_id,
                "group": "control" if i < control else "treatment",
                "outcome": outcome,
                "reason": f"lapsed after spending {1000 + 37 * i} (high value)",
                "why_stage": "lapsed",
                "why_spent": 1000.0 + 37 * i + 0.4,
                "why_tier": "high",
                "why_days": 90 + i,
                "language": "es" if r.country == "España" else "en",
                "rfm_segment": "At Risk",
                "recommendation": None,
                "scheduled_at": pd.NaT,
            }
        )
    return pd.DataFrame(rows)


def build(path: Path, settings: Settings, n: int = 14, name: str = "Vuelve") -> list[str]:
    """A small warehouse with one email campaign whose plan is logged; returns the addresses
    that must each receive the campaign exactly once."""
    cust = customers(n)
    wh = segmentum.connect(f"duckdb:///{path}")
    try:
        wh.write("customers", cust)
        wh.write(
            "transactions",
            pd.DataFrame(
                {
                    "invoice_id": ["I1", "I2"],
                    "customer_id": cust.customer_id[:2],
                    "timestamp": pd.to_datetime(["2025-01-05", "2025-02-05"]),
                    "quantity": [1.0, 2.0],
                    "amount": [20.0, 35.5],
                }
            ),
        )
        cs = Campaigns(wh, settings)
        c = cs.create(name, "winback", "email", template=TEMPLATE, control_share=0.2)
        p = plan(cust)
        cs.record_plan(c, p, dt.datetime(2026, 1, 5, 12, 0))
    finally:
        wh.close()
    due = p[p.outcome == "scheduled"].customer_id
    return sorted(cust.set_index("customer_id").loc[due].email)


ZYGOTE = r"""
import json, os, sys
import segmentum.cli
# What a send loads on first use, loaded once here instead of in every child.
import segmentum.campaigns.core, segmentum.campaigns.measure, segmentum.privacy
from segmentum import i18n
from segmentum.campaigns import channels, reasons
for lang in ("es", "en"):
    i18n.money(1.5, lang, "EUR"), i18n.number(1, lang, 0), i18n.percent(0.5, lang, 0)
channels.render(channels.DEFAULT_TEMPLATE, "es", {"campaign": "x", "first_name": "y"})
import smtplib, email.message, gc, tempfile, pathlib, contextlib, io
import killsends
from segmentum.config import load_settings
# One cold pass through the engine (compilers, caches) here rather than in every child; the
# warehouse is closed before any fork.
with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
    warm = pathlib.Path(tmp) / "warm.duckdb"
    killsends.build(warm, load_settings(), n=4)
    segmentum.cli.main(["campaign", "results", "Vuelve", "-w", f"duckdb:///{warm}"])
gc.collect()
gc.freeze()  # children then share the parent's memory instead of copying it page by page
for line in sys.stdin:
    cmd = json.loads(line)
    if "wait" in cmd:
        _, status = os.waitpid(cmd["wait"], 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        fd = os.open(cmd["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        rc = segmentum.cli.main(cmd["argv"])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    print(pid, flush=True)
"""


def environment(port: int, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SEGMENTUM_SMTP_HOST": "127.0.0.1",
        "SEGMENTUM_SMTP_PORT": str(port),
        "SEGMENTUM_SMTP_STARTTLS": "false",
        "SEGMENTUM_DISCOVER_SEGMENTS": "false",
    }
    env.update(extra)
    return env


class Launcher:
    """Starts ``segmentum`` commands as real processes in milliseconds (see the module doc)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        here = str(Path(__file__).resolve().parent)
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )

    def _ask(self, cmd: str) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def start(self, argv: list[str], out: Path) -> int:
        import json

        return self._ask(json.dumps({"argv": argv, "out": str(out)}))

    def wait(self, pid: int) -> int:
        return self._ask(f'{{"wait": {pid}}}')

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


def segmentum_exe() -> str:
    exe = Path(sys.executable).with_name("segmentum")
    return str(exe) if exe.exists() else shutil.which("segmentum") or "segmentum"


def trial(
    template: Path,
    folder: Path,
    number: int,
    inbox: SlowInbox,
    launcher: Launcher,
    expected: list[str],
    rng: np.random.Generator,
    *,
    real: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Copy the warehouse, start a send, kill it (SIGKILL) at a random point, resume it, and
    count what the server received per recipient."""
    db = folder / f"trial-{number}.duckdb"
    shutil.copy(template, db)
    inbox.got.clear()
    argv = ["campaign", "send", "Vuelve", "--immediately", "-w", f"duckdb:///{db}"]
    wait_for = int(rng.integers(0, len(expected)))
    extra = float(rng.uniform(0, 1.5 * inbox.delay))
    if real:
        proc = subprocess.Popen(
            [segmentum_exe(), *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=folder,
        )
        pid = proc.pid
    else:
        pid = launcher.start(argv, folder / f"trial-{number}-killed.log")
    deadline = time.monotonic() + 120
    while len(inbox.got) < wait_for and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(extra)
    os.kill(pid, signal.SIGKILL)
    first = proc.wait() if real else launcher.wait(pid)
    at_kill = len(inbox.got)
    out = folder / f"trial-{number}-resume.log"
    resumed = launcher.wait(launcher.start(argv, out))
    counts = inbox.counts()
    return {
        "trial": number,
        "real_process": real,
        "killed_after": at_kill,
        "killed": first == -signal.SIGKILL,
        "resume_exit": resumed,
        "resume_output": out.read_text(errors="replace"),
        "deliveries": sum(counts.values()),
        "duplicates": sum(n - 1 for n in counts.values()),
        "lost": len(set(expected) - set(counts)),
        "unexpected": sorted(set(counts) - set(expected)),
    }


def recorded_sent(db: Path) -> int:
    """Rows the send log says went out (read between two processes, the file then free)."""
    wh = segmentum.connect(f"duckdb:///{db}")
    try:
        return int(wh.run_sql("SELECT count(*) FROM campaign_sends WHERE status = 'sent'")[0][0])
    finally:
        wh.close()


def chain(
    db: Path,
    kills: int,
    inbox: SlowInbox,
    launcher: Launcher,
    expected: list[str],
    rng: np.random.Generator,
    *,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One campaign, ``kills`` sends in a row each killed at a random point (each resuming the
    one before), then a last send that finishes. After every kill, the messages the server
    has but the log does not say were sent are counted: the ones a resume will send twice."""
    inbox.got.clear()
    argv = ["campaign", "send", "Vuelve", "--immediately", "-w", f"duckdb:///{db}"]
    rows: list[dict[str, Any]] = []
    for number in range(kills):
        before = len(inbox.got)
        wait_for = before + int(rng.integers(0, 4))
        extra = float(rng.uniform(0, 1.5 * inbox.delay))
        real = number == 0  # the first one is the installed `segmentum` executable
        if real:
            proc = subprocess.Popen(
                [segmentum_exe(), *argv],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=db.parent,
            )
            pid = proc.pid
        else:
            pid = launcher.start(argv, db.with_suffix(f".{number}.log"))
        deadline = time.monotonic() + 120
        while (
            len(inbox.got) < wait_for
            and len(inbox.counts()) < len(expected)
            and time.monotonic() < deadline
        ):
            time.sleep(0.002)
        time.sleep(extra)
        os.kill(pid, signal.SIGKILL)
        code = proc.wait() if real else launcher.wait(pid)
        received = len(inbox.counts())
        rows.append(
            {
                "kill": number,
                "real_process": real,
                "killed": code == -signal.SIGKILL,
                "delivered_by_it": len(inbox.got) - before,
                "unrecorded": received - recorded_sent(db),
            }
        )
    out = db.with_suffix(".final.log")
    final = launcher.wait(launcher.start(argv, out))
    counts = inbox.counts()
    rows.append(
        {
            "kill": None,
            "final_exit": final,
            "final_output": out.read_text(errors="replace"),
            "deliveries": sum(counts.values()),
            "duplicates": sum(n - 1 for n in counts.values()),
            "lost": len(set(expected) - set(counts)),
            "unexpected": sorted(set(counts) - set(expected)),
        }
    )
    return rows
