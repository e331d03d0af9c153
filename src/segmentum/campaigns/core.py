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

``send`` logs the plan once in ``campaign_sends`` (key, group, outcome, reason and the facts
behind it, schedule; no personal data) and delivers what is due one message at a time: claim,
send, mark, each committed on its own (:mod:`segmentum.campaigns.sendlog`), so a killed send
repeats at most the one message in flight and a resume sends only what never went out.
Addresses and names are read from ``customers`` at the moment of sending and not copied.

Campaigns found only in ingested ``campaign_results`` (run by another tool, like the demo's
``WINBACK-2025-10``) are listed as ``imported``: they can be measured, not sent.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import hashlib
import json
import re
import time
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from segmentum import i18n
from segmentum.campaigns import audiences, reasons, sendlog
from segmentum.campaigns import channels as ch
from segmentum.campaigns.sendlog import SendLog
from segmentum.campaigns.timing import contact_times, next_send_time
from segmentum.campaigns.unsubscribe import SKIPPED as UNSUBSCRIBED
from segmentum.config import Settings, load_settings
from segmentum.errors import DeliveryError, InputError
from segmentum.segments.reach import allowed_contacts, contact_status
from segmentum.segments.view import customer_view
from segmentum.warehouse import Warehouse

CHANNELS = ("email", "sms", "push", "inapp", "web", "file")
CAMPAIGNS = "campaigns"
SENDS = sendlog.SENDS
IMPORTED = "imported"
# A channel that fails this many messages in a row is down: stop, keep the rest pending.
MAX_CONSECUTIVE_FAILURES = 3


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

    @property
    def default_subject(self) -> bool:
        """Whether its messages carry its tactic's default subject (no template gave one)."""
        return self.template_data.get("subject") == ch.default_subject(self.tactic)


@dataclass
class SendReport:
    """What one ``send`` did: ``delivered`` and ``failed`` count this run's messages;
    ``retrying`` of the failed stay pending for the next send (the others were refused for
    good); ``stopped`` says why delivery ended early (a server down), if it did."""

    campaign_id: str
    audience: int
    control: int
    outcomes: dict[str, int]
    delivered: int
    failed: int
    scheduled_later: int
    errors: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    retrying: int = 0
    resumed: int = 0
    stopped: str | None = None
    # SMS: the messages sent so far by their last delivery receipt (see campaigns.sms).
    receipts: dict[str, int] | None = None
    # Planned messages not sent after all: consent withdrawn or unsubscribed since the plan.
    not_sent: int = 0


