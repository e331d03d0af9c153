"""The market over HTTP: ``/v1/market`` (API key, read scope) and the dashboard's Market page.

Both read the ``market_cells`` and ``market_runs`` read models (published with the others), so
they answer while a pipeline run holds the warehouse. The page draws the user's GeoJSON as an
inline SVG choropleth when the ``market_geojson`` setting names one, else sorted bars.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from segmentum import i18n
from segmentum.errors import SegmentumError
from segmentum.market.core import CELLS, DIMENSIONS, RUNS, geo_levels, rollup
from segmentum.market.export import PLACE_COLUMNS, export_market, records, stored
from segmentum.market.geo import choropleth_svg, load_geojson, matched
from segmentum.service.core import ApiProblem, Read, Service
from segmentum.service.dashboard import PALETTE, Page, chart

router = APIRouter(prefix="/v1/market", tags=["market"])
WHITE_SPACE_COLUMNS = (
    "white_space_rank",
    "cell",
    *DIMENSIONS,
    "population",
    "customers",
    "penetration",
    "penetration_low",
    "penetration_high",
    "index",
    "index_low",
    "index_high",
    "value_per_customer",
    "expected_value",
    "high_value_share",
    "similarity",
    "headroom",
    "potential_value",
    "white_space_score",
    "market_share",
    "growth",
)

# Market notes that inform (how a figure was measured) rather than warn.
_INFO_NOTES = ("white space: ", "B2B population: ")


def _svc(request: Request) -> Service:
    svc: Service = request.app.state.svc
    return svc


def _read(svc: Service, fn: Callable[[Any], Any]) -> Any:
    return svc.read_models(fn, CELLS, RUNS)


def _level(cells: pd.DataFrame, level: str | None) -> str | None:
    levels = geo_levels(cells)
    if level is None:
        return levels[-1] if levels else None
    if level not in levels:
        raise ApiProblem(
            400,
            "Bad level",
            f"the population has no {level!r} level",
            f"use one of: {', '.join(levels)}"
            if levels
            else "the population has no places: load one with country, region, state or city "
            "columns",
        )
    return level


@router.get("")
def market_summary(
    request: Request,
    _: Read,
    level: Annotated[str | None, Query(max_length=20)] = None,
    top: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    """Penetration and index per place (95 % Wilson intervals) and the top white-space cells."""

    def run(wh: Any) -> dict[str, Any]:
        cells, summary = stored(wh)
        used = _level(cells, level or None)
        by_place = (
            records(rollup(cells, used, summary.get("overall_penetration")), PLACE_COLUMNS)
            if used
            else []
        )
        ws = cells[cells["white_space_rank"].notna()].sort_values("white_space_rank").head(top)
        return {
            **summary,
            "notes_es": [i18n.translate_message("es", n) for n in summary.get("notes") or []],
            "level": used,
            "places": by_place,
            "white_space": records(ws, WHITE_SPACE_COLUMNS),
        }

    result: dict[str, Any] = _read(_svc(request), run)
    return result


@router.get("/cells")
def market_cells(
    request: Request, _: Read, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
) -> list[dict[str, Any]]:
    """Every cell with its penetration, index, value per head and white-space score."""

    def run(wh: Any) -> list[dict[str, Any]]:
        cells, _ = stored(wh)
        return records(cells.head(limit), WHITE_SPACE_COLUMNS)

    out: list[dict[str, Any]] = _read(_svc(request), run)
    return out


@router.get("/export", response_class=PlainTextResponse)
def market_export(
    request: Request,
    _: Read,
    format: Annotated[str, Query(pattern="^(csv|geojson-properties)$")] = "csv",
    level: Annotated[str | None, Query(max_length=20)] = None,
) -> PlainTextResponse:
    """Map-ready output (places as written in the population): CSV or GeoJSON properties."""
    text = _read(_svc(request), lambda wh: export_market(wh, format, level=level))
    media = "text/csv" if format == "csv" else "application/json"
    return PlainTextResponse(text, media_type=media)


# ---------------------------------------------------------------------- dashboard page
def reason_text(_: Callable[[str], str]) -> dict[str, str]:
    """Why customers could not be placed, in the page's language (keys as the library says)."""
    return {
        "no customer record": _("no customer record"),
        "combination not in the population": _("combination not in the population"),
        "no country": _("no country"),
        "no region": _("no region"),
        "no state or province": _("no state or province"),
        "no city": _("no city"),
        "no age or birth date": _("no age or birth date"),
        "no gender": _("no gender"),
        "no industry": _("no industry"),
        "no employee count": _("no employee count"),
        "country not in the population": _("country not in the population"),
        "region not in the population": _("region not in the population"),
        "state not in the population": _("state or province not in the population"),
        "city not in the population": _("city not in the population"),
        "age_band not in the population": _("age outside the population's age bands"),
        "gender not in the population": _("gender not in the population"),
        "industry not in the population": _("industry not in the population"),
        "company_size not in the population": _("company size outside the population's bands"),
    }


