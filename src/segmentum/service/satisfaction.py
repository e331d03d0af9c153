"""Satisfaction over the API (read scope): statistics per group, the terms of a group's
comments, valuable detractors, and the answers to web-message surveys."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from segmentum import i18n
from segmentum.service.core import ApiProblem, Read, Service

router = APIRouter(tags=["satisfaction"])
DIMENSIONS = "all|segment|value_tier|lifecycle_stage|rfm_segment|cluster|micro|campaign"
# Names and ids are printable text: a control character (NUL) cannot be a group or a visitor.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class SurveyAnswerIn(BaseModel):
    visitor: str = Field(
        min_length=1, max_length=200, pattern=PRINTABLE, description="The customer id."
    )
    campaign_id: str = Field(min_length=1, max_length=200, pattern=PRINTABLE)
    nps: int | None = Field(default=None, ge=0, le=10, description="For an NPS survey.")
    answer: str | None = Field(
        default=None, max_length=200, pattern=PRINTABLE, description="For a choice survey."
    )
    comment: str | None = Field(default=None, max_length=2000)


def _svc(request: Request) -> Service:
    svc: Service = request.app.state.svc
    return svc


@router.get("/v1/satisfaction")
def satisfaction(
    request: Request,
    _: Read,
    by: Annotated[str | None, Query(pattern=f"^({DIMENSIONS})$")] = None,
) -> dict[str, Any]:
    """NPS with its 95% interval, CSAT, response share and the test against the rest, per
    group (``by`` one dimension), from the last run."""
    from segmentum.satisfaction.compute import SEGMENTS, stored_segments

    rows = _svc(request).read_models(lambda wh: stored_segments(wh, by), SEGMENTS)
    return {"as_of": str(rows[0]["as_of"]) if rows else None, "groups": rows}


@router.get("/v1/satisfaction/terms")
def satisfaction_terms(
    request: Request,
    _: Read,
    segment: Annotated[str, Query(min_length=1, max_length=200, pattern=PRINTABLE)],
    by: Annotated[str, Query(pattern=f"^({DIMENSIONS})$")] = "segment",
) -> dict[str, Any]:
    """The words and phrases that set a group's comments apart, with quotes (precomputed for
    the flagged groups and the saved segments; computed now for any other)."""
    from segmentum.satisfaction.step import TERMS, stored_terms
    from segmentum.satisfaction.text import segment_terms
    from segmentum.segments.view import latest_as_of

    svc = _svc(request)
    rows = svc.read_models(lambda wh: stored_terms(wh, by, segment), TERMS)
    if not rows:
        found = svc.locked(lambda: segment_terms(svc.wh, latest_as_of(svc.wh), by, segment))
        rows = [t.__dict__ for t in found]
    return {"dimension": by, "segment": segment, "terms": rows}


@router.get("/v1/satisfaction/trend")
def satisfaction_trend(
    request: Request,
    _: Read,
    by: Annotated[str, Query(pattern="^(all|segment|value_tier|lifecycle_stage)$")] = "all",
) -> dict[str, Any]:
    """NPS at each snapshot date, customers grouped as they were then (``kind`` snapshot), or,
    with a single snapshot, NPS per month of all answers (``kind`` month)."""
    from segmentum.satisfaction.compute import TREND, snapshot_dates, snapshot_trend

    svc = _svc(request)

    def run() -> dict[str, Any]:
        wh = svc.wh
        if len(snapshot_dates(wh, 2)) > 1:
            return {"kind": "snapshot", "by": by, "points": snapshot_trend(wh, by)}
        if not wh.has(TREND):
            raise ApiProblem(404, "Not found", "satisfaction has not been computed")
        t = wh.table(TREND)
        rows = t.filter(t.dimension == "all").order_by("period").to_pyarrow().to_pylist()
        return {"kind": "month", "by": "all", "points": rows}

    return svc.locked(run)


@router.get("/v1/satisfaction/detractors")
def satisfaction_detractors(
    request: Request, _: Read, top: Annotated[int, Query(ge=1, le=10000)] = 100
) -> list[dict[str, Any]]:
    """Valuable customers whose latest NPS is 0-6, most valuable first, with their reasons."""
    import ibis

    from segmentum.satisfaction.audience import detractors

    svc = _svc(request)

    def run() -> list[dict[str, Any]]:
        t = detractors(svc.wh).order_by(ibis.desc("priority")).limit(top)
        rows: list[dict[str, Any]] = t.to_pyarrow().to_pylist()
        return rows

    return svc.locked(run)


@router.post("/v1/web-message/answer", tags=["campaigns"])
def web_message_answer(request: Request, body: SurveyAnswerIn, _: Read) -> dict[str, Any]:
    """Store a visitor's answer to the survey of a web-message campaign they were shown."""
    from segmentum.campaigns.core import Campaigns
    from segmentum.satisfaction.survey import answer_web_survey

    svc = _svc(request)

    def run() -> dict[str, Any]:
        cs = Campaigns(svc.wh, svc.settings)
        if cs.get(body.campaign_id).channel != "web":
            raise ApiProblem(404, "Not found", f"campaign {body.campaign_id} is no web message")
        return answer_web_survey(cs, body.model_dump())

    return svc.locked(run)


