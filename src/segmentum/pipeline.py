"""The main job: load what is new, compute features and classes, record the run, summarise.

Each step writes its results back to the warehouse with the ``as_of`` date and the run id.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum import demo, i18n, incremental
from segmentum.campaigns.timing import contact_times
from segmentum.config import Settings, load_settings
from segmentum.errors import InputError, ModelError, SegmentumError
from segmentum.features import customer_features, default_as_of, purchase_days
from segmentum.history import retention
from segmentum.history.log import deliver, log_changes
from segmentum.history.webhooks import deliver_subscriptions, subscriptions
from segmentum.ingest import IngestReport, ingest, returns
from segmentum.ingest.core import currency_check, has_amounts, id_match, revenue_totals
from segmentum.models.clv import NO_AMOUNTS, ClvModels, fit_for_run
from segmentum.models.clv import record as record_clv_models
from segmentum.precompute import build_lookup, build_overview, publish_read_models
from segmentum.progress import Progress, Silent
from segmentum.satisfaction.compute import has_responses
from segmentum.satisfaction.step import run as satisfaction_run
from segmentum.segments.classes import RFM_RULES, classify, lifecycle_note, load_rfm_rules
from segmentum.segments.discover import discover
from segmentum.segments.store import Segments
from segmentum.serving import serving_path
from segmentum.warehouse import Warehouse, connect, engine_error

# Files `segmentum run --data DIR` picks up, by table, in load order.
DATA_FILES: dict[str, tuple[str, ...]] = {
    "customers": ("clientes.csv", "customers.csv", "customers.parquet", "customers.xlsx"),
    "products": ("products.csv", "productos.csv", "products.parquet"),
    "transactions": ("transactions.csv", "transactions.parquet", "ventas.csv", "facturas.csv"),
    "events": ("events.csv", "events.parquet", "events.jsonl", "eventos.csv"),
    "campaign_results": ("campaign_results.csv", "campaign_results.parquet"),
    "prospects": ("prospects.csv", "prospects.parquet"),
    "responses": ("responses.csv", "responses.parquet", "encuestas.csv", "respuestas.csv"),
    "population": ("poblacion.csv", "population.csv", "population.parquet", "poblacion.xlsx"),
}


@dataclass
class RunSummary:
    """What a pipeline run did and what the customer base looks like now."""

    run_id: str
    as_of: _dt.date | None = None
    ingest: list[IngestReport] = field(default_factory=list)
    customers: int = 0
    revenue: float = 0.0
    anonymous_revenue: float = 0.0
    rfm_segments: list[dict[str, Any]] = field(default_factory=list)
    value_tiers: list[dict[str, Any]] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    value_potential: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The same warnings in Spanish, one for one (a library's own message stays as it came).
    warnings_es: list[str] = field(default_factory=list)
    segments: dict[str, int] = field(default_factory=dict)
    segment_changes: dict[str, int] = field(default_factory=dict)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    # The purchase model chosen for CLV, why, and every candidate's fit.
    purchase_model: dict[str, Any] = field(default_factory=dict)
    # Return lines, how many are linked to their purchase, by kind; orders cancelled in full.
    returns: dict[str, Any] = field(default_factory=dict)
    # Currency label of the amounts ("" when nothing says); revenue from the stored net lines
    # (total = identified + anonymous) and customers netting to zero or less; id matching.
    currency: str = ""
    revenue_check: dict[str, Any] = field(default_factory=dict)
    id_match: dict[str, Any] = field(default_factory=dict)
    # Survey answers and the groups whose NPS differs from the rest (when responses exist).
    satisfaction: dict[str, Any] = field(default_factory=dict)
    # The market beyond the customer base (when a population is loaded): summary, top targets.
    market: dict[str, Any] = field(default_factory=dict)
    # Which kind of run this was (full / incremental) and why, and why the models were
    # refitted or not (segmentum.incremental.Plan.to_dict).
    kind: str = ""
    plan: dict[str, Any] = field(default_factory=dict)

    def warn(self, en: str, es: str | None = None) -> None:
        """A warning for the summary, in English and Spanish (once)."""
        if en and en not in self.warnings:
            self.warnings.append(en)
            self.warnings_es.append(es or en)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "ingest": [r.to_dict() for r in self.ingest],
            "customers": self.customers,
            "revenue": self.revenue,
            "anonymous_revenue": self.anonymous_revenue,
            "rfm_segments": self.rfm_segments,
            "value_tiers": self.value_tiers,
            "lifecycle": self.lifecycle,
            "steps": self.steps,
            "models": self.models,
            "value_potential": self.value_potential,
            "warnings": self.warnings,
            "warnings_es": self.warnings_es,
            "segments": self.segments,
            "segment_changes": self.segment_changes,
            "clusters": self.clusters,
            "purchase_model": self.purchase_model,
            "returns": self.returns,
            "currency": self.currency,
            "revenue_check": self.revenue_check,
            "id_match": self.id_match,
            "satisfaction": self.satisfaction,
            "market": self.market,
            "kind": self.kind,
            "plan": self.plan,
        }


def _share_table(classes: ir.Table, features: ir.Table, column: str) -> list[dict[str, Any]]:
    """Size and revenue share of each value of ``column`` (only aggregates come back)."""
    j = classes.select("customer_id", column).join(
        features.select("customer_id", "monetary"), "customer_id"
    )
    g = j.group_by(column).aggregate(customers=j.count(), revenue=j.monetary.sum())
    total = g.revenue.sum().over(ibis.window())
    n = g.customers.sum().over(ibis.window())
    g = g.mutate(customer_share=g.customers / n, revenue_share=g.revenue / total)
    rows: list[dict[str, Any]] = g.order_by(ibis.desc("revenue")).to_pyarrow().to_pylist()
    return rows


def compute_features(
    wh: Warehouse,
    as_of: _dt.date | None,
    settings: Settings,
    run_id: str,
    plan: incremental.Plan | None = None,
) -> tuple[_dt.date, ir.Table]:
    """Compute and store ``customer_features`` for ``as_of`` (default: after the last sale).

    With an incremental ``plan``, only its changed customers are computed again; the others'
    rows are carried from the last run (:mod:`segmentum.incremental`).
    """
    if plan is not None and plan.kind == incremental.INCREMENTAL:
        feats = incremental.features(wh, plan, settings.weeks).mutate(run_id=ibis.literal(run_id))
        # The rows carried are the last run's, of an earlier day than those replaced.
        later = plan.previous is not None and plan.previous.as_of < plan.as_of
        stored = wh.replace_where(
            "customer_features", feats, "as_of", plan.as_of, reads_other_values=later
        )
        return plan.as_of, stored.filter(stored.as_of == ibis.literal(plan.as_of, "date"))
    tx = wh.table("transactions")
    as_of = as_of or default_as_of(tx)
    events = wh.table("events") if wh.has("events") else None
    results = wh.table("campaign_results") if wh.has("campaign_results") else None
    days = purchase_days(wh)  # brings the return links up to date too
    feats = customer_features(
        tx,
        as_of,
        events=events,
        campaign_results=results,
        weeks=settings.weeks,
        days=days,
        links=wh.table(returns.LINKS),
    )
    feats = feats.mutate(run_id=ibis.literal(run_id))
    stored = wh.replace_where("customer_features", feats, "as_of", as_of)
    return as_of, stored.filter(stored.as_of == ibis.literal(as_of, "date"))


def current_features(
    wh: Warehouse, as_of: _dt.date | None, settings: Settings, run_id: str
) -> tuple[_dt.date, ir.Table]:
    """The features of ``as_of`` for a command other than the run (``segmentum classify``):
    the last run's own rows where they are current (its day, nothing loaded since), else
    computed and stored. Rewriting current rows under another run id would make the next run
    a full one (its plan cannot tell them from features computed on other data)."""
    target = as_of or default_as_of(wh.table("transactions"))
    last = incremental.load_state(wh)
    if last is not None and last.as_of == target:
        p = incremental.plan(wh, target, settings)
        if p.changed is not None:
            wh.drop(p.changed.get_name())
        if p.kind == incremental.INCREMENTAL and p.changed_count == 0:
            f = wh.table("customer_features")
            return target, f.filter(f.as_of == ibis.literal(target, "date"))
    return compute_features(wh, target, settings, run_id)


def compute_clv(
    wh: Warehouse, features: ir.Table, as_of: _dt.date, settings: Settings, run_id: str
) -> tuple[ir.Table, ClvModels]:
    """Fit the purchase models (one chosen on a holdout of the history) and Gamma-Gamma on
    the features' summary; store ``customer_clv`` and the choice (``clv_models``)."""
    models, churn = fit_for_run(
        wh,
        features,
        as_of,
        source=purchase_days(wh),
        lines=wh.table("transactions"),
        purchase_model=settings.purchase_model,
        churn_horizon_days=settings.churn_horizon_days,
        weeks=settings.weeks,
    )
    record_clv_models(wh, models, as_of, run_id)
    scored = incremental.scores(wh, features, models, as_of, settings, churn).mutate(
        run_id=ibis.literal(run_id)
    )
    stored = wh.replace_where("customer_clv", scored, "as_of", as_of)
    return stored.filter(stored.as_of == ibis.literal(as_of, "date")), models


