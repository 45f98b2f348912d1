"""Errors a user can cause, each carrying its exit code (docs/cli.md, "Exit codes").

Lower layers raise these with one clear sentence; the CLI prints the sentence and
exits with the code, the HTTP server maps the same errors to statuses. Anything else
that escapes is a bug and is reported as such.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of docs/cli.md."""

    OK = 0
    ERROR = 1
    INVALID = 2
    NOT_FOUND = 64
    NO_STATISTICS = 65


class VpoError(Exception):
    """A failure explained in one sentence; `exit_code` says how the CLI ends."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class InvalidInputError(VpoError):
    """Arguments or a policy that cannot be used (exit 2)."""

    exit_code = ExitCode.INVALID


class PathNotFoundError(VpoError):
    """A file or path that does not exist (exit 64)."""

    exit_code = ExitCode.NOT_FOUND


class NoStatisticsError(VpoError):
    """Nothing recorded for what was asked (exit 65)."""

    exit_code = ExitCode.NO_STATISTICS


class ToolMissingError(VpoError):
    """An external program VPO needs is not installed (exit 1)."""


class DatabaseError(VpoError):
    """The library database cannot be used as it is (exit 1)."""
