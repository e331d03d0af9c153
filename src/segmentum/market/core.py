"""Penetration, index and white space per cell of the reference population, in the engine.

The ``population`` table (a census by place, age band and gender, or a company register by
industry and size band) defines the cells: whichever of its dimension columns hold values.
Customers are placed in a cell by their own demographics: age (from the birth date as of the
run's date) into the population's age bands, gender as normalised on ingest, and places matched
without regard to case or accents. Only per-cell sums come back from the engine; the intervals
and the white-space score are computed on those few rows (:mod:`.stats`, :mod:`.whitespace`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from segmentum.config import Settings, load_settings
from segmentum.errors import InputError
from segmentum.market.stats import index_interval, wilson_arrays
from segmentum.market.whitespace import score_white_space
from segmentum.segments.view import latest_as_of
from segmentum.warehouse import Warehouse

POPULATION = "population"
CELLS = "market_cells"
RUNS = "market_runs"
GEO = ("country", "region", "state", "city")
DIMENSIONS = (*GEO, "age_band", "gender", "industry", "company_size")
# Band dimensions and the customer column their bands are read against.
BANDED = {"age_band": "age", "company_size": "employees"}
B2B = ("industry", "company_size")
# A row whose dimension says "Total" sums the others: counting it would count people twice.
TOTALS = frozenset(
    {
        "total",
        "totales",
        "todos",
        "todas",
        "ambos",
        "ambos sexos",
        "all",
        "both",
        "both sexes",
        "all ages",
        "todas las edades",
        "total nacional",
    }
)
# Why a customer could not be placed, per dimension (the text users read; see docs/market.md).
MISSING = {
    "country": "no country",
    "region": "no region",
    "state": "no state or province",
    "city": "no city",
    "age_band": "no age or birth date",
    "gender": "no gender",
    "industry": "no industry",
    "company_size": "no employee count",
}
NO_RECORD = "no customer record"
NO_CELL = "combination not in the population"
_ACCENTED = "áàâäãéèêëíìîïóòôöõúùûüñç"
_PLAIN = "aaaaaeeeeiiiiooooouuuunc"
REVENUE_DAYS = 365
# Columns of market_cells, in order (the dimensions first; absent ones are empty).
MEASURES = (
    "population",
    "customers",
    "penetration",
    "penetration_low",
    "penetration_high",
    "index",
    "index_low",
    "index_high",
    "revenue",
    "revenue_per_head",
    "revenue_per_customer",
    "clv",
    "clv_per_head",
    "value_per_customer",
    "expected_value",
    "high_value_share",
    "market_size",
    "market_share",
    "growth",
    "similarity",
    "headroom",
    "potential_value",
    "white_space_score",
    "white_space_rank",
)


@dataclass
class MarketResult:
    """What :func:`compute_market` found: the cells and how the customers were placed."""

    as_of: _dt.date
    run_id: str
    dimensions: list[str]
    cells: pd.DataFrame
    overall_penetration: float | None
    customers: int
    placed: int
    unplaced: dict[str, int]
    period: str | None = None
    skipped_rows: int = 0
    notes: list[str] = field(default_factory=list)
    value_basis: str = "clv"

    @property
    def unplaced_total(self) -> int:
        return sum(self.unplaced.values())

    def summary(self) -> dict[str, Any]:
        """Everything but the cells, as plain values (stored in ``market_runs``)."""
        return {
            "as_of": self.as_of.isoformat(),
            "run_id": self.run_id,
            "dimensions": self.dimensions,
            "overall_penetration": self.overall_penetration,
            "customers": self.customers,
            "placed": self.placed,
            "unplaced": self.unplaced_total,
            "unplaced_reasons": self.unplaced,
            "period": self.period,
            "skipped_rows": self.skipped_rows,
            "notes": self.notes,
            "value_basis": self.value_basis,
            "cells": len(self.cells),
        }


def fold_text(value: Any) -> str:
    """A place as compared: trimmed, lower case, accents removed ('Andalucía' -> 'andalucia')."""
    text = unicodedata.normalize("NFKD", str(value).strip().lower())
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _fold(v: ir.Value) -> ir.StringValue:
    return v.cast("string").strip().lower().translate(_ACCENTED, _PLAIN)


_PLUS = re.compile(r"(\d+)\s*(?:\+|y\s+mas|o\s+mas|or\s+more|and\s+over|plus|y\s+\+)")
_UNDER = re.compile(r"(?:<|menos\s+de|menores\s+de|under|less\s+than|below)\s*(\d+)")
_OVER = re.compile(r"(?:>|mas\s+de|mayores\s+de|over|more\s+than|above)\s*(\d+)")
_RANGE = re.compile(r"(\d+)\D+?(\d+)")
_ONE = re.compile(r"^\D*(\d+)\D*$")


def parse_band(label: str) -> tuple[float, float] | None:
    """The whole-number range a band label covers, or None when it names no range.

    >>> parse_band("25-34"), parse_band("De 35 a 44 años"), parse_band("65 y más")
    ((25.0, 34.0), (35.0, 44.0), (65.0, inf))
    >>> parse_band("<18"), parse_band("Menos de 10 empleados"), parse_band("250+")
    ((0.0, 17.0), (0.0, 9.0), (250.0, inf))
    """
    text = fold_text(label)
    if m := _PLUS.search(text):
        return float(m.group(1)), math.inf
    if m := _UNDER.search(text):
        return 0.0, float(m.group(1)) - 1
    if m := _OVER.search(text):
        return float(m.group(1)) + 1, math.inf
    if m := _RANGE.search(text):
        lo, hi = float(m.group(1)), float(m.group(2))
        return (lo, hi) if lo <= hi else None
    if m := _ONE.match(text):
        return float(m.group(1)), float(m.group(1))
    return None


def _band_of(value: ir.NumericValue, bands: dict[str, tuple[float, float]]) -> ir.StringValue:
    """The band key (folded label) a number falls in; NULL when none (the first band wins)."""
    cases = []
    for key, (lo, hi) in sorted(bands.items(), key=lambda kv: kv[1]):
        cond = value >= lo if math.isinf(hi) else (value >= lo) & (value < hi + 1)
        cases.append((cond, key))
    if not cases:
        return ibis.null("string")
    return ibis.cases(*cases, else_=ibis.null("string"))


def _drop_right(t: ir.Table) -> ir.Table:
    extra = [c for c in t.columns if c.endswith("_right")]
    return t.drop(*extra) if extra else t


def _population(
    wh: Warehouse, notes: list[str]
) -> tuple[ir.Table, list[str], str | None, int, dict[str, dict[str, tuple[float, float]]]]:
    """The cells (in the engine), their dimensions, the period used, rows left out, bands."""
    if not wh.has(POPULATION):
        raise InputError(
            "there is no reference population yet",
            "load one: segmentum ingest population FILE (see docs/market.md)",
        )
    pop = wh.table(POPULATION)
    period: str | None = None
    if int(pop.period.count().to_pyarrow().as_py() or 0):
        period = str(pop.period.max().to_pyarrow().as_py())
        pop = pop.filter(pop.period == period)
    counts = pop.aggregate(rows=pop.count(), **{d: pop[d].count() for d in DIMENSIONS})
    row = counts.to_pyarrow().to_pylist()[0]
    if not row["rows"]:
        raise InputError(
            "the population table is empty",
            "load one: segmentum ingest population FILE (see docs/market.md)",
        )
    dims = [d for d in DIMENSIONS if row[d]]
    keys = {d: _fold(pop[d]) for d in dims}
    p = pop.mutate(**{f"_k_{d}": k for d, k in keys.items()})
    left_out = ibis.literal(False)
    for d in dims:
        k = p[f"_k_{d}"]
        left_out = left_out | k.isnull() | (k == "") | k.isin(list(TOTALS))
    p = p.mutate(_out=left_out)
    skipped = int(p.filter(p._out).count().to_pyarrow().as_py())
    kept = p.filter(~p._out)
    key_cols = [f"_k_{d}" for d in dims]
    cells = kept.group_by(key_cols).aggregate(
        **{d: kept[d].cast("string").min() for d in dims},
        population=kept.population.sum(),
        _ms=kept.market_size.sum(),
        _ms_rows=kept.market_size.count(),
        _rows=kept.count(),
        _growth_w=(kept.growth * kept.population).sum(),
        _growth_n=ibis.ifelse(kept.growth.notnull(), kept.population, 0.0).sum(),
    )
    cells = cells.mutate(
        # A market size given for part of a cell's rows would understate it: left empty.
        market_size=ibis.ifelse(cells._ms_rows == cells._rows, cells._ms, ibis.null("float64")),
        growth=ibis.ifelse(
            cells._growth_n > 0, cells._growth_w / cells._growth_n, ibis.null("float64")
        ),
    ).drop("_ms", "_ms_rows", "_growth_w", "_growth_n")
    bands: dict[str, dict[str, tuple[float, float]]] = {}
    for d in BANDED:
        if d not in dims:
            continue
        labels = cells.select(k=cells[f"_k_{d}"], label=cells[d]).distinct().to_pyarrow()
        parsed: dict[str, tuple[float, float]] = {}
        unread = []
        for k, label in zip(labels["k"].to_pylist(), labels["label"].to_pylist(), strict=True):
            rng = parse_band(str(k))
            if rng is None:
                unread.append(str(label))
            else:
                parsed[str(k)] = rng
        if unread:
            notes.append(
                f"{d} values {', '.join(sorted(unread)[:5])} name no range of numbers: "
                "no customer can be placed in those cells"
            )
        bands[d] = parsed
    return cells, dims, period, skipped, bands


def _revenue(wh: Warehouse, as_of: _dt.date) -> ir.Table | None:
    """Each customer's net revenue in the year before ``as_of`` (the market sizes' span)."""
    if not wh.has("transactions"):
        return None
    tx = wh.table("transactions")
    end = ibis.literal(_dt.datetime(as_of.year, as_of.month, as_of.day), "timestamp")
    start = ibis.literal(
        _dt.datetime(as_of.year, as_of.month, as_of.day) - _dt.timedelta(days=REVENUE_DAYS),
        "timestamp",
    )
    recent = tx.filter(tx.customer_id.notnull() & (tx.timestamp >= start) & (tx.timestamp < end))
    return recent.group_by("customer_id").aggregate(revenue_12m=recent.amount.sum())


# What the market reads of each customer (the full customer view costs more to compile).
_PROFILE = ("birth_date", "age", *GEO, "gender", "company_id", "industry", "employees")


def _at(wh: Warehouse, name: str, as_of: _dt.date, column: str) -> ir.Table | None:
    if not wh.has(name) or column not in wh.table(name).columns:
        return None
    t = wh.table(name)
    return t.filter(t.as_of == ibis.literal(as_of, "date")).select("customer_id", column)


def _buyers(wh: Warehouse, as_of: _dt.date | None) -> tuple[ir.Table, _dt.date]:
    """Customers with a purchase by ``as_of``: spend, CLV, value tier, demographics, age."""
    as_of = as_of or latest_as_of(wh)
    f = wh.table("customer_features")
    t = f.filter((f.as_of == ibis.literal(as_of, "date")) & (f.frequency > 0)).select(
        "customer_id", "monetary"
    )
    for name, column in (("customer_classes", "value_tier"), ("customer_clv", "clv")):
        part = _at(wh, name, as_of, column)
        if part is not None:
            t = _drop_right(t.left_join(part, "customer_id"))
    if wh.has("customers"):
        c = wh.table("customers")
        keep = [x for x in _PROFILE if x in c.columns]
        c = c.select("customer_id", *keep).mutate(in_profile=ibis.literal(True))
        if "birth_date" in keep:
            end, born = ibis.literal(as_of, "date"), c.birth_date
            later = (end.month() < born.month()) | (
                (end.month() == born.month()) & (end.day() < born.day())
            )
            years = (end.year() - born.year()) - ibis.ifelse(later, 1, 0)
            age = years.cast("int64")
            c = c.mutate(age=ibis.coalesce(age, c.age.cast("int64")) if "age" in keep else age)
        t = _drop_right(t.left_join(c, "customer_id"))
        t = t.mutate(in_profile=t.in_profile.fill_null(False))
    return t, as_of


def _customers(
    wh: Warehouse,
    as_of: _dt.date | None,
    dims: list[str],
    bands: dict[str, dict[str, tuple[float, float]]],
) -> tuple[ir.Table, _dt.date, bool]:
    """One row per buying customer with their cell keys (NULL where unknown)."""
    buyers, as_of_used = _buyers(wh, as_of)
    rev = _revenue(wh, as_of_used)
    if rev is not None:
        buyers = _drop_right(buyers.left_join(rev, "customer_id"))
    cols = set(buyers.columns)
    b2b = any(d in dims for d in B2B) and "company_id" in cols
    unit = (
        ibis.coalesce(buyers.company_id.cast("string"), buyers.customer_id)
        if b2b
        else buyers.customer_id
    )
    keys: dict[str, ir.Value] = {}
    for d in dims:
        source = BANDED.get(d, d)
        if source not in cols:
            keys[f"_k_{d}"] = ibis.null("string")
        elif d in BANDED:
            keys[f"_k_{d}"] = _band_of(buyers[source].cast("float64"), bands.get(d, {}))
            # Known but in no band (an age of 17 against bands from 18) is not "missing".
            keys[f"_has_{d}"] = buyers[source].notnull()
        else:
            keys[f"_k_{d}"] = _fold(buyers[source])
    in_profile = buyers.in_profile if "in_profile" in cols else ibis.literal(False)
    out = buyers.select(
        _unit=unit,
        _in_profile=in_profile,
        revenue=(buyers.revenue_12m if "revenue_12m" in cols else buyers.monetary).fill_null(0.0),
        clv=buyers.clv if "clv" in cols else ibis.null("float64"),
        high=(
            (buyers.value_tier == "high").fill_null(False).cast("int64")
            if "value_tier" in cols
            else ibis.literal(0, "int64")
        ),
        **keys,
    )
    return out, as_of_used, b2b


def compute_market(
    wh: Warehouse,
    as_of: _dt.date | None = None,
    *,
    settings: Settings | None = None,
    run_id: str = "",
    store: bool = True,
) -> MarketResult:
    """Penetration, index (with intervals), value per head and white space per cell.

    Parameters
    ----------
    wh
        Warehouse holding ``population``, ``customers`` and the run's features, classes, CLV.
    as_of
        Date of the features to use (default: the latest).
    settings
        ``market_best_share``, ``market_min_customers`` and ``market_prior_customers`` shape
        the white space.
    store
        Write ``market_cells`` and ``market_runs`` (the dashboard, the API and the report read
        them).

    Returns
    -------
    MarketResult
        The cells as a DataFrame (one row per cell; columns in ``DIMENSIONS`` and ``MEASURES``)
        and how many customers could not be placed, by reason.

    Examples
    --------
    >>> import segmentum, tempfile, pathlib
    >>> from segmentum import demo, pipeline
    >>> from segmentum.config import load_settings
    >>> from segmentum.market import compute_market
    >>> wh = segmentum.connect("duckdb://")
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> files = demo.generate(d, customers=300)
    >>> _ = pipeline.run(wh, data=d, settings=load_settings(env={}))
    >>> r = compute_market(wh)
    >>> r.dimensions
    ['country', 'region', 'age_band', 'gender']
    """
    settings = settings or load_settings()
    notes: list[str] = []
    cells, dims, period, skipped, bands = _population(wh, notes)
    # Both sides are computed once: the queries below would each compile and run them again
    # (compiling the customer view is most of the step's time).
    cells = wh.materialize(cells, "market_cells")
    temps = [cells.get_name()]
    try:
        return _compute(
            wh, cells, dims, period, skipped, bands, as_of, settings, run_id, store, notes, temps
        )
    finally:
        for name in temps:
            wh.drop(name)


def _compute(
    wh: Warehouse,
    cells: ir.Table,
    dims: list[str],
    period: str | None,
    skipped: int,
    bands: dict[str, dict[str, tuple[float, float]]],
    as_of: _dt.date | None,
    settings: Settings,
    run_id: str,
    store: bool,
    notes: list[str],
    temps: list[str],
) -> MarketResult:
    cust, as_of_used, b2b = _customers(wh, as_of, dims, bands)
    key_cols = [f"_k_{d}" for d in dims]
    reason: ir.Value = ibis.ifelse(cust._in_profile, ibis.null("string"), NO_RECORD)
    for d in dims:
        k = cust[f"_k_{d}"]
        missing = k.isnull() & ~cust[f"_has_{d}"] if f"_has_{d}" in cust.columns else k.isnull()
        reason = ibis.coalesce(reason, ibis.ifelse(missing, MISSING[d], ibis.null("string")))
    for d in dims:
        known = cells.select(cells[f"_k_{d}"]).distinct().mutate(**{f"_in_{d}": ibis.literal(True)})
        cust = _drop_right(cust.left_join(known, f"_k_{d}"))
        reason = ibis.coalesce(
            reason,
            ibis.ifelse(
                cust[f"_in_{d}"].isnull(), f"{d} not in the population", ibis.null("string")
            ),
        )
    marks = cells.select(*key_cols).mutate(_cell=ibis.literal(True))
    cust = _drop_right(cust.left_join(marks, key_cols))
    reason = ibis.coalesce(reason, ibis.ifelse(cust._cell.isnull(), NO_CELL, ibis.null("string")))
    cust = wh.materialize(
        cust.select("_unit", "revenue", "clv", "high", *key_cols, _reason=reason),
        "market_customers",
    )
    temps.append(cust.get_name())
    placed = cust.filter(cust._reason.isnull())
    agg = placed.group_by(key_cols).aggregate(
        customers=placed._unit.nunique(),
        revenue=placed.revenue.sum(),
        clv=placed.clv.sum(),
        _clv_n=placed.clv.count(),
        _people=placed.count(),
        _high=placed.high.sum(),
    )
    joined = _drop_right(cells.left_join(agg, key_cols))
    df = joined.to_pyarrow().to_pandas()
    unplaced_rows = (
        cust.filter(cust._reason.notnull())
        .group_by("_reason")
        .aggregate(n=cust._unit.nunique())
        .to_pyarrow()
        .to_pylist()
    )
    unplaced = {str(r["_reason"]): int(r["n"]) for r in unplaced_rows}
    total = int(cust._unit.nunique().to_pyarrow().as_py() or 0)
    if b2b:
        notes.append("B2B population: customers are counted as companies (company_id)")
    rows_dup = int((df["_rows"] > 1).sum()) if len(df) else 0
    if rows_dup:
        notes.append(
            f"{rows_dup} cells appear in more than one population row: their counts were added "
            "(load one file per period, with a period column when you keep several)"
        )
    df, overall, basis = _measures(df, dims, settings, notes)
    result = MarketResult(
        as_of=as_of_used,
        run_id=run_id,
        dimensions=dims,
        cells=df,
        overall_penetration=overall,
        customers=total,
        placed=int(df["customers"].sum()) if len(df) else 0,
        unplaced=dict(sorted(unplaced.items(), key=lambda kv: -kv[1])),
        period=period,
        skipped_rows=skipped,
        notes=notes,
        value_basis=basis,
    )
    if store:
        write_market(wh, result)
    return result


def _measures(
    df: pd.DataFrame, dims: list[str], settings: Settings, notes: list[str]
) -> tuple[pd.DataFrame, float | None, str]:
    """Per-cell rates, intervals and white space from the per-cell sums."""
    for c in ("customers", "_people", "_high", "_clv_n"):
        df[c] = df[c].fillna(0).astype("int64")
    for c in ("revenue", "clv", "population", "market_size", "growth"):
        df[c] = df[c].astype("float64")
    df["revenue"] = df["revenue"].fillna(0.0)
    pop = df["population"].to_numpy(float)
    k = df["customers"].to_numpy(float)
    over = k > pop
    if over.any():
        notes.append(
            f"{int(over.sum())} cells hold more customers than people: their penetration has no "
            "interval (check the population's units or the places' spelling)"
        )
    total_pop = float(pop.sum())
    overall = float(k.sum() / total_pop) if total_pop > 0 else None
    with np.errstate(divide="ignore", invalid="ignore"):
        df["penetration"] = np.where(pop > 0, k / np.where(pop > 0, pop, 1), np.nan)
    lo, hi = wilson_arrays(k, np.round(pop))
    df["penetration_low"], df["penetration_high"] = lo, hi
    idx, ilo, ihi = index_interval(k, np.round(pop), overall or 0.0)
    df["index"] = np.where(pop > 0, 100 * df["penetration"] / overall, np.nan) if overall else idx
    df["index_low"], df["index_high"] = ilo, ihi
    people = df["_people"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        df["revenue_per_head"] = np.where(
            pop > 0, df["revenue"] / np.where(pop > 0, pop, 1), np.nan
        )
        df["revenue_per_customer"] = np.where(k > 0, df["revenue"] / np.where(k > 0, k, 1), np.nan)
        clv_n = df["_clv_n"].to_numpy(float)
        has_clv = clv_n.sum() > 0
        df["clv"] = np.where(clv_n > 0, df["clv"], np.nan)
        df["clv_per_head"] = np.where(
            (pop > 0) & (clv_n > 0), df["clv"] / np.where(pop > 0, pop, 1), np.nan
        )
        value = (
            np.where(clv_n > 0, df["clv"].fillna(0) / np.where(clv_n > 0, clv_n, 1), np.nan)
            if has_clv
            else np.where(people > 0, df["revenue"] / np.where(people > 0, people, 1), np.nan)
        )
        df["value_per_customer"] = value
        df["high_value_share"] = np.where(
            people > 0, df["_high"] / np.where(people > 0, people, 1), np.nan
        )
        ms = df["market_size"].to_numpy(float)
        df["market_share"] = np.where(ms > 0, df["revenue"] / np.where(ms > 0, ms, 1), np.nan)
    df = score_white_space(
        df,
        categorical=[d for d in dims if d not in GEO],
        overall_penetration=overall or 0.0,
        best_share=settings.market_best_share,
        min_customers=settings.market_min_customers,
        prior=settings.market_prior_customers,
        value_weights=df["_clv_n"].to_numpy(float) if has_clv else people,
        notes=notes,
    )
    for d in DIMENSIONS:
        if d not in df.columns:
            df[d] = None
    df = df[[*DIMENSIONS, *MEASURES]].copy()
    df["cell"] = [
        cell_label({str(k): v for k, v in r.items()}, dims) for r in df[dims].to_dict("records")
    ]
    df = df.sort_values(
        ["white_space_rank", "population"], ascending=[True, False], na_position="last"
    )
    return df.reset_index(drop=True), overall, ("clv" if has_clv else "revenue")


def cell_label(row: dict[str, Any], dims: list[str]) -> str:
    """A cell as people read it: 'España · Andalucía · 35-44 · female'."""
    return " · ".join(str(row[d]) for d in dims if row.get(d) not in (None, ""))


def write_market(wh: Warehouse, result: MarketResult) -> None:
    """Store ``market_cells`` (one row per cell) and ``market_runs`` (the run's summary)."""
    df = result.cells.copy()
    df.insert(0, "as_of", result.as_of)
    df["run_id"] = result.run_id
    schema = pa.schema(
        [
            ("as_of", pa.date32()),
            *((d, pa.string()) for d in DIMENSIONS),
            *(
                (m, pa.int64() if m in ("customers", "white_space_rank") else pa.float64())
                for m in MEASURES
            ),
            ("cell", pa.string()),
            ("run_id", pa.string()),
        ]
    )
    df["white_space_rank"] = df["white_space_rank"].astype("Int64")
    for d in DIMENSIONS:
        df[d] = df[d].astype(object).where(df[d].notna(), None)
    wh.write(CELLS, pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False))
    s = result.summary()
    wh.write(
        RUNS,
        pa.table(
            {
                "as_of": pa.array([result.as_of], pa.date32()),
                "run_id": [result.run_id],
                "summary": [json.dumps(s)],
            }
        ),
    )