def compute_classes(
    wh: Warehouse,
    features: ir.Table,
    as_of: _dt.date,
    settings: Settings,
    run_id: str,
    clv: ir.Table | None = None,
    *,
    reuse_clv: bool = False,
) -> ir.Table:
    """Compute and store ``customer_classes`` for ``as_of`` from its features.

    ``reuse_clv``: without ``clv``, use the ``customer_clv`` rows stored for ``as_of`` (so
    classifying again after a run keeps the potential tier and the value x potential grid).
    """
    if clv is None and reuse_clv and wh.has("customer_clv"):
        stored_clv = wh.table("customer_clv")
        stored_clv = stored_clv.filter(stored_clv.as_of == ibis.literal(as_of, "date"))
        if int(stored_clv.count().to_pyarrow().as_py()):
            clv = stored_clv
    rules = load_rfm_rules(settings.rfm_rules) if settings.rfm_rules else RFM_RULES
    classes = classify(
        features,
        clv=clv,
        rules=rules,
        tier_cuts=settings.value_tier_cuts,
        tier_method=settings.value_tier_method,
        score_cuts=settings.value_tier_score_cuts,
    ).mutate(run_id=ibis.literal(run_id))
    stored = wh.replace_where("customer_classes", classes, "as_of", as_of)
    return stored.filter(stored.as_of == ibis.literal(as_of, "date"))