def dimension_titles(_: Callable[[str], str]) -> dict[str, str]:
    return {
        "country": _("Country"),
        "region": _("Region"),
        "state": _("State or province"),
        "city": _("City"),
        "age_band": _("Age band"),
        "gender": _("Gender"),
        "industry": _("Industry"),
        "company_size": _("Company size"),
    }


def _rate(page: Page, lo: Any, mid: Any, hi: Any, index: bool = False) -> dict[str, str]:
    def one(v: Any) -> str:
        return page.num(v, 0) if index else page.pct(v, 3)

    missing = i18n.is_missing(lo) or i18n.is_missing(hi)
    return {"value": one(mid), "interval": "" if missing else f"{one(lo)} – {one(hi)}"}


def _cell_label(page: Page, row: dict[str, Any], dims: list[str]) -> str:
    parts = [page.label(d, row.get(d)) for d in dims if not i18n.is_missing(row.get(d))]
    return " · ".join(parts) or i18n.MISSING


def market_page(page: Page, svc: Service, level: str = "") -> dict[str, Any]:
    """Everything the Market page shows, formatted for the page's language."""
    _ = page._
    cells, summary = _read(svc, stored)
    dims = [d for d in summary.get("dimensions", []) if d in DIMENSIONS]
    levels = geo_levels(cells)
    used = level if level in levels else (levels[-1] if levels else None)
    overall = summary.get("overall_penetration")
    places = rollup(cells, used, overall) if used else pd.DataFrame()
    reasons = reason_text(_)
    unplaced = [
        {"reason": reasons.get(r, r), "customers": page.num(n)}
        for r, n in (summary.get("unplaced_reasons") or {}).items()
    ]
    place_rows = []
    for r in records(places.sort_values("index", ascending=False), PLACE_COLUMNS) if used else []:
        place_rows.append(
            {
                "place": str(r["place"]),
                "population": page.num(r["population"]),
                "customers": page.num(r["customers"]),
                "penetration": _rate(
                    page, r["penetration_low"], r["penetration"], r["penetration_high"]
                ),
                "index": _rate(page, r["index_low"], r["index"], r["index_high"], index=True),
                # Cents matter per head: a region may bring 0.19 a person.
                "revenue_per_head": i18n.money(
                    r["revenue_per_head"], page.lang, page.currency, digits=2
                ),
                "clv_per_head": i18n.money(r["clv_per_head"], page.lang, page.currency, digits=2),
                "market_share": page.pct(r["market_share"], 2),
                "growth": page.pct(r["growth"], 1),
                "white_space": page.money(r["white_space_score"]),
            }
        )
    ws = cells[cells["white_space_rank"].notna()].sort_values("white_space_rank").head(15)
    ws_rows = [
        {
            "rank": page.num(r["white_space_rank"]),
            "cell": _cell_label(page, r, dims),
            "population": page.num(r["population"]),
            "customers": page.num(r["customers"]),
            "index": _rate(page, r["index_low"], r["index"], r["index_high"], index=True),
            "expected_value": page.money(r["expected_value"]),
            "similarity": page.num(r["similarity"], 2),
            "headroom": page.num(r["headroom"], 0),  # customers: whole ones
            "score": page.money(r["white_space_score"]),
        }
        for r in records(ws, WHITE_SPACE_COLUMNS)
    ]
    ctx: dict[str, Any] = {
        "kpis": [
            (_("Overall penetration"), page.pct(overall, 3)),
            (_("Customers placed"), page.num(summary.get("placed"))),
            (_("Customers not placed"), page.num(summary.get("unplaced"))),
            (_("Cells"), page.num(summary.get("cells"))),
        ],
        "dimensions": ", ".join(dimension_titles(_).get(d, d) for d in dims),
        "period": summary.get("period") or "",
        "skipped": page.num(summary.get("skipped_rows") or 0),
        "has_skipped": bool(summary.get("skipped_rows")),
        "unplaced": unplaced,
        # What the computation warned about (cells counted in several rows...), in the
        # page's language: the figures above depend on it. Notes that only say how a figure
        # was measured (the white space's benchmark, companies counted) are not warnings.
        "notes": [
            {"text": i18n.translate_message(page.lang, n), "warn": not n.startswith(_INFO_NOTES)}
            for n in summary.get("notes") or []
        ],
        "levels": [(lv, dimension_titles(_)[lv]) for lv in levels],
        "level": used or "",
        "level_title": dimension_titles(_).get(used or "", ""),
        "places": place_rows,
        "white_space": ws_rows,
        "value_basis": _("CLV") if summary.get("value_basis") == "clv" else _("Revenue"),
        "map": "",
        "map_error": "",
        "chart": None,
    }
    if used:
        ctx.update(_map_or_bars(page, svc, places, used))
    return ctx


