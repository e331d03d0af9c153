"""The exceptions segmentum raises for problems a user can fix, and the exit codes they map to.

Each exception carries a one-line message, a hint on what to do, and the process exit code the
command line returns for it (the one table of exit codes is ``ExitCode``; docs/cli.md shows it).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code of the ``segmentum`` command (documented in docs/cli.md)."""

    OK = 0
    PARTIAL = 1  # the command ran, but some items failed (kept for a retry)
    USAGE = 2  # a usage or input error: unknown command or option, bad value, bad file
    CONFIG = 3  # a setting is missing or not allowed
    WAREHOUSE = 4  # the warehouse is busy or cannot be opened, or lacks a table
    DELIVERY = 5  # messages could not be delivered (server unreachable, refused)
    INTERNAL = 70  # an unexpected error: a bug; the traceback goes to a log file


class SegmentumError(Exception):
    """Base class: a one-line message for the user and a hint on what to do."""

    exit_code: ExitCode = ExitCode.USAGE

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

    exit_code = ExitCode.CONFIG


class WarehouseError(SegmentumError):
    """The warehouse cannot be opened or does not hold what is needed."""

    exit_code = ExitCode.WAREHOUSE


class WarehouseBusyError(WarehouseError):
    """Another process (``segmentum serve``, another command) holds the warehouse file open."""


class StoreUnreachableError(WarehouseError):
    """A server the service reads from (the PostgreSQL serving store) cannot be reached now."""


class ModelError(SegmentumError):
    """A model cannot be fitted or used on the data given."""


class DeliveryError(SegmentumError):
    """Messages could not be delivered: the server is unreachable or refused them.

    Nothing is lost: what was not delivered stays pending for the next send.
    """

    exit_code = ExitCode.DELIVERY


class PartialFailure(SegmentumError):
    """The command did its work, but some items failed (``failed`` of ``total``).

    Raise it after the command has printed its report, so the report is still shown; the
    command line then prints the message and exits with ``ExitCode.PARTIAL`` (1).
    """

    exit_code = ExitCode.PARTIAL

    def __init__(
        self, message: str, hint: str | None = None, *, failed: int = 0, total: int = 0
    ) -> None:
        super().__init__(message, hint)
        self.failed = failed
        self.total = total
