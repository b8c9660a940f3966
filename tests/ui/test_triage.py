"""Triage a radiologist can trust, in Chromium against the real service: the worklist shows
unread studies by default, "Mark as read" moves on to the next unread study, keys for agree,
disagree, read, next and previous, probabilities with enough digits to read against the
operating point, "not localised" instead of a box covering the chest, and a worklist that
refreshes itself without losing filters, focus or scroll position.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import time
from collections.abc import Iterator

import pydicom
import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pydicom.uid import generate_uid

from diagnostics.package import load_package
from tests.helpers.browser import watched_page
from tests.helpers.synth import BUNDLED, SynthFactory
from tests.ui.prefilled import TOKEN, Prefilled

pytestmark = pytest.mark.slow


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test on a JavaScript error or a Content Security Policy breach."""
    yield from watched_page(context)


def sign_in(page: Page, prefilled: Prefilled) -> None:
    page.goto(prefilled.server.url + "/ui/login")
    page.fill("#token", TOKEN)
    page.click(".signin button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/$"))


def _uids(page: Page) -> list[str]:
    rows = page.locator("#worklist tbody tr[data-uid]")
    return [str(rows.nth(i).get_attribute("data-uid")) for i in range(rows.count())]


def _set_read(page: Page, url: str, uid: str, read: bool) -> None:
    page.goto(f"{url}/ui/studies/{uid}")
    if page.locator("#read-form input[name=read]").get_attribute("value") == ("1" if read else "0"):
        page.click("#read-form button")
        page.wait_for_load_state()


def _study_url(url: str, uid: str) -> re.Pattern[str]:
    return re.compile(re.escape(f"{url}/ui/studies/{uid}") + r"(\?.*)?(#.*)?$")


def test_unread_by_default_and_mark_as_read_moves_to_the_next(
    prefilled: Prefilled, page: Page
) -> None:
    url = prefilled.server.url
    sign_in(page, prefilled)
    expect(page.locator("select[name=read]")).to_have_value("unread")
    order = _uids(page)
    assert len(order) >= 3, order
    first, second = order[0], order[1]
    try:
        page.goto(f"{url}/ui/studies/{first}")
        page.click("#read-form button")
        expect(page).to_have_url(_study_url(url, second))
        expect(page.locator("#saved")).to_contain_text("next unread")
        page.goto(url + "/ui/")
        assert first not in _uids(page) and _uids(page)[0] == second
        page.select_option("select[name=read]", "all")
        page.click(".filters button[type=submit]")
        expect(page).to_have_url(re.compile(r"read=all"))
        assert first in _uids(page)
        page.goto(url + "/ui/?read=read")
        assert _uids(page) == [first]
    finally:
        _set_read(page, url, first, read=False)
    page.goto(url + "/ui/")
    assert _uids(page)[0] == first


def test_keys_agree_disagree_read_next_previous(prefilled: Prefilled, page: Page) -> None:
    url = prefilled.server.url
    sign_in(page, prefilled)
    order = _uids(page)
    # A routine study, so the feedback recorded here leaves the flagged ones' feedback as the
    # other tests expect it (the a and d keys then judge the first finding).
    analysed = [u for u in order[1:-1] if u in prefilled.analysed]
    study = next((u for u in analysed if u not in prefilled.flagged), analysed[0])
    at = order.index(study)
    page.goto(f"{url}/ui/studies/{study}")
    expect(page.locator("#keys-help")).to_contain_text("a agree")
    page.keyboard.press("n")
    expect(page).to_have_url(_study_url(url, order[at + 1]))
    page.keyboard.press("k")
    expect(page).to_have_url(_study_url(url, study))
    page.keyboard.press("k")
    expect(page).to_have_url(_study_url(url, order[at - 1]))
    page.keyboard.press("j")
    expect(page).to_have_url(_study_url(url, study))

    rows = page.locator("#findings tr.flagged[data-code]")
    rows = rows if rows.count() else page.locator("#findings tr[data-code]")
    code = str(rows.first.get_attribute("data-code"))
    comment = page.locator(f'form.verdict[data-code="{code}"] input[name=comment]')
    comment.click()
    page.keyboard.type("ad")  # typing in a field types, it does not judge
    expect(comment).to_have_value("ad")
    assert "saved=" not in page.url
    comment.fill("")
    page.locator("main h1").click()
    page.keyboard.press("a")
    expect(page).to_have_url(re.compile(r"saved=feedback"))
    newest = page.locator("#feedback-list li").first
    expect(newest.locator(".verdict-tag")).to_have_class(re.compile(r"\bagree\b"))
    expect(newest).to_contain_text(
        str(page.locator(f'#findings tr[data-code="{code}"] th').text_content())
    )
    page.locator("main h1").click()
    page.keyboard.press("d")
    expect(page.locator("#feedback-list li").first.locator(".verdict-tag")).to_have_class(
        re.compile(r"\bdisagree\b")
    )
    try:
        page.locator("main h1").click()
        page.keyboard.press("r")
        expect(page).to_have_url(_study_url(url, order[at + 1]))
        expect(page.locator("#saved")).to_be_visible()
    finally:
        _set_read(page, url, study, read=False)