def refresh_read_models(wh: Warehouse, as_of: _dt.date) -> None:
    """Rebuild the service's lookup and dashboard aggregates after a step run on its own
    (``segmentum classify``), so the API never disagrees with the tables."""
    if wh.has("customer_lookup"):
        build_lookup(wh, as_of)
        build_overview(wh, as_of)


def score_with_stored(
    wh: Warehouse,
    features: ir.Table,
    as_of: _dt.date,
    settings: Settings,
    run_id: str,
    models: dict[str, Any],
) -> tuple[ir.Table, ClvModels]:
    """Store ``customer_clv`` scored with a stored fit (an incremental day between refits)."""
    scored, fitted = incremental.score_stored(wh, features, models, as_of, settings)
    stored = wh.replace_where(
        "customer_clv", scored.mutate(run_id=ibis.literal(run_id)), "as_of", as_of
    )
    return stored.filter(stored.as_of == ibis.literal(as_of, "date")), fitted


# Data files a folder may hold that `run --data` reads by name (DATA_FILES) or on purpose.
_DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".xlsx", ".xls", ".json", ".jsonl")
_READ_ON_PURPOSE = {"ground_truth.csv", "segments.yaml"}


def data_files(folder: Path) -> dict[str, list[Path]]:
    """The files of ``folder`` that ``run --data`` loads, by table, in the order it loads them:
    the table's own name (``ventas.csv``), then the exports named after it with anything after
    a ``_``, ``-`` or ``.`` (``ventas_2025-06-30.csv``, ``transactions-2.parquet``), sorted by
    name, so dated daily exports go in day by day. A file already loaded is skipped by ingest
    (the same content is recognised)."""
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    out: dict[str, list[Path]] = {}
    for table, names in DATA_FILES.items():
        exact = next((folder / n for n in names if (folder / n).is_file()), None)
        kinds = {(Path(n).stem.lower(), Path(n).suffix.lower()) for n in names}
        dated = [
            f
            for f in files
            if f != exact
            and any(
                f.suffix.lower() == suffix
                and f.stem.lower().startswith(stem)
                and f.stem[len(stem) : len(stem) + 1] in ("_", "-", ".")
                and len(f.stem) > len(stem) + 1
                for stem, suffix in kinds
            )
        ]
        if exact is not None or dated:
            out[table] = ([exact] if exact is not None else []) + dated
    return out


