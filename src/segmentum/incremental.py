"""The daily run that costs what changed: decide between a full and an incremental run, and
compute an incremental day's features and CLV scores from what the last run left.

A run after the first starts from the state the last successful run stored (``run_state``):
its date (``as_of``), a fingerprint of the invoice lines, events and campaign results dated
before it, the settings the numbers depend on, and the fitted CLV and churn models. When
nothing dated before that day changed, only these customers' features are computed again:

- customers with lines, events or campaign results dated on or after the last run's date
  (the new day's; a later return can cancel an earlier purchase, so every later line counts);
- customers with a line on a day that slid out of the 90-day spend window (into the 90 days
  before it) or out of those 90 days: their ``spend_last_90``, ``spend_prev_90`` and
  ``trend`` change although they bought nothing.

Everybody else's row is carried forward: every other feature depends only on their lines,
which did not change, except the ones measured from the end of the observation
(``recency_days``, ``tenure_days`` and the BTYD ``T``), computed again from the stored
first and last purchase days with the same expressions as a full run, so the numbers are
identical, not merely close. Classes, segments and the read models are computed from the
whole table as before (quantiles over every customer are cheap).

Anything an incremental run cannot reproduce exactly falls back to a full run, with the
reason recorded: the first run, ``--full``, changed settings or version, lines (or events,
campaign results) dated before the last run that arrived, changed or were deleted, a date
earlier than the last run's, stored features rewritten since, or too many customers changed.

The CLV and churn models are not refitted every day: a fit is kept ``refit_every_days``
(default 7) and earlier once ``refit_drift_share`` of the customers changed since the fit.
On other days every customer is scored with the stored fit (T moves for everybody; scoring
is a closed form in the engine).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from segmentum import __version__, i18n
from segmentum.config import Settings
from segmentum.features.customer import customer_features
from segmentum.features.rollup import purchase_days
from segmentum.i18n import N_
from segmentum.ingest import returns
from segmentum.models.btyd import GammaGamma, PurchaseModel, unique_rows
from segmentum.models.calibrate import no_purchase_probability
from segmentum.models.clv import ClvModels
from segmentum.models.clv import score as clv_score
from segmentum.models.validate import PURCHASE_MODELS
from segmentum.warehouse import Warehouse

#: Where the last successful run leaves what the next one starts from (one row).
STATE = "run_state"
FULL, INCREMENTAL = "full", "incremental"
#: Bumped when the features change meaning: stored rows of an older version are not carried.
FEATURES_VERSION = 1
#: Settings the features or the CLV scores depend on (the classes are always recomputed).
DEPENDS_ON = (
    "weeks",
    "purchase_model",
    "churn_horizon_days",
    "clv_horizon_months",
    "clv_monthly_discount",
    "clv_min_weeks",
)
#: The spend windows of the features (days before as_of): a line crossing an edge moves.
WINDOW_EDGES = (90, 180)
#: Columns whose change (on lines dated before the last run) forces a full run.
LINE_COLUMNS = (
    "invoice_id",
    "line",
    "customer_id",
    "timestamp",
    "quantity",
    "amount",
    "product_id",
    "category",
    "promo_code",
    "discount",
    "sales_channel",
    "device",
    "original_invoice_id",
)
EVENT_COLUMNS = ("customer_id", "event_type", "timestamp")
RESULT_COLUMNS = ("customer_id", "channel", "group", "sent_at")

# Why a run is full or incremental, and why the models were refitted or not (English msgids,
# Spanish in the catalogs; %(name)s placeholders filled by Plan.message).
KINDS = {FULL: N_("run", "full"), INCREMENTAL: N_("run", "incremental")}
REASONS: dict[str, tuple[str, str]] = {
    "first_run": N_("run", "first run: there is no earlier run to start from"),
    "forced": N_("run", "a full run was asked for (--full)"),
    "version": N_("run", "segmentum was upgraded since the last run"),
    "settings": N_("run", "settings the features or models depend on changed: %(names)s"),
    "features_rewritten": N_(
        "run", "the stored features of %(last)s were rewritten since the last run"
    ),
    "as_of_back": N_("run", "the date %(as_of)s is before the last run's (%(last)s)"),
    "backfill": N_(
        "run",
        "lines dated before the last run's date (%(last)s) arrived, %(lines)s in all: a "
        "backfilled day",
    ),
    "old_lines_changed": N_(
        "run", "lines dated before the last run's date (%(last)s) were changed or deleted"
    ),
    "old_events_changed": N_(
        "run",
        "events or campaign results dated before the last run's date (%(last)s) arrived, "
        "changed or were deleted",
    ),
    "tables_changed": N_(
        "run", "events or campaign results were loaded for the first time or removed"
    ),
    "too_many_changed": N_(
        "run",
        "%(share)s of the customers changed (more than %(limit)s): recomputing everything "
        "costs the same",
    ),
    "changed": N_(
        "run",
        "%(changed)s of %(customers)s customers changed since %(last)s; the others were "
        "carried forward",
    ),
    "refit_full": N_("run", "models refitted: full run"),
    "refit_none": N_("run", "models refitted: no stored fit"),
    "refit_due": N_(
        "run", "models refitted: the last fit (%(fitted)s) is %(days)s days old (every %(every)s)"
    ),
    "refit_drift": N_(
        "run",
        "models refitted: %(share)s of the customers changed since the last fit (%(fitted)s), "
        "more than %(limit)s",
    ),
    "refit_supervised": N_(
        "run", "models refitted: churn comes from the supervised model, refitted on every run"
    ),
    "stored_fit": N_("run", "customers scored with the models fitted on %(fitted)s"),
}


@dataclass
class State:
    """What the last successful run stored for the next one."""

    as_of: _dt.date
    run_id: str
    version: str
    settings: dict[str, Any]
    lines: tuple[int, int]
    events: tuple[int, int] | None
    results: tuple[int, int] | None
    customers: int
    #: The fitted CLV models (:func:`models_state`); None when CLV was not computed.
    models: dict[str, Any] | None = None
    fitted_as_of: _dt.date | None = None
    changed_since_fit: int = 0

    def to_json(self) -> str:
        d = {
            **self.__dict__,
            "as_of": self.as_of.isoformat(),
            "fitted_as_of": self.fitted_as_of.isoformat() if self.fitted_as_of else None,
        }
        return json.dumps(d, default=str)

    @classmethod
    def from_json(cls, text: str) -> State:
        d = json.loads(text)
        d["as_of"] = _dt.date.fromisoformat(d["as_of"])
        d["fitted_as_of"] = (
            _dt.date.fromisoformat(d["fitted_as_of"]) if d.get("fitted_as_of") else None
        )
        for k in ("lines", "events", "results"):
            d[k] = tuple(d[k]) if d.get(k) is not None else None
        return cls(**d)


@dataclass
class Plan:
    """Which kind of run this is and why; for an incremental run, who changed."""

    kind: str
    reason: str
    as_of: _dt.date
    params: dict[str, Any] = field(default_factory=dict)
    previous: State | None = None
    #: Customers whose features are computed again (an engine table of ``customer_id``).
    changed: ir.Table | None = None
    changed_count: int = 0
    #: Of those, the customers with new lines, events or results (what drift counts).
    active_count: int = 0
    customers: int = 0
    #: Fingerprint of the lines (events, results) dated before the previous run's date.
    checked: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    refit: bool = True
    refit_reason: str = "refit_full"
    refit_params: dict[str, Any] = field(default_factory=dict)

    def message(self, lang: str = "en", reason: str | None = None) -> str:
        """Why, as a person reads it (``lang``: es or en)."""
        code = reason or self.reason
        params = self.refit_params if code.startswith(("refit", "stored")) else self.params
        return _say(lang, REASONS[code][1], params)

    def kind_label(self, lang: str = "en") -> str:
        return i18n.translations(lang).upgettext("run", KINDS[self.kind][1])

    def to_dict(self) -> dict[str, Any]:
        """For the run log: the kind, the reasons (codes and English text), the counts."""
        return {
            "kind": self.kind,
            "reason": self.reason,
            "why": self.message("en"),
            "why_es": self.message("es"),
            "models": self.refit_reason,
            "models_why": self.message("en", self.refit_reason),
            "models_why_es": self.message("es", self.refit_reason),
            "changed_customers": self.changed_count,
            "active_customers": self.active_count,
            "customers": self.customers,
        }


def _say(lang: str, msgid: str, params: dict[str, Any]) -> str:
    """``msgid`` translated, with numbers, shares and dates in the language's own form."""
    text = i18n.translations(lang).upgettext("run", msgid)
    shown: dict[str, str] = {}
    for k, v in params.items():
        if k in ("share", "limit"):
            shown[k] = i18n.percent(v, lang)
        elif isinstance(v, _dt.date):
            shown[k] = i18n.date(v, lang)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            shown[k] = i18n.number(v, lang, 0)
        else:
            shown[k] = str(v)
    return text % shown if shown else text


