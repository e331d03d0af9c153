"""How long the daily snapshots are kept.

Every ``segmentum run`` stores each customer's features, classes, CLV, clusters, contact times
and saved-segment memberships under its date (``as_of``): 870,000 customers add about 4.3M rows
a day, and the serving store copies the history it is given. Kept for ever, a year of daily runs
holds 365 copies of the customer base, and every run pays for it (the tables, the serving copy).

The rule, applied by every run after its own results are written (and by
``segmentum history prune``):

- the snapshots of the last ``history_daily_days`` days (counted back from the newest date) are
  all kept;
- older ones keep **one a month**: the first date of each calendar month that a table has (the
  monthly grid the migration, cohorts and forecast read), for ``history_months`` months
  (``0``: for ever);
- the two newest dates are always kept (the membership log and an incremental run compare the
  newest with the one before);
- snapshots written by ``segmentum history backfill`` are never removed: the user asked for
  them (they are dated at period starts, so they are on the grid anyway).

    >>> import datetime as dt
    >>> days = [dt.date(2025, 10, 1) + dt.timedelta(days=i) for i in range(0, 80, 3)]
    >>> kept = keep_dates(days, daily_days=14, months=0)
    >>> [d.isoformat() for d in sorted(kept)][:4]
    ['2025-10-01', '2025-11-03', '2025-12-03', '2025-12-06']
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ibis
import pyarrow as pa

from segmentum.errors import InputError

if TYPE_CHECKING:
    from segmentum.config import Settings
    from segmentum.warehouse import Warehouse

#: The tables a run adds a snapshot to, one row per customer (or member) and date.
SNAPSHOT_TABLES = (
    "customer_features",
    "customer_classes",
    "customer_clv",
    "customer_clusters",
    "contact_times",
    "segment_members",
    "micro_segments",
)
#: Dates always kept, newest first: the last run's and the one before it.
NEWEST_KEPT = 2


@dataclass
class Pruned:
    """What a prune removed (or, with ``dry_run``, would remove)."""

    newest: _dt.date | None
    daily_days: int
    months: int
    dry_run: bool = False
    # table -> the dates removed and how many rows they held
    removed: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def dates(self) -> list[str]:
        return sorted({d for per in self.removed.values() for d in per})

    @property
    def rows(self) -> int:
        return sum(n for per in self.removed.values() for n in per.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "newest": self.newest.isoformat() if self.newest else None,
            "daily_days": self.daily_days,
            "months": self.months,
            "dry_run": self.dry_run,
            "dates": self.dates,
            "rows": self.rows,
            "removed": self.removed,
        }


def _months_between(old: _dt.date, new: _dt.date) -> int:
    return (new.year - old.year) * 12 + new.month - old.month


def keep_dates(
    dates: Iterable[_dt.date],
    *,
    daily_days: int,
    months: int,
    newest: _dt.date | None = None,
) -> set[_dt.date]:
    """Which of ``dates`` (one table's run-written snapshot dates) the rule keeps.

    ``newest``: the newest date of any snapshot table (default: the newest of ``dates``), so
    that every table counts its windows back from the same day.
    """
    if daily_days < 0 or months < 0:
        raise InputError(
            "history_daily_days and history_months cannot be negative",
            "set them to 0 or more in segmentum.toml (history_months = 0 keeps the monthly "
            "snapshots for ever)",
        )
    found = sorted(set(dates))
    if not found:
        return set()
    top = newest or found[-1]
    keep = set(found[-NEWEST_KEPT:])
    first_of_month: dict[tuple[int, int], _dt.date] = {}
    for d in found:
        first_of_month.setdefault((d.year, d.month), d)
    for d in found:
        recent = (top - d).days < daily_days
        monthly = first_of_month[(d.year, d.month)] == d and (
            months == 0 or _months_between(d, top) < months
        )
        if recent or monthly:
            keep.add(d)
    return keep


def _as_date(v: Any) -> _dt.date:
    return v.date() if isinstance(v, _dt.datetime) else v


def _dates(wh: Warehouse, name: str) -> tuple[dict[_dt.date, int], set[_dt.date]]:
    """Rows per date of ``name``, and the dates a backfill wrote (never removed)."""
    t = wh.table(name)
    if "as_of" not in t.columns:
        return {}, set()
    t = t.filter(t.as_of.notnull())
    backfill = (
        t.run_id.fill_null("").startswith("backfill-").cast("int64").max()
        if "run_id" in t.columns
        else ibis.literal(0, "int64")
    )
    rows = t.group_by("as_of").aggregate(n=t.count(), backfill=backfill).to_pyarrow().to_pylist()
    counts = {_as_date(r["as_of"]): int(r["n"]) for r in rows}
    return counts, {_as_date(r["as_of"]) for r in rows if r["backfill"]}


def prune(
    wh: Warehouse,
    settings: Settings,
    *,
    dry_run: bool = False,
    tables: Sequence[str] = SNAPSHOT_TABLES,
    protect: Iterable[_dt.date] = (),
) -> Pruned:
    """Remove the snapshots the retention rule no longer keeps (see the module's text).

    ``protect``: dates never removed (the date a run just computed, even an old one asked for
    with ``--as-of``)."""
    spared = set(protect)
    daily, months = int(settings.history_daily_days), int(settings.history_months)
    present = [n for n in tables if wh.has(n)]
    per_table = {n: _dates(wh, n) for n in present}
    every = [d for counts, _ in per_table.values() for d in counts]
    out = Pruned(max(every) if every else None, daily, months, dry_run)
    if out.newest is None:
        return out
    for name, (counts, backfilled) in per_table.items():
        written = [d for d in counts if d not in backfilled]
        kept = keep_dates(written, daily_days=daily, months=months, newest=out.newest)
        gone = sorted(d for d in written if d not in kept and d not in spared)
        if not gone:
            continue
        out.removed[name] = {d.isoformat(): counts[d] for d in gone}
        if dry_run:
            continue
        keys = wh.from_arrow(pa.table({"as_of": pa.array(gone, pa.date32())}), "pruned")
        wh.delete_keys(name, keys, ["as_of"])
        wh.drop(keys.get_name())
    return out