def _warn_unread(folder: Path, summary: RunSummary) -> None:
    """Say which data files of ``folder`` a run does not load (their names are not known):
    a file dropped there was skipped without a word."""
    known = {f.name for found in data_files(folder).values() for f in found} | _READ_ON_PURPOSE
    known |= {n for names in DATA_FILES.values() for n in names}
    unread = sorted(
        f.name
        for f in folder.iterdir()
        if f.is_file()
        and not f.name.startswith(".")
        and f.suffix.lower() in _DATA_SUFFIXES
        and f.name not in known
    )
    if unread:
        files = ", ".join(unread[:10]) + (f" (+{len(unread) - 10})" if len(unread) > 10 else "")
        summary.warn(
            f"files not loaded, their names are not ones the run reads: {files}; name them like "
            "transactions.csv or customers.csv (or transactions_2025-06-30.csv), or load them with "
            "segmentum ingest TABLE FILE",
            f"archivos no cargados, sus nombres no son de los que lee la ejecución: {files}; "
            "llámalos como ventas.csv o clientes.csv (o ventas_2025-06-30.csv), o cárgalos "
            "con segmentum ingest TABLA ARCHIVO",
        )


def _record_run(
    wh: Warehouse, summary: RunSummary, started: _dt.datetime, status: str, error: str | None
) -> None:
    # Which kind of run and why (added columns: a run log of an earlier version gets them).
    kind = pa.array([summary.kind or None], pa.string())
    why = pa.array([summary.plan.get("why") if summary.plan else None], pa.string())
    why_es = pa.array([summary.plan.get("why_es") if summary.plan else None], pa.string())
    if wh.has("pipeline_runs"):
        have = set(wh.table("pipeline_runs").columns)
        missing = [(c, ibis.dtype("string")) for c in ("kind", "why", "why_es") if c not in have]
        if missing:
            wh._add_columns("pipeline_runs", missing)
    row = pa.table(
        {
            "run_id": [summary.run_id],
            "started_at": pa.array([started], pa.timestamp("us")),
            "finished_at": pa.array(
                [_dt.datetime.now(_dt.UTC).replace(tzinfo=None)], pa.timestamp("us")
            ),
            "as_of": pa.array([summary.as_of], pa.date32()),
            "status": [status],
            "steps": [json.dumps(summary.steps)],
            "error": pa.array([error], pa.string()),
            "kind": kind,
            "why": why,
            "why_es": why_es,
        }
    )
    if wh.has("pipeline_runs"):
        # The run's own row written before its publish (so the published copy lists it) is
        # replaced by the finished one.
        ids = wh.table("pipeline_runs").run_id
        if int(ids.isin([summary.run_id]).sum().to_pyarrow().as_py() or 0):
            keys = wh.from_arrow(pa.table({"run_id": [summary.run_id]}), "run")
            wh.delete_keys("pipeline_runs", keys, ["run_id"])
        wh.insert("pipeline_runs", row)
    else:
        wh.write("pipeline_runs", row)


