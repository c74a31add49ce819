"""Typed errors and the exit codes they map to (README: "Exit codes").

0 success; 1 check or operation failed; 2 usage error; 3 version conflict; 4 not found;
5 cannot reach or authenticate to the server.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_NOT_FOUND = 4
EXIT_UNREACHABLE = 5


class EventoError(Exception):
    """Base of every error the CLI reports as one line on stderr."""

    exit_code = EXIT_FAILED
    code = "ERROR"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class UsageError(EventoError):
    exit_code = EXIT_USAGE
    code = "INVALID_REQUEST"


class VersionConflict(EventoError):
    exit_code = EXIT_CONFLICT
    code = "STREAM_VERSION_CONFLICT"

    def __init__(self, stream: str, expected: int, actual: int):
        super().__init__(
            f"Expected version {expected}, stream is at version {actual}",
            details={"actual": actual, "expected": expected},
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class NotFound(EventoError):
    exit_code = EXIT_NOT_FOUND
    code = "NOT_FOUND"


class Unreachable(EventoError):
    """Cannot reach or authenticate to the server."""

    exit_code = EXIT_UNREACHABLE
    code = "NETWORK_ERROR"


class StoreError(EventoError):
    """The store is unusable (not SQLite, damaged, newer schema) or a backend failure."""

    exit_code = EXIT_FAILED
    code = "BACKEND_ERROR"


class DiskFull(StoreError):
    """The disk (or the store's quota) is full: nothing of the failing transaction was written,
    the store is intact. ``written`` says how many messages earlier transactions committed."""

    def __init__(self, message: str = "disk full", *, written: int | None = None):
        super().__init__(message, details={} if written is None else {"written": written})
        self.written = written


class DuplicateMessageId(EventoError):
    """A message id that already exists in the store (the write is not applied)."""

    exit_code = EXIT_FAILED
    code = "BACKEND_ERROR"

    def __init__(self, message_id: str):
        super().__init__(f"message id already exists: {message_id}")
        self.message_id = message_id


class CheckFailed(EventoError):
    exit_code = EXIT_FAILED
    code = "CHECK_FAILED"


class BatchFailed(EventoError):
    """A bulk write stopped at a line; carries what was written before it."""

    def __init__(self, message: str, *, exit_code: int, line: int, written: int,
                 code: str = "BATCH_FAILED"):
        super().__init__(message, details={"line": line, "written": written})
        self.exit_code = exit_code
        self.code = code
        self.line = line
        self.written = written
