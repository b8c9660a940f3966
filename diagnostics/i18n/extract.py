"""Extract the messages marked in the code and bring the catalogues up to date (`scripts/i18n`).

Babel's extractor reads the Python sources (and, for the review UI of issue #14, the Jinja2
templates) for the standard gettext keywords (`gettext`, `ngettext`, `pgettext`, `_`, `N_`,
...). `update` merges the result into each `.po` without fuzzy guesses: a new message arrives
untranslated and `tests/test_i18n.py` fails until a person translates it. English is the
language of the code, so its catalogue is filled from the messages themselves.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po, write_po

from diagnostics.durable import write_file
from diagnostics.i18n.catalogues import DEFAULT_LANGUAGE, DOMAIN, LANGUAGES, catalogue_path

PACKAGE = Path(__file__).resolve().parents[1]
METHODS = [
    ("**/i18n/**", "ignore"),  # this package's own examples and docstrings
    ("**.py", "python"),
    ("**/templates/**.html", "jinja2"),
]
WIDTH = 100
HEADER = """\
# Messages of radiology-diagnostics in %(language)s: the source of its translations.
# Update with scripts/i18n; tests/test_i18n.py fails on anything missing or untranslated.
#"""


def extract(root: Path = PACKAGE) -> Catalog:
    """The template: every message the code under `root` marks, with where it is used."""
    template = Catalog(domain=DOMAIN, project="radiology-diagnostics", fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
        root, METHODS, keywords=DEFAULT_KEYWORDS, comment_tags=("Translators:",)
    ):
        template.add(
            message,
            None,
            [(f"diagnostics/{Path(filename).as_posix()}", lineno)],
            auto_comments=comments,
            context=context,
        )
    return template


def read(language: str) -> Catalog:
    path = catalogue_path(language)
    if not path.exists():
        return Catalog(locale=language, domain=DOMAIN, project="radiology-diagnostics")
    with path.open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


def update(template: Catalog, languages: Iterable[str] = LANGUAGES) -> list[Path]:
    """Merge `template` into each language's catalogue (no fuzzy matching; obsolete messages
    are dropped) and write it, atomically, when it changed; returns the catalogues written."""
    written = []
    for language in languages:
        catalog = read(language)
        created = catalog.creation_date  # kept: a run that changes nothing changes no file
        catalog.update(template, no_fuzzy_matching=True)
        catalog.creation_date = created
        catalog.fuzzy = False
        catalog.header_comment = HEADER % {"language": language}
        catalog.last_translator = catalog.language_team = "radiology-diagnostics"
        catalog.msgid_bugs_address = ""
        if language == DEFAULT_LANGUAGE:
            for message in catalog:
                if message.id and not _translated(message):
                    message.string = message.id
        buffer = io.BytesIO()
        write_po(
            buffer,
            catalog,
            width=WIDTH,
            ignore_obsolete=True,
            include_lineno=False,
            sort_output=True,
        )
        path = catalogue_path(language)
        if path.exists() and path.read_bytes() == buffer.getvalue():
            continue  # unchanged: not rewritten, so a reader never sees it change
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, buffer.getvalue())
        written.append(path)
    return written


def problems(template: Catalog, catalog: Catalog) -> list[str]:
    """What keeps `catalog` from being complete for `template`: messages missing, untranslated
    (empty, or fuzzy: a guess nobody reviewed), not in the code any more, or whose placeholders
    do not match the English."""
    out = []
    wanted = {_key(m) for m in template if m.id}
    have = {_key(m): m for m in catalog if m.id}
    for key in sorted(wanted - have.keys(), key=str):
        out.append(f"missing: {key[0]!r}")
    for key in sorted(have.keys() - wanted, key=str):
        out.append(f"not used in the code: {key[0]!r}")
    for key, message in sorted(have.items(), key=lambda item: str(item[0])):
        if message.fuzzy:
            out.append(f"fuzzy: {key[0]!r}")
        elif not _translated(message):
            out.append(f"untranslated: {key[0]!r}")
        forms = message.string if isinstance(message.id, (list, tuple)) else None
        if isinstance(forms, (list, tuple)) and len(forms) != catalog.num_plurals:
            out.append(f"wrong number of plural forms: {key[0]!r}")
    for message, errors in catalog.check():
        for error in errors:
            out.append(f"{message.id!r}: {error}")
    return out


def _key(message: Message) -> tuple[str, str | None]:
    ident = message.id[0] if isinstance(message.id, (list, tuple)) else message.id
    return str(ident), message.context


def _translated(message: Message) -> bool:
    if isinstance(message.string, (list, tuple)):
        return all(message.string)
    return bool(message.string)


def main() -> int:
    """Extract, update every catalogue, and list what is left to translate."""
    template = extract()
    for path in update(template):
        print(f"updated {path}")
    print("catalogues: " + ", ".join(str(catalogue_path(lang)) for lang in LANGUAGES))
    left = 0
    for language in LANGUAGES:
        for problem in problems(template, read(language)):
            print(f"{language}: {problem}")
            left += 1
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
