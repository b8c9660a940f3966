"""The review UI in Uzbek, Russian and English, in Chromium against the real service: the
worklist and a study page in each language, `?lang=` switching and sticking, Accept-Language
choosing, numbers written the language's way, and no English message left on a Russian or
Uzbek page.

Set UI_SCREENSHOTS to a folder to keep the screenshots (docs/ui_<page>_<lang>.png were taken
so: `UI_SCREENSHOTS=docs pytest tests/ui/test_languages.py`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, BrowserContext, Page, expect

from diagnostics.i18n.catalogues import catalogue_path
from tests.ui.prefilled import TOKEN, Prefilled

pytestmark = pytest.mark.slow
SIZE = {"width": 1400, "height": 1000}
WORDS = {
    "uz": {
        "worklist": "Ish ro\u02bbyxati",
        "patient": "Bemor",
        "findings": "Topilmalar",
        "name": "o\u02bbzbek",
        "sign_in": "Kirish",
    },
    "ru": {
        "worklist": "Рабочий список",
        "patient": "Пациент",
        "findings": "Находки",
        "name": "русский",
        "sign_in": "Войти",
    },
    "en": {
        "worklist": "Worklist",
        "patient": "Patient",
        "findings": "Findings",
        "name": "English",
        "sign_in": "Sign in",
    },
}
DATA = (
    ".reason, td.patient-name, td.patient-id, td.accession, td.description, td.exam, "
    "td.institution, td.study-when, td.received, dd, code, .uid, .model, .who, h1.patient-title"
)
"""What the page shows as it was received (header values, a stage's reason): not UI text."""


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=SIZE)
    yield context
    context.close()


def sign_in(page: Page, prefilled: Prefilled) -> None:
    page.goto(prefilled.server.url + "/ui/")
    page.fill("#token", TOKEN)
    page.click(".signin button[type=submit]")
    expect(page.locator("#worklist")).to_be_visible()


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path)
    page.screenshot(path=folder / f"ui_{name}.png")


@pytest.mark.parametrize("lang", ["uz", "ru", "en"])
def test_worklist_and_study_page_in_each_language(
    prefilled: Prefilled, context: BrowserContext, tmp_path: Path, lang: str
) -> None:
    page = context.new_page()
    sign_in(page, prefilled)
    words = WORDS[lang]
    page.goto(f"{prefilled.server.url}/ui/?lang={lang}")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("h1")).to_have_text(words["worklist"])
    expect(page.locator("#worklist thead")).to_contain_text(words["patient"])
    expect(page.locator(".languages [aria-current=true]")).to_have_text(words["name"])
    for code, name in (("uz", "o\u02bbzbek"), ("ru", "русский"), ("en", "English")):
        expect(page.locator(f".languages [lang={code}]")).to_have_text(name)
    shoot(page, tmp_path, f"worklist_{lang}")

    page.goto(f"{prefilled.server.url}/ui/studies/{prefilled.flagged[0]}")
    expect(page.locator("html")).to_have_attribute("lang", lang)  # the cookie keeps it
    expect(page.locator("#findings-h")).to_have_text(words["findings"])
    probability = page.locator("#findings td.num").first.inner_text()
    # as many decimals as it takes to tell it from the operating point (ui.triage)
    assert re.fullmatch(r"\d[.,]\d{2,6}", probability)
    assert ("," in probability) == (lang != "en")  # 0,93 in Uzbek and Russian
    shoot(page, tmp_path, f"study_{lang}")


