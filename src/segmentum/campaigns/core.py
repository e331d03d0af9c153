"""Campaigns: definition, audience, dry run, send with consent, caps and a control group.

A campaign is a tactic (retention, winback, cross_sell, up_sell, acquisition, segment), a
channel (email, sms, push, inapp, web, file) and a template. ``plan`` builds the audience and
decides, for every member, one outcome with its reason:

- ``control``: held out; a seeded hash of campaign and customer (SHA-256 of
  ``seed:campaign:customer`` as a number in [0, 1) below ``control_share``), so the split is
  the same every time and on every machine;
- ``no_contact`` / ``no_consent`` / ``suppressed`` / ``capped`` for the channel (see
  :mod:`segmentum.segments.reach`);
- ``scheduled`` at the recipient's best weekday and hour in their own time zone.

``send`` writes every row to ``campaign_sends`` (the log: key, group, status, reason,
scheduled and sent times, error) and delivers what is due. A row sent is never sent again
(the key ``campaign:customer`` is the idempotency key); a failed delivery stays ``pending``
and is retried by the next ``send``.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from segmentum.campaigns import audiences
from segmentum.campaigns import channels as ch
from segmentum.campaigns.timing import contact_times, next_send_time
from segmentum.config import Settings, load_settings
from segmentum.errors import InputError
from segmentum.segments.reach import contact_status
from segmentum.segments.view import customer_view
from segmentum.warehouse import Warehouse

CHANNELS = ("email", "sms", "push", "inapp", "web", "file")
CAMPAIGNS = "campaigns"
SENDS = "campaign_sends"
WEB = "web_messages"


@dataclass
class Campaign:
    campaign_id: str
    name: str
    tactic: str
    channel: str
    target: str = ""
    template: str = ""  # JSON of the template
    control_share: float = 0.1
    seed: int = 0
    cost_per_contact: float = 0.0
    created_at: _dt.datetime | None = None

    @property
    def template_data(self) -> dict[str, Any]:
        return json.loads(self.template) if self.template else ch.DEFAULT_TEMPLATE


@dataclass
class SendReport:
    campaign_id: str
    audience: int
    control: int
    outcomes: dict[str, int]
    delivered: int
    failed: int
    scheduled_later: int
    errors: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def control_value(seed: int, campaign_id: str, customer_id: str) -> float:
    """A reproducible number in [0, 1) for the control split."""
    h = hashlib.sha256(f"{seed}:{campaign_id}:{customer_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


class Campaigns:
    """The Python API for campaigns (the CLI and REST API call this)."""

    def __init__(self, warehouse: Warehouse, settings: Settings | None = None) -> None:
        self.wh = warehouse
        self.settings = settings or load_settings()

    # ------------------------------------------------------------------ definitions
    def list(self) -> builtins.list[Campaign]:
        if not self.wh.has(CAMPAIGNS):
            return []
        return [Campaign(**r) for r in self.wh.table(CAMPAIGNS).to_pyarrow().to_pylist()]

    def get(self, key: str) -> Campaign:
        for c in self.list():
            if key in (c.campaign_id, c.name):
                return c
        raise InputError(f"there is no campaign {key!r}", "list them: segmentum campaign list")

    def create(
        self,
        name: str,
        tactic: str,
        channel: str,
        *,
        target: str = "",
        template: str | Path | dict[str, Any] | None = None,
        control_share: float | None = None,
        cost_per_contact: float = 0.0,
        seed: int = 0,
    ) -> Campaign:
        if tactic not in audiences.TACTICS:
            raise InputError(
                f"unknown tactic {tactic!r}", f"use one of {', '.join(audiences.TACTICS)}"
            )
        if channel not in CHANNELS:
            raise InputError(f"unknown channel {channel!r}", f"use one of {', '.join(CHANNELS)}")
        share = self.settings.control_share if control_share is None else control_share
        if not 0 <= share < 1:
            raise InputError("the control share must be between 0 and 1 (e.g. 0.1)")
        if any(c.name == name for c in self.list()):
            raise InputError(f"a campaign named {name!r} already exists", "choose another name")
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "campaign"
        c = Campaign(
            f"{slug}-{uuid.uuid4().hex[:6]}",
            name,
            tactic,
            channel,
            target,
            json.dumps(ch.load_template(template), ensure_ascii=False),
            share,
            seed,
            cost_per_contact,
            _now(),
        )
        rows = [asdict(x) for x in [*self.list(), c]]
        schema = pa.schema(
            [
                ("campaign_id", pa.string()),
                ("name", pa.string()),
                ("tactic", pa.string()),
                ("channel", pa.string()),
                ("target", pa.string()),
                ("template", pa.string()),
                ("control_share", pa.float64()),
                ("seed", pa.int64()),
                ("cost_per_contact", pa.float64()),
                ("created_at", pa.timestamp("us")),
            ]
        )
        self.wh.write(CAMPAIGNS, pa.Table.from_pylist(rows, schema=schema))
        return c

    # ------------------------------------------------------------------ audience and plan
    def audience(self, c: Campaign, as_of: _dt.date | None = None) -> ir.Table:
        return audiences.build(self.wh, c.tactic, c.target, as_of)

    def plan(
        self, c: Campaign, *, now: _dt.datetime | None = None, as_of: _dt.date | None = None
    ) -> pd.DataFrame:
        """Who would receive what, when, and why (nothing is sent or stored)."""
        now = now or _now()
        aud = self.audience(c, as_of)
        if c.tactic == "acquisition":
            df = aud.to_pandas()
            df["group"] = "treatment"
            df["outcome"] = "file"
            return df
        view, as_of = customer_view(self.wh, as_of)
        status_channel = "email" if c.channel == "file" else c.channel
        st = contact_status(self.wh, aud, as_of, self.settings)
        st = st.select("customer_id", "identified", status=st[f"status_{status_channel}"])
        prof_cols = [
            x
            for x in ("rfm_segment", "country", "timezone", "value_tier", "lifecycle_stage")
            if x in view.columns
        ]
        j = aud.join(st, "customer_id").join(view.select("customer_id", *prof_cols), "customer_id")
        if not self.wh.has("contact_times"):
            contact_times(self.wh, as_of)
        if self.wh.has("contact_times"):
            t = self.wh.table("contact_times")
            t = t.filter(t.as_of == t.as_of.max())
            j = j.left_join(
                t.select("customer_id", "best_hour_band", "best_weekday", "best_channel"),
                "customer_id",
            ).drop("customer_id_right")
        if self.wh.has("customers"):
            p = self.wh.table("customers").select("customer_id", *ch.PERSONAL)
            j = j.left_join(p, "customer_id").drop("customer_id_right")
        df = j.order_by([ibis.desc("priority"), "customer_id"]).to_pandas()
        df["group"] = [
            "control"
            if control_value(c.seed, c.campaign_id, cid) < c.control_share
            else "treatment"
            for cid in df.customer_id
        ]
        df["outcome"] = df.status.where(df.status != "reachable", "scheduled")
        df.loc[df.group == "control", "outcome"] = "control"
        if c.channel == "file":
            df.loc[df.group == "treatment", "outcome"] = "file"
        for col in ("best_hour_band", "best_weekday", "timezone"):
            if col not in df.columns:
                df[col] = None
        df["scheduled_at"] = [
            next_send_time(now, b, w, tz) if o == "scheduled" else pd.NaT
            for b, w, tz, o in zip(
                df.best_hour_band, df.best_weekday, df.timezone, df.outcome, strict=True
            )
        ]
        df["language"] = [ch.language(x) for x in df.get("country", [None] * len(df))]
        return df

    def dry_run(
        self, c: Campaign, now: _dt.datetime | None = None, sample: int = 5
    ) -> dict[str, Any]:
        df = self.plan(c, now=now)
        tpl = c.template_data
        examples = []
        for r in df[df.outcome.isin(["scheduled", "file"])].head(sample).to_dict("records"):
            subject, body = ch.render(tpl, r.get("language", "en"), self._context(c, r))
            examples.append(
                {
                    "customer_id": r["customer_id"],
                    "when": str(r.get("scheduled_at")),
                    "why": r["reason"],
                    "subject": subject,
                    "body": body,
                }
            )
        return {
            "campaign": c.name,
            "audience": len(df),
            "outcomes": df.outcome.value_counts().to_dict(),
            "examples": examples,
        }

    @staticmethod
    def _context(c: Campaign, r: Mapping[Any, Any]) -> dict[str, Any]:
        return {
            "campaign": c.name,
            "first_name": r.get("first_name") or "",
            "segment": r.get("rfm_segment"),
            "reason": r.get("reason"),
            "recommendation": r.get("recommendation"),
            "customer_id": r.get("customer_id"),
        }

    # ------------------------------------------------------------------ send
    def send(
        self,
        c: Campaign,
        *,
        now: _dt.datetime | None = None,
        immediately: bool = False,
        out_dir: Path | None = None,
    ) -> SendReport:
        """Log the plan (first time) and deliver every row that is due and not yet sent."""
        now = now or _now()
        log = self._ensure_log(c, now)
        due = log[
            (log.status == "pending")
            & (immediately | (log.scheduled_at.isna()) | (log.scheduled_at <= now))
        ]
        files: list[str] = []
        sent: list[str] = []
        failed: dict[str, str] = {}
        tpl = c.template_data
        if c.channel == "file":
            todo = log[log.outcome == "file"]
            if not todo.empty and (todo.status == "pending").any():
                paths = ch.write_files(
                    todo.drop(columns=["status", "error", "sent_at"], errors="ignore"),
                    out_dir or Path("campaign-files"),
                    c.campaign_id,
                    self.settings,
                    ("csv", "parquet", "json"),
                )
                files = [str(p) for p in paths]
                sent = todo.key.tolist()
        elif c.channel in ("email", "push", "inapp", "sms"):
            msgs = []
            for r in due.to_dict("records"):
                subject, body = ch.render(tpl, r["language"], self._context(c, r))
                msgs.append({**r, "subject": subject, "body": body})
            if c.channel == "email":
                sent, failed = ch.send_emails(
                    self.settings,
                    [
                        {
                            "key": m["key"],
                            "to": m["email"],
                            "subject": m["subject"],
                            "body": m["body"],
                        }
                        for m in msgs
                    ],
                )
            elif c.channel == "sms":
                raise InputError(
                    "SMS sending is not available yet", "export a file for your SMS tool"
                )
            else:
                url = (
                    self.settings.push_webhook_url
                    if c.channel == "push"
                    else self.settings.inapp_webhook_url
                )
                payloads = [
                    {
                        "key": m["key"],
                        "campaign_id": c.campaign_id,
                        "customer_id": m["customer_id"],
                        "channel": c.channel,
                        "title": m["subject"],
                        "message": m["body"],
                        "language": m["language"],
                    }
                    for m in msgs
                ]
                sent, failed = ch.post_messages(
                    url, self.settings.channel_secret, payloads, retries=2, backoff=0.2
                )
        elif c.channel == "web":
            sent = due.key.tolist()  # published: the web endpoint serves them from the log
        self._mark(c, sent, failed, now)
        log = self.log(c)
        return SendReport(
            c.campaign_id,
            len(log),
            int((log.group == "control").sum()),
            {str(k): int(v) for k, v in log.outcome.value_counts().items()},
            len(sent),
            len(failed),
            int(((log.status == "pending") & (log.outcome == "scheduled")).sum()),
            sorted(set(failed.values()))[:5],
            files,
        )

    def log(self, c: Campaign) -> pd.DataFrame:
        if not self.wh.has(SENDS):
            return pd.DataFrame()
        s = self.wh.table(SENDS)
        return s.filter(s.campaign_id == c.campaign_id).to_pandas()

    def _ensure_log(self, c: Campaign, now: _dt.datetime) -> pd.DataFrame:
        existing = self.log(c)
        if not existing.empty:
            return existing
        df = self.plan(c, now=now)
        tpl = c.template_data
        keep = [
            "customer_id",
            "group",
            "outcome",
            "reason",
            "scheduled_at",
            "language",
            "rfm_segment",
            "email",
            "phone",
            "first_name",
            "recommendation",
        ]
        for col in keep:
            if col not in df.columns:
                df[col] = None
        log = df[keep].copy()
        log.insert(0, "campaign_id", c.campaign_id)
        log.insert(0, "key", [f"{c.campaign_id}:{x}" for x in log.customer_id])
        log["channel"] = c.channel
        log["status"] = [
            "pending" if o in ("scheduled", "file") else "not_sent" for o in log.outcome
        ]
        log["sent_at"] = pd.NaT
        log["error"] = None
        log["message"] = (
            [
                ch.render(tpl, r["language"] or "en", self._context(c, r))[1]
                if r["outcome"] == "scheduled"
                else None
                for r in log.to_dict("records")
            ]
            if c.channel == "web"
            else None
        )
        log["logged_at"] = now
        table = pa.Table.from_pandas(
            log.astype(
                {
                    "scheduled_at": "datetime64[us]",
                    "sent_at": "datetime64[us]",
                    "logged_at": "datetime64[us]",
                }
            ),
            preserve_index=False,
        )
        table = table.cast(
            pa.schema(
                [
                    (f.name, pa.string() if pa.types.is_null(f.type) else f.type)
                    for f in table.schema
                ]
            )
        )
        if self.wh.has(SENDS):
            self.wh.insert(SENDS, table)
        else:
            self.wh.write(SENDS, table)
        return self.log(c)

    def _mark(
        self, c: Campaign, sent: builtins.list[str], failed: dict[str, str], now: _dt.datetime
    ) -> None:
        if not sent and not failed:
            return
        upd = pa.table(
            {
                "key": pa.array(sent + list(failed), pa.string()),
                "_ok": pa.array([True] * len(sent) + [False] * len(failed)),
                "_err": pa.array([None] * len(sent) + list(failed.values()), pa.string()),
            }
        )
        u = self.wh.from_arrow(upd, "sendupd")
        s = self.wh.table(SENDS)
        j = s.left_join(u, "key").drop("key_right")
        ok = j._ok.fill_null(False)
        new = j.mutate(
            status=ibis.ifelse(ok, "sent", j.status),
            sent_at=ibis.ifelse(ok, ibis.literal(now, "timestamp"), j.sent_at),
            error=ibis.ifelse(j._ok.notnull() & ~ok, j._err, j.error),
        ).drop("_ok", "_err")
        self.wh.write(SENDS, self.wh.materialize(new, "sends"))

    # ------------------------------------------------------------------ web messages
    def web_message(self, visitor: str, now: _dt.datetime | None = None) -> dict[str, Any] | None:
        """The newest published web message for a visitor (customer id), or None."""
        if not self.wh.has(SENDS):
            return None
        s = self.wh.table(SENDS)
        s = s.filter(
            (s.channel == "web") & (s.status == "sent") & (s.customer_id == visitor)
        ).order_by(ibis.desc("sent_at"))
        rows = s.limit(1).to_pyarrow().to_pylist()
        if not rows:
            return None
        r = rows[0]
        return {"campaign_id": r["campaign_id"], "message": r["message"], "language": r["language"]}
