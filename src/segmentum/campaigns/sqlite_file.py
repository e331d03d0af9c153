"""A small SQLite file the service writes while a run holds the warehouse (SMS receipts,
unsubscribes): short transactions, each on a connection of its own."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

S = TypeVar("S", bound="SqliteFile")


class SqliteFile:
    """``path`` (``:memory:`` too), created with ``schema`` on first use."""

    schema = ""
    # The table whose rows wait to be copied into the warehouse, and its increasing id.
    waiting_table = ""
    waiting_id = ""

    def __init__(self, path: str | Path, busy_seconds: float = 5.0) -> None:
        self.path = str(path)
        self.busy_seconds = busy_seconds
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(self.schema)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on success, then closed."""
        con = sqlite3.connect(self.path, timeout=self.busy_seconds)
        con.row_factory = sqlite3.Row
        try:
            with con:
                yield con
        finally:
            con.close()

    @classmethod
    def existing(cls: type[S], path: str, busy_seconds: float = 5.0) -> S | None:
        """The file at ``path`` if the service ever wrote it (None: nothing waits there)."""
        if path != ":memory:" and not Path(path).exists():
            return None
        return cls(path, busy_seconds)

    def unfolded(self) -> list[dict[str, Any]]:
        """The rows not copied into the warehouse yet, oldest first."""
        with self._connect() as con:
            rows = con.execute(
                f"SELECT * FROM {self.waiting_table} WHERE folded = 0 ORDER BY {self.waiting_id}"
            ).fetchall()
            return [dict(r) for r in rows]