# ----------------------------------------------------------------------------- dashboard page
def dimension_titles(_: Any) -> dict[str, str]:
    return {
        "all": _("All customers"),
        "segment": _("Saved segments"),
        "value_tier": _("Value tiers"),
        "lifecycle_stage": _("Lifecycle stages"),
        "rfm_segment": _("RFM segments"),
        "cluster": _("Discovered segments"),
        "micro": _("Micro-segments (value tier > region)"),
        "campaign": _("Campaigns (customers sent)"),
    }


def _group_label(page: Any, dimension: str, segment: str, names: Any = None) -> str:
    if page.lang != "en":  # as the command line and the report say it
        return i18n.satisfaction_group(page.lang, dimension, segment, names)
    # English pages show the classes in words too ("at risk"), unlike the command line.
    if dimension in ("value_tier", "lifecycle_stage", "rfm_segment"):
        return str(page.label(dimension, segment))
    if dimension == "micro" and " > " in segment:
        tier, place = segment.split(" > ", 1)
        return f"{page.label('value_tier', tier)} > {place}"
    if dimension == "all":
        return str(page._("All customers"))
    return segment


def _interval(page: Any, lo: Any, hi: Any, digits: int = 0) -> str:
    if lo is None or hi is None:
        return ""
    text: str = page._("%(low)s to %(high)s") % {
        "low": page.num(lo, digits),
        "high": page.num(hi, digits),
    }
    return text


def _verdict(page: Any, flag: str) -> str:
    return {
        "worse": page._("worse than the rest"),
        "better": page._("better than the rest"),
    }.get(flag, "")


def _read(wh: Any, by: str, group: str) -> dict[str, Any]:
    from segmentum.satisfaction.compute import HISTORY, TREND, cluster_names_es, stored_segments
    from segmentum.satisfaction.step import stored_terms

    rows = stored_segments(wh)
    # Discovered segments are stored by their English name; the page shows the Spanish one.
    es_names = cluster_names_es(wh)
    trend: list[dict[str, Any]] = []
    if wh.has(TREND):
        t = wh.table(TREND)
        t = t.filter(t.dimension == "all").order_by("period")
        trend = t.to_pyarrow().to_pylist()
    history: list[dict[str, Any]] = []
    if wh.has(HISTORY):
        h = wh.table(HISTORY)
        history = h.filter(h.dimension == by).order_by("snapshot").to_pyarrow().to_pylist()
    flagged = [r for r in rows if r["flag"]]
    if not group:
        worse = [r for r in flagged if r["flag"] == "worse"]
        pick = (worse or flagged or [{}])[0]
        by_terms, group = pick.get("dimension", by), pick.get("segment", "")
    else:
        by_terms = by
    terms = stored_terms(wh, by_terms, group) if group else []
    return {
        "rows": rows,
        "es_names": es_names,
        "history": history,
        "trend": trend,
        "terms": terms,
        "terms_dim": by_terms,
        "terms_group": group,
    }


