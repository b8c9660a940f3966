"""Which of our languages a browser wants: its Accept-Language header (RFC 9110 §12.5.4)."""

from __future__ import annotations

from collections.abc import Sequence

from diagnostics.i18n.catalogues import DEFAULT_LANGUAGE, LANGUAGES


def negotiate(
    accept_language: str | None,
    available: Sequence[str] = LANGUAGES,
    default: str = DEFAULT_LANGUAGE,
) -> str:
    """The available language the header ranks highest, else `default`.

    A tag matches exactly or by its primary language ("ru-RU" and "uz-Latn-UZ" are "ru" and
    "uz"); "*" takes the first available; `q=0` refuses a language. Malformed parts are skipped:
    a header is never an error, at worst the default.
    """
    ranked: list[tuple[float, int, str]] = []
    refused: set[str] = set()
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower().replace("_", "-")
        if not tag:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
        if not 0.0 <= quality <= 1.0:
            continue
        if quality == 0.0:
            refused.add(tag)
            continue
        ranked.append((-quality, index, tag))
    choices = {a.lower(): a for a in available}
    for _, _, tag in sorted(ranked):
        if tag == "*":
            rest = [a for a in available if a.lower() not in refused]
            if rest:
                return rest[0]
            continue
        for candidate in (tag, tag.split("-")[0]):
            if candidate in choices and candidate not in refused:
                return choices[candidate]
    return default