def _cutoff(day: _dt.date) -> ir.TimestampScalar:
    return ibis.literal(_dt.datetime(day.year, day.month, day.day), "timestamp")


def config(settings: Settings) -> dict[str, Any]:
    """The settings the stored numbers depend on, as stored in the state."""
    out: dict[str, Any] = {name: getattr(settings, name) for name in DEPENDS_ON}
    for k, v in out.items():
        if isinstance(v, tuple):
            out[k] = list(v)
    return out


def version() -> str:
    return f"{__version__}/{FEATURES_VERSION}"


def load_state(wh: Warehouse) -> State | None:
    """The last successful run's state, or None (never run, or an unreadable state)."""
    if not wh.has(STATE):
        return None
    rows = wh.table(STATE).select("state").to_pyarrow().to_pylist()
    if not rows:
        return None
    try:
        return State.from_json(rows[-1]["state"])
    except (ValueError, KeyError, TypeError):
        return None


def _fingerprint(
    wh: Warehouse,
    name: str,
    column: str,
    columns: tuple[str, ...],
    lo: _dt.date | None,
    hi: _dt.date,
    whole: tuple[str, ...] = (),
) -> tuple[int, int] | None:
    """Fingerprint of ``name``'s rows with ``column`` in [lo, hi) (None: no such table).

    ``whole``: columns of a fingerprint of every row taken in the same scan and remembered
    for the run (the return links' and the purchase-day rollup's check of the lines)."""
    if not wh.has(name):
        return None
    t = wh.table(name)
    cols = [c for c in columns if c in t.columns]
    cond = t[column] < _cutoff(hi)
    if lo is not None:
        cond &= t[column] >= _cutoff(lo)
    if whole and all(c in t.columns for c in whole):
        return wh.fingerprints(t, [(cond, cols), (None, whole)])[0]
    return wh.fingerprint(t.filter(cond), cols)