INTERRUPTED = (
    "the run stopped before it finished: its process was killed or its machine stopped "
    "(hint: run it again: segmentum run)"
)


def _mark_interrupted(wh: Warehouse, current: str) -> int:
    """Runs the log still calls running, other than ``current``, are marked interrupted: a
    run holds the warehouse while it runs, so one that left its row running was stopped
    (killed, the machine down) after writing it. Returns how many."""
    if not wh.has("pipeline_runs"):
        return 0
    t = wh.table("pipeline_runs")
    stale = t.filter((t.status == "running") & (t.run_id != current)).to_pyarrow()
    if not stale.num_rows:
        return 0
    n = stale.num_rows
    fixed = stale.set_column(
        stale.schema.get_field_index("status"), "status", pa.array(["interrupted"] * n)
    ).set_column(
        stale.schema.get_field_index("error"), "error", pa.array([INTERRUPTED] * n, pa.string())
    )
    keys = wh.from_arrow(pa.table({"run_id": stale["run_id"]}), "run")
    wh.delete_keys("pipeline_runs", keys, ["run_id"])
    wh.insert("pipeline_runs", fixed)
    return n


def run(
    warehouse: Warehouse | str | None = None,
    *,
    data: str | Path | None = None,
    as_of: _dt.date | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
    full: bool = False,
) -> RunSummary:
    """Run the pipeline: ingest the files found in ``data`` (if given), features, classes.

    After the first run only what changed since the last one is computed again, unless
    ``full`` (or a change that an incremental run cannot follow exactly, see
    :mod:`segmentum.incremental`). Every run is recorded in ``pipeline_runs`` with its kind,
    why, and its steps, whether it succeeded or not.
    """
    settings = settings or load_settings()
    progress = progress or Silent()
    wh = warehouse if isinstance(warehouse, Warehouse) else connect(warehouse or settings.warehouse)
    summary = RunSummary(run_id=uuid.uuid4().hex[:12])
    started = _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    loaded = contextlib.ExitStack()

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t0 = _dt.datetime.now(_dt.UTC)
        progress.step(name)
        before = wh.temp_tables()
        try:
            out = fn()
        except Exception as exc:
            # An engine's own failure (Spark's come wrapped in a Java stack) becomes one line
            # naming the step and the cause, in the run log and on the command line.
            engine = engine_error(exc, f"step '{name}'")
            summary.steps.append(
                {
                    "step": name,
                    "status": "failed",
                    "error": engine.message
                    if engine
                    else str(exc).splitlines()[0]
                    if str(exc)
                    else type(exc).__name__,
                }
            )
            if engine is not None:
                raise engine from exc
            raise
        # What the step staged and does not hand on is freed now, not at the end of the run.
        wh.release(before, out)
        summary.steps.append(
            {
                "step": name,
                "status": "ok",
                "seconds": round((_dt.datetime.now(_dt.UTC) - t0).total_seconds(), 3),
            }
        )
        return out

    try:
        _mark_interrupted(wh, summary.run_id)
        if data is not None:
            folder = Path(data)
            if not folder.is_dir():
                raise InputError(
                    f"{folder}: no such folder",
                    "give the folder your exports are in: segmentum run --data FOLDER",
                )
            _warn_unread(folder, summary)
            for table, paths in data_files(folder).items():
                for path in paths:
                    reports = step(
                        f"ingest {table}",
                        lambda t=table, p=path: ingest(  # type: ignore[misc]
                            t, p, warehouse=wh, settings=settings, progress=progress
                        ),
                    )
                    summary.ingest.extend(reports)
            if (folder / "ground_truth.csv").is_file():
                step(
                    "demo ground truth",
                    lambda: demo.load_ground_truth(wh, folder / "ground_truth.csv"),
                )
        from segmentum.realtime.drain import drain, waiting

        if waiting(wh, settings):  # events sent to POST /v1/events since the last run
            summary.ingest.extend(step("tracked events", lambda: drain(wh, settings, progress)))
        from segmentum.campaigns import unsubscribe as unsub

        if unsub.waiting(wh.url, settings):  # clicks on emails' unsubscribe links since
            step("unsubscribes", lambda: unsub.fold_waiting(wh, settings))
        # From here on the run only reads what was loaded: the fingerprints that tell whether
        # the return links and the purchase-day rollup are current are taken once, not per step.
        loaded.enter_context(wh.reading_only(("transactions", "events", "campaign_results")))
        # Inside the step: a warehouse without its lines fails as a step, with its cause.
        plan = step(
            "plan",
            lambda: incremental.plan(
                wh, as_of or default_as_of(wh.table("transactions")), settings, full=full
            ),
        )
        target = plan.as_of
        summary.kind, summary.plan = plan.kind, plan.to_dict()
        summary.steps[-1].update(kind=plan.kind, reason=plan.reason)
        as_of_used, feats = step(
            "features", lambda: compute_features(wh, target, settings, summary.run_id, plan)
        )
        summary.steps[-1].update(
            kind=plan.kind,
            customers_computed=plan.changed_count if plan.changed is not None else None,
        )
        summary.as_of = as_of_used
        fitted: dict[str, Any] | None = None
        if not has_amounts(wh):
            summary.warn(*NO_AMOUNTS)
        clv: ir.Table | None = None
        stored_models = plan.previous.models if plan.previous and not plan.refit else None
        try:
            if stored_models is not None:
                clv, models = step(
                    "clv",
                    lambda: score_with_stored(
                        wh, feats, as_of_used, settings, summary.run_id, stored_models
                    ),
                )
                summary.steps[-1].update(kind="stored fit", reason=plan.refit_reason)
            else:
                clv, models = step(
                    "clv", lambda: compute_clv(wh, feats, as_of_used, settings, summary.run_id)
                )
                summary.steps[-1].update(kind="refit", reason=plan.refit_reason)
                fitted = incremental.models_state(models)
            summary.models = {
                **{name: m.params_ for name, m in models.candidates.items()},
                **({"gamma_gamma": models.spend.params_} if models.spend else {}),
            }
            summary.purchase_model = (
                models.choice() if stored_models is None else stored_models["choice"]
            )
            notes_es = models.notes_es if len(models.notes_es) == len(models.notes) else []
            for i, n in enumerate(models.notes):
                summary.warn(n, notes_es[i] if notes_es else None)
        except ModelError as exc:
            # Too little history for the models is a fact about the data, not a failed run.
            summary.steps[-1]["status"] = "skipped"
            summary.warn(
                f"customer lifetime value not computed: {exc}",
                f"valor del cliente no calculado: {i18n.error_text('es', exc)}",
            )
        classes = step(
            "classes",
            lambda: compute_classes(wh, feats, as_of_used, settings, summary.run_id, clv),
        )
        note = lifecycle_note(feats)
        if note:
            summary.warn(*note)
        step(
            "contact times",
            lambda: contact_times(
                wh,
                as_of_used,
                changed=plan.changed,
                since=plan.previous.as_of if plan.previous else None,
            ),
        )
        summary.steps[-1].update(kind=plan.kind)
        seg_files = [Path(settings.segments_file)] if settings.segments_file else []
        if data is not None and (Path(data) / "segments.yaml").is_file():
            seg_files.append(Path(data) / "segments.yaml")
        store = Segments(wh, settings)
        for f in seg_files:
            step(f"load segments {f.name}", lambda f=f: store.load_yaml(f))  # type: ignore[misc]
        if store.list():
            report = step("segments", lambda: store.compute(as_of_used, summary.run_id))
            summary.segments = report.sizes
            summary.segment_changes = step(
                "membership log",
                lambda: log_changes(
                    wh, as_of_used, summary.run_id, queue=bool(settings.webhook_url)
                ),
            )
            if settings.webhook_url:
                sent = step(
                    "webhooks",
                    lambda: deliver(wh, settings.webhook_url, settings.webhook_secret),
                )
                if sent.failed:
                    why = "; ".join(sent.errors[:2])
                    summary.warn(
                        f"{sent.failed} segment events could not be delivered to the webhook "
                        f"({why}); they stay queued for the next run",
                        f"{sent.failed} eventos de segmento no se pudieron entregar al webhook "
                        f"({why}); siguen en cola para la próxima ejecución",
                    )
            if subscriptions(wh):
                subs = step("segment webhooks", lambda: deliver_subscriptions(wh))
                if subs.failed:
                    why = "; ".join(subs.errors[:2])
                    summary.warn(
                        f"{subs.failed} segment events could not be delivered to subscribed "
                        f"webhooks ({why}); they are sent again next run",
                        f"{subs.failed} eventos de segmento no se pudieron entregar a los webhooks "
                        f"suscritos ({why}); se envían de nuevo en la próxima ejecución",
                    )
        if settings.discover_segments:
            try:
                # Refitted with the CLV models (on their schedule); kept in between.
                found = step(
                    "discover segments",
                    lambda: discover(
                        wh,
                        as_of_used,
                        run_id=summary.run_id,
                        reuse=plan.kind == incremental.INCREMENTAL and not plan.refit,
                        changed=plan.changed,
                        since=plan.previous.as_of if plan.previous else None,
                    ),
                )
                summary.steps[-1].update(
                    kind="refit" if found.refitted else "stored fit",
                    fitted_as_of=(found.fitted_as_of or found.as_of).isoformat(),
                )
                summary.clusters = [
                    {
                        "cluster": int(p.segment),
                        "name": p.name_en,
                        "name_es": p.name_es,
                        "customers": found.sizes.get(int(p.segment), 0),
                        "flags": p.flags,
                    }
                    for p in found.profiles.segments
                ]
                ari = found.result.stability_ari
                if ari < 0.6:
                    summary.warn(
                        f"discovered segments are unstable (ARI {ari:.2f})",
                        f"los segmentos descubiertos son inestables (ARI {ari:.2f})".replace(
                            ".", ","
                        ),
                    )
            except ModelError as exc:
                summary.steps[-1]["status"] = "skipped"
                summary.warn(
                    f"segment discovery skipped: {exc}",
                    f"descubrimiento de segmentos omitido: {i18n.error_text('es', exc)}",
                )
        if has_responses(wh):
            try:
                sat = step("satisfaction", lambda: satisfaction_run(wh, as_of_used, summary.run_id))
                summary.satisfaction = sat.to_dict()
            except SegmentumError as exc:  # answers that cannot be used: say so, go on
                summary.steps[-1]["status"] = "skipped"
                summary.warn(
                    f"satisfaction not computed: {exc}",
                    f"satisfacción no calculada: {i18n.error_text('es', exc)}",
                )
        if wh.has("population"):
            # The market beyond the customer base, when a reference population was loaded.
            from segmentum.market import compute_market

            try:
                found = step(
                    "market",
                    lambda: compute_market(
                        wh, as_of_used, settings=settings, run_id=summary.run_id
                    ),
                )
                top = found.cells[found.cells["white_space_rank"].notna()].head(3)
                # Each cell's places and bands by dimension, for labels in the reader's language.
                parts = [
                    {d: str(r[d]) for d in found.dimensions if r.get(d) not in (None, "")}
                    for r in top.to_dict("records")
                ]
                summary.market = {
                    **found.summary(),
                    "white_space": list(top["cell"]),
                    "white_space_parts": parts,
                }
            except SegmentumError as exc:  # a population that cannot be used: say so, go on
                summary.steps[-1]["status"] = "skipped"
                summary.warn(
                    f"market not computed: {exc}",
                    f"mercado no calculado: {i18n.error_text('es', exc)}",
                )
        # Indexed in the warehouse only where no serving store gets an indexed copy.
        indexed = serving_path(wh.url, settings.serving_store) is None
        step("customer lookup", lambda: build_lookup(wh, as_of_used, indexed=indexed))
        step("dashboard aggregates", lambda: build_overview(wh, as_of_used))
        # Older daily snapshots thinned to one a month, before publish copies the history.
        pruned = step(
            "history retention",
            lambda: retention.prune(wh, settings, protect=[as_of_used]),
        )
        if pruned is not None and pruned.removed:
            summary.steps[-1].update(
                removed_dates=pruned.dates, removed_rows=pruned.rows, kept_days=pruned.daily_days
            )
        # The run as far as it went, so the published copy lists it (the Data page and the
        # run log read it there) as running; replaced by the finished record at the end, or
        # marked interrupted by the next run if this one never gets there.
        _record_run(wh, summary, started, "running", None)
        published = step(
            "publish read models",
            lambda: publish_read_models(
                wh,
                settings,
                summary.run_id,
                changed=plan.changed,
                since=plan.previous.as_of if plan.previous else None,
                last_run=plan.previous.run_id if plan.previous else None,
            ),
        )
        if published is not None and published.carried:  # copied only where they changed
            summary.steps[-1].update(carried=published.carried)
        if plan.changed is not None:  # made by the plan; read by contact times and publish
            wh.drop(plan.changed.get_name())
        step("summary", lambda: _summarise(wh, summary, feats, classes, settings))
        step(
            "save run state",
            lambda: incremental.save_state(
                wh,
                incremental.state_after(
                    wh, plan, summary.run_id, settings, summary.customers, fitted
                ),
            ),
        )
    except BaseException as exc:
        message = (
            str(exc)
            if isinstance(exc, SegmentumError)
            else "".join(traceback.format_exception_only(exc)).strip()
        )
        loaded.close()
        _record_run(wh, summary, started, "failed", message)
        raise
    loaded.close()
    _record_run(wh, summary, started, "ok", None)
    return summary


