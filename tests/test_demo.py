"""The demo generator: deterministic, and the planted behaviours really differ."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from segmentum import demo


def digest(files: dict[str, Path]) -> dict[str, str]:
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in files.items()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = demo.generate(tmp_path / "a", customers=400, seed=3)
    b = demo.generate(tmp_path / "b", customers=400, seed=3)
    c = demo.generate(tmp_path / "c", customers=400, seed=4)
    assert digest(a) == digest(b)
    assert digest(a)["transactions"] != digest(c)["transactions"]


def test_planted_segments_behave_as_planted(tmp_path: Path) -> None:
    files = demo.generate(tmp_path, customers=3000, seed=1, chunk=1000)
    tx = pd.read_csv(files["transactions"], dtype={"CustomerID": str})
    truth = pd.read_csv(files["ground_truth"]).set_index("customer_id").planted_segment
    tx["segment"] = tx.CustomerID.map(truth)
    invoices = tx.groupby(["segment", "CustomerID"]).InvoiceNo.nunique().groupby("segment").mean()
    assert invoices["one_off"] < 1.2 < invoices["loyal_high_value"]
    assert invoices["loyal_high_value"] > invoices["lapsing"]
    promo = tx.assign(p=tx.PromoCode.notna()).groupby("segment").p.mean()
    assert promo["promo_hunter"] > 0.7 > promo["loyal_high_value"]
    assert (tx.Quantity < 0).mean() > 0.01
    assert set(truth.unique()) == {s.name for s in demo.SEGMENTS}


def test_b2b_variant_writes_firmographics_and_prospects(tmp_path: Path) -> None:
    files = demo.generate(tmp_path, customers=200, b2b=True)
    customers = pd.read_csv(files["customers"], sep=";", encoding="latin-1")
    assert {"empresa", "sector", "empleados", "facturacion"} <= set(customers.columns)
    assert len(pd.read_csv(files["prospects"])) == 40


def test_parquet_output_is_chunked_into_one_file(tmp_path: Path) -> None:
    files = demo.generate(tmp_path, customers=1200, fmt="parquet", chunk=500)
    t = pd.read_parquet(files["transactions"])
    assert t.CustomerID.nunique() > 1100 and len(t) > 5000