def satisfaction_page(page: Any, svc: Service, by: str, group: str) -> dict[str, Any]:
    """Everything the Satisfaction page shows, formatted for the page's language."""
    from segmentum.satisfaction.compute import DIMENSIONS, SEGMENTS, TREND
    from segmentum.satisfaction.step import TERMS
    from segmentum.service.dashboard import PALETTE, chart

    _ = page._
    by = by if by in DIMENSIONS and by != "all" else "segment"
    d = svc.read_models(lambda wh: _read(wh, by, group), SEGMENTS, TREND, TERMS)
    titles = dimension_titles(_)
    rows = d["rows"]
    es_names = d["es_names"]
    present = [x for x in DIMENSIONS if x != "all" and any(r["dimension"] == x for r in rows)]
    if present and by not in present:
        by = present[0]
    overall = next((r for r in rows if r["dimension"] == "all"), None)
    kpis: list[tuple[str, str, str]] = []
    if overall is not None:
        band = _interval(page, overall["nps_low"], overall["nps_high"], 1)
        kpis = [
            (
                _("Net Promoter Score (NPS)"),
                page.num(overall["nps"], 1),
                _("confidence interval: %(interval)s") % {"interval": band} if band else "",
            ),
            (
                _("Customers who answered"),
                page.num(overall["respondents"]),
                _("%(share)s of customers") % {"share": page.pct(overall["response_share"])},
            ),
            (
                _("CSAT (1 to 5)"),
                page.num(overall["csat_mean"], 2),
                _("%(share)s satisfied (4 or 5)") % {"share": page.pct(overall["csat_top2"])}
                if overall["csat_top2"] is not None
                else "",
            ),
        ]

    def link(r: dict[str, Any]) -> str:
        return "/dashboard/satisfaction?" + urlencode(
            {"by": r["dimension"], "group": r["segment"], "lang": page.lang}
        )

    mine = [r for r in rows if r["dimension"] == by]
    table = [
        {
            "group": _group_label(page, by, r["segment"], es_names),
            "href": link(r),
            "customers": page.num(r["customers"]),
            "answered": page.num(r["respondents"]),
            "share": page.pct(r["response_share"]),
            "nps": page.num(r["nps"], 1),
            "interval": _interval(page, r["nps_low"], r["nps_high"]),
            "csat": page.num(r["csat_mean"], 2),
            "top2": page.pct(r["csat_top2"]),
            "rest": page.num(r["rest_nps"], 1),
            "q": page.chance(r["q_value"]),
            "verdict": _verdict(page, r["flag"]),
            "flag": r["flag"],
        }
        for r in mine
    ]
    flagged = [
        {
            "dimension": titles.get(r["dimension"], r["dimension"]),
            "group": _group_label(page, r["dimension"], r["segment"], es_names),
            "href": link(r),
            "nps": page.num(r["nps"], 1),
            "interval": _interval(page, r["nps_low"], r["nps_high"]),
            "rest": page.num(r["rest_nps"], 1),
            "verdict": _verdict(page, r["flag"]),
            "flag": r["flag"],
        }
        for r in rows
        if r["flag"]
    ]
    shown = [r for r in mine if r["nps"] is not None]
    bars = chart(
        "chart-nps",
        [
            {
                "type": "bar",
                "name": _("Net Promoter Score (NPS)"),
                "x": [_group_label(page, by, r["segment"], es_names) for r in shown],
                "y": [round(r["nps"], 1) for r in shown],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [round((r["nps_high"] or r["nps"]) - r["nps"], 1) for r in shown],
                    "arrayminus": [round(r["nps"] - (r["nps_low"] or r["nps"]), 1) for r in shown],
                },
                "marker": {
                    "color": [PALETTE[5] if r["flag"] == "worse" else PALETTE[0] for r in shown]
                },
                "hovertemplate": "%{x}: %{y:.1f}<extra></extra>",
            }
        ],
        {
            "title": {"text": _("NPS by group, with its confidence interval")},
            "yaxis": {"range": [-100, 100], "title": {"text": _("Net Promoter Score (NPS)")}},
        },
    )
    trend = [r for r in d["trend"] if r["nps"] is not None]
    line = chart(
        "chart-trend",
        [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": _("Net Promoter Score (NPS)"),
                "x": [page.date(r["period"]) for r in trend],
                "y": [round(r["nps"], 1) for r in trend],
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [round(r["nps_high"] - r["nps"], 1) for r in trend],
                    "arrayminus": [round(r["nps"] - r["nps_low"], 1) for r in trend],
                },
                "customdata": [page.num(r["n"]) for r in trend],
                "hovertemplate": "%{x}: %{y:.1f} (%{customdata} "
                + _("answers")
                + ")<extra></extra>",
            }
        ],
        {
            "title": {"text": _("NPS per month, all answers")},
            "yaxis": {"range": [-100, 100]},
        },
    )
    terms = [
        {
            "term": t["term"],
            "z": page.num(t["z"], 1),
            "count": page.num(t["count"]),
            "rest": page.num(t["rest_count"]),
            "quotes": list(t["quotes"]),
        }
        for t in d["terms"]
    ]
    dates = sorted({r["snapshot"] for r in d["history"]})
    cells: dict[str, dict[Any, str]] = {}
    for r in d["history"]:
        value = page.num(r["nps"], 0)
        band = _interval(page, r["nps_low"], r["nps_high"])
        cells.setdefault(r["segment"], {})[r["snapshot"]] = f"{value} ({band})" if band else value
    history = {
        "dates": [page.date(x) for x in dates],
        "rows": [
            {
                "group": _group_label(page, by, seg, es_names),
                "values": [found.get(x, "—") for x in dates],
            }
            for seg, found in cells.items()
        ],
    }
    return {
        "kpis": kpis,
        "flagged": flagged,
        "dimensions": [(x, titles[x]) for x in present],
        "by": by,
        "by_title": titles.get(by, by),
        "table": table,
        "bars": bars if shown else None,
        "trend": line if len(trend) > 1 else None,
        "history": history if len(dates) > 1 else None,
        "terms": terms,
        "terms_group": _group_label(page, d["terms_dim"], d["terms_group"], es_names)
        if d["terms_group"]
        else "",
    }
