"""The gettext catalogues, read from their `.po` sources with Babel.

The `.po` files are loaded directly (parsed, then compiled in memory) rather than compiled to
`.mo` at build time: what is in the repository is what runs, so there is no build step to
forget, no compiled file to go stale beside its source, and the wheel and the Bento carry only
the sources. Parsing three small catalogues once per process costs milliseconds.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Literal, get_args

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from diagnostics.errors import ConfigurationError

Language = Literal["uz", "ru", "en"]
LANGUAGES: tuple[Language, ...] = get_args(Language)
"""Uzbek (Latin script), Russian, English: the order a chooser lists them in."""
DEFAULT_LANGUAGE: Language = "en"
"""English: the language of the messages in the code (the msgids)."""
DOMAIN = "diagnostics"
LOCALE_DIR = Path(__file__).parent / "locale"


def N_(message: str) -> str:
    """Mark a constant for translation without translating it (the extractor finds it; a
    `translator` translates it where it is shown)."""
    return message


def check_language(language: str) -> Language:
    """`language` if the project speaks it; otherwise a `ConfigurationError` naming the choices."""
    for known in LANGUAGES:
        if language == known:
            return known
    raise ConfigurationError(
        f"language {language!r} is not available; choose one of {', '.join(LANGUAGES)}"
    )


def language_name(language: str) -> str:
    """The language's name in itself (Uzbek, Russian, English in their own words), for a
    language chooser. Uzbek as our catalogues write it: the o and g with a mark take U+02BB, as
    the official Latin alphabet has them (CLDR has U+2018)."""
    name: str = Locale.parse(check_language(language)).get_display_name(language) or language
    return name.replace("\u2018", "\u02bb")


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translator(language: str) -> Translations:
    """The translations of `language`: `gettext`, `ngettext`, `pgettext`, `npgettext` (Jinja2's
    `install_gettext_translations` takes it as it is). Fuzzy entries are left out, so an
    unreviewed translation falls back to English rather than being shown."""
    lang = check_language(language)
    path = catalogue_path(lang)
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=lang, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)
