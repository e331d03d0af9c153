"""Map-ready outputs of the market: CSV per cell or per place, and GeoJSON properties.

Places keep the spelling of the population file (a name or a code such as ``ES61``), so the
output joins onto the user's own map layers; ``geojson-properties`` gives, per place, the
numbers to put in each feature's ``properties`` (or, with a GeoJSON file, the file itself with
them merged in).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from segmentum.errors import InputError, WarehouseError
from segmentum.market.core import DIMENSIONS, MEASURES, fold_text, geo_levels, read_market, rollup
from segmentum.market.geo import feature_key, load_geojson
from segmentum.warehouse import Warehouse

FORMATS = ("csv", "geojson-properties")
PLACE_COLUMNS = (
    "place",
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
    "clv",
    "clv_per_head",
    "market_size",
    "market_share",
    "growth",
    "headroom",
    "potential_value",
    "white_space_score",
)


def stored(wh: Warehouse) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The stored market, or an error saying how to compute it."""
    found = read_market(wh)
    if found is None:
        raise WarehouseError(
            "the market has not been computed",
            "load a population (segmentum ingest population FILE), then segmentum run "
            "or segmentum market compute",
        )
    return found


def places(wh: Warehouse, level: str | None = None) -> tuple[str, pd.DataFrame]:
    """Per place of one geography level (default: the finest the population has)."""
    cells, summary = stored(wh)
    levels = geo_levels(cells)
    if not levels:
        raise InputError(
            "the population has no place columns (country, region, state, city)",
            "export the cells instead: leave out --level",
        )
    level = level or levels[-1]
    return level, rollup(cells, level, summary.get("overall_penetration"))


def _plain(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if hasattr(v, "item"):
        return _plain(v.item())
    return v


def records(df: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows as plain JSON values (no NaN)."""
    cols = [c for c in columns if c in df.columns]
    return [
        {c: _plain(v) for c, v in zip(cols, row, strict=True)}
        for row in df[cols].itertuples(index=False, name=None)
    ]


def export_market(
    wh: Warehouse,
    fmt: str = "csv",
    *,
    level: str | None = None,
    geojson: str | Path | None = None,
    key: str = "name",
) -> str:
    """The market as text: ``csv`` (cells, or places with ``level``) or ``geojson-properties``.

    Examples
    --------
    ``segmentum market export --format csv --level region > penetracion.csv``
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if fmt == "csv":
        if level is None:
            cells, _ = stored(wh)
            present = [d for d in DIMENSIONS if cells[d].notna().any()]
            out = cells[[*present, *MEASURES]]
        else:
            _, out = places(wh, level)
            out = out[[c for c in PLACE_COLUMNS if c in out.columns]]
        text: str = out.to_csv(index=False)
        return text
    used, df = places(wh, level)
    props = {str(r["place"]): r for r in records(df, PLACE_COLUMNS)}
    if geojson is None:
        return json.dumps({"level": used, "properties": props}, ensure_ascii=False, indent=1)
    data = load_geojson(geojson)
    by_key = {fold_text(p): v for p, v in props.items()}
    for f in data.get("features") or []:
        found = by_key.get(feature_key(f, key) or "")
        if found is not None:
            f["properties"] = {**(f.get("properties") or {}), **found}
    return json.dumps(data, ensure_ascii=False)
