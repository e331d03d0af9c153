"""Look-alikes: score prospects by how much they resemble a chosen segment of customers.

Only what customers and prospects both have can be used: demographics, geography, acquisition
channel, income, occupation, lifestyle tags and firmographics. A regularised logistic regression
is trained on customers (members of the segment vs the others), evaluated by stratified 5-fold
cross-validated AUC (reported with its spread, beside a gradient-boosting reference), and then
scores every prospect. Each score comes with its reasons: the features that push it up most
(coefficient x value, on the standardised scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segmentum.errors import ModelError

NUMERIC = ("age", "employees", "annual_revenue")
CATEGORICAL = (
    "gender",
    "country",
    "region",
    "city",
    "acquisition_channel",
    "income_band",
    "occupation",
    "industry",
)


def _tags(series: pd.Series) -> pd.Series:
    return series.fillna("").astype(str).str.replace("|", ",").str.lower()


@dataclass
class Encoder:
    numeric: list[str]
    categorical: dict[str, list[str]]
    tags: list[str]
    center: dict[str, float] = field(default_factory=dict)
    scale: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def fit(df: pd.DataFrame, max_levels: int = 20) -> Encoder:
        num = [c for c in NUMERIC if c in df.columns and df[c].notna().mean() > 0.2]
        cats = {}
        for c in CATEGORICAL:
            if c in df.columns and df[c].notna().any():
                counts = df[c].astype(str).value_counts()
                cats[c] = [v for v in counts.index[:max_levels] if counts[v] >= 10]
        tags: list[str] = []
        if "tags" in df.columns:
            exploded = _tags(df["tags"]).str.split(",").explode().str.strip()
            counts = exploded[exploded != ""].value_counts()
            tags = [t for t in counts.index[:30] if counts[t] >= 10]
        enc = Encoder(num, cats, tags)
        for c in num:
            v = np.log1p(pd.to_numeric(df[c], errors="coerce").clip(lower=0))
            enc.center[c] = float(v.mean()) if v.notna().any() else 0.0
            enc.scale[c] = float(v.std()) or 1.0
        return enc

    @property
    def names(self) -> list[str]:
        out = [f"{c}" for c in self.numeric] + [f"{c} unknown" for c in self.numeric]
        for c, levels in self.categorical.items():
            out += [f"{c} = {v}" for v in levels]
        out += [f"tag {t}" for t in self.tags]
        return out

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        cols = []
        missing = []
        for c in self.numeric:
            raw = df[c] if c in df.columns else pd.Series([np.nan] * len(df), index=df.index)
            v = np.log1p(pd.to_numeric(raw, errors="coerce").clip(lower=0))
            missing.append(v.isna().astype(float).to_numpy())
            cols.append(((v - self.center[c]) / self.scale[c]).fillna(0.0).to_numpy())
        cols += missing
        for c, levels in self.categorical.items():
            v = df[c].astype(str) if c in df.columns else pd.Series([""] * len(df))
            cols += [(v == lvl).astype(float).to_numpy() for lvl in levels]
        if self.tags:
            tg = _tags(df["tags"]) if "tags" in df.columns else pd.Series([""] * len(df))
            wrapped = "," + tg.str.replace(" ", "") + ","
            cols += [
                wrapped.str.contains("," + t + ",", regex=False).astype(float).to_numpy()
                for t in self.tags
            ]
        if not cols:
            raise ModelError("customers and prospects share no usable column")
        return np.column_stack(cols)


@dataclass
class LookalikeModel:
    """Fitted look-alike model with its cross-validated quality."""

    target: str
    encoder: Encoder
    model: Any
    cv_auc: float
    cv_auc_sd: float
    gbm_auc: float
    positives: int
    negatives: int

    def score(self, prospects: pd.DataFrame, reasons: int = 3) -> pd.DataFrame:
        x = self.encoder.transform(prospects)
        p = self.model.predict_proba(x)[:, 1]
        contrib = x * self.model.coef_[0]
        names = self.encoder.names
        top = np.argsort(-contrib, axis=1)[:, :reasons]
        why = [
            "; ".join(names[j] for j in row if contrib[i, j] > 0.05) for i, row in enumerate(top)
        ]
        out = pd.DataFrame({"score": p, "reasons": why}, index=prospects.index)
        out["rank"] = out.score.rank(ascending=False, method="first").astype(int)
        return out

    def to_dict(self) -> dict[str, Any]:
        coefs = sorted(
            zip(self.encoder.names, self.model.coef_[0], strict=True), key=lambda t: -abs(t[1])
        )
        return {
            "target": self.target,
            "cv_auc": self.cv_auc,
            "cv_auc_sd": self.cv_auc_sd,
            "gradient_boosting_auc": self.gbm_auc,
            "positives": self.positives,
            "negatives": self.negatives,
            "top_features": [{"feature": n, "coefficient": float(c)} for n, c in coefs[:15]],
        }


def fit_lookalike(
    customers: pd.DataFrame, is_target: Sequence[bool] | pd.Series, target: str, seed: int = 0
) -> LookalikeModel:
    """Train on customers' profile columns; ``is_target`` marks the segment's members."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    y = np.asarray(is_target, bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos < 20 or neg < 20:
        raise ModelError(
            f"the segment has {pos} members and {neg} non-members: too few to learn from",
            "choose a segment with at least 20 customers in and out",
        )
    enc = Encoder.fit(customers)
    x = enc.transform(customers)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    logit = LogisticRegression(C=0.5, max_iter=2000)
    aucs = cross_val_score(logit, x, y, cv=folds, scoring="roc_auc")
    gbm = cross_val_score(
        HistGradientBoostingClassifier(max_iter=150, random_state=seed),
        x,
        y,
        cv=folds,
        scoring="roc_auc",
    )
    logit.fit(x, y)
    return LookalikeModel(
        target, enc, logit, float(aucs.mean()), float(aucs.std()), float(gbm.mean()), pos, neg
    )
