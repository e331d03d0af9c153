"""Read models of the dashboard's customer and history pages, published beside the others.

The customer profile (search, timeline), the migration page and the overview's change against
the previous snapshot would otherwise open the warehouse, which a pipeline run holds for
minutes. :func:`build_page_models` writes small tables shaped for those pages into the
warehouse; :mod:`segmentum.precompute` publishes them into the serving store with the rest
(``PAGE_MODELS``), together with the history tables the migration page reads as they are.

- ``customer_invoices``: one row per invoice (``customer_id``, ``invoice_id``, ``timestamp``,
  ``amount``, ``lines``), the spend the timeline lists and the migration sums between dates;
- ``customer_activity``: each customer's latest events and messages (``kind`` event or message):
  messages from loaded campaign results and those segmentum sent or held back itself
  (``outcome``: sent, failed, control, no_consent...; null for loaded results and events);
- ``customer_directory``: id, name, email and city, for search by id, email or name;
- ``snapshot_kpis``: customers with purchases and revenue at every snapshot date, point in time;
- ``campaign_pages``: each campaign's measured results (JSON), for the campaigns page;
- ``sms_receipt_status``: every sent SMS with its last delivery receipt, for an SMS
  campaign's receipt counts (the receipts stored since are added when read);
- ``quarantine_recent``: the first rows quarantined by each load, for the data page.

With them, the explorer, campaigns and data pages answer from the serving store while a run
holds the warehouse (saying when the data were published), instead of waiting for the run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from collections.abc import Callable, Collection
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
from ibis.common.exceptions import IbisError

from segmentum.errors import SegmentumError
from segmentum.warehouse import Warehouse

INVOICES = "customer_invoices"
ACTIVITY = "customer_activity"
DIRECTORY = "customer_directory"
SNAPSHOT_KPIS = "snapshot_kpis"
CAMPAIGN_PAGES = "campaign_pages"
SMS_STATUS = "sms_receipt_status"
#: Members of a sent campaign its page shows (the dry run's examples there).
PLAN_EXAMPLES = 10
QUARANTINE_RECENT = "quarantine_recent"
SENDS = "campaign_sends"  # segmentum.campaigns.sendlog.SENDS (its log of every message)
#: Each customer's part of the snapshot KPIs (warehouse only: what a daily run updates).
KPI_PARTS = "snapshot_kpi_parts"
# Rows of each load's quarantine the data page lists.
QUARANTINE_PER_BATCH = 100
# Each customer's latest events and messages kept for the timeline (it shows at most 60 items).
ACTIVITY_PER_CUSTOMER = 20
# What the pages read, with the key each is indexed on in the serving store. The history tables
# are copied as they are: the migration and its forecast run on them unchanged.
PAGE_MODELS: dict[str, str | None] = {
    INVOICES: "customer_id",
    ACTIVITY: "customer_id",
    DIRECTORY: "customer_id",
    SNAPSHOT_KPIS: None,
    "customer_classes": None,
    "segment_members": None,
    "customer_clusters": None,
    "customer_clv": None,
    # The explorer, campaigns and data pages while a run holds the warehouse.
    "segment_definitions": None,
    "campaigns": None,
    "campaign_results": None,
    CAMPAIGN_PAGES: None,
    SMS_STATUS: "key",
    "suppressions": None,  # who must not be contacted (the campaigns page's card)
    "pipeline_runs": None,
    "ingest_batches": None,
    QUARANTINE_RECENT: None,
    "market_cells": None,  # the Market page (segmentum.market)
    "market_runs": None,
    # The Satisfaction page: per group, the monthly trend, the terms of the comments.
    "satisfaction_segments": None,
    "satisfaction_trend": None,
    "satisfaction_terms": None,
    "satisfaction_history": None,
}
DIRECTORY_COLUMNS = ("customer_id", "first_name", "last_name", "email", "city")


def build_page_models(
    wh: Warehouse, keys: ir.Table | None = None, *, only: Collection[str] | None = None
) -> list[str]:
    """Write the page read models ``wh`` has the data for; returns the tables written.
    ``only``: just these (the others are left as they are).

    An incremental run passes the customers whose rows changed (``keys``, from
    :func:`page_keys`): the invoices and the activity of everybody else are then kept as the
    last run wrote them, and only those customers' rows are rebuilt from their own lines,
    events and messages (the lines, events and campaign results dated before the last run are
    the ones it saw, or the run would be a full one).
    """
    if only is not None:
        reused = SNAPSHOT_KPIS in only and _write_kpis(wh, None, reuse_parts=True)
        small = [
            name
            for name, write in (
                (QUARANTINE_RECENT, _quarantine_recent),
                (CAMPAIGN_PAGES, _pages),
                (SMS_STATUS, _sms_status),
            )
            if name in only and write(wh)
        ]
        return [SNAPSHOT_KPIS] * bool(reused) + small
    written = []
    if wh.has("transactions"):
        tx = wh.table("transactions")
        if not _update(wh, INVOICES, keys, lambda ids: _invoices(tx, ids)):
            wh.write(INVOICES, _invoices(tx))
        written.append(INVOICES)
    updated = _update(wh, ACTIVITY, keys, lambda ids: _activity(wh, ids))
    if not updated:
        activity = _activity(wh)
        if activity is not None:
            wh.write(ACTIVITY, activity)
            updated = True
    if updated:
        written.append(ACTIVITY)
    if wh.has("customers"):
        c = wh.table("customers")
        wh.write(DIRECTORY, c.select(*[x for x in DIRECTORY_COLUMNS if x in c.columns]))
        written.append(DIRECTORY)
    if _quarantine_recent(wh):
        written.append(QUARANTINE_RECENT)
    if _pages(wh):
        written.append(CAMPAIGN_PAGES)
    if _sms_status(wh):
        written.append(SMS_STATUS)
    if _write_kpis(wh, keys):
        written.append(SNAPSHOT_KPIS)
    return written


def _write_kpis(wh: Warehouse, keys: ir.Table | None, *, reuse_parts: bool = False) -> bool:
    """Write ``snapshot_kpis`` (:func:`_snapshot_kpis`); False when there is nothing to
    write (a warehouse without snapshots or transactions has nothing to compare against)."""
    with contextlib.suppress(SegmentumError):
        kpis = _snapshot_kpis(wh, keys, reuse_parts=reuse_parts)
        if kpis is not None:
            wh.write(SNAPSHOT_KPIS, kpis)
            return True
    return False


def _quarantine_recent(wh: Warehouse) -> bool:
    """Write the first rejected rows of each batch (the data page's); False without any."""
    if not wh.has("quarantine"):
        return False
    q = wh.table("quarantine")
    w = ibis.window(group_by="batch_id", order_by="source_row")
    q = q.mutate(_n=ibis.row_number().over(w))
    wh.write(QUARANTINE_RECENT, q.filter(q._n < QUARANTINE_PER_BATCH).drop("_n"))
    return True


def _pages(wh: Warehouse) -> bool:
    """Write each campaign's results as its page shows them; False without any."""
    pages = _campaign_pages(wh)
    if pages is not None:
        wh.write(CAMPAIGN_PAGES, pages)
    return pages is not None


def _sms_status(wh: Warehouse) -> bool:
    """Write every sent SMS with its last receipt (``sms_receipt_status``); False before any
    campaign was sent."""
    from segmentum.campaigns.sms import receipt_status

    status = receipt_status(wh)
    if status is None:
        return False
    wh.write(SMS_STATUS, status)
    return True


def _campaign_pages(wh: Warehouse) -> pa.Table | None:
    """Each campaign as the campaigns page shows it: its results (JSON of ``Results``) and,
    once sent, its logged plan (JSON of :meth:`Campaigns.logged_plan`: the counts and the
    page's examples), so the page can show a sent campaign without the warehouse (Spark, or
    a DuckDB file a run holds)."""
    from segmentum.campaigns.core import Campaigns
    from segmentum.campaigns.measure import results
    from segmentum.config import load_settings

    settings = load_settings()
    # A campaign table written by hand or by an older version may lack columns: the page then
    # lists no published results, and the publish goes on.
    unreadable = (SegmentumError, ValueError, KeyError, AttributeError, IbisError)
    try:
        cs = Campaigns(wh, settings)
        campaigns = cs.list()
    except unreadable:
        return None
    plans: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(*unreadable):
        plans = cs.logged_plans([c.campaign_id for c in campaigns], PLAN_EXAMPLES)
    rows = []
    for camp in campaigns:
        measured = None
        with contextlib.suppress(*unreadable):
            r = results(wh, camp.campaign_id, settings, camp.cost_per_contact).to_dict()
            measured = json.dumps(r, default=str)
        logged = plans.get(camp.campaign_id)
        plan = json.dumps(logged, default=str) if logged is not None else None
        if measured is None and plan is None:
            continue  # a campaign neither sent nor measurable yet: listed without either
        rows.append({"campaign_id": camp.campaign_id, "results": measured or "{}", "plan": plan})
    if not rows:
        return None
    schema = pa.schema(
        [("campaign_id", pa.string()), ("results", pa.string()), ("plan", pa.string())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def published_results(wh: Warehouse, campaign_id: str) -> dict[str, Any] | None:
    """A campaign's results (``Results.to_dict``) as the last publish measured them; None
    when it published none for the campaign."""
    if not wh.has(CAMPAIGN_PAGES):
        return None
    t = wh.table(CAMPAIGN_PAGES)
    rows = t.filter(t.campaign_id == campaign_id).results.to_pyarrow().to_pylist()
    return dict(json.loads(rows[0])) if rows else None


def published_plan(wh: Warehouse, campaign_id: str) -> dict[str, Any] | None:
    """A sent campaign's logged plan as :func:`build_page_models` kept it (None: not sent, or
    published before plans were kept), its times as datetimes again."""
    if not wh.has(CAMPAIGN_PAGES) or "plan" not in wh.table(CAMPAIGN_PAGES).columns:
        return None
    t = wh.table(CAMPAIGN_PAGES)
    got = t.filter(t.campaign_id == campaign_id).plan.to_pyarrow().to_pylist()
    if not got or got[0] is None:
        return None
    plan: dict[str, Any] = json.loads(got[0])
    for member in plan["members"]:
        for k in ("scheduled_at", "sent_at"):
            if isinstance(member.get(k), str):
                member[k] = _dt.datetime.fromisoformat(member[k])
    return plan


def page_keys(wh: Warehouse, changed: ir.Table, since: _dt.date) -> ir.Table:
    """The customers whose page rows an incremental run rebuilds (materialised): the
    ``changed`` ones, anybody whose stored invoices or activity are dated on or after
    ``since`` (lines of that date may have gone since), and anybody segmentum messaged (or
    held back) since the activity was built."""
    ids = changed.select("customer_id")
    cutoff = ibis.literal(_dt.datetime(since.year, since.month, since.day), "timestamp")
    for name, when in ((INVOICES, "timestamp"), (ACTIVITY, "when")):
        if wh.has(name):
            old = wh.table(name)
            late = old.filter(old[when] >= cutoff)
            if "outcome" in old.columns:  # sends are dated when sent, not by the data: below
                late = late.filter(late.outcome.isnull())
            ids = ids.union(late.select(customer_id=late.customer_id.cast(ids.customer_id.type())))
    if wh.has(SENDS):
        sends = _shown_sends(wh.table(SENDS))
        if wh.has(ACTIVITY) and "outcome" in wh.table(ACTIVITY).columns:
            # Sends are made between runs, whatever the data's date: those after the newest
            # send the stored activity shows (a retried send gets a later time).
            old = wh.table(ACTIVITY)
            seen = old.filter(old.outcome.notnull())["when"].max().to_pyarrow().as_py()
            if seen is not None:
                sends = sends.filter(sends["when"] > ibis.literal(seen, "timestamp"))
        ids = ids.union(
            sends.select(customer_id=sends.customer_id.cast(ids.customer_id.type())).distinct()
        )
    return wh.materialize(ids.distinct(), "pagekeys")


def _shown_sends(s: ir.Table) -> ir.Table:
    """The send log's rows a customer's timeline shows, as activity rows: messages sent or
    failed (when sent or tried) and those held back (control group, no consent, capped: when
    the plan was logged); messages still due are not shown."""
    s = s.filter(s.customer_id.notnull() & (s.status.isin(["sent", "failed", "not_sent"])))
    done = s.status.isin(["sent", "failed"])
    return s.select(
        "customer_id",
        when=ibis.ifelse(done, s.sent_at.fill_null(s.claimed_at), s.logged_at).fill_null(
            s.logged_at
        ),
        kind=ibis.literal("message"),
        what=s.campaign_id.cast("string"),
        channel=s.channel.cast("string"),
        group=s.group.cast("string"),
        outcome=ibis.ifelse(done, s.status, s.outcome).cast("string"),
    )


def _update(
    wh: Warehouse, name: str, keys: ir.Table | None, build: Callable[[ir.Table], ir.Table | None]
) -> bool:
    """Rebuild only the rows of ``name`` of the customers in ``keys`` (:func:`page_keys`);
    False when the table cannot be updated so (a full run, no table yet, other columns)."""
    if keys is None or not wh.has(name):
        return False
    old = wh.table(name)
    fresh = build(keys)
    if fresh is None or not _same_columns(fresh, old):
        return False
    wh.delete_keys(name, keys, ["customer_id"])
    wh.insert(name, fresh.select(*old.columns))
    return True


def _same_columns(a: ir.Table, b: ir.Table) -> bool:
    """The same column names and types, whether or not a type admits nulls."""
    sa, sb = a.schema(), b.schema()
    return set(sa.names) == set(sb.names) and all(
        sa[c].copy(nullable=True) == sb[c].copy(nullable=True) for c in sa.names
    )


def _invoices(t: ir.Table, ids: ir.Table | None = None) -> ir.Table:
    t = t.filter(t.customer_id.notnull())
    if ids is not None:
        t = t.semi_join(ids, "customer_id")
    return t.group_by(["customer_id", "invoice_id"]).aggregate(
        timestamp=t.timestamp.max(), amount=t.amount.sum(), lines=t.count()
    )


def _latest(t: ir.Table) -> ir.Table:
    """Each customer's ``ACTIVITY_PER_CUSTOMER`` latest rows."""
    w = ibis.window(group_by="customer_id", order_by=ibis.desc("when"))
    t = t.mutate(_n=ibis.row_number().over(w))
    return t.filter(t._n < ACTIVITY_PER_CUSTOMER).drop("_n")  # ibis counts rows from 0


def _activity(wh: Warehouse, ids: ir.Table | None = None) -> ir.Table | None:
    """Each customer's latest events and messages (those of ``ids`` only, when given)."""

    def of(t: ir.Table) -> ir.Table:
        if ids is None:
            return t
        return t.semi_join(
            ids.select(customer_id=ids.customer_id.cast(t.customer_id.type())), "customer_id"
        )

    parts = []
    if wh.has("events"):
        e = of(wh.table("events"))
        e = e.filter(e.customer_id.notnull() & e.timestamp.notnull())
        parts.append(
            _latest(
                e.select(
                    "customer_id",
                    when=e.timestamp,
                    kind=ibis.literal("event"),
                    what=e.event_type.cast("string"),
                    channel=e.channel.cast("string")
                    if "channel" in e.columns
                    else ibis.null("string"),
                    group=ibis.null("string"),
                    outcome=ibis.null("string"),
                )
            )
        )
    if wh.has("campaign_results"):
        m = of(wh.table("campaign_results"))
        m = m.filter(m.customer_id.notnull() & m.sent_at.notnull())
        parts.append(
            _latest(
                m.select(
                    "customer_id",
                    when=m.sent_at,
                    kind=ibis.literal("message"),
                    what=m.campaign_id.cast("string"),
                    channel=m.channel.cast("string"),
                    group=m.group.cast("string"),
                    outcome=ibis.null("string"),
                )
            )
        )
    if wh.has(SENDS):
        sends = _shown_sends(of(wh.table(SENDS)))
        parts.append(_latest(sends.filter(sends["when"].notnull())))
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p)
    return out


def _snapshot_kpis(
    wh: Warehouse, keys: ir.Table | None = None, *, reuse_parts: bool = False
) -> ir.Table | None:
    """Customers with purchases and revenue at each snapshot date, from the lines before it
    (the same point-in-time summary the backfill classifies).

    Summed from each customer's parts (``snapshot_kpi_parts``, kept in the warehouse): an
    incremental run (``keys``, see :func:`page_keys`) replaces only those customers' parts,
    which follow from their own lines alone; a full run writes them all. ``reuse_parts``
    (new snapshot dates, the same lines: a history backfill): the stored parts are summed
    again as they are when they were built from the lines as they are now (the lines'
    fingerprint, recorded with them).
    """
    from segmentum.features import rollup
    from segmentum.history.snapshots import snapshot_dates, snapshot_parts, totals_from_parts
    from segmentum.ingest import returns

    if not wh.has("transactions"):
        return None
    dates = snapshot_dates(wh)
    if not dates:
        return None
    tx = wh.table("transactions")
    if not set(returns.SOURCE_COLUMNS) <= set(tx.columns):  # not loaded by segmentum ingest
        return totals_from_parts(snapshot_parts(tx), dates)
    # The purchase-day rollup and the return links the run keeps (brought up to date if stale).
    days = rollup.purchase_days(wh)
    links = wh.table(returns.LINKS)

    def parts(ids: ir.Table | None) -> ir.Table:
        if ids is None:
            return snapshot_parts(tx, links=links, days=days)
        return snapshot_parts(
            tx.semi_join(ids, "customer_id"),
            links=links.semi_join(ids, "customer_id"),
            days=days.semi_join(ids, "customer_id"),
        )

    lines = wh.fingerprint(tx, returns.SOURCE_COLUMNS)
    current = (
        reuse_parts and wh.has(KPI_PARTS) and returns.stored_fingerprint(wh, KPI_PARTS) == lines
    )
    if not current:
        if keys is None or not _update(wh, KPI_PARTS, keys, parts):
            wh.write(KPI_PARTS, parts(None))
        returns.save_fingerprint(wh, KPI_PARTS, lines)
    return totals_from_parts(wh.table(KPI_PARTS), dates)


def sent_activity(wh: Warehouse, customer_id: str) -> list[dict[str, object]] | None:
    """One customer's messages in segmentum's send log as activity rows, newest first, read
    when asked (a send made after the last run shows at once); None when ``wh`` has no log
    (a serving store: the published activity then holds them as of the last run)."""
    if not wh.has(SENDS):
        return None
    s = wh.table(SENDS)
    rows = _shown_sends(s.filter(s.customer_id == customer_id))
    rows = rows.filter(rows["when"].notnull()).order_by(ibis.desc("when"))
    found = list(rows.limit(ACTIVITY_PER_CUSTOMER).to_pyarrow().to_pylist())
    names = campaign_names(wh, {str(r["what"]) for r in found})
    return [{**r, "name": names.get(str(r["what"]))} for r in found]


def campaign_names(wh: Warehouse, ids: Collection[str]) -> dict[str, str]:
    """The names campaigns created here were given, by id (loaded results name a campaign
    by its id: those are not here)."""
    if not ids or not wh.has("campaigns"):
        return {}
    c = wh.table("campaigns")
    if "name" not in c.columns:
        return {}
    rows = c.filter(c.campaign_id.isin(sorted(ids))).select("campaign_id", "name")
    return {
        str(r["campaign_id"]): str(r["name"])
        for r in rows.to_pyarrow().to_pylist()
        if r["name"] is not None and str(r["name"]).strip()
    }