def _summarise(
    wh: Warehouse,
    summary: RunSummary,
    feats: ir.Table,
    classes: ir.Table,
    settings: Settings | None = None,
) -> None:
    totals = (
        feats.aggregate(n=feats.count(), revenue=feats.monetary.sum()).to_pyarrow().to_pylist()[0]
    )
    summary.customers = int(totals["n"])
    # The headline comes from the stored net lines, so identified + anonymous is the total.
    check = revenue_totals(wh, summary.as_of)
    summary.revenue_check = check
    summary.revenue = check["identified"]
    summary.anonymous_revenue = check["anonymous"]
    summary.currency, mixed = currency_check(wh, settings or load_settings())
    if mixed:
        summary.warn(*mixed)
    match = id_match(wh)
    summary.id_match = match.to_dict() if match else {}
    if match is not None and match.warning():
        summary.warn(match.warning() or "", match.warning("es"))
    summary.returns = returns.summary(wh, checked=True)
    summary.rfm_segments = _share_table(classes, feats, "rfm_segment")
    summary.value_tiers = _share_table(classes, feats, "value_tier")
    summary.lifecycle = _share_table(classes, feats, "lifecycle_stage")
    if "value_potential" in classes.columns:
        summary.value_potential = _share_table(classes, feats, "value_potential")
