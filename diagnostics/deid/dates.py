"""Date shifting for the Retain Longitudinal Temporal Information with Modified Dates Option.

Every date of one patient moves by the same whole number of days, so intervals between studies
and between the dates inside one study stay exact, while the calendar dates do not survive.
Times of day are left alone: a whole-day shift changes none of them. A value we cannot parse
returns None, and the caller falls back to the Basic Profile action (nothing unshifted escapes).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_DA = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DT = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?")


def _shift(year: str, month: str, day: str, days: int) -> str | None:
    try:
        moved = date(int(year), int(month), int(day)) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"


def shift_da(value: str, days: int) -> str | None:
    """A DA value (YYYYMMDD) moved by `days`, or None if it is not a single full date."""
    match = _DA.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day = match.groups()
    return _shift(year, month, day, days)


def shift_dt(value: str, days: int) -> str | None:
    """A DT value with at least a full date, moved by `days`; its UTC offset is dropped.

    The offset says where the patient was; the time of day is kept. A DT without a day
    (YYYY or YYYYMM) cannot be shifted by days and returns None.
    """
    match = _DT.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, clock, _offset = match.groups()
    shifted = _shift(year, month, day, days)
    return None if shifted is None else shifted + (clock or "")


def shift_timestamp(value: str | float, days: int) -> str | None:
    """An ISO 8601 string or a POSIX time moved by `days`, as ISO 8601 in UTC (JSON records).

    Converted to UTC so that no local UTC offset (a hint of where the site is) is written.
    """
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC)
        else:
            moment = datetime.fromtimestamp(float(value), tz=UTC)
        return (moment + timedelta(days=days)).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):
        return None