def fingerprints(
    wh: Warehouse, as_of: _dt.date, since: _dt.date | None = None
) -> dict[str, tuple[int, int] | None]:
    """Fingerprints of the lines, events and campaign results dated before ``as_of`` (from
    ``since`` on, when given: the additive part a day adds)."""
    return {
        # A check of every line by the same scan (the plan's: one scan, not two); a day's
        # part (``since``) reads only its own rows.
        "lines": _fingerprint(
            wh,
            "transactions",
            "timestamp",
            LINE_COLUMNS,
            since,
            as_of,
            () if since else returns.SOURCE_COLUMNS,
        ),
        "events": _fingerprint(wh, "events", "timestamp", EVENT_COLUMNS, since, as_of),
        "results": _fingerprint(wh, "campaign_results", "sent_at", RESULT_COLUMNS, since, as_of),
    }


def _add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None or b is None:
        return a if b is None else b
    return (a[0] + b[0], a[1] + b[1])


def _stored_features(wh: Warehouse, as_of: _dt.date) -> ir.Table:
    f = wh.table("customer_features")
    return f.filter(f.as_of == ibis.literal(as_of, "date"))


def plan(wh: Warehouse, as_of: _dt.date, settings: Settings, *, full: bool = False) -> Plan:
    """Decide the kind of run for ``as_of`` (after this run's ingest) and, for an incremental
    one, materialise the customers whose features must be computed again."""
    last = load_state(wh)

    def full_run(reason: str, **params: Any) -> Plan:
        return Plan(FULL, reason, as_of, params, last)

    if full:
        return full_run("forced")
    if last is None:
        return full_run("first_run")
    if last.version != version():
        return full_run("version")
    now = config(settings)
    moved = sorted(k for k in set(now) | set(last.settings) if now.get(k) != last.settings.get(k))
    if moved:
        return full_run("settings", names=", ".join(moved))
    if as_of < last.as_of:
        return full_run("as_of_back", as_of=as_of, last=last.as_of)
    if not wh.has("customer_features"):
        return full_run("features_rewritten", last=last.as_of)
    prev = _stored_features(wh, last.as_of)
    counts = (
        prev.aggregate(n=prev.count(), mine=(prev.run_id == last.run_id).cast("int64").sum())
        .to_pyarrow()
        .to_pylist()[0]
    )
    if int(counts["n"]) != last.customers or int(counts["mine"] or 0) != last.customers:
        return full_run("features_rewritten", last=last.as_of)
    checked = fingerprints(wh, last.as_of)
    if (checked["events"] is None) != (last.events is None) or (checked["results"] is None) != (
        last.results is None
    ):
        return full_run("tables_changed")
    if checked["lines"] != last.lines:
        now_lines = checked["lines"] or (0, 0)
        if now_lines[0] > last.lines[0]:
            return full_run("backfill", lines=now_lines[0] - last.lines[0], last=last.as_of)
        return full_run("old_lines_changed", last=last.as_of)
    if checked["events"] != last.events or checked["results"] != last.results:
        return full_run("old_events_changed", last=last.as_of)
    changed = wh.materialize(_changed_customers(wh, last.as_of, as_of), "changed")
    counts = (
        changed.aggregate(n=changed.count(), active=changed.active.cast("int64").sum())
        .to_pyarrow()
        .to_pylist()[0]
    )
    n_changed, n_active = int(counts["n"]), int(counts["active"] or 0)
    share = n_changed / max(last.customers, 1)
    if share > settings.incremental_max_changed_share:
        wh.drop(changed.get_name())
        return full_run(
            "too_many_changed", share=share, limit=settings.incremental_max_changed_share
        )
    p = Plan(
        INCREMENTAL,
        "changed",
        as_of,
        {"changed": n_changed, "customers": last.customers, "last": last.as_of},
        last,
        changed=changed,
        changed_count=n_changed,
        active_count=n_active,
        customers=last.customers,
        checked=checked,
    )
    _plan_refit(p, last, settings)
    return p


