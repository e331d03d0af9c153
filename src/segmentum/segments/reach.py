"""Who in a set of customers can actually be reached, channel by channel, and why not.

For each channel every member falls in exactly one bucket, so the buckets add up to the size:
``reachable``, ``no_contact`` (no email for email, no phone for SMS, no profile for the
others), ``no_consent``, ``suppressed`` (on the suppression list for the channel or for all)
and ``capped`` (already contacted ``frequency_cap`` times in the last ``frequency_cap_days``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir

from segmentum.config import Settings
from segmentum.warehouse import Warehouse

CHANNELS = ("email", "sms", "push", "inapp", "web")
BUCKETS = ("reachable", "no_contact", "no_consent", "suppressed", "capped")


@dataclass
class Reach:
    size: int
    identified: int
    anonymous: int
    channels: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "identified": self.identified,
            "anonymous": self.anonymous,
            "channels": self.channels,
        }


def contact_status(
    wh: Warehouse,
    members: ir.Table,
    as_of: _dt.date,
    settings: Settings,
    now: _dt.datetime | None = None,
) -> ir.Table:
    """Per member: identified, and for every channel the bucket it falls in (in-engine).
    ``now`` (UTC, naive; the present by default): the moment a send would go out, for the
    frequency cap (:func:`_windows`)."""
    m = members.select("customer_id").distinct()
    if wh.has("customers"):
        c = wh.table("customers")
        prof = c.select(
            "customer_id",
            _email=c.email,
            _known=ibis.literal(True),
            _has_email=c.email.notnull() & (c.email.strip() != ""),
            _has_phone=c.phone.notnull() & (c.phone.strip() != ""),
            **{f"_consent_{ch}": c[f"consent_{ch}"].fill_null(False) for ch in CHANNELS},
        )
        m = m.left_join(prof, "customer_id").drop("customer_id_right")
    else:
        m = m.mutate(
            _email=ibis.null("string"),
            _known=ibis.literal(False),
            _has_email=ibis.literal(False),
            _has_phone=ibis.literal(False),
            **{f"_consent_{ch}": ibis.literal(False) for ch in CHANNELS},
        )
    m = m.mutate(
        _known=m._known.fill_null(False),
        _has_email=m._has_email.fill_null(False),
        _has_phone=m._has_phone.fill_null(False),
    )
    if wh.has("suppressions"):
        s = wh.table("suppressions")
        ch = s.channel.lower().fill_null("all")
        for name in CHANNELS:
            hit = s.filter((ch == name) | (ch == "all") | (ch == ""))
            by_id = hit.filter(hit.customer_id.notnull()).select("customer_id").distinct()
            by_mail = (
                hit.filter(hit.email.notnull()).select(_mail=hit.email.lower().strip()).distinct()
            )
            flag = f"_supp_{name}"
            m = m.mutate(
                **{
                    flag: m.customer_id.isin(by_id.customer_id)
                    | m._email.lower().strip().isin(by_mail._mail).fill_null(False)
                }
            )
    else:
        m = m.mutate(**{f"_supp_{name}": ibis.literal(False) for name in CHANNELS})
    capped = ibis.literal(False)
    counts = _recent_contacts(wh, as_of, settings, now) if settings.frequency_cap > 0 else None
    if counts is not None:
        m = m.left_join(counts, "customer_id").drop("customer_id_right")
        capped = m._sends.fill_null(0) >= settings.frequency_cap
    contact = {
        "email": m._has_email,
        "sms": m._has_phone,
        "push": m._known,
        "inapp": m._known,
        "web": m._known,
    }
    out: dict[str, ir.Value] = {"identified": m._has_email | m._has_phone}
    for name in CHANNELS:
        out[f"status_{name}"] = ibis.cases(
            (~contact[name], "no_contact"),
            (~m[f"_consent_{name}"], "no_consent"),
            (m[f"_supp_{name}"], "suppressed"),
            (capped, "capped"),
            else_="reachable",
        )
    return m.select("customer_id", **out)


def _windows(
    as_of: _dt.date, settings: Settings, now: _dt.datetime | None
) -> list[tuple[_dt.datetime, _dt.datetime]]:
    """The periods whose contacts count toward the frequency cap: the ``frequency_cap_days``
    before the data's date (``as_of``: a plan for a day in the data, contacts imported with
    it) and those before ``now`` (the messages segmentum itself just sent: a campaign sent
    this morning counts for one sent this afternoon, before any run has moved ``as_of``).
    A contact in either counts once; on live data the two are the same days.

    >>> from segmentum.config import load_settings
    >>> w = _windows(_dt.date(2025, 12, 30), load_settings(env={}), _dt.datetime(2026, 12, 6, 9))
    >>> [(a.date().isoformat(), b.isoformat(sep=" ")) for a, b in w]
    [('2025-12-23', '2025-12-30 00:00:00'), ('2026-11-29', '2026-12-06 09:00:00')]
    """
    now = now or _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    days = _dt.timedelta(days=settings.frequency_cap_days)
    end = _dt.datetime(as_of.year, as_of.month, as_of.day)
    return [(end - days, end), (now - days, now)]


def _within(ts: ir.TimestampValue, windows: list[tuple[_dt.datetime, _dt.datetime]]) -> ir.Value:
    out = ibis.literal(False)
    for lo, hi in windows:
        out |= (ts >= ibis.literal(lo, "timestamp")) & (ts < ibis.literal(hi, "timestamp"))
    return out


def _recent_contacts(
    wh: Warehouse, as_of: _dt.date, settings: Settings, now: _dt.datetime | None
) -> ir.Table | None:
    """Contacts per customer in the cap's windows: campaign results loaded from files,
    segmentum's own campaign sends and the flows' messages; None if none.

    With ``protect_controls`` (the default) a control-group member counts as contacted when
    the message they were held back from would have gone out: the cap must treat a
    campaign's two groups alike, or the next campaign would reach more of its control group
    (nobody messaged them) than of its treated group, and the first campaign's measured
    uplift would shrink by the second's effect."""
    windows = _windows(as_of, settings, now)
    counts: list[ir.Table] = []
    if wh.has("campaign_results"):
        r = wh.table("campaign_results")
        hit = r.filter(
            ((r.group == "treatment") | ibis.literal(settings.protect_controls))
            & _within(r.sent_at, windows)
        )
        counts.append(hit.group_by("customer_id").aggregate(_sends=hit.count()))
    if wh.has("campaign_sends"):  # sends made by segmentum itself
        cs = wh.table("campaign_sends")
        sent = (cs.status == "sent") & _within(cs.sent_at, windows)
        if settings.protect_controls:
            would = (cs.group == "control") & (cs.outcome == "control")
            sent |= would & _within(cs.scheduled_at.fill_null(cs.logged_at), windows)
        hit = cs.filter(sent)
        counts.append(hit.group_by("customer_id").aggregate(_sends=hit.count()))
    flows = _flow_sends(wh, windows, settings)
    if flows is not None:  # messages flows sent count against the same cap
        counts.append(flows)
    if not counts:
        return None
    every = counts[0]
    for more in counts[1:]:
        every = every.union(more, distinct=False)
    return every.group_by("customer_id").aggregate(_sends=lambda t: t._sends.sum())