def read_market(wh: Warehouse) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The stored cells and run summary, or None when the market step never ran."""
    if not (wh.has(CELLS) and wh.has(RUNS)):
        return None
    cells = wh.table(CELLS).to_pyarrow().to_pandas()
    cells["white_space_rank"] = cells["white_space_rank"].astype("Int64")
    runs = wh.table(RUNS).to_pyarrow().to_pylist()
    summary: dict[str, Any] = json.loads(runs[-1]["summary"]) if runs else {}
    return cells, summary


def rollup(cells: pd.DataFrame, level: str, overall: float | None) -> pd.DataFrame:
    """Cells summed to one geography level (``region``...), rates and intervals recomputed.

    The place keeps the spelling of the input (its name or code), so a map can join on it.
    """
    if level not in GEO or level not in cells.columns or cells[level].isna().all():
        raise InputError(
            f"the population has no {level} column",
            f"use one of: {', '.join(d for d in GEO if d in cells and cells[d].notna().any())}",
        )
    c = cells[cells[level].notna()].copy()
    # Growth is averaged by population over the cells that give it.
    has_growth = c["growth"].notna()
    c["_growth_w"] = (c["growth"] * c["population"]).where(has_growth, 0.0)
    c["_growth_n"] = c["population"].where(has_growth, 0.0)
    sums: dict[str, Any] = {
        "population": "sum",
        "customers": "sum",
        "revenue": "sum",
        "clv": lambda s: s.sum(min_count=1),
        "market_size": lambda s: s.sum(min_count=len(s)),
        "headroom": "sum",
        "potential_value": "sum",
        "white_space_score": "sum",
        "_growth_w": "sum",
        "_growth_n": "sum",
    }
    g = c.groupby(level, sort=False).agg(sums).reset_index()
    pop = g["population"].to_numpy(float)
    k = g["customers"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        g["penetration"] = np.where(pop > 0, k / np.where(pop > 0, pop, 1), np.nan)
        lo, hi = wilson_arrays(k, np.round(pop))
        g["penetration_low"], g["penetration_high"] = lo, hi
        idx, ilo, ihi = index_interval(k, np.round(pop), overall or 0.0)
        g["index"], g["index_low"], g["index_high"] = idx, ilo, ihi
        g["revenue_per_head"] = np.where(pop > 0, g["revenue"] / np.where(pop > 0, pop, 1), np.nan)
        g["clv_per_head"] = np.where(pop > 0, g["clv"] / np.where(pop > 0, pop, 1), np.nan)
        ms = g["market_size"].to_numpy(float)
        g["market_share"] = np.where(ms > 0, g["revenue"] / np.where(ms > 0, ms, 1), np.nan)
    gn = g["_growth_n"].to_numpy(float)
    g["growth"] = np.where(gn > 0, g["_growth_w"] / np.where(gn > 0, gn, 1), np.nan)
    g = g.drop(columns=["_growth_w", "_growth_n"]).rename(columns={level: "place"})
    return g.sort_values("white_space_score", ascending=False).reset_index(drop=True)


def geo_levels(cells: pd.DataFrame) -> list[str]:
    """The geography levels the population has, coarse to fine."""
    return [d for d in GEO if d in cells.columns and cells[d].notna().any()]
