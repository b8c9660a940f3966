"""Which language a review page is in, and the Jinja2 environment that speaks it.

The choice, first that applies: `?lang=uz|ru|en` (remembered in a cookie, so one click on the
switcher sticks), the cookie, a signed-in user's own choice (`preferred`: the seam for named
users' settings), the browser's Accept-Language, else English. One environment per language,
built once: `jinja2.ext.i18n` with that language's catalogue installed, so templates write
`{{ _("...") }}` and `scripts/i18n` extracts them with the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request

from diagnostics.api.auth import LANGUAGE_KEY
from diagnostics.api.session import read_cookie
from diagnostics.findings import KNOWN_FINDINGS
from diagnostics.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    format_number,
    language_name,
    negotiate,
    translator,
)
from diagnostics.ui.pages import waited
from diagnostics.ui.patient import PatientContext
from diagnostics.ui.triage import WORKLIST_REFRESH_S, digits_apart

LANGUAGE_COOKIE = "diagnostics_lang"
LANGUAGE_COOKIE_AGE_S = 365 * 24 * 3600


def links(request: Request) -> dict[str, str]:
    """This page in each language: its own path and query, `lang` replaced (a form post's
    result page links to the study it was posted to)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("lang", "saved")]
    path = request.url.path
    return {code: f"{path}?{urlencode([*query, ('lang', code)])}" for code in LANGUAGES}


@dataclass(frozen=True)
class Choice:
    language: str
    remember: bool
    """True when `?lang=` chose it: the response sets the cookie."""


def choose(request: Request, preferred: str | None = None) -> Choice:
    """The page's language for this request (see the module's docstring for the order)."""
    if preferred is None:  # a signed-in named user's own choice (`diagnostics.api.auth`)
        preferred = request.scope.get(LANGUAGE_KEY)
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return Choice(asked, True)
    kept = read_cookie(request.headers.get("cookie"), LANGUAGE_COOKIE)
    if kept in LANGUAGES:
        return Choice(kept, False)
    if preferred in LANGUAGES:
        return Choice(preferred, False)
    header = request.headers.get("accept-language")
    return Choice(negotiate(header, LANGUAGES, DEFAULT_LANGUAGE), False)


def languages() -> list[tuple[str, str]]:
    """(code, own name) for the switcher, in the project's order (uz, ru, en)."""
    return [(code, language_name(code)) for code in LANGUAGES]


def environment(
    language: str, templates: Path, filters: tuple[tuple[str, Callable[..., object]], ...]
) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    t = translator(language)
    env.install_gettext_translations(t, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(dict(filters))
    env.filters["num"] = functools.partial(_number, language)
    env.filters["waited"] = functools.partial(_waited, t)
    env.filters["finding"] = functools.partial(_finding, t)
    env.filters["sex_age"] = functools.partial(_sex_age, t)
    env.globals.update(digits_apart=digits_apart, refresh_s=WORKLIST_REFRESH_S)
    return env


def _waited(t: Translations, seconds: float) -> str:
    return waited(seconds, t)


def _finding(t: Translations, code: str) -> str:
    """A finding code as its display name in the page's language (codes we do not know as
    they are)."""
    known = KNOWN_FINDINGS.get(code)
    return t.gettext(known.display) if known else code


def _sex_age(t: Translations, patient: PatientContext) -> str | None:
    return patient.sex_age_in(t)


def _number(language: str, value: float, digits: int = 2) -> str:
    return format_number(value, language, digits)
