"""The purchase-day rollup: one row per customer and day with a purchase, kept current.

Most of what the buy-till-you-die models need (x, t_x, T, the repeat purchases' value) and the
gaps between purchases depend on invoice lines only through each customer's purchase days.
Grouping 10M lines into (customer, day) is the single most expensive step of that summary
(about 1 s of 1.2 s on two cores); the result has a third of the rows and every later date
(``as_of``) is a filter on it. So the warehouse keeps it as a table, ``purchase_days``:

- ingest adds each new batch of invoice lines to it, in the same transaction as the lines
  (:func:`absorb`), at the cost of grouping the batch and merging the days it touches;
- readers call :func:`purchase_days`, which checks it against ``transactions`` first and
  rebuilds it when they differ. The check is a fingerprint of the lines (row count and an
  additive checksum of the columns the rollup depends on, :meth:`Warehouse.fingerprint`),
  stored with the rollup in ``rollup_state``. Lines written, changed or deleted outside ingest
  (your own SQL, a restored backup) therefore never give stale answers: the next reader pays
  for one rebuild.
"""

from __future__ import annotations

import datetime as _dt

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segmentum.warehouse import Warehouse

PURCHASE_DAYS = "purchase_days"
ROLLUP_STATE = "rollup_state"
# The columns of ``transactions`` the rollup depends on (what the fingerprint covers).
SOURCE_COLUMNS = ("customer_id", "timestamp", "quantity", "amount")
_KEY = ["customer_id", "day"]


def day_rollup(transactions: ir.Table) -> ir.Table:
    """Purchase lines of identified customers grouped by customer and calendar day.

    ``value`` is the day's spend (sum of ``amount`` over lines with a positive quantity),
    ``lines`` the number of such lines. Every date: point-in-time readers filter ``day``.
    """
    t = transactions
    buys = t.filter(t.customer_id.notnull() & (t.quantity > 0) & t.timestamp.notnull())
    buys = buys.select("customer_id", "amount", day=buys.timestamp.date())
    return buys.group_by(_KEY).aggregate(
        value=buys.amount.sum().cast("float64"), lines=buys.count().cast("int64")
    )


def is_day_rollup(t: ir.Table) -> bool:
    """Whether ``t`` is a purchase-day rollup rather than invoice lines."""
    return {"customer_id", "day", "value"} <= set(t.columns) and "timestamp" not in t.columns


def purchase_days(wh: Warehouse) -> ir.Table:
    """The purchase-day rollup of ``transactions``, rebuilt first if it is missing or stale."""
    tx = wh.table("transactions")
    current = wh.fingerprint(tx, SOURCE_COLUMNS)
    if wh.has(PURCHASE_DAYS) and _stored_fingerprint(wh) == current:
        return wh.table(PURCHASE_DAYS)
    return rebuild(wh, current)


def rebuild(wh: Warehouse, fingerprint: tuple[int, int] | None = None) -> ir.Table:
    """Compute the rollup from every line of ``transactions`` and record its fingerprint."""
    tx = wh.table("transactions")
    fingerprint = fingerprint or wh.fingerprint(tx, SOURCE_COLUMNS)
    # Stored in key order: the engine then aggregates it by customer a third faster
    # (0.36 s instead of 0.57 s for 3.7M days on DuckDB) at no extra cost to the build.
    table = wh.write(PURCHASE_DAYS, day_rollup(tx).order_by(_KEY))
    _save_fingerprint(wh, fingerprint)
    return table


def absorb(wh: Warehouse, lines: ir.Table) -> None:
    """Add newly inserted invoice ``lines`` (already in ``transactions``) to the rollup.

    Call it in the same batch as the insert. The days the lines touch are merged (summed with
    what the rollup already holds for that customer and day) and the stored fingerprint
    advances by the lines' own. If the rollup was stale before, it stays detectably stale and
    the next reader rebuilds it; if there is no rollup yet, nothing is done (the first reader
    builds it).
    """
    before = _stored_fingerprint(wh) if wh.has(PURCHASE_DAYS) else None
    if before is None:
        return
    added = wh.fingerprint(lines, SOURCE_COLUMNS)
    if added[0] == 0:
        return
    new = wh.materialize(day_rollup(lines), "new_days")
    try:
        days = wh.table(PURCHASE_DAYS)
        both = days.semi_join(new, _KEY).union(new)
        merged = wh.materialize(
            both.group_by(_KEY).aggregate(value=both.value.sum(), lines=both.lines.sum()),
            "merged_days",
        )
        wh.delete_keys(PURCHASE_DAYS, new, _KEY)
        wh.insert(PURCHASE_DAYS, merged.select(*days.columns))
        wh.drop(merged.get_name())
    finally:
        wh.drop(new.get_name())
    _save_fingerprint(wh, (before[0] + added[0], before[1] + added[1]))


def window(days: ir.Table, as_of: _dt.date) -> ir.Table:
    """The rollup's days strictly before ``as_of`` (a point-in-time view)."""
    return days.filter(days.day < ibis.literal(as_of, "date"))


def _stored_fingerprint(wh: Warehouse) -> tuple[int, int] | None:
    if not wh.has(ROLLUP_STATE):
        return None
    state = wh.table(ROLLUP_STATE)
    rows = state.filter(state.name == PURCHASE_DAYS).to_pyarrow().to_pylist()
    if not rows:
        return None
    return int(rows[0]["lines"]), int(rows[0]["checksum"])


def _save_fingerprint(wh: Warehouse, fingerprint: tuple[int, int]) -> None:
    row = pa.table(
        {
            "name": [PURCHASE_DAYS],
            "lines": pa.array([fingerprint[0]], pa.int64()),
            "checksum": pa.array([fingerprint[1]], pa.int64()),
            "refreshed_at": pa.array(
                [_dt.datetime.now(_dt.UTC).replace(tzinfo=None)], pa.timestamp("us")
            ),
        }
    )
    wh.write(ROLLUP_STATE, row)
