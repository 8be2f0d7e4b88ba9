"""Domain errors shared by every app.

Each error carries a stable machine-readable ``code``; the service maps the classes to HTTP
status codes in one place (``service/error_responses.py``) and the CLI prints ``message`` to stderr.
"""

from __future__ import annotations

from pathlib import Path


class SemsearchError(Exception):
    """Base of every error we raise on purpose."""

    code = "semsearch_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(SemsearchError):
    """The caller sent something we cannot use (empty text, k out of range, ...)."""

    code = "invalid_input"


class PayloadTooLargeError(SemsearchError):
    code = "payload_too_large"


class NotFoundError(SemsearchError):
    code = "not_found"


class NotReadyError(SemsearchError):
    """The model or the index is not loaded yet (or is being swapped)."""

    code = "not_ready"


class OverloadedError(SemsearchError):
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineError(SemsearchError):
    """A request waited past its deadline (SEMSEARCH_QUEUE_TIMEOUT_S) for the model: dropped
    unrun, answered 503 with ``Retry-After``."""

    code = "deadline_exceeded"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelNotFoundError(SemsearchError):
    code = "model_not_found"


class ModelFormatError(SemsearchError):
    code = "model_format"


class DataError(SemsearchError):
    """A bad row in an input file: the message always names the file and the line."""

    code = "data_error"

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class IndexFormatError(SemsearchError):
    """An index folder is missing files, truncated or corrupt."""

    code = "index_format"


class IndexMismatchError(SemsearchError):
    """The index was built with another model (fingerprint or dim differ)."""

    code = "index_mismatch"


class PrecisionDriftError(IndexMismatchError):
    """Queries would be embedded at a precision whose measured drift from the index's is too large."""

    code = "precision_drift"


class ConflictError(SemsearchError):
    """A valid write this index cannot take in place (an ``--on-disk`` index): the request is
    fine, the index's state refuses it."""

    code = "conflict"


class DiskFullError(SemsearchError):
    """A write ran out of disk space (or quota); nothing of it was published."""

    code = "disk_full"


class IndexBusyError(SemsearchError):
    """Another writer holds the index's lock."""

    code = "index_busy"


class UnauthorizedError(SemsearchError):
    """No credentials, or credentials we do not know."""

    code = "unauthorized"


class ForbiddenError(SemsearchError):
    """Known credentials, but not allowed to do this (a read-only key, read-only mode)."""

    code = "forbidden"


class UnsupportedError(SemsearchError):
    """A valid request for something this deployment does not have (e.g. no reranker loaded)."""

    code = "unsupported"
