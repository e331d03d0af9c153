"""Discovered segments: clustering on transformed features, validated, assigned in the engine.

The engine hands back a sample of customers (a few columns, a deterministic hash sample); the
transform (log for skewed non-negative values, standardising, one-hot or k-prototypes for
categories) and the models are fitted on it; every customer is then assigned *in the engine*
with the fitted transform and centres written as an Ibis expression, so it runs on Spark too.

Methods:

- ``kmeans``: scikit-learn k-means on the transformed numbers and one-hot categories;
- ``gmm``: a Gaussian mixture with diagonal covariances (so that assignment by the largest
  posterior is a closed-form expression in the engine); reports BIC too;
- ``kprototypes``: Huang's k-prototypes, numbers by squared distance and categories by
  mismatch weighted by ``gamma`` (default: half the mean standard deviation of the numbers,
  as Huang suggests; 0.5 after standardising).

For every k in the range: silhouette (on a sub-sample), Calinski-Harabasz, Davies-Bouldin, and
BIC for mixtures. The chosen k is the one the three indices agree on (lowest mean rank).
Stability: the model is refitted on bootstrap resamples and the mean adjusted Rand index
against the chosen labelling reported.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from segmentum.errors import ModelError

METHODS = ("kmeans", "gmm", "kprototypes")
DEFAULT_NUMERIC = (
    "frequency",
    "avg_order_value",
    "promo_share",
    "tenure_days",
    "recency_days",
    "interpurchase_mean",
    "trend",
)
DEFAULT_CATEGORICAL: tuple[str, ...] = ()


@dataclass
class Transform:
    """How raw columns become model inputs: fitted on the sample, replayed in the engine."""

    numeric: list[str]
    log: list[str]
    center: dict[str, float]
    scale: dict[str, float]
    fill: dict[str, float]
    weight: dict[str, float]
    categorical: dict[str, list[str]]  # column -> levels (one-hot); others become '(other)'
    cat_weight: float = 1.0

    @staticmethod
    def fit(
        df: pd.DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str] = (),
        weights: dict[str, float] | None = None,
        max_levels: int = 12,
    ) -> Transform:
        weights = weights or {}
        log, center, scale, fill = [], {}, {}, {}
        for c in numeric:
            v: Any = pd.to_numeric(df[c], errors="coerce").astype(float)
            fill[c] = float(v.median()) if v.notna().any() else 0.0
            v = v.fillna(fill[c])
            if float(v.min()) >= 0 and float(v.skew()) > 1.0:
                log.append(c)
                v = np.log1p(v)
            center[c] = float(v.mean())
            scale[c] = float(v.std()) or 1.0
        cats = {}
        for c in categorical:
            counts = df[c].fillna("(missing)").astype(str).value_counts()
            cats[c] = list(counts.index[:max_levels])
        return Transform(
            list(numeric),
            log,
            center,
            scale,
            fill,
            {c: float(weights.get(c, 1.0)) for c in numeric},
            cats,
        )

    def numbers(self, df: pd.DataFrame) -> np.ndarray:
        cols = []
        for c in self.numeric:
            v: Any = pd.to_numeric(df[c], errors="coerce").astype(float).fillna(self.fill[c])
            if c in self.log:
                v = np.log1p(v.clip(lower=0))
            cols.append(((v - self.center[c]) / self.scale[c] * self.weight[c]).to_numpy())
        return np.column_stack(cols) if cols else np.zeros((len(df), 0))

    def codes(self, df: pd.DataFrame) -> np.ndarray:
        """Categorical columns as level indexes (the last index = other / missing)."""
        out = []
        for c, levels in self.categorical.items():
            idx = {lvl: i for i, lvl in enumerate(levels)}
            v = df[c].fillna("(missing)").astype(str)
            out.append(v.map(idx).fillna(len(levels)).astype(int).to_numpy())
        return np.column_stack(out) if out else np.zeros((len(df), 0), int)

    def onehot(self, df: pd.DataFrame) -> np.ndarray:
        blocks = [self.numbers(df)]
        codes = self.codes(df)
        for j, (_, levels) in enumerate(self.categorical.items()):
            oh = np.zeros((len(df), len(levels)))
            valid = codes[:, j] < len(levels)
            oh[np.flatnonzero(valid), codes[valid, j]] = 1.0
            blocks.append(oh * self.cat_weight / math.sqrt(2))
        return np.hstack(blocks)

    # in the engine -------------------------------------------------------------------------
    def number_exprs(self, t: ir.Table) -> dict[str, ir.FloatingValue]:
        out = {}
        for c in self.numeric:
            v = t[c].cast("float64").fill_null(self.fill[c])
            if c in self.log:
                v = (ibis.greatest(v, 0.0) + 1.0).ln()
            out[c] = (v - self.center[c]) / self.scale[c] * self.weight[c]
        return out


@dataclass
class KPrototypes:
    """Huang's k-prototypes: k-means for numbers, k-modes for categories, one objective."""

    n_clusters: int
    gamma: float = 0.5
    max_iter: int = 50
    n_init: int = 3
    random_state: int = 0
    centers_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    modes_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), int))
    cost_: float = math.inf

    def _dist(self, x: np.ndarray, c: np.ndarray, centers: np.ndarray, modes: np.ndarray) -> Any:
        d = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        if c.shape[1]:
            d = d + self.gamma * (c[:, None, :] != modes[None, :, :]).sum(axis=2)
        return d

    def fit(self, x: np.ndarray, c: np.ndarray) -> KPrototypes:
        rng = np.random.default_rng(self.random_state)
        best = math.inf
        for _ in range(self.n_init):
            idx = rng.choice(len(x), self.n_clusters, replace=False)
            centers, modes = x[idx].copy(), c[idx].copy()
            labels = np.full(len(x), -1)
            for _it in range(self.max_iter):
                d = self._dist(x, c, centers, modes)
                new = d.argmin(axis=1)
                if (new == labels).all():
                    break
                labels = new
                for j in range(self.n_clusters):
                    m = labels == j
                    if not m.any():
                        far = d.min(axis=1).argmax()
                        centers[j], modes[j] = x[far], c[far]
                        continue
                    centers[j] = x[m].mean(axis=0)
                    for col in range(c.shape[1]):
                        modes[j, col] = np.bincount(c[m, col]).argmax()
            cost = float(self._dist(x, c, centers, modes).min(axis=1).sum())
            if cost < best:
                best, self.centers_, self.modes_ = cost, centers, modes
        self.cost_ = best
        return self

    def predict(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self._dist(x, c, self.centers_, self.modes_).argmin(axis=1)


@dataclass
class KScore:
    k: int
    silhouette: float
    calinski_harabasz: float
    davies_bouldin: float
    bic: float | None = None
    sizes: list[int] = field(default_factory=list)


@dataclass
class ClusterResult:
    """A fitted clustering: the transform, the centres, the scores of every k and stability."""

    method: str
    k: int
    transform: Transform
    scores: list[KScore]
    stability_ari: float
    stability_sd: float
    sample_size: int
    model: Any
    sample_labels: np.ndarray
    sample: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "k": self.k,
            "sample_size": self.sample_size,
            "stability_ari": self.stability_ari,
            "stability_sd": self.stability_sd,
            "features": self.transform.numeric + list(self.transform.categorical),
            "log_transformed": self.transform.log,
            "scores": [s.__dict__ for s in self.scores],
        }

    # kept between runs ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What assigning customers needs, as JSON-ready numbers (no pickles: a warehouse's
        rows are data, never code): the transform, the model's parameters and the scores the
        fit was chosen by. :func:`restore` makes a result from it."""
        m = self.model
        if self.method == "gmm":
            params = {
                "weights": m.weights_.tolist(),
                "means": m.means_.tolist(),
                "covariances": m.covariances_.tolist(),
            }
        elif self.method == "kmeans":
            params = {"centers": m.cluster_centers_.tolist()}
        else:
            params = {
                "centers": m.centers_.tolist(),
                "modes": m.modes_.tolist(),
                "gamma": m.gamma,
            }
        return {
            "method": self.method,
            "k": self.k,
            "transform": asdict(self.transform),
            "params": params,
            "scores": [asdict(sc) for sc in self.scores],
            "stability_ari": self.stability_ari,
            "stability_sd": self.stability_sd,
            "sample_size": self.sample_size,
        }

    # assignment in the engine ---------------------------------------------------------------
    def assign(self, t: ir.Table) -> ir.Table:
        """customer_id and cluster (0..k-1) for every row of ``t``, computed by the engine."""
        tr = self.transform
        z = tr.number_exprs(t)
        scores: dict[str, ir.FloatingValue] = {}
        if self.method == "gmm":
            g = self.model
            for j in range(self.k):
                ll = ibis.literal(float(math.log(g.weights_[j])))
                cols = list(z.values()) + _onehot_exprs(t, tr)
                for i, v in enumerate(cols):
                    var = float(g.covariances_[j, i])
                    ll = ll - 0.5 * ((v - float(g.means_[j, i])) ** 2 / var + math.log(var))
                scores[f"_s{j}"] = -ll  # smallest wins
        elif self.method == "kmeans":
            centers = self.model.cluster_centers_
            for j in range(self.k):
                cols = list(z.values()) + _onehot_exprs(t, tr)
                d = ibis.literal(0.0)
                for i, v in enumerate(cols):
                    d = d + (v - float(centers[j, i])) ** 2
                scores[f"_s{j}"] = d
        else:
            kp: KPrototypes = self.model
            for j in range(self.k):
                d = ibis.literal(0.0)
                for i, v in enumerate(z.values()):
                    d = d + (v - float(kp.centers_[j, i])) ** 2
                for ci, (col, levels) in enumerate(tr.categorical.items()):
                    mode = int(kp.modes_[j, ci])
                    value = t[col].cast("string").fill_null("(missing)")
                    miss = value != levels[mode] if mode < len(levels) else value.isin(levels)
                    d = d + ibis.ifelse(miss, kp.gamma, 0.0)
                scores[f"_s{j}"] = d
        s = t.select("customer_id", **scores)
        best = ibis.least(*[s[f"_s{j}"] for j in range(self.k)])
        s = s.mutate(_best=best)
        label = ibis.cases(
            *[(s[f"_s{j}"] == s._best, j) for j in range(self.k)], else_=ibis.null("int64")
        )
        return s.select("customer_id", cluster=label.cast("int64"))


@dataclass
class StoredMixture:
    """A diagonal Gaussian mixture's parameters, as a fit left them: it labels as
    scikit-learn's ``predict`` does (the largest weighted log density)."""

    weights_: np.ndarray
    means_: np.ndarray
    covariances_: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        var = self.covariances_[None, :, :]
        ll = np.log(self.weights_)[None, :] - 0.5 * (
            ((x[:, None, :] - self.means_[None, :, :]) ** 2 / var) + np.log(var)
        ).sum(axis=2)
        return np.asarray(ll.argmax(axis=1))


