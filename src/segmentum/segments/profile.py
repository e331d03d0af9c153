"""Is a segment really different, and how would you describe it? Tests, effect sizes, profiles.

Works on any labelling of customers (discovered clusters, rule segments, RFM classes): the engine
hands back a sample (at most ``max_rows`` customers, a deterministic hash sample) of the label and
the features; everything else is computed on it.

For each segment against the rest of the customers:

- numbers: Mann-Whitney U, with the rank-biserial correlation as effect size (-1..1); across all
  segments at once, Kruskal-Wallis with epsilon squared;
- categories: chi-square on the segment x value table, with Cramér's V;
- all p-values corrected together for multiple testing (Benjamini-Hochberg, false discovery
  rate 5%).

A segment is flagged ``small`` below ``min_size`` members, ``not_distinct`` when no feature
differs significantly with at least a small effect (|r| >= 0.1 or V >= 0.1), and ``unstable``
when a stability score (bootstrap adjusted Rand index, from the clustering) is below 0.6.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segmentum import i18n
from segmentum.titles import column_title

# Words for a feature that is clearly above (+) or below (-) the average: (English, Spanish).
VOCABULARY: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "monetary": (("high value", "alto valor"), ("low value", "bajo valor")),
    "clv": (("high potential", "alto potencial"), ("low potential", "bajo potencial")),
    "frequency": (("frequent", "frecuentes"), ("occasional", "ocasionales")),
    "recency_days": (("lapsed", "inactivos"), ("recent", "recientes")),
    "tenure_days": (("long-standing", "veteranos"), ("new", "nuevos")),
    "promo_share": (("promo-driven", "cazaofertas"), ("full price", "sin promociones")),
    "avg_order_value": (("big baskets", "tickets altos"), ("small baskets", "tickets bajos")),
    "trend": (("growing", "en crecimiento"), ("declining", "en declive")),
    "interpurchase_mean": (("long gaps", "compras espaciadas"), ("short gaps", "compras seguidas")),
    "return_rate": (("returners", "devuelven mucho"), ("few returns", "pocas devoluciones")),
    "churn_probability": (("churn risk", "riesgo de fuga"), ("", "")),
    "age": (("older", "mayores"), ("younger", "jóvenes")),
}


@dataclass
class FeatureTest:
    feature: str
    kind: str  # number or category
    test: str
    statistic: float
    p_value: float
    q_value: float
    effect: float  # rank-biserial r (numbers) or Cramér's V (categories)
    segment_value: Any  # mean (numbers) or most common value (categories)
    rest_value: Any
    z: float | None = None  # (segment mean - overall mean) / overall sd
    lift: float | None = None  # for categories: share of the top value in segment / overall
    #: Share of the segment that has the trait a name would cite (the category value; for
    #: numbers, beyond the overall quartile on the segment's side); ``lift`` is then that
    #: share over the same share among all customers.
    share: float | None = None


@dataclass
class SegmentProfile:
    segment: str
    size: int
    share: float
    tests: list[FeatureTest]
    name_en: str
    name_es: str
    description_en: str
    description_es: str
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["tests"] = [t.__dict__ for t in self.tests]
        return d


@dataclass
class Profiles:
    segments: list[SegmentProfile]
    overall: list[dict[str, Any]]  # Kruskal-Wallis / chi-square across all segments
    tree_rules: str
    tree_accuracy: float
    tree_baseline: float
    sample_size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments": [s.to_dict() for s in self.segments],
            "overall": self.overall,
            "tree_rules": self.tree_rules,
            "tree_accuracy": self.tree_accuracy,
            "tree_baseline": self.tree_baseline,
            "sample_size": self.sample_size,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profiles:
        """The profiles :meth:`to_dict` wrote (kept as JSON with a discovery's run)."""
        segments = [
            SegmentProfile(
                **{k: v for k, v in s.items() if k != "tests"},
                tests=[FeatureTest(**t) for t in s["tests"]],
            )
            for s in d["segments"]
        ]
        return cls(
            segments,
            list(d["overall"]),
            str(d["tree_rules"]),
            float(d["tree_accuracy"]),
            float(d["tree_baseline"]),
            int(d["sample_size"]),
        )


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Adjusted p-values (q-values) controlling the false discovery rate."""
    p_arr = np.asarray(p, float)
    n = len(p_arr)
    if n == 0:
        return p_arr
    order = np.argsort(p_arr)
    ranked = p_arr[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.clip(q, 0, 1)
    return out


# How some category values read in a name (English, Spanish).
VALUE_WORDS = {
    "night": ("at night", "de madrugada"),
    "morning": ("in the morning", "por la mañana"),
    "afternoon": ("after lunch", "a mediodía"),
    "evening": ("in the evening", "por la tarde"),
    "late": ("late in the evening", "por la noche"),
    "female": ("women", "mujeres"),
    "male": ("men", "hombres"),
    "mobile": ("mobile", "móvil"),
    "store": ("in store", "en tienda"),
    "high": ("high", "altos"),
    "low": ("low", "bajos"),
}
CATEGORY_LABELS = {
    "preferred_channel": ("channel", "canal"),
    "preferred_device": ("device", "dispositivo"),
    "preferred_hour_band": ("buys", "compra"),
    "income_band": ("income", "ingresos"),
    "gender": ("", ""),
}


def _term(feature: str, z: float, categories: Mapping[str, str]) -> tuple[str, str] | None:
    if feature in VOCABULARY:
        term = VOCABULARY[feature][0 if z > 0 else 1]
        return term if term[0] else None
    if feature.startswith("mix_") and z > 0:
        # The category as the data writes it ("Tecnología > Móviles": móviles), else the
        # column's name ("mix_tecnologia_moviles": moviles).
        written = categories.get(feature)
        label = written.split(">")[-1].strip().lower() if written else feature[4:].split("_")[-1]
        return (f"buy {label}", f"compran {label}")
    return None


def _crosstab(rows: pd.Series, cols: pd.Series) -> pd.DataFrame:
    """Counts of every (row, column) pair, as ``pd.crosstab`` gives them, ten times faster."""
    keep = rows.notna().to_numpy() & cols.notna().to_numpy()
    r_codes, r_values = pd.factorize(rows[keep], sort=True)
    c_codes, c_values = pd.factorize(cols[keep], sort=True)
    flat = np.bincount(r_codes * len(c_values) + c_codes, minlength=len(r_values) * len(c_values))
    return pd.DataFrame(flat.reshape(len(r_values), len(c_values)), r_values, c_values)


class _Ranks:
    """A column's average ranks over its present values (NaN where missing, in row order) and
    its ties' term: the rank tests of any labelling of the same rows read them, instead of
    ranking the column again for every segment."""

    __slots__ = ("n", "present", "ranks", "tie_term", "values")

    def __init__(self, values: pd.Series) -> None:
        from scipy import stats

        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        present = ~np.isnan(x)
        self.values, self.present = x, present
        self.ranks = np.full(len(x), np.nan)
        self.ranks[present] = stats.rankdata(x[present])
        t = np.unique(x[present], return_counts=True)[1].astype(np.float64)
        self.n = int(present.sum())
        self.tie_term = float(np.sum(t**3 - t))

    def kruskal(self, groups: Sequence[np.ndarray]) -> tuple[float, float]:
        """Kruskal-Wallis H and its p-value over ``groups`` (each a mask of the rows), as
        ``scipy.stats.kruskal`` gives them for the groups' present values."""
        from scipy import special

        n = self.n
        ssbn = 0.0
        for g in groups:
            r = self.ranks[g & self.present]
            ssbn += float(np.sum(r)) ** 2 / len(r)
        h = 12.0 / (n * (n + 1)) * ssbn - 3 * (n + 1)
        h /= 1 - self.tie_term / (n**3 - n)
        return h, float(special.chdtrc(len(groups) - 1, h))

    def mann_whitney(self, inside: np.ndarray) -> tuple[float, float] | None:
        """U of the rows ``inside`` against the other present rows and its two-sided p-value,
        as ``scipy.stats.mannwhitneyu`` gives them (asymptotic, continuity-corrected, ties
        corrected); None where scipy would use the exact distribution (both groups of at most
        8 values without ties)."""
        from scipy import special

        r = self.ranks[inside]
        r = r[~np.isnan(r)]
        n1 = len(r)
        n2 = self.n - n1
        if n1 <= 8 and n2 <= 8 and self.tie_term == 0:
            return None
        u1 = float(np.sum(r)) - n1 * (n1 + 1) / 2
        u = max(u1, n1 * n2 - u1)
        n = self.n
        s = np.sqrt(n1 * n2 / 12 * ((n + 1) - self.tie_term / (n * (n - 1))))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (u - n1 * n2 / 2 - 0.5) / s
        return u1, float(np.clip(2 * special.ndtr(-z), 0.0, 1.0))


class _Coded:
    """A category column (missing already "(missing)") as codes of its sorted values, so that
    every labelling of the same rows counts it with ``np.bincount`` instead of pandas'
    grouping. Each answer is the one the pandas expressions in the comments give, ties
    included (the order of ``value_counts`` and of the aligned division)."""

    __slots__ = ("by_count", "codes", "counts", "n", "values")

    def __init__(self, col: pd.Series) -> None:
        codes, values = pd.factorize(col, sort=True)
        self.codes = codes
        self.values = [str(v) for v in values]
        self.counts = np.bincount(codes, minlength=len(self.values))
        self.n = len(codes)
        # col.value_counts() order: count descending, ties in order of first appearance
        self.by_count = self._by_count(codes, self.counts)

    @staticmethod
    def _by_count(codes: np.ndarray, counts: np.ndarray) -> list[int]:
        first = np.full(len(counts), len(codes))
        np.minimum.at(first, codes, np.arange(len(codes)))
        return sorted(np.flatnonzero(counts).tolist(), key=lambda k: (-counts[k], first[k]))

    def table(self, inside: np.ndarray) -> np.ndarray:
        """``_crosstab(inside, col)``: rows False then True (those present), a column a value."""
        seg = np.bincount(self.codes[inside], minlength=len(self.values))
        rows = [
            r for r, there in ((self.counts - seg, (~inside).any()), (seg, inside.any())) if there
        ]
        return np.vstack(rows) if rows else np.zeros((0, len(self.values)), dtype=np.int64)

    def trait(self, inside: np.ndarray) -> tuple[str, float, float] | None:
        """The value a name would cite, its lift and its share of the segment: ``top``,
        ``lift.get(top)``, ``seg_share.get(top)`` of the pandas version (seg_share the
        segment's value_counts(normalize=True); lift = (seg_share / all_share), without
        "(missing)"); None when the segment holds no value but "(missing)"."""
        codes = self.codes[inside]
        seg = np.bincount(codes, minlength=len(self.values))
        n_in = len(codes)
        order = self._by_count(codes, seg)  # seg_share's index order
        named = [k for k in order if self.values[k] != "(missing)"]
        if not named:
            return None
        share = {k: seg[k] / n_in for k in order}
        lift = {k: share[k] / (self.counts[k] / self.n) for k in order}
        # The division aligns the two indexes: sorted, unless they are the same in one order.
        aligned = order if order == self.by_count else sorted(order)
        common = [
            k for k in aligned if self.values[k] != "(missing)" and share[k] >= MIN_TRAIT_SHARE
        ]
        top = max(common, key=lambda k: lift[k]) if common else named[0]  # first of the ties
        return self.values[top], float(lift[top]), float(share[top])

    def mode(self, rows: np.ndarray) -> str | None:
        """``col[rows].mode().iat[0]``: the most common value, the first in sorted order."""
        if not rows.any():
            return None
        return self.values[
            int(np.argmax(np.bincount(self.codes[rows], minlength=len(self.values))))
        ]


def profile_segments(
    df: pd.DataFrame,
    label: str,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    *,
    min_size: int = 50,
    stability: dict[str, float] | None = None,
    alpha: float = 0.05,
    tree_depth: int = 3,
    seed: int = 0,
    shared: dict[str, Any] | None = None,
    categories: Mapping[str, str] | None = None,
) -> Profiles:
    """Test, profile and name every segment of ``df[label]`` against the rest.

    ``categories``: the category each spend-mix column (``mix_...``) holds, as the data
    writes it, for the names and descriptions (the column names lost its accents).

    ``shared``: a dict the caller passes again with the same rows and columns under other
    labels (members of one saved segment after another): what depends only on the columns
    (their values, spread, shares and the tree's design matrix) is computed on the first call
    and reused.
    """
    from scipy import stats
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier, export_text

    df = df[df[label].notna()].copy()
    df[label] = df[label].astype(str)
    n = len(df)
    segs = sorted(df[label].unique())
    numeric = [c for c in numeric if c in df.columns]
    categorical = [c for c in categorical if c in df.columns]
    raw: list[tuple[str, FeatureTest]] = []
    overall: list[dict[str, Any]] = []
    mirror: dict[str, Any] = {}
    overall_tables: dict[str, tuple[float, float, float]] = {}
    # Per column once, whatever the number of segments: the values, their spread and shares.
    if shared is None or shared.get("rows") != (n, tuple(numeric), tuple(categorical)):
        shared = {} if shared is None else shared
        shared.clear()
        shared["rows"] = (n, tuple(numeric), tuple(categorical))
        nums: dict[str, tuple[float, float, _Quartiles]] = {}
        cats: dict[str, _Coded] = {}
        ranked: dict[str, _Ranks] = {}
        shared["nums"], shared["cats"], shared["ranks"] = nums, cats, ranked
        for c in numeric:
            v = pd.to_numeric(df[c], errors="coerce")
            present = v.dropna()
            if np.ptp(present) if len(present) else 0:
                nums[c] = (float(v.std()) or 1.0, float(v.mean()), _quartiles(present))
                ranked[c] = _Ranks(v)
        for c in categorical:
            cats[c] = _Coded(df[c].fillna("(missing)").astype(str))
    nums, cats, ranked = shared["nums"], shared["cats"], shared["ranks"]
    labels = df[label].to_numpy()
    # Each segment's rows, compared once (not once a column: the labels are strings).
    masks = {s: labels == s for s in segs}
    for c in numeric:
        ranks = ranked.get(c)
        if ranks is None:  # no values, or all the same: nothing to test
            continue
        found = [s for s in segs if ranks.present[masks[s]].any()]
        if len(found) < 2:
            continue
        h, p = ranks.kruskal([masks[s] for s in found])
        m = ranks.n
        overall.append(
            {
                "feature": c,
                "test": "kruskal-wallis",
                "statistic": float(h),
                "p_value": float(p),
                "epsilon_squared": float(h / (m - 1)) if m > 1 else float("nan"),
            }
        )
    for c in categorical:
        tab = _crosstab(df[label], df[c].fillna("(missing)"))
        if tab.shape[0] > 1 and tab.shape[1] > 1:
            chi2, p, _, _ = stats.chi2_contingency(tab)
            v_ = np.sqrt(chi2 / (tab.to_numpy().sum() * (min(tab.shape) - 1)))
            overall_tables["\0" + c] = (float(chi2), float(p), float(v_))
            overall.append(
                {
                    "feature": c,
                    "test": "chi-square",
                    "statistic": float(chi2),
                    "p_value": float(p),
                    "cramers_v": float(v_),
                }
            )
    mirror.update(overall_tables if len(segs) == 2 else {})
    # Two segments (members against the rest) share their tests: the same rank-sum test seen
    # from the other side (U and n1 * n2 - U, one p-value) and the same table with its rows
    # swapped (one chi-square). Computed for the first, mirrored for the second.
    for s in segs:
        inside = masks[s]
        for c, (sd, mean, quartiles) in nums.items():
            values = ranked[c].values
            a, b = values[inside & ranked[c].present], values[~inside & ranked[c].present]
            if len(a) == 0 or len(b) == 0:
                continue
            if len(segs) == 2 and c in mirror:
                u_other, p = mirror[c][:2]
                u = len(a) * len(b) - u_other
            else:
                fast = ranked[c].mann_whitney(inside)
                u, p = fast or stats.mannwhitneyu(a, b, alternative="two-sided")
                mirror[c] = (float(u), float(p))
            r = 1.0 - 2.0 * u / (len(a) * len(b))  # rank-biserial: > 0 means segment lower
            raw.append(
                (
                    s,
                    FeatureTest(
                        c,
                        "number",
                        "mann-whitney",
                        float(u),
                        float(p),
                        1.0,
                        -r,
                        float(a.mean()),
                        float(b.mean()),
                        (float(a.mean()) - mean) / sd,
                        *_quartile_trait(a, quartiles, float(a.mean()) >= mean),
                    ),
                )
            )
        for c, coded in cats.items():
            key = "\0" + c
            if len(segs) == 2 and key in mirror:
                chi2, p, v_ = mirror[key]
            else:
                pairs = coded.table(inside)
                if pairs.shape[0] < 2 or pairs.shape[1] < 2:
                    continue
                chi2, p, _, _ = stats.chi2_contingency(pairs)
                v_ = float(np.sqrt(chi2 / (pairs.sum() * (min(pairs.shape) - 1))))
                mirror[key] = (float(chi2), float(p), v_)
            trait = coded.trait(inside)
            if trait is None:  # only missing values inside
                continue
            top, lift, share = trait
            raw.append(
                (
                    s,
                    FeatureTest(
                        c,
                        "category",
                        "chi-square",
                        float(chi2),
                        float(p),
                        1.0,
                        v_,
                        top,
                        coded.mode(~inside),
                        None,
                        lift,
                        share,
                    ),
                )
            )
    q = benjamini_hochberg([t.p_value for _, t in raw])
    for (_, t), qv in zip(raw, q, strict=True):
        t.q_value = float(qv)
    profiles = []
    for s in segs:
        tests = [t for seg, t in raw if seg == s]
        size = int((df[label] == s).sum())
        significant = [t for t in tests if t.q_value < alpha and abs(t.effect) >= 0.1]
        flags = []
        if size < min_size:
            flags.append("small")
        if not significant:
            flags.append("not_distinct")
        if stability and stability.get(s, 1.0) < 0.6:
            flags.append("unstable")
        en, es = _name(significant, s, categories or {})
        profiles.append(
            SegmentProfile(
                s,
                size,
                size / n if n else 0.0,
                sorted(tests, key=lambda t: -abs(t.effect)),
                en,
                es,
                _describe(significant, size, n, "en", categories or {}),
                _describe(significant, size, n, "es", categories or {}),
                flags,
            )
        )
    # A shallow tree that reproduces the labels as readable rules.
    if "x" not in shared:
        x = (
            df[numeric]
            .apply(pd.to_numeric, errors="coerce")
            .fillna(df[numeric].median(numeric_only=True))
        )
        x = x.fillna(0.0)
        if categorical:
            x = pd.concat(
                [x, pd.get_dummies(df[categorical].fillna("(missing)").astype(str)).astype(float)],
                axis=1,
            )
        shared["x"] = x
    x = shared["x"]
    # The labels as the segments' positions in sorted order, as scikit-learn encodes them
    # (the same split and tree as with the names, without sorting 20,000 strings twice).
    y = np.zeros(n, dtype=np.int64)
    for i, s in enumerate(segs):
        y[masks[s]] = i
    stratify = y if np.bincount(y).min() >= 2 else None
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=stratify)
    tree = DecisionTreeClassifier(
        max_depth=tree_depth, min_samples_leaf=max(5, n // 200), random_state=seed
    )
    tree.fit(xtr, ytr)
    accuracy = float((tree.predict(xte) == yte).mean())
    baseline = float(np.bincount(yte).max() / len(yte))
    names = [str(segs[k]) for k in tree.classes_]
    rules = export_text(
        tree, feature_names=[str(c) for c in x.columns], class_names=names, decimals=2
    )
    return Profiles(profiles, overall, rules, accuracy, baseline, n)


#: A name cites a trait only when at least this share of the segment has it...
MIN_TRAIT_SHARE = 0.30
#: ...and it is this many times as common in the segment as among all customers.
MIN_TRAIT_LIFT = 1.5


_Quartiles = tuple[tuple[float, float], tuple[float, float]]


def _quartiles(everyone: pd.Series) -> _Quartiles:
    """The overall lower and upper quartiles with the share of everyone beyond each."""
    low, high = float(everyone.quantile(0.25)), float(everyone.quantile(0.75))
    return (low, float((everyone < low).mean())), (high, float((everyone > high).mean()))


def _quartile_trait(inside: np.ndarray, quartiles: _Quartiles, high: bool) -> tuple[float, float]:
    """(lift, share) of a numeric trait: the share of the segment beyond the overall upper
    (``high``) or lower quartile, and that share over the same share among everyone."""
    (low_cut, low_base), (high_cut, high_base) = quartiles
    if high:
        share, base = float((inside > high_cut).mean()), high_base
    else:
        share, base = float((inside < low_cut).mean()), low_base
    return (share / base if base > 0 else 0.0), share


def _citable(t: FeatureTest) -> bool:
    """Whether a name may cite this trait: shared by enough of the segment, over-represented."""
    if t.share is None:  # profiles stored before shares were recorded
        return True
    return t.share >= MIN_TRAIT_SHARE and (t.lift or 0.0) >= MIN_TRAIT_LIFT


def _name(
    significant: list[FeatureTest], fallback: str, categories: Mapping[str, str]
) -> tuple[str, str]:
    en: list[str] = []
    es: list[str] = []
    nums = sorted(
        (t for t in significant if t.kind == "number" and t.z is not None),
        key=lambda t: -abs(t.z or 0),
    )
    for t in nums:
        if abs(t.z or 0) < 0.5 or not _citable(t):
            continue
        term = _term(t.feature, t.z or 0, categories)
        if term and term[0] not in en:
            if t.feature.startswith("mix_") and any(e.startswith("buy ") for e in en):
                continue
            en.append(term[0])
            es.append(term[1])
        if len(en) == 3:
            break
    cats = sorted(
        (t for t in significant if t.kind == "category" and _citable(t)),
        key=lambda t: -(t.lift or 0),
    )
    cats = [t for t in cats if t.feature != "top_category"]  # the spend mix already says it
    for t in cats[:1]:
        value = str(t.segment_value).split(" > ")[-1]
        label_en, label_es = CATEGORY_LABELS.get(t.feature, ("", ""))
        value_en, value_es = VALUE_WORDS.get(value, (value, value))
        en.append(f"{label_en} {value_en}".strip())
        es.append(f"{label_es} {value_es}".strip())
    if not en:
        return f"segment {fallback}", f"segmento {fallback}"
    return " · ".join(en).capitalize(), " · ".join(es).capitalize()


def _feature_title(feature: str, lang: str, categories: Mapping[str, str]) -> str:
    """A tested column as people read it: its title, or "share of spend on shoes" for a
    category's share of the spend mix."""
    if feature.startswith("mix_"):
        category = categories.get(feature) or feature[4:].replace("_", " ")
        return f"share of spend on {category}" if lang == "en" else f"parte del gasto en {category}"
    return column_title(lang, feature)


def _describe(
    significant: list[FeatureTest], size: int, n: int, lang: str, categories: Mapping[str, str]
) -> str:
    """The segment's size and its four clearest differences from the rest, in ``lang``: the
    columns by their titles, the numbers and shares as the language writes them."""
    parts = []
    for t in sorted(significant, key=lambda t: -abs(t.effect))[:4]:
        name = _feature_title(t.feature, lang, categories)
        if t.kind == "number":
            a_share = t.feature.startswith("mix_") or t.feature.endswith(("_share", "_rate"))
            fmt = i18n.percent if a_share else functools.partial(i18n.number, digits=1)
            this, rest = (fmt(v, lang) for v in (t.segment_value, t.rest_value))
            parts.append(
                f"{name} {this} vs {rest} elsewhere"
                if lang == "en"
                else f"{name}: {this} frente a {rest} en el resto"
            )
        else:
            value = i18n.label(lang, t.feature, t.segment_value)
            lift = i18n.number(t.lift, lang, 1)
            parts.append(
                f"{name} = {value} {lift}x as often"
                if lang == "en"
                else f"{name} = {value}, {lift} veces más frecuente"
            )
    count, share = i18n.number(size, lang, 0), i18n.percent(size / n if n else 0.0, lang)
    if lang == "en":
        head = f"{count} customers ({share})"
        return head + (
            ": " + "; ".join(parts) if parts else ": not clearly different from the rest"
        )
    head = f"{count} clientes ({share})"
    return head + (": " + "; ".join(parts) if parts else ": sin diferencias claras con el resto")
