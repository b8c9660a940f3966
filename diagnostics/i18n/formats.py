"""Numbers and dates written the language's way (CLDR via Babel): "0,93" in Uzbek and Russian,
"0.93" in English."""

from __future__ import annotations

import datetime as dt

from babel.dates import format_date as _format_date
from babel.dates import format_datetime as _format_datetime
from babel.numbers import format_decimal

from diagnostics.i18n.catalogues import check_language


def format_number(value: float, language: str, digits: int = 2) -> str:
    """`value` with exactly `digits` decimals and the language's decimal separator."""
    pattern = "0." + "0" * digits if digits > 0 else "0"
    return format_decimal(value, format=pattern, locale=check_language(language))


def format_date(value: dt.date, language: str, length: str = "medium") -> str:
    """A date as the language writes it (`length`: short, medium, long or full)."""
    return _format_date(value, format=length, locale=check_language(language))


def format_datetime(value: dt.datetime, language: str, length: str = "medium") -> str:
    """A date and time as the language writes it, in `value`'s own time zone."""
    return _format_datetime(
        value, format=length, tzinfo=value.tzinfo, locale=check_language(language)
    )
