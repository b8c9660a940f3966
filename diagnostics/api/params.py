"""Whole numbers read from requests (query strings, path segments, form fields), range-checked.

Every number a client sends reaches SQLite, numpy or a list index; one outside what those hold
(SQLite integers are 64-bit, Python refuses to parse more than 4300 digits) would surface as a
500. Each is checked here instead and refused with a `RequestError` naming the parameter.
"""

from __future__ import annotations

from diagnostics.errors import RequestError

MAX_ID = 2**31 - 1
"""Upper bound for versions, indexes and page numbers: far above any real one, far below
SQLite's 64-bit integers."""

_MAX_DIGITS = 12


def whole_number(
    raw: str | None, name: str, *, default: int | None = None, low: int = 0, high: int = MAX_ID
) -> int:
    """`raw` as an int between `low` and `high`; `default` when it is missing or empty (a
    `RequestError` when there is no default)."""
    if raw is None or raw.strip() == "":
        if default is None:
            raise RequestError(f"{name} is required")
        return default
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise RequestError(f"{name} must be a whole number, not {text[:20]!r}")
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise RequestError(f"{name} must be between {low} and {high}, not {text[:20]}...")
    value = int(text)
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low} and {high}, not {value}")
    return value