def test_lang_switches_and_sticks(prefilled: Prefilled, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in(page, prefilled)
    url = prefilled.server.url
    page.goto(f"{url}/ui/?lang=ru")
    expect(page.locator("h1")).to_have_text(WORDS["ru"]["worklist"])
    page.goto(f"{url}/ui/")
    expect(page.locator("h1")).to_have_text(WORDS["ru"]["worklist"])
    page.locator(".study-link").first.click()
    expect(page.locator("#back")).to_contain_text(WORDS["ru"]["worklist"])
    page.click(".languages a[lang=uz]")  # the switcher keeps the page
    expect(page.locator("html")).to_have_attribute("lang", "uz")
    expect(page).to_have_url(re.compile(r"/ui/studies/"))
    expect(page.locator("#back")).to_contain_text(WORDS["uz"]["worklist"])
    page.click("#back")
    expect(page.locator("h1")).to_have_text(WORDS["uz"]["worklist"])
    page.goto(f"{url}/ui/?lang=xx")  # not a language we speak: the kept one stays
    expect(page.locator("html")).to_have_attribute("lang", "uz")


@pytest.mark.parametrize(
    ("locale", "lang"), [("ru-RU", "ru"), ("uz-Latn-UZ", "uz"), ("de-DE", "en")]
)
def test_accept_language_picks_the_language(
    prefilled: Prefilled, browser: Browser, locale: str, lang: str
) -> None:
    context = browser.new_context(viewport=SIZE, locale=locale)
    try:
        page = context.new_page()
        page.goto(prefilled.server.url + "/ui/")
        expect(page.locator("html")).to_have_attribute("lang", lang)
        expect(page.locator("#signin-title")).to_have_text(WORDS[lang]["sign_in"])
        sign_in(page, prefilled)
        expect(page.locator("h1")).to_have_text(WORDS[lang]["worklist"])
    finally:
        context.close()


def _english(lang: str) -> tuple[list[re.Pattern[str]], list[str]]:
    """Each English message of the catalogue that `lang` writes differently, as a pattern
    (placeholders match any word; too short a message, "M", would match anything), and the
    messages it keeps as they are ("PACS", "Study Instance UID")."""
    with catalogue_path(lang).open("rb") as handle:
        catalog = read_po(handle)
    patterns, kept = [], []
    for message in catalog:
        english = str(message.id) if message.id else ""
        if message.string == english:
            kept.append(english)
            continue
        if len(english) < 3:
            continue
        pattern = re.sub(r"%\\\(\w+\\\)s", r"\\S+", re.escape(english))
        patterns.append(re.compile(rf"(?<!\w){pattern}(?!\w)"))
    return patterns, sorted(kept, key=len, reverse=True)


def _ui_text(page: Page) -> str:
    """The page's text without what it shows as received (see DATA), and its title."""
    script = (
        "s => { const b = document.body.cloneNode(true);"
        " b.querySelectorAll(s).forEach(e => e.remove());"
        " b.querySelectorAll('[placeholder],[aria-label],[alt],[title]').forEach(e =>"
        " ['placeholder','aria-label','alt','title'].forEach(a => e.hasAttribute(a) &&"
        " b.append(' ' + e.getAttribute(a) + ' ')));"
        " return document.title + '\\n' + b.textContent; }"
    )
    return str(page.evaluate(script, DATA))


@pytest.mark.parametrize("lang", ["uz", "ru"])
def test_no_english_left_on_a_translated_page(
    prefilled: Prefilled, context: BrowserContext, lang: str
) -> None:
    page = context.new_page()
    sign_in(page, prefilled)
    url = prefilled.server.url
    english, kept = _english(lang)
    pages = [
        f"{url}/ui/?lang={lang}",
        f"{url}/ui/studies/{prefilled.flagged[0]}",
        f"{url}/ui/studies/{prefilled.not_analysed}",
        f"{url}/ui/studies/no-such-study",
        f"{url}/ui/?status=nonsense",
    ]
    for address in pages:
        page.goto(address)
        text = _ui_text(page)
        for same in kept:
            text = text.replace(same, " ")
        left = sorted(
            {text[max(0, m.start() - 30) : m.end() + 30] for p in english for m in p.finditer(text)}
        )
        assert left == [], f"{address}: English left on the {lang} page: {left}"
