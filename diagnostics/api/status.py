"""One place that maps the library's exception classes to HTTP statuses and JSON error bodies."""

from __future__ import annotations

from diagnostics.errors import (
    ConfigurationError,
    DiagnosticsError,
    DiskFullError,
    DuplicateInstanceError,
    InputError,
    ModelPackageError,
    RequestError,
    RequestTimeoutError,
    StoreError,
    TooLargeError,
    UnsupportedMediaTypeError,
)

_STATUSES: tuple[tuple[type[DiagnosticsError], int], ...] = (
    # Most specific first.
    (UnsupportedMediaTypeError, 415),
    (TooLargeError, 413),
    (RequestTimeoutError, 408),
    (DuplicateInstanceError, 409),
    (RequestError, 400),
    (InputError, 422),
    (DiskFullError, 507),
    (StoreError, 503),
    (ModelPackageError, 503),
    (ConfigurationError, 500),
)

RETRY_AFTER_S = 5
"""What a 503 tells the client to wait before it tries again."""


def http_status(error: DiagnosticsError) -> int:
    """400/413/415 for a bad request, 409 for a conflicting copy of a stored instance,
    422 for unusable DICOM, 507 when free disk is under the floor, 503 for a retryable
    failure."""
    for cls, status in _STATUSES:
        if isinstance(error, cls):
            return status
    return 500


def error_body(error: DiagnosticsError, **extra: object) -> dict[str, object]:
    """`{"error": <class name>, "message": <what to do>}` plus any context fields."""
    return {"error": type(error).__name__, "message": str(error), **extra}


def error_headers(status: int) -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