def _flow_sends(
    wh: Warehouse, windows: list[tuple[_dt.datetime, _dt.datetime]], settings: Settings
) -> ir.Table | None:
    """Messages the flows sent in the cap's window, counted per customer, or None without
    any. They live in the flows' SQLite file beside the warehouse (flows run while a job holds
    it); only the per-customer counts travel into the engine."""
    import sqlite3
    from pathlib import Path

    import pyarrow as pa

    from segmentum.flows.store import flows_path

    path = flows_path(wh.url, settings)
    if path == ":memory:" or not Path(path).exists():
        return None
    within = " OR ".join("(sent_at >= ? AND sent_at < ?)" for _ in windows)
    bounds = [t.isoformat(sep=" ") for w in windows for t in w]
    con = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute(
            "SELECT customer_id, COUNT(*) FROM messages WHERE status = 'sent' "
            f"AND ({within}) GROUP BY customer_id",
            bounds,
        ).fetchall()
    except sqlite3.OperationalError:  # a flows file from before the messages table
        return None
    finally:
        con.close()
    if not rows:
        return None
    data = pa.table(
        {
            "customer_id": pa.array([str(r[0]) for r in rows], pa.string()),
            "_sends": pa.array([int(r[1]) for r in rows], pa.int64()),
        }
    )
    return wh.from_arrow(data, "flowsends")


def allowed_contacts(
    wh: Warehouse,
    members: ir.Table,
    settings: Settings,
    columns: Sequence[str],
    now: _dt.datetime | None = None,
) -> ir.Table:
    """``members``' ``columns`` of the customers table (names, email, phone) for a file that
    leaves segmentum (a campaign's audience file, a segment export): an email only where the
    customer consents to email and is not suppressed for it, a phone likewise for SMS, since
    the tool the file goes to can check neither. The caller checks ``export_personal_data``.
    """
    now = now or _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    p = wh.table("customers")
    cols = [x for x in columns if x in p.columns]
    st = contact_status(wh, members.select("customer_id"), now.date(), settings, now)
    allowed = {"email": "status_email", "phone": "status_sms"}
    p = p.select("customer_id", *cols).join(st, "customer_id")
    may = ("reachable", "capped")
    return p.select(
        "customer_id",
        *(
            ibis.ifelse(p[allowed[x]].isin(may), p[x], ibis.null(p[x].type())).name(x)
            if x in allowed
            else p[x]
            for x in cols
        ),
    )


def reach(wh: Warehouse, members: ir.Table, as_of: _dt.date, settings: Settings) -> Reach:
    """Counts per channel and bucket for ``members`` (one aggregate query, only counts return)."""
    st = contact_status(wh, members, as_of, settings)
    aggs: dict[str, ir.Scalar] = {"size": st.count(), "identified": st.count(where=st.identified)}
    for ch in CHANNELS:
        for b in BUCKETS:
            aggs[f"{ch}__{b}"] = st.count(where=st[f"status_{ch}"] == b)
    row = st.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    size = int(row["size"] or 0)
    identified = int(row["identified"] or 0)
    return Reach(
        size=size,
        identified=identified,
        anonymous=size - identified,
        channels={ch: {b: int(row[f"{ch}__{b}"] or 0) for b in BUCKETS} for ch in CHANNELS},
    )