def _map_or_bars(page: Page, svc: Service, places: pd.DataFrame, level: str) -> dict[str, Any]:
    _ = page._
    path = svc.settings.market_geojson
    key = svc.settings.market_geojson_key
    values = {str(p): float(v) for p, v in zip(places["place"], places["index"], strict=True)}
    out: dict[str, Any] = {"map": "", "map_error": "", "chart": None}
    if path:
        try:
            geo = load_geojson(path)
        except SegmentumError:
            out["map_error"] = _("The map file %(file)s could not be read as GeoJSON.") % {
                "file": path
            }
            geo = None
        if geo is not None and not matched(geo, key, values):
            out["map_error"] = _(
                "No place of the population matches the map: check the market_geojson_key "
                "setting (now %(key)s)."
            ) % {"key": key}
        elif geo is not None:
            by_place = places.set_index("place")

            def tip(place: str) -> str:
                r = by_place.loc[place]
                return _("%(place)s: index %(index)s, penetration %(pen)s") % {
                    "place": place,
                    "index": page.num(r["index"], 0),
                    "pen": page.pct(r["penetration"], 3),
                }

            legend = [
                _("index below 50"),
                _("index 50 to 80"),
                _("index 80 to 120"),
                _("index 120 to 200"),
                _("index 200 or more"),
                _("no data"),
            ]
            out["map"] = choropleth_svg(
                geo, key, values, tip, legend, _("Penetration index by place")
            )
            return out
    df = places.sort_values("index", ascending=True).tail(40)
    labels = [str(p) for p in df["place"]]
    idx = df["index"].to_numpy(float)
    lo = df["index_low"].to_numpy(float)
    hi = df["index_high"].to_numpy(float)
    out["chart"] = chart(
        "chart-market",
        [
            {
                "type": "bar",
                "orientation": "h",
                "y": labels,
                "x": [round(float(v), 1) for v in idx],
                "marker": {"color": [PALETTE[0] if v >= 100 else PALETTE[1] for v in idx]},
                "error_x": {
                    "type": "data",
                    "symmetric": False,
                    "array": [round(float(h - v), 1) for h, v in zip(hi, idx, strict=True)],
                    "arrayminus": [round(float(v - w), 1) for v, w in zip(idx, lo, strict=True)],
                    "color": "#444",
                },
                "customdata": [
                    [page.num(v, 0), page.pct(p, 3)]
                    for v, p in zip(idx, df["penetration"], strict=True)
                ],
                "hovertemplate": "%{y}: "
                + _("index")
                + " %{customdata[0]}, "
                + _("penetration")
                + " %{customdata[1]}<extra></extra>",
            }
        ],
        {
            "height": max(300, 28 * len(labels) + 80),
            "title": {"text": _("Penetration index by place (100 = average, 95% interval)")},
            "shapes": [
                {
                    "type": "line",
                    "x0": 100,
                    "x1": 100,
                    "yref": "paper",
                    "y0": 0,
                    "y1": 1,
                    "line": {"dash": "dot", "color": "#444"},
                }
            ],
            "margin": {"t": 48, "r": 24, "b": 32, "l": 180},
        },
    )
    return out
