"""Model benchmark: BG/NBD + Gamma-Gamma fit and CLV scoring, and Pareto/NBD, against lifetimes.

    python benchmarks/bench_models.py

Run bench_features.py first (it leaves customer_features in bench-data/features.duckdb).
Writes its table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import duckdb
import numpy as np

from common import DATA, PEERS_PY, machine, measure, table, update_doc

SEGMENTUM_BG_GG = """
import time, json, datetime as dt, segmentum
from segmentum.models.clv import fit_models, score
wh = segmentum.connect("duckdb:///" + {db!r})
f = wh.table("customer_features")
as_of = f.as_of.max().to_pyarrow().as_py().date() if hasattr(f.as_of.max().to_pyarrow().as_py(), "date") else f.as_of.max().to_pyarrow().as_py()
t0 = time.perf_counter()
# BG/NBD only, as the peers fit: the pipeline's choice among three models is measured apart.
models = fit_models(f, models=("BG/NBD",))
wh.write("customer_clv", score(wh, f, models, as_of, monthly_discount=0.01))
print("SECONDS=%f" % (time.perf_counter() - t0))
print("PARAMS=" + json.dumps({{**models.purchases.params_, **(models.spend.params_ if models.spend else {{}})}}))
print("CLV=%f" % wh.table("customer_clv").clv.sum().execute())
"""

SEGMENTUM_IN_MEMORY = """
import time, json, numpy as np, pyarrow.parquet as pq
from segmentum.models import BetaGeo, GammaGamma
s = pq.read_table({path!r}).to_pandas()
s = s[s["T"] > 0]
t0 = time.perf_counter()
bg = BetaGeo().fit(s.x, s.t_x, s["T"])
rep = s[(s.x > 0) & (s.monetary_value > 0)]
gg = GammaGamma().fit(rep.x, rep.monetary_value)
# lifetimes' month is 4.345 weeks: use the same to compare customer by customer.
clv = gg.customer_lifetime_value(bg, s.x, s.t_x, s["T"], s.monetary_value.fillna(0),
                                 months=12, monthly_discount=0.01, month_length=4.345)
