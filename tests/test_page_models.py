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
