"""How long-running library code reports progress without knowing who listens (CLI, API, tests)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives named steps as work advances; implementations must be cheap."""

    def step(self, name: str, detail: str = "") -> None: ...


class Silent:
    """The default listener: ignores every step."""

    def step(self, name: str, detail: str = "") -> None:
        return None
