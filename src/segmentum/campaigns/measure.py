"""Did the campaign work? Treatment against control: uplift, significance, incremental revenue, ROI.

Conversions come from ingested ``campaign_results`` when the campaign has them, otherwise they
are derived from the invoices: a member converted when they bought within ``attribution_days``
after the send (for the control group: after the time they would have been sent). The control
group was drawn at random from the same audience, so the difference between the groups is the
campaign's effect:

- conversion uplift = rate(treatment) - rate(control), with a 95% confidence interval (Wald,
  unpooled) and a two-sided two-proportion z-test;
- revenue per member in each group and its difference, with a Welch 95% interval;
- incremental revenue = difference in revenue per member x treated members;
- ROI = (incremental revenue x margin - cost) / cost.

Everything is also given per segment (the RFM segment at send time), to see who responded.

Before there is anything to compare (nothing delivered yet, or no member of either group has
converted), ``Results.ready`` is False and ``Results.note`` says so ("no results yet: 120 sent,
3 failed, 0 outcomes"); a quantity that cannot be computed is None, never NaN.

The treated group is every member whose message went out or was tried: a message that
bounced or was refused is part of sending, and leaving it out would compare the reachable
treated with the whole control group. What users read keeps the two apart, though:
``Results.sent`` and ``Results.failed`` count them, ``Results.treated`` is their sum.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from segmentum import i18n
from segmentum.config import Settings
from segmentum.features.customer import net_lines
from segmentum.ingest.returns import links
from segmentum.stats import normal_two_sided_p, wilson_interval
from segmentum.warehouse import Warehouse


@dataclass
class Effect:
    """Treatment against control for one group of members; None where it cannot be computed
    (an empty group, no conversions anywhere)."""

    group: str
    treated: int
    control: int
    conv_treated: float | None
    conv_control: float | None
    uplift: float | None
    uplift_low: float | None
    uplift_high: float | None
    p_value: float | None
    revenue_treated: float  # per member
    revenue_control: float
    revenue_diff_low: float | None
    revenue_diff_high: float | None
    incremental_revenue: float
    cost: float
    roi: float | None

    @property
    def revenue_clear(self) -> bool:
        """Whether the revenue per member differs beyond chance (its 95% interval is all above
        or all below zero): only then is the ROI built on it a figure to act on."""
        low, high = self.revenue_diff_low, self.revenue_diff_high
        return low is not None and high is not None and (low > 0 or high < 0)

    @property
    def verdict(self) -> str | None:
        """What the uplift's 95% interval says: ``raised`` (all of it above zero: the campaign
        raised conversion), ``lowered`` (all below), ``unclear`` (it includes zero: this
        data cannot tell an effect from chance); None without an interval.

        >>> from dataclasses import replace
        >>> e = Effect("all", 300, 100, .1, .05, .05, .01, .09, .04, 0, 0, None, None, 0, 0, None)
        >>> below = replace(e, uplift_low=-0.09, uplift_high=-0.01)
        >>> e.verdict, replace(e, uplift_low=-0.01).verdict, below.verdict
        ('raised', 'unclear', 'lowered')
        """
        if self.uplift_low is None or self.uplift_high is None:
            return None
        if self.uplift_low > 0:
            return "raised"
        return "lowered" if self.uplift_high < 0 else "unclear"


@dataclass
class Results:
    campaign_id: str
    source: str  # results or derived
    overall: Effect
    by_segment: list[Effect] = field(default_factory=list)
    sent: int = 0  # treated members whose message went out
    outcomes: int = 0  # conversions seen in either group
    ready: bool = True
    note: str | None = None
    failed: int = 0  # treated members whose message was tried and failed (bounced, refused)
    # Loaded results without a send log of ours: the day of the classes the segments are
    # read from (the last computed before the send); None: not broken down by segment.
    segments_as_of: str | None = None

    @property
    def treated(self) -> int:
        """The members the statistics call treated: sent and failed alike."""
        return self.sent + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "source": self.source,
            "ready": self.ready,
            "note": self.note,
            "sent": self.sent,
            "failed": self.failed,
            "treated": self.treated,
            "outcomes": self.outcomes,
            "overall": _effect_dict(self.overall),
            "by_segment": [_effect_dict(e) for e in self.by_segment],
            "segments_as_of": self.segments_as_of,
        }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _newcombe(xt: int, nt: int, xc: int, nc: int) -> tuple[float, float]:
    """95% interval of pt - pc by Newcombe's hybrid score method (1998, method 10): Wilson
    intervals of each rate, combined. Unlike the Wald interval it stays honest with a small
    control group or rates near 0 or 1, and agrees with the test below."""
    if not nt or not nc:
        return math.nan, math.nan
    pt, pc = xt / nt, xc / nc
    lt, ut = wilson_interval(xt, nt)
    lc, uc = wilson_interval(xc, nc)
    d = pt - pc
    return d - math.sqrt((pt - lt) ** 2 + (uc - pc) ** 2), d + math.sqrt(
        (ut - pt) ** 2 + (pc - lc) ** 2
    )


def _two_proportion_p(xt: int, nt: int, xc: int, nc: int) -> float | None:
    """Two-sided p-value of no difference: the pooled z-test when every expected count is 5 or
    more, else Fisher's exact test (the normal approximation misleads with a control group of
    a dozen). None when nobody (or everybody) converted: there is nothing to test."""
    if not nt or not nc:
        return None
    conv = xt + xc
    if conv == 0 or conv == nt + nc:
        return None
    pooled = conv / (nt + nc)
    expected = (nt * pooled, nt * (1 - pooled), nc * pooled, nc * (1 - pooled))
    if min(expected) < 5:
        from scipy import stats

        return float(stats.fisher_exact([[xt, nt - xt], [xc, nc - xc]])[1])
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / nt + 1 / nc))
    return normal_two_sided_p((xt / nt - xc / nc) / se0)


def effect(df: pd.DataFrame, label: str, cost_per_contact: float, margin: float) -> Effect:
    """Uplift and ROI from one row per member: group, converted (0/1), revenue, cost."""
    t = df[df.group == "treatment"]
    c = df[df.group == "control"]
    nt, nc = len(t), len(c)
    pt = float(t.converted.mean()) if nt else math.nan
    pc = float(c.converted.mean()) if nc else math.nan
    diff = pt - pc
    xt, xc = int(t.converted.sum()), int(c.converted.sum())
    low, high = _newcombe(xt, nt, xc, nc)
    p = _two_proportion_p(xt, nt, xc, nc)
    rt = float(t.revenue.mean()) if nt else 0.0
    rc = float(c.revenue.mean()) if nc else 0.0
    if nt > 1 and nc > 1:
        from scipy import stats

        vt, vc = t.revenue.var(ddof=1) / nt, c.revenue.var(ddof=1) / nc
        se_r = math.sqrt(vt + vc)
        dof = (vt + vc) ** 2 / ((vt**2) / (nt - 1) + (vc**2) / (nc - 1)) if se_r > 0 else 1.0
        q = float(stats.t.ppf(0.975, dof)) if se_r > 0 else 0.0
    else:
        se_r, q = math.nan, math.nan
    incremental = (rt - rc) * nt
    cost = float(t.cost.sum()) if "cost" in t and t.cost.notna().any() else nt * cost_per_contact
    roi = (incremental * margin - cost) / cost if cost > 0 else None
    return Effect(
        label,
        nt,
        nc,
        _finite(pt),
        _finite(pc),
        _finite(diff),
        _finite(low),
        _finite(high),
        p,
        rt,
        rc,
        _finite((rt - rc) - q * se_r),
        _finite((rt - rc) + q * se_r),
        incremental,
        cost,
        roi,
    )


def _effect_dict(e: Effect) -> dict[str, Any]:
    return {**e.__dict__, "verdict": e.verdict, "revenue_clear": e.revenue_clear}


def member_outcomes(
    wh: Warehouse,
    campaign_id: str,
    attribution_days: int,
    now: _dt.datetime | None = None,
) -> tuple[pd.DataFrame, str]:
    """One row per member (both groups): group, segment, converted, revenue, cost, and for
    a derived outcome the send's status (``sent`` or ``failed``; ``control``).

    From segmentum's own send log, like is compared with like: the treated members whose
    message went out (sent, or tried and failed: leaving out the failures would leave out
    the customers whose address bounced), and the control members who would have got one
    (outcome ``control``: reachable, and due by ``now``, the present by default), each from
    the moment it went out or would have. Members who could not be contacted (no consent,
    capped...) are in neither group, and a message still due is not counted on either side.
    """
    if wh.has("campaign_results"):
        r = wh.table("campaign_results")
        r = r.filter(r.campaign_id == campaign_id)
        if int(r.count().to_pyarrow().as_py()):
            df = r.select(
                "customer_id",
                "group",
                converted=r.converted.fill_null(False).cast("int64"),
                revenue=r.revenue.fill_null(0.0),
                cost=r.cost,
            ).to_pandas()
            seg, day = _segments_at_send(wh, campaign_id), None
            if not seg:  # not sent by segmentum: the classes from before the send
                seg, day = _segments_before(wh, r)
            df["segment"] = df.customer_id.map(seg).fillna("(unknown)")
            df.attrs["segments_as_of"] = day
            return df, "results"
    if not wh.has("campaign_sends"):
        empty: dict[str, list[Any]] = {
            "customer_id": [],
            "group": [],
            "segment": [],
            "converted": [],
            "revenue": [],
        }
        return pd.DataFrame({**empty, "cost": []}), "derived"
    s = wh.table("campaign_sends")
    s = s.filter(s.campaign_id == campaign_id)
    now = now or _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    due = s.scheduled_at.isnull() | (s.scheduled_at <= ibis.literal(now, "timestamp"))
    control = (s.group == "control") & due
    if "outcome" in s.columns:  # a log from before outcomes: every control member
        control &= s.outcome.fill_null("control") == "control"
    treated = (s.group == "treatment") & s.status.isin(["sent", "failed"])
    times = [s[c] for c in ("sent_at", "claimed_at", "scheduled_at", "logged_at") if c in s.columns]
    members = s.filter(control | treated).select(
        "customer_id",
        "group",
        status=ibis.ifelse(s.group == "treatment", s.status, "control"),
        segment=s.rfm_segment.fill_null("(unknown)"),
        start=ibis.coalesce(*times),
    )
    # Net purchases: a cancelled order is no conversion, returned money is no revenue.
    returns = links(wh)  # first: it gives an older sales table the line columns it lacks
    tx = wh.table("transactions")
    tx = net_lines(tx.filter(tx.customer_id.notnull()), returns)
    tx = tx.select("customer_id", "timestamp", "amount")
    j = members.left_join(
        tx,
        (members.customer_id == tx.customer_id)
        & (tx.timestamp >= members.start)
        & (tx.timestamp < members.start + ibis.interval(days=attribution_days)),
    )
    g = j.group_by(["customer_id", "group", "status", "segment"]).aggregate(
        revenue=j.amount.sum().fill_null(0.0), lines=j.amount.count()
    )
    df = g.mutate(converted=(g.lines > 0).cast("int64")).to_pandas()
    df["cost"] = None
    return df, "derived"


def _segments_at_send(wh: Warehouse, campaign_id: str) -> dict[str, str]:
    if not wh.has("campaign_sends"):
        return {}
    s = wh.table("campaign_sends")
    s = s.filter(s.campaign_id == campaign_id).select("customer_id", "rfm_segment").to_pandas()
    return dict(zip(s.customer_id, s.rfm_segment.fillna("(unknown)"), strict=True))


def _segments_before(wh: Warehouse, r: ir.Table) -> tuple[dict[str, str], str | None]:
    """Loaded results of a campaign segmentum did not send: each customer's RFM segment from
    the last classes computed before its first send (what the campaign cannot have changed),
    and their day; nothing when no classes are that old (``history backfill`` makes them)."""
    if not wh.has("customer_classes") or "sent_at" not in r.columns:
        return {}, None
    first = r.sent_at.min().to_pyarrow().as_py()
    if first is None:
        return {}, None
    k = wh.table("customer_classes")
    day = k.filter(k.as_of <= ibis.literal(first.date(), "date")).as_of.max()
    day = day.to_pyarrow().as_py()
    if day is None:
        return {}, None
    k = k.filter(k.as_of == ibis.literal(day, "date")).select("customer_id", "rfm_segment")
    ids = r.select(cid=r.customer_id.cast("string")).distinct()
    j = ids.inner_join(k, ids.cid == k.customer_id.cast("string")).select("cid", "rfm_segment")
    rows = j.to_pyarrow().to_pylist()
    return {x["cid"]: x["rfm_segment"] for x in rows if x["rfm_segment"]}, str(day)


def results(
    wh: Warehouse,
    campaign_id: str,
    settings: Settings,
    cost_per_contact: float = 0.0,
    min_group: int = 30,
) -> Results:
    """Overall and per-segment effect of a campaign (segments with too few members skipped)."""
    df, source = member_outcomes(wh, campaign_id, settings.attribution_days)
    overall = effect(df, "all", cost_per_contact, settings.margin_rate)
    treated = overall.treated
    # Loaded results say who was treated, not how the message fared: all of them count as sent.
    failed = 0
    if "status" in df:
        failed = int(((df.group == "treatment") & (df.status == "failed")).sum())
    sent = treated - failed
    outcomes = int(df.converted.sum()) if len(df) else 0
    if not treated or not overall.control or not outcomes:
        counts = f"{sent:,} sent, {failed:,} failed, {outcomes:,} outcomes"
        note = (
            f"no control group to compare with: {counts}"
            if treated and outcomes
            else f"no results yet: {counts}"
        )
        return Results(campaign_id, source, overall, [], sent, outcomes, False, note, failed)
    by = []
    for seg, part in df.groupby("segment"):
        if (part.group == "treatment").sum() >= min_group and (part.group == "control").sum() >= 5:
            by.append(effect(part, str(seg), cost_per_contact, settings.margin_rate))
    by.sort(key=lambda e: -(e.uplift or 0.0))
    if [e.group for e in by] == ["(unknown)"]:
        by = []  # one row of "(unknown)" repeats the overall one: no breakdown to show
    day = df.attrs.get("segments_as_of") if by else None
    return Results(
        campaign_id, source, overall, by, sent, outcomes, failed=failed, segments_as_of=day
    )


def waiting(r: Mapping[str, Any], settings: Settings, lang: str, on_page: bool = False) -> str:
    """What results that are not ready wait for, in ``lang`` (loaded results need no wait);
    ``on_page``: said to someone at the dashboard, not at a terminal (no commands)."""
    _ = i18n.translations(lang).ugettext
    days = {"days": i18n.number(settings.attribution_days, lang, 0)}
    if on_page:
        if r.get("source") == "results":
            return _("The campaign's results appear once its results file is loaded.")
        return (
            _(
                "A conversion is a purchase within %(days)s days of the message (for the control "
                "group, of when theirs would have gone out), counted once the sales of those days "
                "are loaded and the data updated (the daily run)."
            )
            % days
        )
    if r.get("source") == "results":
        return _("Load the campaign's results (segmentum ingest campaign_results FILE).")
    return (
        _(
            "A conversion is a purchase within %(days)s days of the message (for the control "
            "group, of when theirs would have gone out), counted once its invoices are loaded "
            "(segmentum run --data, or segmentum ingest)."
        )
        % days
    )


def explain(r: Mapping[str, Any], settings: Settings, lang: str) -> list[str]:
    """What results (:meth:`Results.to_dict`) mean, in words, in ``lang``: the verdict of the
    uplift's interval and how conversion, uplift and ROI were counted (the CLI prints them
    under its table, the dashboard under its figures)."""
    _ = i18n.translations(lang).ugettext
    e = r.get("overall") or {}
    words = {
        "uplift": i18n.points(abs(e.get("uplift") or 0.0), lang).lstrip("+"),
        "low": i18n.points(e.get("uplift_low"), lang),
        "high": i18n.points(e.get("uplift_high"), lang),
        "p": i18n.number(e.get("p_value"), lang, 3),
    }
    said = {
        "raised": _(
            "The campaign raised conversion by %(uplift)s: the 95%% interval (%(low)s to "
            "%(high)s) is above zero, so this is an effect, not chance (p = %(p)s)."
        ),
        "lowered": _(
            "The campaign lowered conversion by %(uplift)s: the 95%% interval (%(low)s to "
            "%(high)s) is below zero (p = %(p)s)."
        ),
        "unclear": _(
            "No clear effect yet: the 95%% interval of the uplift (%(low)s to %(high)s) "
            "includes zero, so the difference may be chance (p = %(p)s); more customers or a "
            "longer wait would narrow it."
        ),
    }
    verdict = e.get("verdict")
    out = [said[verdict] % words] if verdict in said else []
    if r.get("source") == "derived":
        out.append(
            _(
                "Converted: bought within %(days)s days of the message (the control group: "
                "of when theirs would have gone out); only members who could be messaged are "
                "compared; a cancelled order is no purchase. A purchase counts for every "
                "campaign that reached the customer before it: compare campaigns by their "
                "uplift, each against its own control group, not by their conversions."
            )
            % {"days": i18n.number(settings.attribution_days, lang, 0)}
        )
    else:
        out.append(_("Converted and revenue: as the loaded campaign results say."))
        if r.get("segments_as_of"):
            out.append(
                _(
                    "Segments: the RFM segment each customer was in on %(day)s, the last "
                    "classes computed before the campaign was sent."
                )
                % {"day": i18n.date(r["segments_as_of"], lang)}
            )
        elif not r.get("by_segment") and r.get("ready", True):
            out.append(
                _(
                    "Not broken down by segment: no classes were computed before the campaign "
                    "was sent (segmentum history backfill computes them for past dates)."
                )
            )
    out.append(
        _(
            "Uplift: the treated group's conversion less the control group's, in percentage "
            "points. ROI: the incremental revenue times the margin (%(margin)s), less the "
            "cost, over the cost."
        )
        % {"margin": i18n.percent(settings.margin_rate, lang, 0)}
    )
    if e.get("roi") is not None and not e.get("revenue_clear"):
        out.append(
            _(
                "The ROI is not shown: the revenue per member of the two groups differs by "
                "%(low)s to %(high)s (95%% interval), which includes zero, so the incremental "
                "revenue it is built on may be chance."
            )
            % {
                "low": i18n.money(e.get("revenue_diff_low"), lang, None, 2),
                "high": i18n.money(e.get("revenue_diff_high"), lang, None, 2),
            }
        )
    return out
