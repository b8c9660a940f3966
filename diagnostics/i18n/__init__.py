"""The languages the project speaks: Uzbek (Latin script), Russian and English.

Every text meant for a person (a FHIR report's conclusion, a finding's name, and the review UI
of issue #14) is an English message marked in the code (`gettext`/`ngettext`/`pgettext` on a
`translator`, or `N_` where only a constant is declared) and translated in the gettext
catalogues under `locale/<language>/LC_MESSAGES/diagnostics.po`. Numbers and dates are written
the language's way (Babel's CLDR data: "0,93" in Uzbek and Russian). `scripts/i18n` extracts
the messages and updates the catalogues; `tests/test_i18n.py` fails on a message missing or
untranslated in any of them. See docs/architecture.md, "Languages".
"""

from __future__ import annotations

from diagnostics.i18n.catalogues import (
    DEFAULT_LANGUAGE,
    DOMAIN,
    LANGUAGES,
    LOCALE_DIR,
    N_,
    Language,
    check_language,
    language_name,
    translator,
)
from diagnostics.i18n.formats import format_date, format_datetime, format_number
from diagnostics.i18n.negotiate import negotiate

__all__ = [
    "DEFAULT_LANGUAGE",
    "DOMAIN",
    "LANGUAGES",
    "LOCALE_DIR",
    "N_",
    "Language",
    "check_language",
    "format_date",
    "format_datetime",
    "format_number",
    "language_name",
    "negotiate",
    "translator",
]