def _plan_refit(p: Plan, last: State, settings: Settings) -> None:
    """Whether this incremental day refits the CLV and churn models, and why."""
    fitted = last.fitted_as_of
    if last.models is None or fitted is None:
        p.refit, p.refit_reason = True, "refit_none"
        return
    if (last.models.get("churn") or {}).get("kind") == "supervised":
        p.refit, p.refit_reason = True, "refit_supervised"
        return
    age = (p.as_of - fitted).days
    if age >= settings.refit_every_days:
        p.refit, p.refit_reason = True, "refit_due"
        p.refit_params = {"fitted": fitted, "days": age, "every": settings.refit_every_days}
        return
    share = (last.changed_since_fit + p.active_count) / max(last.customers, 1)
    if share > settings.refit_drift_share:
        p.refit, p.refit_reason = True, "refit_drift"
        p.refit_params = {"share": share, "fitted": fitted, "limit": settings.refit_drift_share}
        return
    p.refit, p.refit_reason = False, "stored_fit"
    p.refit_params = {"fitted": fitted}


def _changed_customers(wh: Warehouse, last: _dt.date, as_of: _dt.date) -> ir.Table:
    """Customers whose features an incremental run computes again (module docstring), and
    whether they did something new (``active``: a line, event or campaign result dated on or
    after the last run's date) or only had a purchase slide across a spend window's edge."""
    tx = wh.table("transactions")
    ts = tx.timestamp
    new = ts >= _cutoff(last)
    slid = ibis.literal(False)
    for days in WINDOW_EDGES:
        lo, hi = last - _dt.timedelta(days=days), as_of - _dt.timedelta(days=days)
        if hi > lo:
            slid |= (ts >= _cutoff(lo)) & (ts < _cutoff(hi))
    ids = tx.filter((new | slid) & tx.customer_id.notnull()).select("customer_id", active=new)
    for name, col in (("events", "timestamp"), ("campaign_results", "sent_at")):
        if wh.has(name):
            t = wh.table(name)
            t = t.filter((t[col] >= _cutoff(last)) & t.customer_id.notnull())
            ids = ids.union(
                t.select(
                    customer_id=t.customer_id.cast(tx.customer_id.type()),
                    active=ibis.literal(True),
                )
            )
    return ids.group_by("customer_id").aggregate(active=ids.active.any())