@dataclass
class StoredCentres:
    """k-means centres as a fit left them: the nearest centre labels."""

    cluster_centers_: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        d = ((x[:, None, :] - self.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(d.argmin(axis=1))


def restore(state: dict[str, Any], sample: pd.DataFrame) -> ClusterResult:
    """A fitted result from :meth:`ClusterResult.state`, with ``sample`` labelled by it (for
    the profiles): the same assignment as the day it was fitted, without fitting again."""
    method, p = state["method"], state["params"]
    tr = Transform(**state["transform"])
    model: Any
    if method == "gmm":
        model = StoredMixture(
            np.asarray(p["weights"], float),
            np.asarray(p["means"], float),
            np.asarray(p["covariances"], float),
        )
    elif method == "kmeans":
        model = StoredCentres(np.asarray(p["centers"], float))
    else:
        model = KPrototypes(int(state["k"]), gamma=float(p["gamma"]))
        model.centers_ = np.asarray(p["centers"], float)
        model.modes_ = np.asarray(p["modes"], int)
    x = tr.numbers(sample) if method == "kprototypes" else tr.onehot(sample)
    labels = _predict(method, model, x, tr.codes(sample))
    return ClusterResult(
        method,
        int(state["k"]),
        tr,
        [KScore(**sc) for sc in state["scores"]],
        float(state["stability_ari"]),
        float(state["stability_sd"]),
        int(state["sample_size"]),
        model,
        labels,
        sample,
    )


def _onehot_exprs(t: ir.Table, tr: Transform) -> list[ir.FloatingValue]:
    out = []
    for col, levels in tr.categorical.items():
        value = t[col].cast("string").fill_null("(missing)")
        for lvl in levels:
            out.append(ibis.ifelse(value == lvl, tr.cat_weight / math.sqrt(2), 0.0))
    return out


def sample_rows(t: ir.Table, n: int, seed: int = 0) -> pd.DataFrame:
    """A deterministic pseudo-random sample of about ``n`` rows (hash of id), pulled back."""
    total = int(t.count().to_pyarrow().as_py())
    if total <= n:
        return t.order_by("customer_id").to_pandas()
    buckets = 100_000
    keep = int(buckets * n / total) + 1
    h = (t.customer_id + ibis.literal(f"#{seed}")).hash().abs() % buckets
    # Sorted, so that the same data gives the same fit whatever order the engine returns rows in.
    return t.filter(h < keep).order_by("customer_id").to_pandas()


def _fit_one(method: str, k: int, x: np.ndarray, codes: np.ndarray, seed: int) -> Any:
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        return KMeans(k, n_init=4, random_state=seed).fit(x)
    if method == "gmm":
        return GaussianMixture(
            k, covariance_type="diag", n_init=2, random_state=seed, reg_covar=1e-4
        ).fit(x)
    return KPrototypes(k, random_state=seed).fit(x, codes)


def _predict(method: str, model: Any, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    if method == "kprototypes":
        return model.predict(x, codes)
    return model.predict(x)


def choose_k(scores: Sequence[KScore]) -> KScore:
    """The k the three internal indices agree on best: the lowest mean rank across silhouette
    (higher is better), Calinski-Harabasz (higher) and Davies-Bouldin (lower); ties go to the
    smaller k. One index alone is noisy: near-ties in silhouette flip with the data's order."""

    def ranks(values: list[float]) -> list[int]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0] * len(values)
        for r, i in enumerate(order):
            out[i] = r
        return out

    sil = ranks([-s.silhouette for s in scores])
    ch = ranks([-s.calinski_harabasz for s in scores])
    db = ranks([s.davies_bouldin for s in scores])
    mean = [(sil[i] + ch[i] + db[i]) / 3 for i in range(len(scores))]
    i = min(range(len(scores)), key=lambda j: (mean[j], scores[j].k))
    return scores[i]


def fit_clusters(
    df: pd.DataFrame,
    *,
    method: str = "gmm",
    numeric: Sequence[str] = DEFAULT_NUMERIC,
    categorical: Sequence[str] = DEFAULT_CATEGORICAL,
    weights: dict[str, float] | None = None,
    k_range: Sequence[int] = range(2, 11),
    k: int | None = None,
    bootstrap: int = 5,
    seed: int = 0,
) -> ClusterResult:
    """Fit ``method`` for every k in ``k_range`` on ``df`` (a sample); keep the agreed best k."""
    from sklearn.metrics import (
        adjusted_rand_score,
        calinski_harabasz_score,
        davies_bouldin_score,
        silhouette_score,
    )

    if method not in METHODS:
        raise ModelError(
            f"unknown clustering method {method!r}", f"use one of {', '.join(METHODS)}"
        )
    missing = [c for c in [*numeric, *categorical] if c not in df.columns]
    if missing:
        raise ModelError(
            f"cannot cluster on {', '.join(missing)}: no such column",
            "choose columns of customer_features or the customer view",
        )
    ks = [k] if k is not None else [int(v) for v in k_range]
    if len(df) < max(ks) * 5:
        raise ModelError(
            f"{len(df)} customers are too few to look for {max(ks)} clusters",
            "use a smaller k range or more data",
        )
    tr = Transform.fit(df, numeric, categorical, weights)
    codes = tr.codes(df)
    x = tr.numbers(df) if method == "kprototypes" else tr.onehot(df)
    # The metrics need a numeric space: for k-prototypes the one-hot space stands in.
    metric_x = tr.onehot(df)
    scores: list[KScore] = []
    fitted: dict[int, tuple[Any, np.ndarray]] = {}
    rng = np.random.default_rng(seed)
    sil_idx = rng.choice(len(df), min(len(df), 4000), replace=False)
    for kk in ks:
        model = _fit_one(method, kk, x, codes, seed)
        labels = _predict(method, model, x, codes)
        if len(set(labels)) < 2:
            continue
        fitted[kk] = (model, labels)
        scores.append(
            KScore(
                kk,
                float(silhouette_score(metric_x[sil_idx], labels[sil_idx])),
                float(calinski_harabasz_score(metric_x, labels)),
                float(davies_bouldin_score(metric_x, labels)),
                float(model.bic(x)) if method == "gmm" else None,
                np.bincount(labels, minlength=kk).tolist(),
            )
        )
    if not scores:
        raise ModelError("no clustering found more than one group", "add more varied features")
    best = choose_k(scores)
    model, labels = fitted[best.k]
    aris = []
    for b in range(bootstrap):
        idx = np.random.default_rng(seed + 1 + b).choice(len(df), len(df), replace=True)
        m = _fit_one(method, best.k, x[idx], codes[idx], seed + 1 + b)
        aris.append(adjusted_rand_score(labels, _predict(method, m, x, codes)))
    return ClusterResult(
        method,
        best.k,
        tr,
        scores,
        float(np.mean(aris)) if aris else float("nan"),
        float(np.std(aris)) if aris else float("nan"),
        len(df),
        model,
        labels,
        df,
    )


def clustering_frame(
    features: ir.Table,
    transactions: ir.Table | None,
    as_of: _dt.date,
    mix: int = 8,
    links: ir.Table | None = None,
    categories: list[str] | None = None,
    shares: ir.Table | None = None,
) -> tuple[ir.Table, list[str]]:
    """The features plus each customer's category spend mix (top ``mix`` categories), in-engine.

    The mix is of net spend (``links``: the stored ``return_links``, by default linked here).
    ``categories``: those of a stored model, instead of today's top ``mix``. ``shares``: the
    mix of those categories already computed (:func:`segmentum.features.customer.category_mix`).
    Returns the table and the names of the mix columns (empty when ``mix`` is 0).
    """
    from segmentum.features.customer import category_mix, mix_column

    if transactions is None or mix <= 0 or "category" not in transactions.columns:
        return features, []
    cats = mix_categories(transactions, as_of, mix, links) if categories is None else categories
    if len(cats) < 2:
        return features, []
    m = category_mix(transactions, as_of, cats, links) if shares is None else shares
    t = features.left_join(m, "customer_id").drop("customer_id_right")
    cols = [mix_column(c) for c in cats]
    return t.mutate(**{c: t[c].fill_null(0.0) for c in cols}), cols


def mix_categories(
    transactions: ir.Table | None, as_of: _dt.date, mix: int, links: ir.Table | None = None
) -> list[str]:
    """The categories of the spend mix :func:`clustering_frame` adds (none when ``mix`` is 0
    or the lines have no category)."""
    from segmentum.features.customer import top_categories

    if transactions is None or mix <= 0 or "category" not in transactions.columns:
        return []
    return top_categories(transactions, as_of, mix, links)
