"""The dashboard's page read models (segmentum.page_models) on DuckDB, Spark and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from segmentum.page_models import (
    ACTIVITY,
    ACTIVITY_PER_CUSTOMER,
    DIRECTORY,
    INVOICES,
    SNAPSHOT_KPIS,
    build_page_models,
)
from segmentum.warehouse import Warehouse


@pytest.mark.spark_core
def test_page_read_models_on_every_engine(backend: Warehouse) -> None:
    """Invoices, activity, directory and snapshot figures, built in the engine."""
    wh = backend
    ts = [dt.datetime(2025, 10, 5), dt.datetime(2025, 11, 5), dt.datetime(2025, 11, 6)]
    wh.write(
        "transactions",
        pa.table(
            {
                "invoice_id": ["i1", "i2", "i3"],
                "customer_id": ["a", "a", "b"],
                "timestamp": ts,
                "quantity": [1.0, 2.0, 1.0],
                "amount": [10.0, 20.0, 5.0],
                "promo_code": pa.array([None, None, None], pa.string()),
                "discount": [0.0, 0.0, 0.0],
            }
        ),
    )
    wh.write(
        "events",
        pa.table(
            {
                # Customer a browsed 25 times: the timeline keeps the latest 20.
                "customer_id": ["a"] * 25 + ["b"],
                "timestamp": [ts[0] + dt.timedelta(hours=h) for h in range(25)] + [ts[1]],
                "event_type": ["page_view"] * 25 + ["add_to_cart"],
                "channel": ["web"] * 25 + ["app"],
            }
        ),
    )
    wh.write(
        "campaign_results",
        pa.table(
            {
                "campaign_id": ["C"],
                "customer_id": ["a"],
                "group": ["control"],
                "channel": ["email"],
                "sent_at": [ts[0]],
            }
        ),
    )
    wh.write(
        "customers",
        pa.table(
            {
                "customer_id": ["a", "b"],
                "first_name": ["Ana", "Bo"],
                "email": ["a@x", "b@x"],
                "city": ["Madrid", "Lima"],
            }
        ),
    )
    wh.write(
        "customer_classes",
        pa.table(
            {
                "customer_id": ["a", "a", "b"],
                "as_of": [dt.date(2025, 11, 1), dt.date(2025, 12, 1), dt.date(2025, 12, 1)],
                "value_tier": ["high", "high", "low"],
            }
        ),
    )
    written = build_page_models(wh)
    assert set(written) == {INVOICES, ACTIVITY, DIRECTORY, SNAPSHOT_KPIS}
    k = wh.table(SNAPSHOT_KPIS).order_by("as_of").to_pyarrow().to_pylist()
    assert [(r["customers"], r["revenue"]) for r in k] == [(1, 10.0), (2, 35.0)]
    a = wh.table(ACTIVITY)
    kept = a.filter((a.customer_id == "a") & (a.kind == "event")).to_pyarrow().to_pylist()
    assert len(kept) == ACTIVITY_PER_CUSTOMER == 20
    assert min(r["when"] for r in kept) == ts[0] + dt.timedelta(hours=5)  # the oldest dropped
    assert a.count().to_pyarrow().as_py() == 20 + 1 + 1  # and b's event, and a's message
    assert wh.table(INVOICES).count().to_pyarrow().as_py() == 3


def test_a_daily_run_adds_the_messages_sent_since_the_last_one_to_the_timeline(
    wh: Warehouse,
) -> None:
    """Campaigns are sent between runs, to customers who may buy nothing: an incremental run
    rebuilds the activity of the customers messaged since the stored activity was built, not
    only of those with new lines."""
    from segmentum.campaigns import sendlog
    from segmentum.page_models import page_keys

    day = dt.datetime(2025, 11, 5)
    wh.write(
        "transactions",
        pa.table(
            {
                "invoice_id": ["i1", "i2"],
                "customer_id": ["a", "b"],
                "timestamp": [day, day],
                "amount": [10.0, 5.0],
            }
        ),
    )

    def log(customer: str, campaign: str, status: str, outcome: str, at: dt.datetime) -> None:
        row = {n: [None] for n in sendlog.SCHEMA.names}
        row.update(
            key=[f"{campaign}:{customer}"],
            campaign_id=[campaign],
            customer_id=[customer],
            group=["control" if outcome == "control" else "treatment"],
            outcome=[outcome],
            channel=["email"],
            status=[status],
            attempts=[1],
            sent_at=[at if status == "sent" else None],
            logged_at=[at],
        )
        t = pa.table(row, schema=sendlog.SCHEMA)
        wh.insert(sendlog.SENDS, t) if wh.has(sendlog.SENDS) else wh.write(sendlog.SENDS, t)

    first = dt.datetime(2026, 1, 10, 9)
    log("a", "Enero", "sent", "scheduled", first)
    build_page_models(wh)
    a = wh.table(ACTIVITY)
    got = a.filter(a.outcome.notnull()).to_pyarrow().to_pylist()
    assert [(r["customer_id"], r["what"], r["outcome"], r["when"]) for r in got] == [
        ("a", "Enero", "sent", first)
    ]
    # Later: b is in the next campaign's control group, c has no consent; nobody bought.
    later = dt.datetime(2026, 2, 1, 9)
    log("b", "Febrero", "not_sent", "control", later)
    log("c", "Febrero", "not_sent", "no_consent", later)
    log("b", "Pendiente", "pending", "scheduled", later)  # not done yet: not shown
    nobody = wh.from_arrow(pa.table({"customer_id": pa.array([], pa.string())}), "nobody")
    keys = page_keys(wh, nobody, dt.date(2025, 11, 6))
    assert sorted(keys.customer_id.to_pyarrow().to_pylist()) == ["b", "c"]  # a: seen already
    build_page_models(wh, keys)
    a = wh.table(ACTIVITY)
    got = a.filter(a.outcome.notnull()).order_by("customer_id").to_pyarrow().to_pylist()
    assert [(r["customer_id"], r["what"], r["outcome"]) for r in got] == [
        ("a", "Enero", "sent"),
        ("b", "Febrero", "control"),
        ("c", "Febrero", "no_consent"),
    ]