def features(wh: Warehouse, p: Plan, weeks: bool = True) -> ir.Table:
    """The features of every customer as of ``p.as_of``: the changed customers' computed
    again from their own lines, everybody else's carried from the last run and moved on."""
    assert p.previous is not None and p.changed is not None
    as_of, changed = p.as_of, p.changed
    days = purchase_days(wh)  # brings the rollup and the return links up to date first
    mine = [
        wh.materialize(wh.table("transactions").semi_join(changed, "customer_id"), "inc_lines"),
        wh.materialize(days.semi_join(changed, "customer_id"), "inc_days"),
        wh.materialize(wh.table(returns.LINKS).semi_join(changed, "customer_id"), "inc_links"),
    ]
    extra: dict[str, ir.Table | None] = {"events": None, "campaign_results": None}
    for name in extra:
        if wh.has(name):
            extra[name] = wh.materialize(wh.table(name).semi_join(changed, "customer_id"), "inc")
            mine.append(extra[name])
    fresh = customer_features(
        mine[0],
        as_of,
        events=extra["events"],
        campaign_results=extra["campaign_results"],
        weeks=weeks,
        days=mine[1],
        links=mine[2],
    )
    fresh = wh.materialize(fresh, "inc_features")
    for t in mine:
        wh.drop(t.get_name())
    prev = _stored_features(wh, p.previous.as_of).anti_join(changed, "customer_id")
    # The same expressions as customer_features: identical numbers, not merely close ones.
    end = ibis.literal(as_of, "date") - ibis.interval(days=1)
    unit = 7.0 if weeks else 1.0
    moved = prev.mutate(
        recency_days=end.delta(prev.last_purchase, unit="day"),
        tenure_days=end.delta(prev.first_purchase, unit="day"),
        T=end.delta(prev.first_purchase, unit="day").cast("float64") / unit,
        as_of=ibis.literal(as_of, "date"),
    )
    schema = fresh.schema()
    moved = moved.select(*(moved[c].cast(schema[c]).name(c) for c in fresh.columns))
    return moved.union(fresh)


def state_after(
    wh: Warehouse,
    p: Plan,
    run_id: str,
    settings: Settings,
    customers: int,
    models: dict[str, Any] | None,
) -> State:
    """What this run leaves for the next: the checks as of its date, its models."""
    last = p.previous
    if p.kind == INCREMENTAL and last is not None:
        added = fingerprints(wh, p.as_of, since=last.as_of)
        prints = {k: _add(p.checked.get(k), added[k]) for k in added}
    else:
        prints = fingerprints(wh, p.as_of)
    if p.refit or last is None:
        fitted, since = (p.as_of if models is not None else None), 0
    else:
        fitted, since = last.fitted_as_of, last.changed_since_fit + p.active_count
        models = last.models if models is None else models
    return State(
        as_of=p.as_of,
        run_id=run_id,
        version=version(),
        settings=config(settings),
        lines=prints["lines"] or (0, 0),
        events=prints["events"],
        results=prints["results"],
        customers=customers,
        models=models,
        fitted_as_of=fitted,
        changed_since_fit=since,
    )


def save_state(wh: Warehouse, state: State) -> None:
    row = pa.table(
        {
            "as_of": pa.array([state.as_of], pa.date32()),
            "run_id": [state.run_id],
            "state": [state.to_json()],
        }
    )
    wh.write(STATE, row)


