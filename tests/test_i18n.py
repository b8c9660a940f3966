"""The language foundation: complete catalogues, negotiation, numbers and dates per language."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from diagnostics.errors import ConfigurationError
from diagnostics.findings import KNOWN_FINDINGS
from diagnostics.i18n import (
    LANGUAGES,
    format_date,
    format_datetime,
    format_number,
    language_name,
    negotiate,
    translator,
)
from diagnostics.i18n.catalogues import catalogue_path
from diagnostics.i18n.extract import extract, problems, read

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def template() -> Catalog:
    """Every message the code marks, found by Babel's extractor as `scripts/i18n` finds them."""
    return extract()


def test_the_extractor_finds_the_messages_of_the_code(template: Catalog) -> None:
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id}
    assert {f.display for f in KNOWN_FINDINGS.values()} <= ids  # N_ in diagnostics/findings.py
    assert "AI pre-screening, not for diagnosis" in ids  # the disclaimer, reports/_common.py
    assert "AI pre-screening flagged %(count)d finding: %(findings)s." in ids  # ngettext


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalogue_translates_every_message_of_the_code(
    template: Catalog, language: str
) -> None:
    assert catalogue_path(language).is_file()
    found = problems(template, read(language))
    assert not found, f"{language}: run scripts/i18n and translate:\n" + "\n".join(found)


def test_uzbek_is_written_in_the_official_latin_alphabet() -> None:
    """O and g with a mark take U+02BB and the tutuq belgisi U+02BC, so that a search or a
    comparison in the EMR finds one spelling, not three."""
    for message in read("uz"):
        forms = message.string if isinstance(message.string, (list, tuple)) else [message.string]
        for text in forms:
            assert not any(mark in text for mark in ("'", "\u2018", "\u2019", "`")), text


def test_an_incomplete_catalogue_is_caught(template: Catalog) -> None:
    broken = read("ru")
    names = [m.id for m in broken if isinstance(m.id, str) and m.id]
    del broken[names[0]]  # missing
    broken[names[1]].string = ""  # untranslated
    broken[names[2]].flags.add("fuzzy")  # a guess nobody reviewed
    broken.add("Only in the catalogue", "Только в каталоге")  # no longer used
    found = "\n".join(problems(template, broken))
    assert f"missing: {names[0]!r}" in found
    assert f"untranslated: {names[1]!r}" in found
    assert f"fuzzy: {names[2]!r}" in found
    assert "not used in the code: 'Only in the catalogue'" in found
    placeholders = read("uz")
    message = "operating point: flagged at probability >= %(threshold)s"
    placeholders[message].string = "chegara: %(limit)s"
    assert any("placeholder" in p or "format" in p for p in problems(template, placeholders))


def test_the_update_command_changes_nothing_when_the_catalogues_are_current(
    tmp_path: Path,
) -> None:
    before = {lang: catalogue_path(lang).read_bytes() for lang in LANGUAGES}
    run = subprocess.run(
        [str(ROOT / "scripts" / "i18n")],
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    after = {lang: catalogue_path(lang).read_bytes() for lang in LANGUAGES}
    if after != before:  # leave the worktree as it was, then fail
        for lang, data in before.items():
            catalogue_path(lang).write_bytes(data)
    assert run.returncode == 0, run.stdout + run.stderr
    assert after == before, "scripts/i18n rewrote a catalogue: run it and commit the result"


def test_translations_and_plural_forms() -> None:
    assert translator("ru").gettext("Pleural effusion") == "Плевральный выпот"
    assert translator("uz").gettext("Pneumothorax") == "Pnevmotoraks"
    assert translator("en").gettext("Pneumothorax") == "Pneumothorax"
    assert translator("ru").gettext("a message nobody marked") == "a message nobody marked"
    singular = "AI pre-screening flagged %(count)d finding: %(findings)s."
    plural = "AI pre-screening flagged %(count)d findings: %(findings)s."
    words = [translator("ru").ngettext(singular, plural, n).split()[4] for n in (1, 3, 5, 21)]
    assert words == ["%(count)d", "%(count)d", "%(count)d", "%(count)d"]
    forms = [translator("ru").ngettext(singular, plural, n).split()[5] for n in (1, 3, 5, 21)]
    assert forms == ["находку:", "находки:", "находок:", "находку:"]
    assert translator("en").ngettext(singular, plural, 2).startswith("AI pre-screening flagged")
    with pytest.raises(ConfigurationError, match="'kk'"):
        translator("kk")


def test_numbers_and_dates_are_written_the_languages_way() -> None:
    assert format_number(0.9312, "en") == "0.93"
    assert format_number(0.9312, "ru") == "0,93"
    assert format_number(0.9312, "uz") == "0,93"
    assert format_number(0.41, "ru", 4) == "0,4100"
    day = dt.date(2026, 12, 3)
    assert format_date(day, "en") == "Dec 3, 2026"
    assert "2026" in format_date(day, "ru") and "дек" in format_date(day, "ru")
    assert "2026" in format_date(day, "uz") and "dek" in format_date(day, "uz")
    moment = dt.datetime(2026, 12, 3, 9, 30, tzinfo=dt.UTC)
    assert "09:30" in format_datetime(moment, "ru")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru"),
        ("uz-Latn-UZ", "uz"),
        ("uz_UZ", "uz"),
        ("de-DE, en;q=0.5, ru;q=0.6", "ru"),  # by quality, not by position
        ("fr, *;q=0.1", "uz"),  # anything: the first available
        ("en;q=0, *", "uz"),
        ("ru;q=0", "en"),  # refused: the default
        ("fr-FR,de", "en"),
        ("", "en"),
        (None, "en"),
        (";;;q=x,,ru;q=abc,en;q=2", "en"),  # malformed parts are skipped, never an error
        ("EN-gb", "en"),
    ],
)
def test_negotiation(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


def test_each_language_is_named_in_itself() -> None:
    assert [language_name(lang) for lang in LANGUAGES] == ["o\u02bbzbek", "русский", "English"]


def test_negotiation_among_what_is_available() -> None:
    assert negotiate("uz,ru;q=0.5", available=("ru", "en")) == "ru"
    assert negotiate("uz", available=("ru", "en"), default="ru") == "ru"
