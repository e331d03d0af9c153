"""Every step of ``segmentum run`` against its hand-written limit, at 870,000 demo customers.

    python benchmarks/bench_steps.py

Prepares (once) bench-data/steps-870000.duckdb: the demo retailer's Parquet export (about 10M
invoice lines) ingested, the 20 saved segments of the segments benchmark loaded, and one
pipeline run (so the purchase-day rollup and the return links exist, as on any day after the
first). Then, each in its own process on a fresh copy:

- segmentum: ``pipeline.run`` (what ``segmentum run`` calls) with the default settings; every
  step's seconds come from ``pipeline_runs.steps``, its peak memory from the process's peak RSS
  reset at each step;
- for every step, the limit: the same output written by hand in raw DuckDB SQL (model fits:
  the minimal numpy / scikit-learn call on the same summary), in the structure that profiled
  fastest. Each limit prints a CHECK line beside segmentum's, so the answers can be compared.

Writes the table into docs/benchmarks.md (section ``steps``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import DATA, Result, ensure_demo, machine, measure, update_doc

CUSTOMERS = 870_000
DB = DATA / f"steps-{CUSTOMERS}.duckdb"
HERE = Path(__file__).resolve().parent


def prepare() -> Path:
    """The benchmark's warehouse (built once, then copied for every measurement)."""
    if DB.exists():
        return DB
    import bench_segments
    import segmentum
    from segmentum import pipeline
    from segmentum.config import load_settings
    from segmentum.ingest import ingest
    from segmentum.segments.store import Segments

    files = ensure_demo(CUSTOMERS)
    t0 = time.perf_counter()
    tmp = DB.with_suffix(".tmp.duckdb")
    ingested = DB.with_suffix(".ingested")  # the ingest (the long part) survives a failure after
    settings = load_settings(env={})
    if not ingested.exists():
        tmp.unlink(missing_ok=True)
    wh = segmentum.connect(f"duckdb:///{tmp}")
    if not ingested.exists():
        for name in ("customers", "products", "transactions", "events", "campaign_results"):
            ingest(name, files[name], warehouse=wh, settings=settings)
            print(f"  ingested {name} ({time.perf_counter() - t0:.0f} s)", flush=True)
        ingested.write_text("ok")
    # A first run (the rollup, the return links, the stored features the rules validate
    # against), then the 20 saved segments: every measured run is a day after the first.
    pipeline.run(wh, settings=settings.with_overrides(discover_segments=False))
    bench_segments.write_yaml()
    Segments(wh, settings).load_yaml(bench_segments.YAML)
    wh.close()
    tmp.rename(DB)
    ingested.unlink()
    for leftover in DATA.glob(f"{tmp.name.removesuffix('.duckdb')}.*"):  # its serving stores
        leftover.unlink()
    print(f"  prepared {DB.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return DB


# segmentum's run: each step's peak memory is the process's peak resident set since the step
# began (the kernel's high-water mark, reset at every step through /proc/self/clear_refs).
RUN = """
import re, time, json, segmentum
from segmentum import pipeline
from segmentum.config import load_settings

def hwm():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024

class Peaks:
    def __init__(self):
        self.name, self.peaks = None, {{}}
    def close(self):
        if self.name:
            self.peaks[self.name] = max(self.peaks.get(self.name, 0), hwm())
    def step(self, name, detail=""):
        if detail:
            return
        self.close()
        self.name = name
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

settings = load_settings(env={{}})
wh = segmentum.connect("duckdb:///" + {db!r})
peaks = Peaks()
t0 = time.perf_counter()
# --full: every step computed for every customer (a rerun would otherwise be incremental).
s = pipeline.run(wh, settings=settings, progress=peaks, full=True)
print("SECONDS=%f" % (time.perf_counter() - t0))
peaks.close()
runs = wh.table("pipeline_runs")
steps = json.loads(runs.filter(runs.run_id == s.run_id).steps.execute()[0])
print("STEPS=" + json.dumps([{{**st, "peak_mb": peaks.peaks.get(st["step"])}} for st in steps]))
con = wh.con.con
d = str(s.as_of)
for step, sql in {checks!r}.items():
    print("CHECK", step, "|", con.execute(sql.replace("{{as_of}}", d)).fetchone())
# The summary and the run state are not tables: the same numbers from what the run returned.
from segmentum import incremental
print("CHECK", "summary", "|", (round(s.revenue, 2), s.returns["return_lines"], s.id_match["buyers"]))
print("CHECK", "save run state", "|", tuple(incremental.load_state(wh).lines))
"""

# What each step's output is compared on: segmentum's table / the limit's, the same numbers.
CHECKS = {
    "features": "select count(*), sum(x), round(sum(T), 3), sum(email_opens) "
    "from customer_features where as_of = DATE '{as_of}'",
    "contact times": "select count(*), count(best_weekday), count(best_device), "
    "round(sum(hour_band_confidence + weekday_confidence), 4) from contact_times "
    "where as_of = DATE '{as_of}'",
    "segments": "select count(*) from segment_members where as_of = DATE '{as_of}'",
    "discover segments": "select count(*), count(distinct cluster) from customer_clusters "
    "where as_of = DATE '{as_of}'",
    "classes": "select count(*), sum(r_score + f_score + m_score), "
    "count(*) filter (where value_tier = 'high'), count(*) filter (where lifecycle_stage = "
    "'active'), count(*) filter (where potential_tier = 'high'), count(alive_flag), "
    "count(*) filter (where value_potential = 'Stars') from customer_classes "
    "where as_of = DATE '{as_of}'",
    "publish read models": "select count(*) from customer_lookup",
    "dashboard aggregates": "select json_extract(payload, '$.customers')::BIGINT, "
    "round(json_extract(payload, '$.revenue')::DOUBLE, 2) from dashboard_cache "
    "where as_of = DATE '{as_of}'",
    "customer lookup": "select count(*), count(best_hour_band), count(segments), "
    "count(cluster_name), round(sum(coalesce(clv, 0)), 2), count(age_band) from customer_lookup",
}
LIMIT_CHECKS = {
    "features": "select count(*), sum(x), round(sum(T), 3), sum(email_opens) from raw_features",
    "classes": CHECKS["classes"].replace("customer_classes", "limit_classes"),
    "contact times": CHECKS["contact times"].replace("contact_times", "limit_contact_times"),
    "segments": "select count(*) from limit_members",
    "discover segments": "select count(*), count(distinct cluster) from limit_clusters",
    "customer lookup": CHECKS["customer lookup"].replace("customer_lookup", "limit_lookup"),
    "summary": "select round(identified, 2), (select return_lines from limit_summary_returns), "
    "(select buyers from limit_summary_ids) from limit_summary",
    "save run state": "select n, checksum from limit_run_state where part = 'lines'",
    # g = 63: the grand total row of the GROUPING SETS (every one of the six columns rolled up).
    "dashboard aggregates": "select customers, round(revenue, 2) from limit_dashboard_shares "
    "where g = 63",
}

PREP = """
import time, duckdb
from segmentum.config import load_settings
con = duckdb.connect({db!r})
# The same memory limit as segmentum's own connection (the setting's default).
con.execute("SET memory_limit = '%s'" % load_settings(env={{}}).memory_limit)
con.execute("SET preserve_insertion_order = false")
as_of = con.execute("select max(as_of) from customer_features").fetchone()[0]
"""

LIMIT_SQL = (
    PREP
    + """
sql = open({sql!r}).read().replace("{{as_of}}", str(as_of))
t0 = time.perf_counter()
con.execute(sql)
print("SECONDS=%f" % (time.perf_counter() - t0))
print("CHECK", "|", con.execute({check!r}.replace("{{as_of}}", str(as_of))).fetchone())
"""
)

# The dashboard's limit: limit_dashboard.sql, then what the step's profiles add to the means
# and counts, written directly on the same 20,000-customer sample: for each saved segment
# (members against the rest), a rank-sum test per number (ranks taken once per column, the
# normal approximation with ties, as SciPy's for samples this size), a chi-square test per
# category, Benjamini-Hochberg over all of them, and a depth-3 describing tree fitted on 70%
# of the sample and scored on the rest.
LIMIT_DASHBOARD = (
    PREP
    + """
import numpy as np, pandas as pd
from scipy import stats
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier
from segmentum.segments.discover import PROFILE_CATEGORICAL, PROFILE_NUMERIC
sql = open({sql!r}).read().replace("{{as_of}}", str(as_of))
t0 = time.perf_counter()
con.execute(sql)
s = con.execute("select * from limit_dashboard_sample").df()
names = [r[0] for r in con.execute("select name from segment_definitions").fetchall()]
members = dict(con.execute(
    "select segment, list(customer_id) from segment_members where as_of = ? and customer_id "
    "in (select customer_id from limit_dashboard_sample) group by 1", [as_of]).fetchall())
num = [c for c in PROFILE_NUMERIC if c in s.columns]
cat = [c for c in PROFILE_CATEGORICAL if c in s.columns]
ranked = {{}}
for c in num:
    v = pd.to_numeric(s[c], errors="coerce").to_numpy(float)
    present = ~np.isnan(v)
    r = stats.rankdata(v[present])
    counts = np.unique(v[present], return_counts=True)[1].astype(float)
    m = float(present.sum())
    ranked[c] = (present, r, (counts ** 3 - counts).sum() / (m * (m - 1)), v)
coded = {{c: pd.factorize(s[c].fillna("(missing)").astype(str)) for c in cat}}
x = s[num].apply(pd.to_numeric, errors="coerce")
x = x.fillna(x.median()).fillna(0.0)
x = pd.concat([x, pd.get_dummies(s[cat].fillna("(missing)").astype(str)).astype(float)], axis=1)
x = x.to_numpy()
trees = 0
for name in names:
    inside = s.customer_id.isin(set(members.get(name, []))).to_numpy()
    if inside.sum() < 50 or (~inside).sum() < 50:
        continue
    p_values = []
    for c, (present, r, tie, v) in ranked.items():
        a = inside[present]
        n1, n2 = float(a.sum()), float((~a).sum())
        if n1 == 0 or n2 == 0:
            continue
        u = r[a].sum() - n1 * (n1 + 1) / 2
        sd = np.sqrt(n1 * n2 / 12 * ((n1 + n2 + 1) - tie))
        p_values.append(2 * stats.norm.sf(abs(u - n1 * n2 / 2) / sd) if sd > 0 else 1.0)
        v[present][a].mean(), v[present][~a].mean()
    for c, (code, uniq) in coded.items():
        tab = np.zeros((2, len(uniq)))
        np.add.at(tab, (inside.astype(int), code), 1)
        tab = tab[:, tab.sum(0) > 0]
        if tab.shape[1] > 1:
            p_values.append(stats.chi2_contingency(tab)[1])
    q = stats.false_discovery_control(p_values)
    y = inside.astype(int)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=max(5, len(y) // 200),
                                  random_state=0).fit(xtr, ytr)
    float((tree.predict(xte) == yte).mean())
    trees += 1
print("SECONDS=%f" % (time.perf_counter() - t0))
print("CHECK", "|", con.execute({check!r}.replace("{{as_of}}", str(as_of))).fetchone(), trees)
"""
)

LIMIT_SEGMENTS = (
    PREP
    + """
sql = {sql!r}
t0 = time.perf_counter()
con.execute(sql, {{"d": as_of}})
print("SECONDS=%f" % (time.perf_counter() - t0))
print("CHECK", "|", con.execute({check!r}).fetchone())
"""
)

# The CLV step's floor: the BTYD summary the features hold, brought back as numbers, one
# BG/NBD and one Gamma-Gamma fit (maximum likelihood, scipy), 12-month CLV, written back.
# Reported beside the step's limit (below), which does the step's whole job.
FLOOR_CLV = (
    PREP
    + """
import numpy as np, pyarrow as pa
from segmentum.models import BetaGeo, GammaGamma
t0 = time.perf_counter()
s = con.execute(f"select customer_id, x, t_x, T, monetary_value from customer_features "
                f"where as_of = DATE '{{as_of}}' and T > 0").df()
bg = BetaGeo().fit(s.x, s.t_x, s["T"])
rep = s[(s.x > 0) & (s.monetary_value > 0)]
gg = GammaGamma().fit(rep.x, rep.monetary_value)
clv = gg.customer_lifetime_value(bg, s.x, s.t_x, s["T"], s.monetary_value.fillna(0),
                                 months=12, monthly_discount=0.01)
out = pa.table({{"customer_id": s.customer_id.to_numpy(), "clv": np.asarray(clv, float)}})
con.execute("create or replace table limit_clv as select * from out")
print("SECONDS=%f" % (time.perf_counter() - t0))
print("CHECK", "|", con.execute("select count(*) from limit_clv").fetchone())
"""
)

# The CLV step's whole job by hand: the summaries in SQL (grouped by (x, t_x, T), the
# holdout's purchases by calibration frequency), the three purchase models fitted on the
# calibration period (with segmentum's fitters: the models section compares them with the
# peers' and none is faster), the holdout error by calibration purchases and the choice (the
# smallest error; within 5%, an identified dropout, then the likelihood), the chosen model
# fitted on all the data; where its dropout is not identified, churn calibrated on the
# history (the model fitted 180 and 90 days back, isotonic regression of who bought in the
# next 90 days on its P(no purchase), weighted by grouped rows, Brier score and AUC);
# Gamma-Gamma, and every customer's P(alive), churn probability, expected purchases and
# spend and 12-month CLV written back.
LIMIT_CLV = (
    PREP
    + """
import datetime as dt, numpy as np, pyarrow as pa
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from segmentum.models import BetaGeo, GammaGamma, ModifiedBetaGeo, ParetoNBD
from segmentum.models.btyd import dropout_identified
t0 = time.perf_counter()
days = "(select customer_id, day from purchase_days where returned = 0 or value > 1e-9)"
def summary(d):
    return (f"select customer_id, count(*) - 1.0 as x, "
            f"date_diff('day', min(day), max(day)) / 7.0 as t_x, "
            f"date_diff('day', min(day), DATE '{{d}}' - 1) / 7.0 as T "
            f"from {{days}} where day < DATE '{{d}}' group by 1")
def grouped(sql, extra=""):
    r = con.execute(f"select x, t_x, T, count(*) as n {{extra}} from ({{sql}}) where T > 0 "
                    f"group by x, t_x, T").fetchnumpy()
    return r
first = con.execute(f"select min(day) from {{days}}").fetchone()[0]
last = as_of - dt.timedelta(days=1)
hold = min(365, (last - first).days // 3)
cal = last - dt.timedelta(days=hold) + dt.timedelta(days=1)  # the calibration's as_of
g = grouped(summary(cal))
x, tx, t, n = (g[c].astype(float) for c in ("x", "t_x", "T", "n"))
act = con.execute(f'''with s as ({{summary(cal)}}),
  h as (select customer_id, count(*) as a from {{days}} where day >= DATE '{{cal}}'
        and day <= DATE '{{last}}' group by 1)
  select s.x, count(*) as customers, avg(coalesce(h.a, 0)) as actual
  from s left join h using (customer_id) where s.T > 0 group by 1''').fetchnumpy()
horizon = hold / 7.0
models = {{"BG/NBD": BetaGeo, "MBG/NBD": ModifiedBetaGeo, "Pareto/NBD": ParetoNBD}}
fits, err = {{}}, {{}}
xs, inv = np.unique(x, return_inverse=True)
pos = np.searchsorted(xs, act["x"])
for name, cls in models.items():
    m = fits[name] = cls(standard_errors=False).fit(x, tx, t, weights=n)
    pred = m.expected_if_alive(horizon, x, t) * m.probability_alive(x, tx, t)
    by_x = np.bincount(inv, weights=pred * n) / np.bincount(inv, weights=n)
    err[name] = float(np.average(np.abs(by_x[pos] - act["actual"]), weights=act["customers"]))
low = min(err.values())
close = [k for k in fits if err[k] <= low * 1.05 + 1e-12]
pool = [k for k in close if dropout_identified(fits[k])] or close
chosen = max(pool, key=lambda k: fits[k].log_likelihood_)
cur = grouped(f"select customer_id, x, t_x, T from customer_features where as_of = DATE '{{as_of}}'")
cx, ctx, ct, cn = (cur[c].astype(float) for c in ("x", "t_x", "T", "n"))
model = models[chosen]().fit(cx, ctx, ct, weights=cn)
def quiet(m, x, tx, t, h):
    if isinstance(m, BetaGeo):
        alive = m.probability_alive(x, tx, t)
        r, a = m.params_["r"], m.params_["alpha"]
        return 1 - alive + alive * np.exp((r + x) * np.log((a + t) / (a + t + h)))
    return np.exp(-m.expected_purchases(h, x, tx, t))
churn = None
if not dropout_identified(model):
    def outcomes(d):
        r = con.execute(f'''select x, t_x, T, churned, count(*) as n from (
            select s.*, (b.customer_id is null)::int as churned
            from ({{summary(d)}}) s left join (select distinct customer_id from {{days}}
              where day >= DATE '{{d}}' and day < DATE '{{d}}' + 90) b using (customer_id))
            where T > 0 group by all''').fetchnumpy()
        return [r[c].astype(float) for c in ("x", "t_x", "T", "churned", "n")]
    h = 90 / 7.0
    fit_d, check_d = as_of - dt.timedelta(days=180), as_of - dt.timedelta(days=90)
    (x1, tx1, t1, y1, n1), (x2, tx2, t2, y2, n2) = outcomes(fit_d), outcomes(check_d)
    raw1 = quiet(models[chosen]().fit(x1, tx1, t1, weights=n1), x1, tx1, t1, h)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(raw1, y1, sample_weight=n1)
    raw2 = quiet(models[chosen]().fit(x2, tx2, t2, weights=n2), x2, tx2, t2, h)
    cal2 = iso.predict(raw2)
    brier = float(np.average((cal2 - y2) ** 2, weights=n2))
    auc = roc_auc_score(y2, cal2, sample_weight=n2)
    churn = iso.predict(quiet(model, cx, ctx, ct, h))
rep = con.execute(f"select x, monetary_value, count(*) as n from customer_features "
                  f"where as_of = DATE '{{as_of}}' and T > 0 and x > 0 and monetary_value > 0 "
                  f"group by all").fetchnumpy()
gg = GammaGamma().fit(rep["x"], rep["monetary_value"], weights=rep["n"])
# Every number per distinct (x, t_x, T), then joined to the customers in SQL.
alive = model.probability_alive(cx, ctx, ct)
_, disc = model.purchases_if_alive(cx, ct, 12, 0.01, 365.25 / 12 / 7)
rows = pa.table({{"x": cx, "t_x": ctx, "T": ct, "p_alive": alive,
                 "churn": 1 - alive if churn is None else churn,
                 "expected": model.expected_if_alive(52.0, cx, ct) * alive, "disc": disc}})
p_, q_, g_ = (gg.params_[k] for k in ("p", "q", "gamma"))
spend = f"({{p_}} * ({{g_}} + f.x * coalesce(f.monetary_value, 0))) / ({{p_}} * f.x + {{q_}} - 1)"
con.execute(f'''create or replace table limit_clv as
  select f.customer_id, r.p_alive, r.churn as churn_probability, r.expected as expected_purchases,
         {{spend}} as expected_spend, {{spend}} * r.p_alive * r.disc as clv
  from customer_features f join rows r on f.x = r.x and f.t_x = r.t_x and f.T = r.T
  where f.as_of = DATE '{{as_of}}' and f.T > 0''')
print("SECONDS=%f" % (time.perf_counter() - t0))
print("CHOSEN", chosen, "chosen; holdout error by calibration purchases:",
      ", ".join(f"{{k}} {{v:.3f}}" for k, v in err.items()))
print("CHECK", "|", con.execute("select count(*) from limit_clv").fetchone())
"""
)

# Discovery's minimum: the same frame (features and the net spend mix of the top 8
# categories) in SQL, the same 20k hash sample, the same transform, the same scikit-learn
# fits (GMM, diagonal, k = 2..10, n_init=2; silhouette on 4,000, Calinski-Harabasz,
# Davies-Bouldin; 5 bootstrap refits of the chosen k), and every customer assigned by one SQL
# statement from the fitted means and variances. No profiles or names.
LIMIT_DISCOVER = (
    PREP
    + '''
import math, numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.metrics import (adjusted_rand_score, calinski_harabasz_score,
                             davies_bouldin_score, silhouette_score)
cols = ["frequency", "avg_order_value", "promo_share", "tenure_days", "recency_days",
        "interpurchase_mean", "trend"]
t0 = time.perf_counter()
con.execute(f"""create or replace temp table net as
  select t.customer_id, t.category, t.amount + coalesce(r.ret, 0) as amount
  from transactions t
  left join (select original_invoice_id as invoice_id, original_line as line,
                    sum(amount) as ret from return_links group by 1, 2) r
    on r.invoice_id = t.invoice_id and r.line = t.line
  where t.customer_id is not null and t.quantity > 0 and t.timestamp < TIMESTAMP '{{as_of}}'
    and not exists (select 1 from return_links g where g.invoice_cancelled
                    and g.customer_id = t.customer_id and g.original_invoice_id = t.invoice_id)""")
cats = [r[0] for r in con.execute("select category from net where category is not null "
                                 "group by 1 order by sum(amount) desc, 1 limit 8").fetchall()]
mix = ", ".join(f"coalesce(sum(amount) filter (where category = ${{i + 1}}), 0) / "
                f"nullif(sum(amount), 0) as m{{i}}" for i in range(len(cats)))
fcols = ", ".join("f." + c for c in cols)
mcols = ", ".join(f"coalesce(m.m{{i}}, 0) as m{{i}}" for i in range(len(cats)))
con.execute(f"""create or replace temp table frame as
  select f.customer_id, {{fcols}}, {{mcols}}
  from customer_features f left join (select customer_id, {{mix}} from net group by 1) m
    using (customer_id)
  where f.as_of = DATE '{{as_of}}' and f.frequency > 0""", cats)
total = con.execute("select count(*) from frame").fetchone()[0]
keep = int(100000 * 20000 / total) + 1
df = con.execute(f"select * from frame where abs(hash(customer_id || '#0')) % 100000 < {{keep}} "
                 "order by customer_id").df()
names = cols + [f"m{{i}}" for i in range(len(cats))]
weight = {{c: (math.sqrt(3 / len(cats)) if c.startswith("m") else 1.0) for c in names}}
fill, logs, center, scale, x = {{}}, [], {{}}, {{}}, []
for c in names:
    v = df[c].astype(float)
    fill[c] = float(v.median())
    v = v.fillna(fill[c])
    if v.min() >= 0 and v.skew() > 1.0:
        logs.append(c)
        v = np.log1p(v)
    center[c], scale[c] = float(v.mean()), float(v.std()) or 1.0
    x.append(((v - center[c]) / scale[c] * weight[c]).to_numpy())
x = np.column_stack(x)
def fit(k, data, seed):
    return GaussianMixture(k, covariance_type="diag", n_init=2, random_state=seed,
                           reg_covar=1e-4).fit(data)
rng = np.random.default_rng(0)
sil = rng.choice(len(x), min(len(x), 4000), replace=False)
scores = {{}}
for k in range(2, 11):
    g = fit(k, x, 0)
    lab = g.predict(x)
    scores[k] = (g, lab, silhouette_score(x[sil], lab[sil]), calinski_harabasz_score(x, lab),
                 davies_bouldin_score(x, lab), g.bic(x))
def rank(vals):
    return {{k: r for r, k in enumerate(sorted(vals, key=vals.get))}}
r1 = rank({{k: -v[2] for k, v in scores.items()}})
r2 = rank({{k: -v[3] for k, v in scores.items()}})
r3 = rank({{k: v[4] for k, v in scores.items()}})
best = min(scores, key=lambda k: ((r1[k] + r2[k] + r3[k]) / 3, k))
g, lab = scores[best][0], scores[best][1]
aris = []
for b in range(5):
    idx = np.random.default_rng(1 + b).choice(len(x), len(x))
    aris.append(adjusted_rand_score(lab, fit(best, x[idx], 1 + b).predict(x)))
z = []
for c in names:
    v = f"coalesce({{c}}::double, {{fill[c]}})"
    if c in logs:
        v = f"ln(greatest({{v}}, 0) + 1)"
    z.append(f"(({{v}} - {{center[c]}}) / {{scale[c]}} * {{weight[c]}})")
ll = []
for j in range(best):
    terms = " + ".join(
        f"(({{z[i]}} - {{g.means_[j, i]}}) ^ 2 / {{g.covariances_[j, i]}} "
        f"+ {{math.log(g.covariances_[j, i])}})" for i in range(len(names)))
    ll.append(f"{{-math.log(g.weights_[j])}} + 0.5 * ({{terms}})")
con.execute(f"""create or replace table limit_clusters as
  select customer_id, list_position(l, list_min(l)) - 1 as cluster
  from (select customer_id, [{{", ".join(ll)}}] as l from frame)""")
print("SECONDS=%f" % (time.perf_counter() - t0))
print("K=%d, stability ARI %.3f" % (best, float(np.mean(aris))))
print("CHECK", "|", con.execute({check!r}).fetchone())
'''
)

# Steps without a hand-written limit yet (stated in the table).
# The publish step's floor: the tables it publishes, as the run left them, copied by one
# statement each into a fresh DuckDB file (sorted and indexed on their key) and the lookup's
# and the live history's rows written as JSON documents into SQLite, batch by batch.
LIMIT_PUBLISH = (
    PREP
    + """
import os, sqlite3
from segmentum.page_models import PAGE_MODELS
from segmentum.precompute import DOCUMENTS, READ_MODELS
target = {db!r} + ".limit-serving.duckdb"
docs_path = target + ".docs.sqlite"
for p in (target, docs_path):
    if os.path.exists(p):
        os.remove(p)
have = {{r[0] for r in con.execute("show tables").fetchall()}}
specs = {{n: k for n, k in {{**READ_MODELS, **PAGE_MODELS}}.items() if n in have}}
t0 = time.perf_counter()
con.execute(f"ATTACH '{{target}}' AS srv")
for name, key in specs.items():
    order = f' ORDER BY "{{key}}"' if key else ""
    con.execute(f'CREATE TABLE srv."{{name}}" AS SELECT * FROM "{{name}}"{{order}}')
    if key:
        con.execute(f'CREATE INDEX "{{name}}_{{key}}" ON srv."{{name}}" ("{{key}}")')
con.execute("CHECKPOINT srv")
docs = sqlite3.connect(docs_path)
docs.execute("PRAGMA journal_mode=OFF")
docs.execute("PRAGMA synchronous=OFF")
for name, key in DOCUMENTS.items():
    if name not in specs:
        continue
    docs.execute(f'CREATE TABLE "{{name}}" (k TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID')
    cur = con.execute(f'SELECT CAST("{{key}}" AS VARCHAR), to_json(t)::VARCHAR FROM srv."{{name}}" t')
    while batch := cur.fetchmany(50_000):
        docs.executemany(f'INSERT INTO "{{name}}" VALUES (?, ?)', batch)
docs.commit()
docs.close()
con.execute("DETACH srv")
print("SECONDS=%f" % (time.perf_counter() - t0))
c = duckdb.connect(target, read_only=True)
print("CHECK", "|", c.execute("select count(*) from customer_lookup").fetchone())
"""
)

# Steps of a full run too small for a limit to mean anything: one query's round trip.
NO_LIMIT: dict[str, str] = {
    "plan": "none: one row read (the last run's state)",
    "membership log": "none: no earlier date of the saved segments here, so one query",
    "history retention": "none: no snapshot past retention here, so one query a table",
}


# What the run took before this benchmark's changes (kept as the reference the changes are
# judged against): issue 18's figures, and the old code on the 100k warehouse.
BEFORE = """Before (for reference): issue 18 measured the run at 1M customers / 9.9M lines at 60 s,
contact times 17.4 s (more than all the features, 15.8 s), discovery 9.8 s, lookup and
dashboard aggregates 8.6 s. The code before these changes, on the 100,000-customer warehouse
of this table on the same shared machine (load average 9 to 11, 2026-12-02): features 10.2 s,
clv 260.7 s, classes 5.2 s, contact times 12.7 s, segments 15.9 s, membership log 0.1 s,
discover segments 93.2 s, customer lookup 10.1 s, dashboard aggregates 66.5 s, publish read
models 53.3 s, summary 3.8 s. What changed: contact times count every signal once per
customer, dimension and value (one pass over the lines and events instead of one per
dimension, and the customer view is no longer joined four times) and score only the values
that can win (the customer's own and their segment's top one: the same best); discovery
computes its frame (the view and the spend mix over every line) once instead of three times;
the dashboard aggregates join the customer view once instead of three times. The answers are
the same (contact times identical value for value; the dashboard's sums equal to 3e-14
relative, the order of summation).

The same table on 2026-12-04 before the sixth session's changes: whole run 242.6 s;
clv 89.46 s against 11.42 (7.83x), segments 6.65 against 3.14 (2.12x), dashboard aggregates
10.52 against 2.15 (4.89x). Unchanged code was slower in that run too (the features 26.85 s
against 19.9 here, their limit 35.7 against 22.1): the machine's speed varies from hour to
hour, so compare ratios. What changed:
- **clv**: BG/NBD on the demo runs to its bound (every customer about the same dropout
  chance: b on 1e7, a following it). Bounded L-BFGS crawled along that ridge over every row
  (111 to 246 passes; two of the four fits stopped unconverged). Newton now finishes on the
  face of the box, the parameter nearest its bound held there, accepted only where the bound
  binds: 30.4 s of BG/NBD fits became 5.6 s, all converged, with the same dropout chance.
  The limit fits the same BG/NBD with segmentum's code, so it gained too (11.4 s -> 3.0 s):
  the ratio grew while the step's time fell by more than half. The step's 39 s are the model
  choice on a holdout (BG/NBD 1.6 s, MBG/NBD 0.6 s, Pareto/NBD 17.9 s), the final fit
  (1.4 s), churn calibration (two more fits, 2.5 s, then the reliability table), Gamma-Gamma,
  scoring and the writes; the limit is the final fit and Gamma-Gamma alone. The Pareto/NBD
  fit is what is left to cut: its hypergeometric terms near z = 1 take SciPy's 2F1 five
  times per distinct pair (value and central differences). Since this table: 2F1 over large
  arrays runs in one chunk per core (SciPy releases the GIL; identical values), which took
  the Pareto/NBD fit from 17.5 s to 15.3 s and the step from 38.5 s to 33.4 s in a process of
  its own.
- **dashboard aggregates**: the micro-segment cell sizes come from one count of the finest
  cells joined back instead of a window count per depth, and the personas read the assigned
  table instead of joining the view again (7.0 s -> 3.9 s in a process of its own). That
  table's limit did less than the step (3.76x): no per-customer micro-segment assignment, no
  personas, and the saved segments' profiles as means and histograms only. Since the
  seventh session (2026-12-05) the limit does the step's whole job but the tier forecast
  (0.1 s): every customer's cell, the cells' own counts and personas in SQL, and each saved
  segment's tests and describing tree on the same sample (bench_steps.LIMIT_DASHBOARD).
- **segments**: unchanged code; 1.49x here against 2.12x on the busier machine.

Since the sixth session's table (seventh session, 2026-12-05): money sums are rounded to a
millionth (the classes' check sum moved by 4 score points: customers whose spend tied once
rounded), the history backfill's changes do not touch the run.

The same table earlier on 2026-12-05, before the eighth session's changes (quiet machine,
138.0 s of steps): clv 34.73 s against 3.04 (11.42x), segments 4.11 against 2.63 (1.56x).
What changed:
- **clv**: the limit was a floor (one BG/NBD and one Gamma-Gamma fit), not the step's work;
  it now does the step's whole job by hand, as the dashboard's does (see below), and the
  floor is reported beside it. About half of both is the Pareto/NBD fit on the calibration
  period (the same fitter on both sides: the models section compares it with the peers').
  The step also stopped computing every model's week-by-week holdout curve, which the run's
  choice never read (the criterion, the totals and the choice are the same; tested on
  CDNOW): about 2 s.
- **segments**: the members come from the flags as they are computed, each customer's
  segments as an array unnested in the same statement, instead of from a table of flags
  read again once per segment (4.11 s -> 3.54 s; the same members on DuckDB, Spark and
  PostgreSQL).
- **clv**, after that table (132.1 s of steps; clv 32.64 s against 27.26, 1.20x): Pareto/NBD's
  rows near z = 1 take the connection of z with 1 - z instead of SciPy's 2F1 (see "Pareto/NBD
  near z = 1" above): the step 32.64 s -> 23.79 s, its limit, which uses the same fitter,
  27.26 s -> 18.70 s. The other steps' times moved with the machine (the features 18.95 s ->
  19.97 s, their limit 21.18 s -> 23.04 s; segments 3.54 s -> 3.83 s on unchanged code)."""


def limits(db: Path) -> dict[str, Result]:
    """Each step's limit, measured in its own process on the run's copy (its inputs)."""
    import bench_segments

    out: dict[str, Result] = {}
    sqls = {
        "features": (HERE / "limit_features.sql", LIMIT_CHECKS["features"]),
        "classes": (HERE / "limit_classes.sql", LIMIT_CHECKS["classes"]),
        "contact times": (HERE / "limit_contact_times.sql", LIMIT_CHECKS["contact times"]),
        "customer lookup": (HERE / "limit_lookup.sql", LIMIT_CHECKS["customer lookup"]),
        "summary": (HERE / "limit_summary.sql", LIMIT_CHECKS["summary"]),
        "save run state": (HERE / "limit_run_state.sql", LIMIT_CHECKS["save run state"]),
    }
    for step, (sql, check) in sqls.items():
        out[step] = measure(
            f"limit: {step} ({sql.name})",
            LIMIT_SQL.format(db=str(db), sql=str(sql), check=check),
        )
    out["dashboard aggregates"] = measure(
        "limit: dashboard aggregates (limit_dashboard.sql, the profiles' tests and trees)",
        LIMIT_DASHBOARD.format(
            db=str(db),
            sql=str(HERE / "limit_dashboard.sql"),
            check=LIMIT_CHECKS["dashboard aggregates"],
        ),
    )
    out["publish read models"] = measure(
        "limit: publish read models (the copy and the documents only)",
        LIMIT_PUBLISH.format(db=str(db)),
    )
    out["clv"] = measure("limit: clv (the step's whole job by hand)", LIMIT_CLV.format(db=str(db)))
    out["clv floor"] = measure(
        "floor: clv (one BG/NBD + Gamma-Gamma fit in memory)", FLOOR_CLV.format(db=str(db))
    )
    flags = ",\n".join(f"({sql}) as {name}" for name, _, sql in bench_segments.RULES)
    unions = " union all ".join(
        f"select '{name}' as segment, customer_id from flags where {name}"
        for name, _, _ in bench_segments.RULES
    )
    seg_sql = bench_segments.LIMIT.split("sql = '''", 1)[1].split("'''", 1)[0]
    seg_sql = seg_sql.replace("{flags}", flags).replace("{unions}", unions)
    out["segments"] = measure(
        "limit: segments (bench_segments' one statement)",
        LIMIT_SEGMENTS.format(db=str(db), sql=seg_sql, check=LIMIT_CHECKS["segments"]),
    )
    out["discover segments"] = measure(
        "limit: discover segments (SQL frame, scikit-learn fits, SQL assignment)",
        LIMIT_DISCOVER.format(db=str(db), check=LIMIT_CHECKS["discover segments"]),
    )
    return out


def _checks(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        if line.startswith("CHECK"):
            step, _, value = line[len("CHECK") :].partition("|")
            found[step.strip()] = value.strip()
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", help="an existing prepared warehouse instead of the 870k one")
    ap.add_argument("--label", default=f"{CUSTOMERS:,} demo customers")
    args = ap.parse_args()
    if args.db:
        src = Path(args.db)
    else:
        # Prepared in a process of its own: a child inherits its parent's peak memory as a
        # starting point, so every measurement would otherwise report the ingest's peak.
        if not DB.exists():
            subprocess.run(
                [sys.executable, "-c", "import bench_steps; bench_steps.prepare()"],
                check=True,
                cwd=HERE,
            )
        src = DB
    copy = DATA / "steps-run.duckdb"
    shutil.copy(src, copy)
    load = os.getloadavg()[0]
    print(f"steps: segmentum run against each step's limit, {args.label}")
    run = measure("segmentum run (every step)", RUN.format(db=str(copy), checks=CHECKS))
    steps = json.loads(run.output.split("STEPS=", 1)[1].splitlines()[0])
    ours = _checks(run.output)
    lim = limits(copy)
    import duckdb

    with duckdb.connect(str(copy), read_only=True) as con:
        (n_lines,) = con.execute("select count(*) from transactions").fetchone() or (0,)
        (n_cust,) = con.execute("select count(*) from customers").fetchone() or (0,)
    rows = [
        "| step | segmentum (s) | limit (s) | ratio | peak memory, segmentum (MB) "
        "| peak memory, limit (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    over = []
    for st in steps:
        name, secs = st["step"], float(st.get("seconds") or 0.0)
        peak = st.get("peak_mb") or 0.0
        if name in lim:
            r = lim[name]
            ratio = secs / r.seconds if r.seconds else float("inf")
            if ratio > 1.5:
                over.append(name)
            rows.append(
                f"| {name} | {secs:.2f} | {r.seconds:.2f} | {ratio:.2f}x | {peak:,.0f} "
                f"| {r.peak_mb:,.0f} |"
            )
        else:
            why = NO_LIMIT.get(name, "no limit yet")
            rows.append(f"| {name} | {secs:.2f} | {why} | | {peak:,.0f} | |")
    total = sum(float(st.get("seconds") or 0.0) for st in steps)
    checks = "\n".join(
        f"- {step}: segmentum {ours.get(step, '?')}; limit {_checks(r.output).get('', '?')}"
        for step, r in lim.items()
        if step in ours
    )
    disc = next(
        (ln for ln in lim["discover segments"].output.splitlines() if ln.startswith("K=")), ""
    )
    clv_secs = next((float(st.get("seconds") or 0.0) for st in steps if st["step"] == "clv"), 0.0)
    clv_choice = next(
        (ln[len("CHOSEN ") :] for ln in lim["clv"].output.splitlines() if ln.startswith("CHOSEN")),
        "",
    )
    body = f"""## Every step of `segmentum run` against its limit

`segmentum run --full` on {args.label} ({n_cust:,} customers in the profile, {n_lines / 1e6:.2f}M
invoice lines, the 20 saved segments of the segments benchmark, discovery on), a day after a
first run; {machine()}; load average {load:.1f} when it began (nothing else was started
meanwhile). Each contender ran in its own process, one after
the other; the limits ran on the run's own output (their inputs). Target: every step within
1.5x of its limit. Whole run: {total:.1f} s of steps, {run.peak_mb:,.0f} MB peak.

{chr(10).join(rows)}

Over 1.5x: {", ".join(over) if over else "none"}.

The CLV step's floor (one BG/NBD and one Gamma-Gamma fit on the features' summary, 12-month
CLV written back; the limit until 2026-12-05): {lim["clv floor"].seconds:.2f} s, the step
{clv_secs / lim["clv floor"].seconds:.1f}x it. The step's limit above does its whole job:
the three purchase models compared on a holdout, the chosen one fitted again on all the data,
churn calibrated on the history where the dropout is not identified (here: {clv_choice}).

{BEFORE}

What each limit is (all in [benchmarks/](../benchmarks/), run by `bench_steps.py`):

- **features**: [limit_features.sql](../benchmarks/limit_features.sql), every feature of
  `customer_features` by hand (see the features section), on net purchases as the pipeline
  counts them (orders their linked returns cancel left out, returned units taken off), with
  the engagement features from events and campaign results. The net lines are read again by
  each aggregate (`NOT MATERIALIZED`): kept whole in a common table they took 34 s, spilling
  at the 1GB limit, against 20 s.
- **clv** (`bench_steps.LIMIT_CLV`): the step's whole job by hand. The summaries in SQL,
  grouped by (x, t_x, T) (the calibration period's, the holdout's purchases by calibration
  frequency, the current one, the two churn dates' with who bought in the next 90 days);
  BG/NBD, MBG/NBD and Pareto/NBD fitted on the calibration period with segmentum's fitters
  (the models section compares them with the peers'; none is faster) and the same choice;
  the chosen model fitted on all the data; churn calibrated by isotonic regression weighted
  by the grouped rows, with its Brier score and AUC; Gamma-Gamma; every number per distinct
  (x, t_x, T) row, joined to the customers in SQL and written back. It gives the step's
  holdout errors, choice and CLV (equal to the step's; churn within 2e-5). Left out: the
  reliability table and the expected date of the next purchase.
- **classes**: [limit_classes.sql](../benchmarks/limit_classes.sql), RFM quintiles and
  segment, value and potential tiers (Pareto 80/15/5), lifecycle stage against each
  customer's own rhythm, the value x potential cell and the "silent but alive" flag in one
  statement (English names only; the step also writes the Spanish ones and replaces the
  date's rows in place).
- **publish read models**: a floor, not the same work: the published tables as the run left
  them, copied into a fresh DuckDB file with one statement each (sorted and indexed on their
  key), and the lookup's and live history's rows as JSON documents in SQLite. The step also
  builds the page models (per-invoice rows, activity, directory) and the live rules' history
  it publishes, and syncs the live side.
- **contact times**: [limit_contact_times.sql](../benchmarks/limit_contact_times.sql), every
  customer's signals counted in one row, one column per value (one grouping of the lines and
  events with FILTER counts; the demo's values written out, where the tool finds the devices
  first), shrunk toward the RFM segment per column, the best value by GREATEST (since
  2026-12-06; before, one row per customer, dimension and value by GROUPING SETS, which the
  step now beat by half).
- **segments**: the segments benchmark's one hand-written statement for the 20 rules, giving
  the step's members exactly (its CHECK line): every customer of the profile or of the
  features (a profile without purchases still matches `gender = 'F'`), orders cancelled by
  their returns not counted as purchases. Until 2026-12-07 it read the features' customers
  only and counted cancelled orders: 140 fewer members of 1.75M, and less work.
- **discover segments**: the frame (features and the net spend mix of the top 8 categories)
  in SQL, the same 20k hash sample and transform, the same scikit-learn fits (GMM for
  k = 2..10, three indices, 5 bootstrap refits) and every customer assigned in one SQL
  statement; no profiles or names ({disc}).
- **summary**: [limit_summary.sql](../benchmarks/limit_summary.sql), the summary's numbers
  by hand: revenue from the net lines (identified, anonymous, customers netting to zero or
  less), currencies, buyers without a record and customers without a purchase, return lines
  and their links, invoices cancelled in full, the size and revenue of each class.
- **save run state**: [limit_run_state.sql](../benchmarks/limit_run_state.sql), the counts
  and checksums the next run's plan is checked against (lines, events, campaign results)
  in one scan of each table.
- **customer lookup**: [limit_lookup.sql](../benchmarks/limit_lookup.sql), the same columns
  joined by hand, sorted by id, with the same index.
- **dashboard aggregates**: [limit_dashboard.sql](../benchmarks/limit_dashboard.sql), the
  customer view once (only the columns read), the class shares and R x F heatmap, the two
  histograms, segment sizes, the geography and micro-segment cells (GROUPING SETS), the saved
  segments' profiles on the same 20k sample and the value-tier migration, as tables. Left
  out: the tier forecast and the micro-segment personas (small fits on these aggregates),
  and the JSON document.

Same answers (segmentum; the limit):
{checks}
"""
    update_doc("steps", body)
    # The copy and what the run and the publish limit wrote beside it (serving stores, their
    # documents, the live rules' store).
    for leftover in DATA.glob(f"{copy.name.removesuffix('.duckdb')}.*"):
        leftover.unlink()


if __name__ == "__main__":
    main()