def _latest_result(prefilled: Prefilled, uid: str) -> tuple[int, str]:
    with sqlite3.connect(prefilled.server.storage / "intake.sqlite3", timeout=30) as db:
        version, text = db.execute(
            "SELECT version, result FROM results WHERE study_instance_uid = ? "
            "ORDER BY version DESC LIMIT 1",
            (uid,),
        ).fetchone()
    return int(version), str(text)


def _store_result(prefilled: Prefilled, uid: str, version: int, text: str) -> None:
    with sqlite3.connect(prefilled.server.storage / "intake.sqlite3", timeout=30) as db:
        db.execute(
            "UPDATE results SET result = ? WHERE study_instance_uid = ? AND version = ?",
            (text, uid, version),
        )


def test_precision_and_not_localised_on_the_page(prefilled: Prefilled, page: Page) -> None:
    """A result as stored before the localisation rule: a flagged finding boxed over the whole
    image, its probability 0.9951 against 0.9904, another 0.2041 against 0.2049."""
    url = prefilled.server.url
    uid = prefilled.flagged[-1]
    sign_in(page, prefilled)
    page.goto(f"{url}/ui/studies/{uid}")
    rows, cols = (
        int(str(page.locator("#stage").get_attribute(k))) for k in ("data-rows", "data-cols")
    )
    version, original = _latest_result(prefilled, uid)
    result = json.loads(original)
    flagged = next(f for f in result["findings"] if f["flagged"])
    other = next(f for f in result["findings"] if f is not flagged)
    flagged.update(probability=0.9951, threshold=0.9904, bbox=[0, 0, cols, rows])
    other.update(probability=0.2041, threshold=0.2049, flagged=False, bbox=None)
    other["sop_instance_uid"] = flagged["sop_instance_uid"]
    _store_result(prefilled, uid, version, json.dumps(result))
    try:
        for lang, texts in (
            ("en", ("0.995", "0.990", "0.204", "0.205")),
            ("ru", ("0,995", "0,990", "0,204", "0,205")),
        ):
            page.goto(f"{url}/ui/studies/{uid}?lang={lang}")
            row = page.locator(f'#findings tr[data-code="{flagged["code"]}"]')
            expect(row.locator(".probability")).to_have_text(texts[0])
            expect(row.locator(".threshold")).to_have_text(texts[1])
            expect(row.locator(".flag")).to_be_visible()
            expect(row.locator(".not-localised")).to_be_visible()
            low = page.locator(f'#findings tr[data-code="{other["code"]}"]')
            expect(low.locator(".probability")).to_have_text(texts[2])
            expect(low.locator(".threshold")).to_have_text(texts[3])
            expect(low.locator(".not-localised")).to_have_count(0)
            expect(page.locator(f'#boxes g.box[data-code="{flagged["code"]}"]')).to_have_count(0)
        page.goto(f"{url}/ui/studies/{uid}?lang=en")
        expect(page.locator(".not-localised").first).to_have_text("not localised")
        # Every finding says what its flag does, as the bundled package's catalogue entry says.
        said = {
            "urgent": "A flag makes the study urgent.",
            "routine": "A flag leaves the study routine.",
        }
        for spec in load_package(BUNDLED).manifest.findings:
            rule = page.locator(f'#findings tr[data-code="{spec.code}"] .on-flag')
            expect(rule).to_have_text(said[spec.on_flag])
            expect(rule).to_have_attribute("data-on-flag", spec.on_flag)
    finally:
        _store_result(prefilled, uid, version, original)
    page.goto(f"{url}/ui/studies/{uid}")
    # Restored: only what screening itself found not localised (a flagged finding without box).
    unboxed = [f for f in json.loads(original)["findings"] if f["flagged"] and f["bbox"] is None]
    expect(page.locator(".not-localised")).to_have_count(len(unboxed))


def test_worklist_refreshes_itself_keeping_filters_focus_and_scroll(
    prefilled: Prefilled, context: BrowserContext, synth_factory: SynthFactory
) -> None:
    url = prefilled.server.url
    page = context.new_page()
    page.set_viewport_size({"width": 1000, "height": 420})  # the list scrolls
    sign_in(page, prefilled)
    page.goto(url + "/ui/?status=analyzed")
    before = _uids(page)
    page.evaluate("window.notReloaded = true")
    page.mouse.wheel(0, 150)
    time.sleep(0.3)
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    focused = before[1]
    page.locator(f'#worklist tr[data-uid="{focused}"] a.study-link').focus()
    page.evaluate(f"window.scrollTo(0, {int(scrolled)})")

    source = next(synth_factory("triage-refresh", 1, 7, 384).folder.glob("study-*/*.dcm"))
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    response = requests.post(
        url + "/v1/screen",
        data=buffer.getvalue(),
        headers={**prefilled.server.auth, "Content-Type": "application/dicom"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    new = str(response.json()["study_instance_uid"])
    assert response.json()["status"] == "analyzed"

    expect(page.locator(f'#worklist tr[data-uid="{new}"]')).to_have_count(1, timeout=45_000)
    assert page.evaluate("window.notReloaded === true")
    assert set(_uids(page)) == set(before) | {new}
    expect(page.locator("select[name=status]")).to_have_value("analyzed")
    assert page.evaluate("document.activeElement.closest('tr').dataset.uid") == focused
    assert abs(page.evaluate("window.scrollY") - scrolled) <= 2
    expect(page.locator("#summary")).to_contain_text(str(len(before) + 1))
    page.close()