print("SECONDS=%f" % (time.perf_counter() - t0))
print("PARAMS=" + json.dumps({{**bg.params_, **gg.params_}}))
np.save({out!r}, clv)
"""

PYMC_BG_GG = """
import os, tempfile
# A fresh compilation cache: the model graph's C compilation is counted, as on a first run.
os.environ["PYTENSOR_FLAGS"] = "compiledir=" + tempfile.mkdtemp()
import time, json, warnings, numpy as np, pandas as pd, pyarrow.parquet as pq
warnings.filterwarnings("ignore")
from pymc_extras.prior import Prior
from pymc_marketing.clv import BetaGeoModel, GammaGammaModel, customer_lifetime_value
s = pq.read_table({path!r}).to_pandas()
s = s[s["T"] > 0].reset_index(drop=True)
t0 = time.perf_counter()
data = pd.DataFrame({{"customer_id": np.arange(len(s)), "frequency": s.x, "recency": s.t_x, "T": s["T"]}})
# Flat priors: the maximum a posteriori is then the maximum likelihood estimate.
bg = BetaGeoModel(data=data, model_config={{k: Prior("HalfFlat") for k in ("r", "alpha", "a", "b")}})
bg.fit(method="map", progressbar=False)
rep = s[(s.x > 0) & (s.monetary_value > 0)]
gdata = pd.DataFrame({{"customer_id": np.arange(len(rep)), "frequency": rep.x.to_numpy(), "monetary_value": rep.monetary_value.to_numpy()}})
gg = GammaGammaModel(data=gdata, model_config={{k: Prior("HalfFlat") for k in ("p", "q", "v")}})
gg.fit(method="map", progressbar=False)
spend = gg.expected_customer_spend(pd.DataFrame({{"customer_id": data.customer_id, "frequency": s.x, "monetary_value": s.monetary_value.fillna(0)}}))
clv_data = data.assign(future_spend=np.asarray(spend.mean(("chain", "draw"))))
clv = customer_lifetime_value(bg, clv_data, future_t=12, discount_rate=0.01, time_unit="W")
clv = np.asarray(clv.mean(("chain", "draw")))
print("SECONDS=%f" % (time.perf_counter() - t0))
p = {{k: float(np.asarray(bg.fit_result[k]).ravel()[0]) for k in ("r", "alpha", "a", "b")}}
p.update({{k: float(np.asarray(gg.fit_result[k]).ravel()[0]) for k in ("p", "q")}})
p["gamma"] = float(np.asarray(gg.fit_result["v"]).ravel()[0])
print("PARAMS=" + json.dumps(p))
np.save({out!r}, clv)
"""

SEGMENTUM_PNBD = """
import time, json, pyarrow.parquet as pq
from segmentum.models import ParetoNBD
s = pq.read_table({path!r}).to_pandas()
t0 = time.perf_counter()
m = ParetoNBD().fit(s.x, s.t_x, s["T"])
print("SECONDS=%f" % (time.perf_counter() - t0))
print("PARAMS=" + json.dumps(m.params_))
"""

LIFETIMES_BG_GG = """
import time, json, pyarrow.parquet as pq
from lifetimes import BetaGeoFitter, GammaGammaFitter
s = pq.read_table({path!r}).to_pandas()
t0 = time.perf_counter()
bgf = BetaGeoFitter().fit(s.x, s.t_x, s["T"])
rep = s[(s.x > 0) & (s.monetary_value > 0)]
ggf = GammaGammaFitter().fit(rep.x, rep.monetary_value)
clv = ggf.customer_lifetime_value(bgf, s.x, s.t_x, s["T"], s.monetary_value.fillna(0), time=12, discount_rate=0.01, freq="W")
print("SECONDS=%f" % (time.perf_counter() - t0))
import numpy as np
np.save({out!r}, np.asarray(clv)[s["T"].to_numpy() > 0])
p = dict(bgf.params_); p.update(dict(ggf.params_)); p["gamma"] = p.pop("v")
print("PARAMS=" + json.dumps({{k: float(v) for k, v in p.items()}}))
# segmentum leaves customers observed for under 4 weeks unscored (too_new): compare the rest.
print("CLV=%f" % float(clv[s["T"].to_numpy() >= 4].sum()))
"""

LIFETIMES_PNBD = """
import time, json, pyarrow.parquet as pq
from lifetimes import ParetoNBDFitter
s = pq.read_table({path!r}).to_pandas()
t0 = time.perf_counter()
m = ParetoNBDFitter().fit(s.x, s.t_x, s["T"])
print("SECONDS=%f" % (time.perf_counter() - t0))
print("PARAMS=" + json.dumps({{k: float(v) for k, v in dict(m.params_).items()}}))
"""


def params(out: str) -> dict[str, float]:
    line = next(x for x in out.splitlines() if x.startswith("PARAMS="))
    return dict(json.loads(line[len("PARAMS=") :]))


def max_rel_diff(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) / abs(b[k]) for k in b if k in a)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--db",
        default=str(DATA / "features.duckdb"),
        help="a DuckDB file with customer_features (bench_features.py leaves one). The 1M "
        "demo's in bench-data/segments.duckdb has an almost constant dropout probability: "
        "lifetimes stops there with a ConvergenceError (segmentum fits it and says so)",
    )
    db = Path(parser.parse_args().db).resolve()
    con = duckdb.connect(str(db))
    n = con.execute("select count(*) from customer_features").fetchone()[0]  # type: ignore[index]
    summary = DATA / "summary.parquet"
    con.execute(f"COPY (SELECT x, t_x, T, monetary_value FROM customer_features) TO '{summary}'")
    sample = DATA / "summary-100k.parquet"
    con.execute(
        f"COPY (SELECT x, t_x, T FROM customer_features USING SAMPLE 100000 ROWS (reservoir, 42)) TO '{sample}'"
    )
    con.close()
    print(f"models benchmark on {n:,} customers")
    clv_files = {k: DATA / f"clv-{k}.npy" for k in ("segmentum", "lifetimes", "pymc")}
    seg = measure(
        "segmentum: BG/NBD + Gamma-Gamma fit + CLV, DuckDB to DuckDB",
        SEGMENTUM_BG_GG.format(db=str(db)),
        repeat=2,
    )
    mem = measure(
        "segmentum: the same from a DataFrame to an array (as the peers)",
        SEGMENTUM_IN_MEMORY.format(path=str(summary), out=str(clv_files["segmentum"])),
        repeat=2,
    )
    seg_p = measure(
        "segmentum: Pareto/NBD fit, all customers",
        SEGMENTUM_PNBD.format(path=str(summary)),
        repeat=2,
    )
    rows, lines, notes = [seg, mem], [], []
    if not PEERS_PY.exists():
        rows.append(seg_p)
        notes.append("- peers not installed: see benchmarks/README.md")
    else:
        life = measure(
            "lifetimes 0.11.3: BetaGeoFitter + GammaGammaFitter + CLV",
            LIFETIMES_BG_GG.format(path=str(summary), out=str(clv_files["lifetimes"])),
            python=PEERS_PY,
        )
        rows.append(life)
        ours = np.load(clv_files["segmentum"])
        theirs = np.load(clv_files["lifetimes"])
        lines += [
            f"- BG/NBD + Gamma-Gamma + 12-month CLV: segmentum is {life.seconds / mem.seconds:.1f}x "
            f"faster than lifetimes on the same in-memory input and output, and "
            f"{life.seconds / seg.seconds:.1f}x faster counting the warehouse round trip "
            "(reading the summary, writing `customer_clv` for every customer).",
            f"- parameters: largest relative difference to lifetimes "
            f"{max_rel_diff(params(mem.output), params(life.output)):.1e} (in-memory run) and "
            f"{max_rel_diff(params(seg.output), params(life.output)):.1e} (warehouse run); "
            f"per-customer CLV: largest relative difference {_clv_diff(ours, theirs):.1e}, "
            f"totals {ours.sum():,.0f} and {theirs.sum():,.0f}.",
        ]
        seg_clv = float(next(x for x in seg.output.splitlines() if x.startswith("CLV="))[4:])
        life_clv = float(next(x for x in life.output.splitlines() if x.startswith("CLV="))[4:])
        lines.append(
            f"- the warehouse run's total CLV over customers observed for 4 weeks or more: "
            f"{seg_clv:,.0f} against lifetimes' {life_clv:,.0f} "
            f"(relative difference {abs(seg_clv - life_clv) / life_clv:.1e}: segmentum's month "
            "is 365.25/12/7 = 4.348 weeks, lifetimes' 4.345)"
        )
        try:
            pymc = measure(
                "pymc-marketing 0.19.2: MAP, flat priors, BG/NBD + GG + CLV",
                PYMC_BG_GG.format(path=str(summary), out=str(clv_files["pymc"])),
                python=PEERS_PY,
            )
            rows.append(pymc)
            lines.append(
                f"- pymc-marketing (maximum a posteriori with flat priors, so the same estimates; "
                f"its time includes compiling the model graph from an empty cache): segmentum is "
                f"{pymc.seconds / mem.seconds:.1f}x faster in memory; largest relative difference "
                f"in the parameters {max_rel_diff(params(mem.output), params(pymc.output)):.1e}; "
                f"per-customer CLV {_clv_diff(ours, np.load(clv_files['pymc'])):.1e}."
            )
        except RuntimeError as exc:
            notes.append(f"- pymc-marketing did not finish: {str(exc).splitlines()[-1]}")
        try:
            life_p = measure(
                "lifetimes 0.11.3: ParetoNBDFitter, 100k-customer sample",
                LIFETIMES_PNBD.format(path=str(sample)),
                python=PEERS_PY,
            )
            rows += [seg_p, life_p]
        except RuntimeError as exc:
            rows.append(seg_p)
            notes.append(f"- lifetimes Pareto/NBD did not finish: {str(exc).splitlines()[-1]}")
    body = f"""## Models (issue: CLV, churn and potential)

Measured on {machine()}, on the {n:,} customers of `{db.name}` (the demo generator's). The first row is
the pipeline's CLV step: it reads the compressed summary out of DuckDB, fits, and writes
`customer_clv` (P(alive), churn, expected purchases and spend, CLV, next purchase date) for
every customer back. The second row does what the peers do, on the same DataFrame they get:
fit both models and return an array of 12-month CLV. Ratios are to the first row.

{table(rows, seg, note="ratio to segmentum BG/NBD + GG")}

{chr(10).join(lines)}
{chr(10).join(notes)}
"""
    update_doc("models", body)


def _clv_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest relative difference over customers with a CLV worth comparing (> 1 cent)."""
    keep = np.abs(b) > 0.01
    return float(np.max(np.abs(a[keep] - b[keep]) / np.abs(b[keep])))


if __name__ == "__main__":
    main()
