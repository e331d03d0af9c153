"""The exceptions segmentum raises for problems a user can fix; each carries a hint."""

from __future__ import annotations


class SegmentumError(Exception):
    """Base class: a one-line message for the user and a hint on what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class InputError(SegmentumError):
    """The user's data or arguments cannot be used as given."""


class ConfigError(SegmentumError):
    """A setting is missing or has a value that is not allowed."""


class WarehouseError(SegmentumError):
    """The warehouse cannot be opened or does not hold what is needed."""


class ModelError(SegmentumError):
    """A model cannot be fitted or used on the data given."""