def _most_common(t: ir.Table, column: str) -> Any:
    """The most frequent non-null value of ``column`` (ties: the first in order), computed in
    the engine on every backend (ibis has no ``mode()`` on Spark)."""
    t = t.filter(t[column].notnull())
    g = t.group_by(column).aggregate(_n=t.count()).order_by([ibis.desc("_n"), column]).limit(1)
    rows = g.to_pyarrow().to_pylist()
    return rows[0][column] if rows else None


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
        self._currency: builtins.list[str | None] = []

    @property
    def currency(self) -> str | None:
        """The currency amounts are in: the setting, or with ``auto`` the one most lines were
        ingested in (None when unknown: amounts are then written without a sign)."""
        if not self._currency:
            code: str | None = self.settings.currency.upper()
            if code == "AUTO":
                code = None
                if self.wh.has("transactions"):
                    t = self.wh.table("transactions")
                    if "currency" in t.columns:
                        code = _most_common(t, "currency")
            self._currency.append(code)
        return self._currency[0]

    # ------------------------------------------------------------------ definitions
    def list(self) -> builtins.list[Campaign]:
        """Campaigns created here, then those known only from ingested ``campaign_results``."""
        mine = []
        if self.wh.has(CAMPAIGNS):
            mine = [Campaign(**r) for r in self.wh.table(CAMPAIGNS).to_pyarrow().to_pylist()]
        return mine + self._imported({c.campaign_id for c in mine})

    def _imported(self, known: set[str]) -> builtins.list[Campaign]:
        if not self.wh.has("campaign_results"):
            return []
        r = self.wh.table("campaign_results")
        g = r.group_by("campaign_id").aggregate(
            control=(r.group == "control").cast("int64").sum(),
            members=r.count(),
            first=r.sent_at.min(),
            cost=r.cost.mean(),
        )
        # The channel most members got (ties: the first by name); ibis has no mode() on Spark.
        c = r.filter(r.channel.notnull())
        n = c.group_by(["campaign_id", "channel"]).aggregate(_n=c.count())
        rank = ibis.row_number().over(group_by="campaign_id", order_by=[ibis.desc("_n"), "channel"])
        top = n.mutate(_rk=rank)
        top = top.filter(top._rk == 0).select("campaign_id", "channel")
        g = g.left_join(top, "campaign_id").drop("campaign_id_right")
        out = []
        for x in g.order_by("first").to_pyarrow().to_pylist():
            if x["campaign_id"] in known:
                continue
            out.append(
                Campaign(
                    x["campaign_id"],
                    x["campaign_id"],
                    IMPORTED,
                    x["channel"] or "file",
                    control_share=(x["control"] or 0) / max(x["members"], 1),
                    cost_per_contact=0.0 if reasons.missing(x["cost"]) else float(x["cost"]),
                    created_at=x["first"],
                )
            )
        return out

    def get(self, key: str) -> Campaign:
        for c in self.list():
            if key in (c.campaign_id, c.name):
                return c
        raise InputError(f"there is no campaign {key!r}", "list them: segmentum campaign list")

    @staticmethod
    def _sendable(c: Campaign) -> None:
        if c.tactic == IMPORTED:
            raise InputError(
                f"campaign {c.name!r} was imported from campaign_results: it can be measured, "
                "not planned or sent",
                f"see its results: segmentum campaign results {c.name}",
            )

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
        campaign_id: str | None = None,
    ) -> Campaign:
        """Define a campaign; ``campaign_id`` defaults to the name's slug and six random
        characters (the id also seeds who lands in the control group)."""
        if tactic not in audiences.TACTICS:
            raise InputError(
                f"unknown tactic {tactic!r}", f"use one of {', '.join(audiences.TACTICS)}"
            )
        if channel not in CHANNELS:
            raise InputError(f"unknown channel {channel!r}", f"use one of {', '.join(CHANNELS)}")
        if tactic == "segment" and not target.strip():
            # Refused now, not at the first dry run or send: its audience is that segment.
            raise InputError(
                "a segment campaign needs --target NAME (or cluster:N)", "e.g. --target vip"
            )
        share = self.settings.control_share if control_share is None else control_share
        if not 0 <= share < 1:
            raise InputError("the control share must be between 0 and 1 (e.g. 0.1)")
        for key in (name, campaign_id):
            if key and any(key in (c.name, c.campaign_id) for c in self.list()):
                raise InputError(f"a campaign named {key!r} already exists", "choose another name")
        data = ch.load_template(template)
        if not data.get("subject"):
            data = {**data, "subject": ch.default_subject(tactic)}
        ch.check_template(data, tactic)
        if data.get("survey") is not None:
            from segmentum.satisfaction.survey import check_survey

            if channel != "web":
                raise InputError("a survey is shown by web message only", "use --channel web")
            check_survey(data)
        # "Recuperación diciembre" -> recuperacion-diciembre (accents dropped, not the letter).
        plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")[:24] or "campaign"
        c = Campaign(
            campaign_id or f"{slug}-{uuid.uuid4().hex[:6]}",
            name,
            tactic,
            channel,
            target,
            json.dumps(data, ensure_ascii=False),
            share,
            seed,
            cost_per_contact,
            _now(),
        )
        self._write_definitions([*self.list(), c])
        return c

    def _write_definitions(self, campaigns: builtins.list[Campaign]) -> None:
        """Store the definitions of ``campaigns`` (those imported from results are not stored:
        they come from ``campaign_results``)."""
        rows = [asdict(x) for x in campaigns if x.tactic != IMPORTED]
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

    def sent(self, ids: builtins.list[str]) -> set[str]:
        """Those of the campaigns ``ids`` whose plan is logged (they were sent, at least in
        part): from then on they follow their log, not their segment."""
        if not ids or not self.wh.has(SENDS):
            return set()
        s = self.wh.table(SENDS)
        rows = s.filter(s.campaign_id.isin(ids)).select("campaign_id").distinct()
        return {str(r["campaign_id"]) for r in rows.to_pyarrow().to_pylist()}

    def unsent_targeting(self, segment: str) -> builtins.list[Campaign]:
        """The campaigns whose audience is saved segment ``segment`` and that were never sent:
        their first send (or dry run) builds the audience from it."""
        mine = [c for c in self.list() if c.tactic == "segment" and c.target == segment]
        done = self.sent([c.campaign_id for c in mine])
        return [c for c in mine if c.campaign_id not in done]

    def delete(self, key: str) -> Campaign:
        """Delete a campaign that was never sent. A sent one is refused: its log is the record
        of what was sent to whom, and its results are measured from it."""
        c = self.get(key)
        if c.tactic == IMPORTED:
            raise InputError(
                f"campaign {c.name!r} was imported from campaign_results: its results stay "
                "with the data loaded",
                f"see its results: segmentum campaign results {c.campaign_id}",
            )
        if self.sent([c.campaign_id]):
            raise InputError(
                f"campaign {c.name!r} was sent: its log and results are kept",
                f"see its results: segmentum campaign results {c.campaign_id}",
            )
        self._write_definitions([x for x in self.list() if x.campaign_id != c.campaign_id])
        return c

    # ------------------------------------------------------------------ audience and plan
    def audience(self, c: Campaign, as_of: _dt.date | None = None) -> ir.Table:
        self._sendable(c)
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
        st = contact_status(self.wh, aud, as_of, self.settings, now)
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
        if c.channel == "file":
            df["outcome"] = "file"  # the file goes to another system: every member is in it
        # The control group is measured against the members who would have been contacted:
        # a control member keeps the outcome a treated one would have had, "control" where
        # that was a message (scheduled when it would have gone out), else why not (no
        # consent, capped...). Compared with all of the control group instead, the customers
        # who can be reached (who consent, and so buy more) made any campaign look effective.
        would = df.outcome.isin(["scheduled", "file"])
        for col in ("best_hour_band", "best_weekday", "timezone"):
            if col not in df.columns:
                df[col] = None
        df["scheduled_at"] = [
            next_send_time(now, b, w, tz) if o == "scheduled" else pd.NaT
            for b, w, tz, o in zip(
                df.best_hour_band, df.best_weekday, df.timezone, df.outcome, strict=True
            )
        ]
        df.loc[(df.group == "control") & would, "outcome"] = "control"
        if c.channel == "sms":  # never planned inside the recipient's quiet hours
            from segmentum.campaigns.sms import outside_quiet_hours

            df["scheduled_at"] = [
                pd.NaT if pd.isna(t) else outside_quiet_hours(t, tz, self.settings)
                for t, tz in zip(df.scheduled_at, df.timezone, strict=True)
            ]
        shop = self.settings.language
        df["language"] = [ch.language(x, shop) for x in df.get("country", [None] * len(df))]
        return df

    def prepare(self, c: Campaign, now: _dt.datetime | None = None) -> pd.DataFrame:
        """Log the plan in ``campaign_sends`` without sending anything (a send does it first)."""
        self._sendable(c)
        self._ensure_log(c, now or _now())
        return self.log(c)

    def dry_run(
        self,
        c: Campaign,
        now: _dt.datetime | None = None,
        sample: int = 5,
        lang: str | None = None,
    ) -> dict[str, Any]:
        """Who would be contacted and when, the outcome counts and a few rendered examples;
        ``lang``: the language of the person looking, that the examples' reasons are said in
        (else as logged, in English). Each message is rendered in its recipient's language.

        Once the campaign has been sent (its plan logged at the first send), the plan is the
        logged one, which every later send follows: its members, and each one's outcome as
        done so far (``sent``, ``failed``; ``no_consent`` where consent was withdrawn before
        the send; the others as planned), not a new plan on today's data: the examples are
        logged members, with the reason logged for each (only their first name is read now,
        as a send reads it): :meth:`logged_plan`."""
        logged = self.logged_plan(c, sample)
        if logged is not None:
            return self.present(c, logged, lang)
        if c.channel == "email" and not self.wh.read_only:
            self.fold_unsubscribes()  # who unsubscribed since is no recipient of the preview
        df = self.plan(c, now=now)
        picked = _one_per_language(df[df.outcome.isin(["scheduled", "file", "sent"])], sample)
        plan = {
            "audience": len(df),
            # Drawn at random; those of them who would have been messaged have the outcome
            # "control" (the others, why not), and only those are compared.
            "control_group": int((df.group == "control").sum()),
            "outcomes": {str(k): int(v) for k, v in df.outcome.value_counts().items()},
            "members": picked,
            "logged": False,
        }
        return self.present(c, plan, lang)

    def logged_plan(self, c: Campaign, sample: int = 5) -> dict[str, Any] | None:
        """A sent campaign's plan as its log holds it (None before the first send): the
        audience, the control group drawn, the members by outcome as done so far, and up to
        ``sample`` members to show (in the log's order, the first of each recipient language
        before any second one), each with the first name read now. Counted in the engine: the
        log of a large campaign is never read whole. JSON-ready, so the campaigns page can
        keep it with the published read models (:func:`segmentum.page_models.build_page_models`)
        and show it without the warehouse (:meth:`present`)."""
        return self.logged_plans([c.campaign_id], sample).get(c.campaign_id)

    def logged_plans(self, ids: builtins.list[str], sample: int) -> dict[str, dict[str, Any]]:
        """:meth:`logged_plan` of each campaign of ``ids`` that was sent, in three queries
        whatever their number (on Spark each query is a job)."""
        if not ids or not self.wh.has(SENDS):
            return {}
        s = self.wh.table(SENDS)
        s = s.filter(s.campaign_id.isin(ids))
        # What each message's send did so far; a withdrawn consent stops a planned message.
        s = s.mutate(
            outcome=ibis.cases(
                (s.status == "sent", "sent"),
                (s.status == "failed", "failed"),
                (
                    (s.status == "not_sent") & s.outcome.isin(["scheduled", "file"]),
                    # An unsubscribe link clicked since the plan, else consent withdrawn.
                    ibis.ifelse(s.error == UNSUBSCRIBED, "suppressed", "no_consent"),
                ),
                else_=s.outcome,
            )
        )
        counts = (
            s.group_by(["campaign_id", "outcome"])
            .aggregate(n=s.count(), control=(s["group"] == "control").cast("int64").sum())
            .to_pyarrow()
            .to_pylist()
        )
        if not counts:
            return {}
        counts.sort(key=lambda r: (-int(r["n"]), str(r["outcome"])))
        shown = s.filter(s.outcome.isin(["scheduled", "file", "sent"]))
        order = [ibis.asc(shown.scheduled_at, nulls_first=False), shown.key]
        lang = shown.language.fill_null("en")
        first = ibis.window(group_by=[shown.campaign_id, lang], order_by=order)
        shown = shown.mutate(_later=ibis.row_number().over(first) > 0)
        order = [shown._later, ibis.asc(shown.scheduled_at, nulls_first=False), shown.key]
        pick = ibis.window(group_by=shown.campaign_id, order_by=order)
        shown = shown.mutate(_pick=ibis.row_number().over(pick))
        keep = ["campaign_id", "customer_id", "outcome", "status", "scheduled_at", "sent_at"]
        keep += ["reason", "reason_args", "language", "rfm_segment", "recommendation", "key"]
        picked = (
            shown.filter(shown._pick < sample)
            .select(*[k for k in keep if k in shown.columns])
            .to_pyarrow()
            .to_pylist()
        )
        # Shown in the log's order (scheduled time, missing last; then the key).
        picked.sort(key=lambda r: (r["scheduled_at"] is None, r["scheduled_at"] or 0, r["key"]))
        names = self._first_names([r["customer_id"] for r in picked])
        plans: dict[str, dict[str, Any]] = {}
        for r in counts:
            plan = plans.setdefault(
                str(r["campaign_id"]),
                {
                    "audience": 0,
                    "control_group": 0,
                    "outcomes": {},
                    "members": [],
                    "logged": True,
                    # Kept with the plan: where it is shown again, the sales it was read from
                    # may not be there to say what currency amounts are in.
                    "currency": self.currency,
                },
            )
            plan["audience"] += int(r["n"])
            plan["control_group"] += int(r["control"] or 0)
            plan["outcomes"][str(r["outcome"])] = int(r["n"])
        for r in picked:
            r["first_name"] = names.get(str(r["customer_id"]))
            plans[str(r.pop("campaign_id"))]["members"].append(r)
        return plans

    def published_dry_run(
        self, key: str, sample: int = 5, lang: str | None = None
    ) -> dict[str, Any] | None:
        """:meth:`dry_run` of a sent campaign from the read models published with it, on a
        serving store (None when it holds no plan for it: not sent yet). A campaign the store
        does not know, or an imported one, is refused as :meth:`dry_run` would (every command
        publishes the campaigns it creates)."""
        from segmentum.page_models import published_plan

        c = self.get(key)
        self._sendable(c)
        plan = published_plan(self.wh, c.campaign_id)
        if plan is None:
            return None
        members = plan["members"]
        # The page keeps more members than a dry run shows: the same pick among them.
        shown = _one_per_language_index(pd.Series([r.get("language") for r in members]), sample)
        plan["members"] = [members[i] for i in shown]
        return self.present(c, plan, lang)

    def present(self, c: Campaign, plan: Mapping[str, Any], lang: str | None) -> dict[str, Any]:
        """A plan (:meth:`logged_plan`, or today's for a campaign not sent yet) as
        :meth:`dry_run` returns it: its members rendered as examples, each message in its
        recipient's language, why each is in the audience in ``lang`` (else as logged)."""
        if "currency" in plan and not self._currency:
            self._currency.append(plan["currency"])
        tpl = c.template_data
        examples = []
        for r in plan["members"]:
            recipient = r.get("language") or "en"
            extra: dict[str, Any] = {}
            if c.channel == "sms":
                from segmentum.campaigns.sms import measure, render_text

                subject, body = "", render_text(tpl, recipient, self._context(c, r, recipient))
                extra = measure(body).to_dict()  # encoding and parts, before it is paid for
            else:
                subject, body = ch.render(tpl, recipient, self._context(c, r, recipient))
            examples.append(
                {
                    "customer_id": r["customer_id"],
                    "when": _when(r),
                    "why": self.why(c, r, lang) if lang else r["reason"],
                    "subject": subject,
                    "body": body,
                    **extra,
                }
            )
        return {
            "campaign": c.name,
            "audience": int(plan["audience"]),
            "control_group": int(plan["control_group"]),
            "outcomes": dict(plan["outcomes"]),
            "examples": examples,
            "logged": bool(plan["logged"]),  # the plan of the sends made, not a new one
        }

    def _first_names(self, ids: builtins.list[Any]) -> dict[str, Any]:
        """The first names of a few customers, read now (the send log keeps none)."""
        if not ids or not self.wh.has("customers"):
            return {}
        p = self.wh.table("customers")
        if "first_name" not in p.columns:
            return {}
        p = p.filter(p.customer_id.cast("string").isin([str(x) for x in ids]))
        rows = p.select(cid=p.customer_id.cast("string"), name=p.first_name).to_pyarrow()
        return {r["cid"]: r["name"] for r in rows.to_pylist()}

    def why(self, c: Campaign, r: Mapping[Any, Any], lang: str) -> str:
        """Why ``r`` is in the audience, as a sentence in ``lang`` (the logged English reason
        when its facts are not enough for one)."""
        args = r.get("reason_args")
        if args is None:
            args = reasons.facts(r)
        return reasons.text(c.tactic, args, lang, self.currency) or str(r.get("reason") or "")

    def _context(self, c: Campaign, r: Mapping[Any, Any], lang: str) -> dict[str, Any]:
        """What a template may print for one recipient, in their language (missing values
        stay missing: :func:`channels.render` never prints them)."""
        args = r.get("reason_args")
        if args is None:
            args = reasons.facts(r)
        why = reasons.text(c.tactic, args, lang, self.currency)
        seg = r.get("rfm_segment")
        if why is None and lang == "en" and c.tactic == "acquisition":
            why = r.get("reason")
        if c.tactic in ch.NO_CUSTOMER_REASON:
            # "in the segment vip_dormidos" tells the marketer why, not the customer: a saved
            # segment's name is ours. The template's fallback is printed instead.
            why = None
        return {
            "campaign": c.name,
            "greeting": reasons.greeting(lang, r.get("first_name")),
            "first_name": r.get("first_name"),
            # The RFM segment's name as the recipient reads it ("Campeones", not "Champions").
            "segment": None if reasons.missing(seg) else i18n.label(lang, "rfm_segment", seg),
            "reason": why,
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
        """Log the plan (first time) and deliver every row that is due and not yet sent.

        Each message is claimed, sent and marked in its own transaction; a message left
        ``sending`` by a send that died is sent again first. Raises :class:`DeliveryError`
        when the server cannot be reached before anything was sent.
        """
        self._sendable(c)
        now, started = now or _now(), time.monotonic()  # the send's clock: see _deliver
        if c.channel == "sms":
            self.fold_sms_receipts()
        if c.channel == "email":
            self.fold_unsubscribes()  # who unsubscribed since is not sent to
        self._ensure_log(c, now)
        slog = SendLog(self.wh, c.campaign_id, self.settings.send_lease_seconds)
        resumed = slog.reclaim()
        slog.forget_addresses(self.settings.contact_retention_days)
        files: list[str] = []
        delivered = failed = retrying = 0
        errors: list[str] = []
        stopped: str | None = None
        due_before = None if immediately else now
        if due_before is None or c.channel == "file":  # everything goes now: the controls too
            slog.controls_due(now)
        if c.channel == "file":
            files, delivered = self._send_files(c, slog, now, out_dir)
        elif c.channel == "web":
            # Published: the web endpoint serves them from the log from now on.
            delivered = slog.publish(["scheduled"], now, due_before)
        else:
            delivered, failed, retrying, errors, stopped = self._deliver(
                c, slog, now, due_before, started
            )
        slog.flush()
        receipts = None
        if c.channel == "sms":
            from segmentum.campaigns.sms import receipt_counts

            receipts = receipt_counts(self.wh, c.campaign_id)
        s = self.wh.table(SENDS)
        s = s.filter(s.campaign_id == c.campaign_id)
        counts = s.group_by(["group", "outcome", "status"]).aggregate(n=s.count())
        rows = counts.to_pyarrow().to_pylist()
        outcomes: dict[str, int] = {}
        for x in sorted(rows, key=lambda x: -x["n"]):
            outcomes[x["outcome"]] = outcomes.get(x["outcome"], 0) + int(x["n"])
        later = sum(
            int(x["n"]) for x in rows if x["status"] == "pending" and x["outcome"] == "scheduled"
        )
        return SendReport(
            c.campaign_id,
            sum(int(x["n"]) for x in rows),
            sum(int(x["n"]) for x in rows if x["group"] == "control"),
            outcomes,
            delivered,
            failed,
            later - retrying,
            errors[:5],
            files,
            retrying,
            resumed,
            stopped,
            receipts,
            sum(
                int(x["n"])
                for x in rows
                if x["status"] == "not_sent" and x["outcome"] in ("scheduled", "file")
            ),
        )

    def fold_unsubscribes(self) -> int:
        """Copy the unsubscribes the service recorded meanwhile into ``suppressions``."""
        from segmentum.campaigns import unsubscribe as unsub

        return unsub.fold_waiting(self.wh, self.settings)

    def _unsubscribed(self, c: Campaign, ids: builtins.list[str]) -> set[str]:
        """Of ``ids``, those on the suppression list for ``c``'s channel (or all) now."""
        if not ids or not self.wh.has("suppressions"):
            return set()
        t = self.wh.table("suppressions")
        t = t.filter(
            t.customer_id.isin(ids) & (t.channel.isnull() | t.channel.isin([c.channel, "all", ""]))
        )
        return {str(x) for x in t.customer_id.to_pyarrow().to_pylist()}

    def fold_sms_receipts(self) -> int:
        """Copy the SMS delivery receipts the service stored meanwhile into the warehouse."""
        from segmentum.campaigns.sms import ReceiptStore, fold_receipts, receipts_path

        path = receipts_path(self.wh.url, self.settings)
        store = ReceiptStore.existing(path, self.settings.busy_wait_seconds)
        return 0 if store is None else fold_receipts(self.wh, store)

    def _due(self, c: Campaign, due_before: _dt.datetime | None) -> pd.DataFrame:
        """Pending messages due by ``due_before`` (all with None), with the recipient's
        address and first name read from ``customers`` now (the log keeps neither)."""
        s = self.wh.table(SENDS)
        s = s.filter(
            (s.campaign_id == c.campaign_id) & (s.status == "pending") & (s.outcome == "scheduled")
        )
        if due_before is not None:
            s = s.filter(
                s.scheduled_at.isnull() | (s.scheduled_at <= ibis.literal(due_before, "timestamp"))
            )
        s = s.select(
            "key",
            "customer_id",
            "language",
            "rfm_segment",
            "recommendation",
            "reason",
            "reason_args",
            "scheduled_at",
        )
        if self.wh.has("customers"):
            p = self.wh.table("customers")
            extra = ("country", "timezone") if c.channel == "sms" else ()
            cols = [x for x in (*ch.PERSONAL, f"consent_{c.channel}", *extra) if x in p.columns]
            s = s.left_join(p.select("customer_id", *cols), "customer_id").drop("customer_id_right")
        df = s.order_by(["scheduled_at", "key"]).to_pandas()
        for col in ch.PERSONAL:
            if col not in df.columns:
                df[col] = None
        return df

    def _deliver(
        self,
        c: Campaign,
        slog: SendLog,
        now: _dt.datetime,
        due_before: _dt.datetime | None,
        started: float,
    ) -> tuple[int, int, int, builtins.list[str], str | None]:
        """Email, SMS, push and in-app: claim, send, mark, one message at a time."""
        from segmentum.campaigns import sms
        from segmentum.campaigns import unsubscribe as unsub

        due = self._due(c, due_before)
        if due.empty:
            return 0, 0, 0, [], None
        tpl = c.template_data
        channel: ch.Mailer | ch.Poster | sms.SmsSender
        if c.channel == "email":
            channel = ch.Mailer(self.settings)
        elif c.channel == "sms":
            channel = sms.SmsSender.from_settings(self.settings)
        else:
            url = (
                self.settings.push_webhook_url
                if c.channel == "push"
                else self.settings.inapp_webhook_url
            )
            channel = ch.Poster(url, self.settings.channel_secret)
        channel.open()  # an unreachable server fails here, before anything is claimed
        keep = self.settings.contact_retention_days > 0
        links = unsub.Links(self.wh.url, self.settings) if c.channel == "email" else None
        # Suppressed since the plan was made (an unsubscribe link clicked): not sent.
        gone = self._unsubscribed(c, [str(x) for x in due.customer_id])
        delivered = failed = retrying = streak = 0
        errors: builtins.list[str] = []
        stopped: str | None = None
        # Each message's sent_at is when it went, on the send's clock (``now`` at
        # ``started``; a caller may set it): the send's start for every message put sent_at
        # before claimed_at in a send of minutes.
        try:
            for r in due.to_dict("records"):
                if c.channel == "sms":
                    wait = sms.quiet_until(now, r.get("timezone"), self.settings)
                    if wait is not None:  # quiet hours where the customer is: later
                        if slog.rows_level:  # (Spark: left as it is, checked again next send)
                            sendlog.sql(
                                self.wh,
                                f"UPDATE {SENDS} SET scheduled_at = ? "
                                "WHERE key = ? AND status = 'pending'",
                                [wait, r["key"]],
                            )
                        continue
                if not slog.claim(r["key"]):
                    continue  # another sender has it, or it went out meanwhile
                lang = r.get("language") or "en"
                address = {"email": r.get("email"), "sms": r.get("phone")}.get(
                    c.channel, r["customer_id"]
                )
                consent = r.get(f"consent_{c.channel}")
                if not reasons.missing(consent) and not bool(consent):
                    # Withdrawn since the plan was made: consent is checked again at sending.
                    slog.skip(r["key"], f"no {c.channel} consent any more")
                    continue
                if str(r["customer_id"]) in gone:
                    slog.skip(r["key"], unsub.SKIPPED)
                    continue
                try:
                    if reasons.missing(address):
                        raise ch.Failed(f"no {c.channel} address on file", permanent=True)
                    try:
                        ctx = self._context(c, r, lang)
                        if links is not None:
                            ctx = {
                                **ctx,
                                "unsubscribe_url": links.for_template(r["customer_id"], lang),
                            }
                        if isinstance(channel, sms.SmsSender):
                            subject, body = "", sms.render_text(tpl, lang, ctx)
                        else:
                            subject, body = ch.render(tpl, lang, ctx)
                    except InputError as exc:
                        raise ch.Failed(exc.message, permanent=True) from exc
                    if isinstance(channel, ch.Mailer):
                        assert links is not None
                        cid = str(r["customer_id"])
                        body = unsub.with_footer(body, links.link(cid, lang), lang)
                        headers = links.headers(cid, lang)
                        channel.send(r["key"], str(address), subject, body, headers)
                    elif isinstance(channel, sms.SmsSender):
                        got = channel.send(str(address), body, r["key"], country=r.get("country"))
                        if not got.ok:
                            raise ch.Failed(got.error or got.status, got.permanent)
                        address = got.to
                    else:
                        channel.send(
                            {
                                "key": r["key"],
                                "campaign_id": c.campaign_id,
                                "customer_id": r["customer_id"],
                                "channel": c.channel,
                                "title": subject,
                                "message": body,
                                "language": lang,
                            }
                        )
                except ch.Failed as exc:
                    failed += 1
                    errors.append(f"{r['customer_id']}: {exc}")
                    if exc.permanent:
                        slog.failed(r["key"], str(exc))
                        streak = 0
                        continue
                    slog.retry(r["key"], str(exc))
                    retrying += 1
                    streak += 1
                    if streak >= MAX_CONSECUTIVE_FAILURES:
                        # The server is down: stop hammering it; the rest stay pending.
                        stopped = f"{c.channel} failing ({exc}): the rest stay pending"
                        break
                    continue
                except DeliveryError as exc:  # the connection could not be opened again
                    slog.retry(r["key"], exc.message)
                    failed += 1
                    retrying += 1
                    errors.append(exc.message)
                    stopped = exc.message
                    break
                except BaseException:
                    # Not sent by us: back to pending (a kill -9 never gets here; see reclaim).
                    slog.retry(r["key"], "interrupted before sending")
                    raise
                kept = str(address) if keep and c.channel in ("email", "sms") else None
                went = now + _dt.timedelta(seconds=time.monotonic() - started)
                slog.sent(r["key"], went, kept)
                delivered += 1
                streak = 0
        finally:
            channel.close()
        return delivered, failed, retrying, list(dict.fromkeys(errors)), stopped

    def _send_files(
        self, c: Campaign, slog: SendLog, now: _dt.datetime, out_dir: Path | None
    ) -> tuple[builtins.list[str], int]:
        """File campaigns: the whole treatment group in one set of files, then marked sent."""
        s = self.wh.table(SENDS)
        todo = s.filter((s.campaign_id == c.campaign_id) & (s.outcome == "file"))
        if not int(todo.filter(todo.status == "pending").count().to_pyarrow().as_py()):
            return [], 0
        df = self.file_frame(c, None, now)
        paths = ch.write_files(
            df,
            out_dir or Path("campaign-files"),
            c.campaign_id,
            self.settings,
            ("csv", "parquet", "json"),
        )
        from segmentum import privacy

        privacy.record_export(
            self.wh,
            paths,
            source=f"campaign {c.campaign_id}",
            customer_ids=df.customer_id.tolist(),
            personal_data=self.settings.export_personal_data,
            at=now,
        )
        return [str(p) for p in paths], slog.publish(["file"], now, None)

    def file_rows(
        self, c: Campaign, status: str | None = None, now: _dt.datetime | None = None
    ) -> ir.Table:
        """The rows of a file campaign's file: its members to message (those with ``status``
        when given: ``sent``, as the dashboard downloads the file after the send), with their
        contacts where ``export_personal_data`` and consent allow."""
        s = self.wh.table(SENDS)
        todo = s.filter((s.campaign_id == c.campaign_id) & (s.outcome == "file"))
        if status is not None:
            todo = todo.filter(todo.status == status)
        cols = [
            x
            for x in todo.columns
            if x
            not in (
                "status",
                "error",
                "sent_at",
                "attempts",
                "claim_token",
                "claimed_at",
                "address",
            )
        ]
        todo = todo.select(*cols)
        if self.settings.export_personal_data and self.wh.has("customers"):
            people = allowed_contacts(self.wh, todo, self.settings, ch.PERSONAL, now)
            todo = todo.left_join(people, "customer_id").drop("customer_id_right")
        return todo

    def file_frame(
        self, c: Campaign, status: str | None = None, now: _dt.datetime | None = None
    ) -> pd.DataFrame:
        """The file of a file campaign (:meth:`file_rows`, in key order) as people read it:
        each member's reason and RFM segment in their own language, the one a message to them
        is written in (the log keeps the English reason and the reason's facts)."""
        df = self.file_rows(c, status, now).order_by("key").to_pandas()
        langs = [x if x in i18n.LANGUAGES else "en" for x in df["language"].fillna("en")]
        df["reason"] = [
            self.why(c, r, lang) for r, lang in zip(df.to_dict("records"), langs, strict=True)
        ]
        df["rfm_segment"] = [
            None if reasons.missing(x) else i18n.label(lang, "rfm_segment", x)
            for x, lang in zip(df["rfm_segment"], langs, strict=True)
        ]
        return df.drop(columns=["reason_args"])

    def log(self, c: Campaign) -> pd.DataFrame:
        if not self.wh.has(SENDS):
            return pd.DataFrame()
        s = self.wh.table(SENDS)
        return s.filter(s.campaign_id == c.campaign_id).to_pandas()

    def _ensure_log(self, c: Campaign, now: _dt.datetime) -> None:
        sendlog.upgrade(self.wh)
        with sendlog.exclusive(self.wh, c.campaign_id):
            if self.wh.has(SENDS):
                s = self.wh.table(SENDS)
                if s.filter(s.campaign_id == c.campaign_id).count().to_pyarrow().as_py():
                    return
            self.record_plan(c, self.plan(c, now=now), now)

    def record_plan(self, c: Campaign, df: pd.DataFrame, now: _dt.datetime) -> None:
        """Write a plan (one row per member: customer_id, group, outcome, reason, ``why_*``
        facts, scheduled_at, language, rfm_segment, recommendation) as the campaign's log."""
        for col in ("reason", "scheduled_at", "language", "rfm_segment", "recommendation"):
            if col not in df.columns:
                df[col] = None
        log = pd.DataFrame(
            {
                "key": [f"{c.campaign_id}:{x}" for x in df.customer_id],
                "campaign_id": c.campaign_id,
                "customer_id": df.customer_id.astype(str),
                "group": df.group,
                "outcome": df.outcome,
                "reason": df.reason,
                "reason_args": [reasons.dumps(r) for r in df.to_dict("records")],
                "scheduled_at": df.scheduled_at,
                "language": df.language,
                "rfm_segment": df.rfm_segment,
                "recommendation": df.recommendation,
                "channel": c.channel,
                "status": [
                    "pending" if o in ("scheduled", "file") else "not_sent" for o in df.outcome
                ],
                "attempts": 0,
                "claim_token": None,
                "claimed_at": pd.NaT,
                "sent_at": pd.NaT,
                "error": None,
                "address": None,
                "logged_at": now,
            }
        )
        table = pa.Table.from_pandas(
            log.astype(
                {
                    "scheduled_at": "datetime64[us]",
                    "claimed_at": "datetime64[us]",
                    "sent_at": "datetime64[us]",
                    "logged_at": "datetime64[us]",
                }
            ),
            schema=sendlog.SCHEMA,
            preserve_index=False,
        )
        if self.wh.has(SENDS):
            self.wh.insert(SENDS, table)
        else:
            self.wh.write(SENDS, table)

    # ------------------------------------------------------------------ web messages
    def web_message(self, visitor: str, now: _dt.datetime | None = None) -> dict[str, Any] | None:
        """The newest published web message for a visitor (customer id), or None.

        Rendered when asked, from the campaign's template and the customer's current name:
        the log keeps no copy of either.
        """
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
        if self.wh.has("customers"):
            p = self.wh.table("customers")
            cols = [x for x in ch.PERSONAL if x in p.columns]
            found = p.filter(p.customer_id == visitor).select(*cols).limit(1)
            r.update((found.to_pyarrow().to_pylist() or [{}])[0])
        lang = r["language"] or "en"
        try:
            c = self.get(r["campaign_id"])
            _, body = ch.render(c.template_data, lang, self._context(c, r, lang))
        except InputError:
            return None
        out = {"campaign_id": r["campaign_id"], "message": body, "language": lang}
        from segmentum.satisfaction.survey import survey_for

        survey = survey_for(c.template_data, lang)
        if survey is not None:  # a short survey rides with the message (see docs/satisfaction.md)
            out["survey"] = survey
        return out


def _when(r: Mapping[Any, Any]) -> Any:
    """When a message went out (a sent one) or is to go (the plan's time); None: unknown."""
    for col in ("sent_at", "scheduled_at") if r.get("status") == "sent" else ("scheduled_at",):
        if not reasons.missing(r.get(col)):
            return r[col]
    return None


def _one_per_language(df: pd.DataFrame, sample: int) -> list[dict[Any, Any]]:
    """Up to ``sample`` rows of ``df`` in its order, the first of each recipient language
    before any second one: a marketer sees every language the audience is written to, not
    five examples in the language that happens to come first."""
    if "language" not in df.columns or df.empty:
        return df.head(sample).to_dict("records")
    return df.iloc[_one_per_language_index(df["language"], sample)].to_dict("records")


def _one_per_language_index(language: pd.Series, sample: int) -> list[int]:
    """The positions :func:`_one_per_language` picks, in order, from the rows' languages."""
    lang = language.fillna("en").reset_index(drop=True)
    first = ~lang.duplicated()
    picked = pd.concat([lang[first], lang[~first]]).head(sample).index
    return sorted(int(i) for i in picked)
