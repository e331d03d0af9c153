"""Tracked events into the warehouse's ``events`` table, exactly once, on each pipeline run.

The events waiting in the real-time store (``seq`` above what the warehouse holds) are written
to a JSON-lines file named for their range (``tracked-events-<first>-<last>.jsonl``) and loaded
by the ordinary ingest, so they are checked, counted (``read = accepted + quarantined``) and
recorded as an ingest batch like any export. The high-water mark is that batch: it is read back
from ``ingest_batches``, which the load commits in the same transaction as the rows, so a crash
at any point neither loses nor repeats an event.

Purchases tracked live go in as ``purchase`` events: the warehouse's sales come from the
invoice export alone, so an order tracked live and exported later is counted once. The live
rules see both and count an invoice once (:class:`segmentum.realtime.evaluate.Customer`).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from segmentum.config import Settings, load_settings
from segmentum.ingest import IngestReport, ingest
from segmentum.progress import Progress
from segmentum.realtime.store import RealtimeStore, realtime_path, set_meta
from segmentum.warehouse import Warehouse

_NAME = re.compile(r"tracked-events-(\d+)-(\d+)\.jsonl$")
CHUNK = 200_000


def drained_through(wh: Warehouse) -> int:
    """The last ``seq`` of the tracked events the warehouse holds (0: none)."""
    if not wh.has("ingest_batches"):
        return 0
    b = wh.table("ingest_batches")
    b = b.filter((b.table_name == "events") & b.file.contains("tracked-events-"))
    files = b.file.to_pyarrow().to_pylist()
    found = [int(m.group(2)) for f in files if (m := _NAME.search(str(f)))]
    return max(found, default=0)


def waiting(wh: Warehouse, settings: Settings | None = None) -> bool:
    """Whether the real-time store (if there is one) holds events the warehouse has not."""
    path = realtime_path(wh.url, settings or load_settings())
    if path == ":memory:" or not Path(path).exists():
        return False
    store = RealtimeStore(path)
    last = store.query("SELECT max(seq) AS s FROM tracked_events")[0]["s"]
    return bool(last) and int(last) > drained_through(wh)


def _line(e: dict[str, Any]) -> str:
    props = e.get("properties") or {}
    return json.dumps(
        {
            "event_id": e["event_id"],
            "customer_id": e.get("customer_id"),
            "anonymous_id": e.get("anonymous_id"),
            "timestamp": e.get("at_text") or e["at"],
            "event_type": e["event_type"],
            "device": props.get("device"),
            "channel": props.get("channel"),
            "campaign_id": props.get("campaign_id"),
            "product_id": e.get("product_id"),
        }
    )


class _Named:
    """Progress that names a batch of tracked events by its range and store, not by the
    temporary file it is loaded from."""

    def __init__(self, progress: Progress, folder: Path, store: str) -> None:
        self.progress, self.folder, self.store = progress, str(folder), store

    def step(self, name: str, detail: str = "") -> None:
        m = _NAME.search(detail) if detail.startswith(self.folder) else None
        if m:
            first, last = (int(g) for g in m.groups())
            detail = f"tracked events {first} to {last} from {self.store}"
        self.progress.step(name, detail)


def drain(
    wh: Warehouse, settings: Settings | None = None, progress: Progress | None = None
) -> list[IngestReport]:
    """Load the tracked events the warehouse does not hold yet; one ingest report per file
    of up to 200,000 events (none when nothing waits)."""
    settings = settings or load_settings()
    path = realtime_path(wh.url, settings)
    if path == ":memory:" or not Path(path).exists():
        return []
    store = RealtimeStore(path, settings.busy_wait_seconds)
    after = drained_through(wh)
    reports: list[IngestReport] = []
    folder = Path(tempfile.mkdtemp(prefix="segmentum-tracked-"))
    named = _Named(progress, folder, path) if progress is not None else None
    try:
        while rows := store.events_since(after, CHUNK):
            first, last = rows[0]["seq"], rows[-1]["seq"]
            file = folder / f"tracked-events-{first:012d}-{last:012d}.jsonl"
            file.write_text("".join(_line(e) + "\n" for e in rows), encoding="utf-8")
            reports.extend(ingest("events", file, warehouse=wh, settings=settings, progress=named))
            after = last
            with store.connect(write=True) as con:
                set_meta(con, "drained_seq", str(last))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return reports
