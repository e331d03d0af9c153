"""Maps of the market: the user's GeoJSON drawn as an inline SVG choropleth, computed here.

No tiles, no script and no network: polygons are projected (equirectangular, scaled by the
cosine of the middle latitude so shapes keep their proportions) and written as SVG paths, each
with a ``<title>`` for its tooltip. Regions are joined to the GeoJSON on a feature property
(setting ``market_geojson_key``), compared without case or accents; every text is escaped.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from segmentum.errors import InputError
from segmentum.market.core import fold_text

# Index classes (100 = average penetration) and their colours: orange below, blue above
# (Okabe & Ito's colours, told apart with every common colour-vision deficiency).
INDEX_CLASSES: tuple[tuple[float, str], ...] = (
    (50.0, "#D55E00"),
    (80.0, "#E69F00"),
    (120.0, "#F5F5F5"),
    (200.0, "#56B4E9"),
    (math.inf, "#0072B2"),
)
NO_DATA = "#BBBBBB"


def load_geojson(path: str | Path) -> dict[str, Any]:
    """Read a GeoJSON FeatureCollection; a clear error when it is missing or not GeoJSON."""
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"GeoJSON file {p} not found", "check the market_geojson setting (a path to a file)"
        )
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            f"GeoJSON file {p} cannot be read: {exc}".splitlines()[0],
            "export it again as GeoJSON (UTF-8)",
        ) from exc
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise InputError(
            f"GeoJSON file {p} is not a FeatureCollection",
            "the map needs a FeatureCollection of Polygon or MultiPolygon features",
        )
    return data


def feature_key(feature: Mapping[str, Any], key: str) -> str | None:
    """The region a feature stands for: its ``key`` property, else its id (folded)."""
    props = feature.get("properties") or {}
    value = props.get(key, feature.get("id"))
    return None if value is None else fold_text(value)


def _rings(geometry: Mapping[str, Any] | None) -> Iterable[list[list[float]]]:
    if not geometry:
        return
    kind, coords = geometry.get("type"), geometry.get("coordinates") or []
    if kind == "Polygon":
        yield from coords
    elif kind == "MultiPolygon":
        for poly in coords:
            yield from poly


def index_colour(index: float | None) -> str:
    """The fill for an index value (grey when there is none)."""
    if index is None or not math.isfinite(index):
        return NO_DATA
    for upper, colour in INDEX_CLASSES:
        if index < upper:
            return colour
    return INDEX_CLASSES[-1][1]


def matched(geojson: Mapping[str, Any], key: str, places: Iterable[str]) -> int:
    """How many of ``places`` have a feature in the GeoJSON."""
    keys = {feature_key(f, key) for f in geojson.get("features") or []}
    return sum(1 for p in places if fold_text(p) in keys)


def choropleth_svg(
    geojson: Mapping[str, Any],
    key: str,
    values: Mapping[str, float | None],
    tooltip: Callable[[str], str],
    legend: list[str],
    title: str,
    width: int = 640,
) -> str:
    """The regions of ``geojson`` filled by index (``values``: place -> index).

    Parameters
    ----------
    key
        Feature property that holds the place's name or code.
    values
        Index per place, places written as in the population (matched folded).
    tooltip
        The hover text of a place (already in the page's language).
    legend
        One label per class of ``INDEX_CLASSES``, then one for places without data.
    """
    by_key = {fold_text(p): p for p in values}
    feats = []
    lon_lo = lat_lo = math.inf
    lon_hi = lat_hi = -math.inf
    for f in geojson.get("features") or []:
        rings = [r for r in _rings(f.get("geometry")) if len(r) >= 3]
        if not rings:
            continue
        for ring in rings:
            for pt in ring:
                lon_lo, lon_hi = min(lon_lo, pt[0]), max(lon_hi, pt[0])
                lat_lo, lat_hi = min(lat_lo, pt[1]), max(lat_hi, pt[1])
        feats.append((feature_key(f, key), rings))
    if not feats:
        return ""
    kx = math.cos(math.radians((lat_lo + lat_hi) / 2))
    span_x = max((lon_hi - lon_lo) * kx, 1e-9)
    span_y = max(lat_hi - lat_lo, 1e-9)
    pad, legend_h = 8, 22 * (len(legend) + 1)
    scale = (width - 2 * pad) / span_x
    height = int(span_y * scale + 2 * pad)
    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + legend_h}" '
        f'width="100%" role="img" aria-label="{e(title)}" class="market-map">',
        f"<title>{e(title)}</title>",
    ]
    for fk, rings in feats:
        d = []
        for ring in rings:
            pts = [
                f"{pad + (x - lon_lo) * kx * scale:.1f},{pad + (lat_hi - y) * scale:.1f}"
                for x, y, *_ in ring
            ]
            d.append("M" + "L".join(pts) + "Z")
        place = by_key.get(fk or "")
        value = values.get(place) if place is not None else None
        text = tooltip(place) if place is not None else ""
        parts.append(
            f'<path d="{"".join(d)}" fill="{index_colour(value)}" stroke="#444" '
            f'stroke-width="0.6" fill-rule="evenodd" data-place="{e(place or "")}">'
            + (f"<title>{e(text)}</title>" if text else "")
            + "</path>"
        )
    colours = [c for _, c in INDEX_CLASSES] + [NO_DATA]
    y = height + 8
    for label, colour in zip(legend, colours, strict=False):
        parts.append(
            f'<rect x="{pad}" y="{y}" width="14" height="14" fill="{colour}" stroke="#444" '
            'stroke-width="0.5"/>'
            f'<text x="{pad + 20}" y="{y + 12}" font-size="12" font-family="sans-serif">'
            f"{e(label)}</text>"
        )
        y += 22
    parts.append("</svg>")
    return "".join(parts)
