"""Model benchmark: BG/NBD + Gamma-Gamma fit and CLV scoring, and Pareto/NBD, against lifetimes.

    python benchmarks/bench_models.py

Run bench_features.py first (it leaves customer_features in bench-data/features.duckdb).
Writes its table into docs/benchmarks.md.
"""

from __future__ import annotations

import json

import duckdb

from common import DATA, PEERS_PY, machine, measure, table, update_doc

SEGMENTUM_BG_GG = """
import time, json, datetime as dt, segmentum
from segmentum.models.clv import fit_models, score
wh = segmentum.connect("duckdb:///" + {db!r})
f = wh.table("customer_features")
as_of = f.as_of.max().to_pyarrow().as_py().date() if hasattr(f.as_of.max().to_pyarrow().as_py(), "date") else f.as_of.max().to_pyarrow().as_py()
t0 = time.perf_counter()
models = fit_models(f)
wh.write("customer_clv", score(wh, f, models, as_of, monthly_discount=0.01))
print("SECONDS=%f" % (time.perf_counter() - t0))
print("PARAMS=" + json.dumps({{**models.purchases.params_, **models.spend.params_}}))
print("CLV=%f" % wh.table("customer_clv").clv.sum().execute())
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
    db = DATA / "features.duckdb"
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
    seg = measure(
        "segmentum: BG/NBD + Gamma-Gamma fit + CLV scored in DuckDB",
        SEGMENTUM_BG_GG.format(db=str(db)),
        repeat=2,
    )
    seg_p = measure(
        "segmentum: Pareto/NBD fit, all customers",
        SEGMENTUM_PNBD.format(path=str(summary)),
        repeat=2,
    )
    rows, lines, notes = [seg], [], []
    if PEERS_PY.exists():
        life = measure(
            "lifetimes 0.11.3: BetaGeoFitter + GammaGammaFitter + CLV",
            LIFETIMES_BG_GG.format(path=str(summary)),
            python=PEERS_PY,
        )
        rows.append(life)
        lines.append(
            f"- BG/NBD + Gamma-Gamma: segmentum is {life.seconds / seg.seconds:.0f}x faster than lifetimes; "
            f"largest relative difference in the parameters {max_rel_diff(params(seg.output), params(life.output)):.1e}"
        )
        seg_clv = float(next(x for x in seg.output.splitlines() if x.startswith("CLV="))[4:])
        life_clv = float(next(x for x in life.output.splitlines() if x.startswith("CLV="))[4:])
        lines.append(
            f"- total 12-month CLV: segmentum {seg_clv:,.0f}, lifetimes {life_clv:,.0f} "
            f"(customers observed for 4 weeks or more; relative difference {abs(seg_clv - life_clv) / life_clv:.1e}; "
            "lifetimes counts a month as 4.345 weeks, segmentum as 365.25/12/7 = 4.348)"
        )
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
    else:
        rows.append(seg_p)
        notes.append("- peers not installed: see benchmarks/README.md")
    body = f"""## Models (issue: CLV, churn and potential)

Measured on {machine()}, on the {n:,} customers of the features benchmark. segmentum's time
includes pulling the compressed summary out of DuckDB and writing `customer_clv` back; the
peers start from a pandas DataFrame already in memory. Ratios are to the first row.

{table(rows, seg, note="ratio to segmentum BG/NBD + GG")}

{chr(10).join(lines)}
{chr(10).join(notes)}

pymc-marketing's models were not measured in this run (see the open issue notes).
"""
    update_doc("models", body)


if __name__ == "__main__":
    main()