def models_state(models: ClvModels) -> dict[str, Any]:
    """The fitted CLV models as JSON-able values (parameters, the choice, the churn map)."""
    cal = models.churn_calibration
    churn: dict[str, Any] | None = None
    if cal is not None:
        churn = (
            {"kind": "supervised"}
            if cal.mapping is None
            else {
                "kind": "isotonic",
                "x": cal.mapping[0],
                "y": cal.mapping[1],
                "horizon_days": cal.horizon_days,
                "source": cal.source,
            }
        )
    return {
        "purchase_model": models.purchase_model,
        "candidates": {
            name: {"params": m.params_, "at_bound": list(getattr(m, "at_bound_", []))}
            for name, m in models.candidates.items()
        },
        "spend": models.spend.params_ if models.spend is not None else None,
        "spend_basis": models.spend_basis,
        "mean_spend": models.mean_spend,
        "dropout_identified": models.dropout_identified,
        "customers": models.customers,
        "repeat_buyers": models.repeat_buyers,
        "notes": models.notes,
        "notes_es": models.notes_es,
        "reason": models.reason,
        "reason_es": models.reason_es,
        "comparison": models.comparison,
        "choice": models.choice(),
        "churn": churn,
    }


def restore_models(state: dict[str, Any]) -> ClvModels:
    """The :class:`ClvModels` a stored state describes, ready to score (not to refit)."""
    candidates: dict[str, PurchaseModel] = {}
    for name, c in state["candidates"].items():
        m = PURCHASE_MODELS[name]()
        m.params_ = {k: float(v) for k, v in c["params"].items()}
        m.at_bound_ = list(c.get("at_bound") or [])
        m.converged_ = True
        candidates[name] = m
    spend = None
    if state["spend"] is not None:
        spend = GammaGamma()
        spend.params_ = {k: float(v) for k, v in state["spend"].items()}
        spend.converged_ = True
    out = ClvModels(
        candidates[state["purchase_model"]],
        spend,
        int(state["customers"]),
        int(state["repeat_buyers"]),
        notes=list(state["notes"]),
        candidates=candidates,
        purchase_model=state["purchase_model"],
        reason=state["reason"],
        reason_es=state["reason_es"],
        spend_basis=state["spend_basis"],
        mean_spend=float(state["mean_spend"]),
        dropout_identified=bool(state["dropout_identified"]),
        notes_es=list(state["notes_es"]),
        comparison=list(state["comparison"]),
    )
    return out


def stored_churn(
    wh: Warehouse, features: ir.Table, models: ClvModels, state: dict[str, Any], weeks: bool
) -> ir.Table | None:
    """Churn probabilities with the stored isotonic map, per distinct (x, t_x, T) of
    ``features``, as :func:`segmentum.models.calibrate.calibrate_churn` gives them."""
    churn = state.get("churn")
    if not churn or churn.get("kind") != "isotonic":
        return None
    u = features.select("x", "t_x", "T").distinct().to_pyarrow()
    (x, tx, t), _, _ = unique_rows(u["x"].to_numpy(), u["t_x"].to_numpy(), u["T"].to_numpy())
    h = churn["horizon_days"] / (7.0 if weeks else 1.0)
    raw = no_purchase_probability(models.purchases, x, tx, t, h)
    # IsotonicRegression(out_of_bounds="clip").predict: linear between thresholds, clipped.
    p = np.interp(raw, np.asarray(churn["x"], float), np.asarray(churn["y"], float))
    table = pa.table(
        {
            "x": x,
            "t_x": tx,
            "T": t,
            "churn_probability": p,
            "churn_source": [churn["source"]] * len(x),
        }
    )
    return wh.from_arrow(table, "clv_churn")


def score_stored(
    wh: Warehouse, features: ir.Table, state: dict[str, Any], as_of: _dt.date, settings: Settings
) -> tuple[ir.Table, ClvModels]:
    """``customer_clv`` rows for every customer, scored with the stored fit (not stored)."""
    models = restore_models(state)
    churn = stored_churn(wh, features, models, state, settings.weeks)
    return scores(wh, features, models, as_of, settings, churn), models


def scores(
    wh: Warehouse,
    features: ir.Table,
    models: ClvModels,
    as_of: _dt.date,
    settings: Settings,
    churn: ir.Table | None,
) -> ir.Table:
    """``customer_clv`` rows scored with ``models`` and the settings' horizon, discount and
    minimum history: the same call for a fresh fit and a stored one."""
    return clv_score(
        wh,
        features,
        models,
        as_of,
        horizon_months=settings.clv_horizon_months,
        monthly_discount=settings.clv_monthly_discount,
        min_weeks=settings.clv_min_weeks,
        weeks=settings.weeks,
        churn=churn,
    )
