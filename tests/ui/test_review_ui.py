"""The review UI in a real browser against the real service: sign-in, worklist order and
filters, overlays and window/level, feedback that reaches the training export, keyboard use.

Screenshots of each page go to the test's temporary folder (docs/ui_*.png were taken here).
"""

from __future__ import annotations

import io
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect

from diagnostics.api.auth import token_actor
from diagnostics.datasets.labelled import load_labelled_folder
from diagnostics.service.feedback_folder import export_feedback
from tests.helpers.browser import watched_page
from tests.ui.prefilled import TOKEN, Prefilled

pytestmark = pytest.mark.slow
CODES = ("nodule", "consolidation", "cardiomegaly")


def _db(prefilled: Prefilled) -> sqlite3.Connection:
    path = prefilled.server.storage / "intake.sqlite3"
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    return db


def _audit(prefilled: Prefilled, action: str) -> list[sqlite3.Row]:
    with _db(prefilled) as db:
        return db.execute("SELECT * FROM audit WHERE action = ?", (action,)).fetchall()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # Tall enough for the study page: a full-page screenshot then needs no resize.
    context = browser.new_context(viewport={"width": 1400, "height": 1150})
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that fails the test on a JavaScript error or a Content Security Policy breach."""
    yield from watched_page(context)


def wait_js(page: Page, expression: str, timeout: float = 10.0) -> None:
    """Poll an expression (`wait_for_function` evaluates strings in the page, which the UI's
    Content Security Policy rightly forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        time.sleep(0.05)


def sign_in(page: Page, prefilled: Prefilled, path: str = "/ui/") -> None:
    page.goto(prefilled.server.url + path)
    page.fill("#token", TOKEN)
    page.click(".signin button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(path.split("?")[0])))


def test_nothing_under_ui_without_signing_in(
    prefilled: Prefilled, context: BrowserContext, page: Page
) -> None:
    url = prefilled.server.url
    study = prefilled.flagged[0]
    image = f"{url}/ui/studies/{study}/image/0.png"
    page.goto(f"{url}/ui/studies/{study}")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Fstudies%2F"))
    refused = requests.get(image, allow_redirects=False, timeout=10)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/ui/login")
    assert refused.headers["content-type"] == "application/json"  # no image bytes

    page.fill("#token", "not-the-token-but-long-enough")
    page.click(".signin button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not valid")
    assert not [c for c in context.cookies() if c["name"] == "diagnostics_session"]
    assert _audit(prefilled, "ui_sign_in_failed")

    page.fill("#token", TOKEN)
    page.click(".signin button[type=submit]")
    expect(page).to_have_url(f"{url}/ui/studies/{study}")  # back where it was going
    (cookie,) = [c for c in context.cookies() if c["name"] == "diagnostics_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
    shown = context.request.get(image)
    assert shown.status == 200 and shown.headers["content-type"] == "image/png"
    actors = {row["actor"] for row in _audit(prefilled, "ui_sign_in")}
    assert token_actor(TOKEN) in actors

    page.click(".signout button")
    expect(page).to_have_url(re.compile(r"/ui/login$"))
    page.goto(url + "/ui/")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    # A copy of the cookie taken before signing out opens nothing afterwards.
    replayed = requests.get(
        image, cookies={cookie["name"]: cookie["value"]}, allow_redirects=False, timeout=10
    )
    assert replayed.status_code == 303 and replayed.headers["location"].startswith("/ui/login")
    # A form post without the page's CSRF token is refused even with a valid session.
    sign_in(page, prefilled)
    forged = context.request.post(
        f"{url}/ui/studies/{study}/priority", form={"priority": "stat"}, max_redirects=0
    )
    assert forged.status == 403
    with _db(prefilled) as db:
        row = db.execute(
            "SELECT requested_priority FROM studies WHERE study_instance_uid = ?", (study,)
        ).fetchone()
    assert row["requested_priority"] is None


def _rows(page: Page) -> list[tuple[str, str]]:
    rows = page.locator("#worklist tbody tr")
    return [
        (str(rows.nth(i).get_attribute("data-uid")), rows.nth(i).locator(".badge").inner_text())
        for i in range(rows.count())
    ]


def test_worklist_order_escalation_and_filters(
    prefilled: Prefilled, page: Page, tmp_path: Path
) -> None:
    url = prefilled.server.url
    routine = [u for u in prefilled.analysed if u not in prefilled.flagged]
    aged, raised = routine[-1], routine[0]
    path = prefilled.server.storage / "intake.sqlite3"
    with sqlite3.connect(path, timeout=30) as db:  # waited two hours, past the 60 min limit
        db.execute(
            "UPDATE studies SET first_received = first_received - 7200 "
            "WHERE study_instance_uid = ?",
            (aged,),
        )
    sign_in(page, prefilled)
    page.goto(f"{url}/ui/studies/{raised}")
    page.select_option("#requested-priority", "stat")
    page.click("#priority-form button")
    expect(page.locator("#saved")).to_be_visible()
    page.click("#back")

    rows = _rows(page)
    uids = [u for u, _ in rows]
    badges = {u: b.lower() for u, b in rows}
    rank = {"stat": 0, "urgent": 1, "escalated": 1, "routine": 2}
    assert [rank[badges[u]] for u in uids] == sorted(rank[badges[u]] for u in uids)
    assert uids[0] == raised and badges[raised] == "stat"  # a person's priority comes first
    assert badges[aged] == "escalated"
    urgent = [u for u in uids if badges[u] == "urgent"]
    assert urgent and uids.index(aged) < uids.index(urgent[0])  # waited longest of that group
    for uid, label in ((prefilled.not_analysed, "Not analysed"), (prefilled.failed, "Failed")):
        row = page.locator(f'#worklist tr[data-uid="{uid}"]')
        expect(row.locator(".status")).to_have_text(label)
        expect(row.locator(".reason")).not_to_be_empty()
        expect(row.locator(".reason")).not_to_contain_text(str(prefilled.server.storage))
    page.screenshot(path=tmp_path / "ui_worklist.png", full_page=True)

    page.select_option("select[name=status]", "failed")
    page.click(".filters button[type=submit]")
    assert [u for u, _ in _rows(page)] == [prefilled.failed]
    expect(page.locator("#worklist .reason")).to_contain_text("could not be read")
    with sqlite3.connect(path) as db:
        code = (
            db.execute(
                "SELECT flagged FROM studies WHERE study_instance_uid = ?", (prefilled.flagged[0],)
            )
            .fetchone()[0]
            .split(",")[0]
        )
    page.goto(url + "/ui/")
    page.select_option("select[name=finding]", code)
    page.click(".filters button[type=submit]")
    found = _rows(page)
    assert prefilled.flagged[0] in [u for u, _ in found]
    for i in range(len(found)):
        row = page.locator("#worklist tbody tr").nth(i)
        expect(row.locator(f'.flag[data-code="{code}"]')).to_have_count(1)
    page.fill("input[name=to]", "2000-01-01")
    page.click(".filters button[type=submit]")
    expect(page.locator("#summary")).to_contain_text("No studies match")


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)


def test_study_page_overlays_window_and_zoom(
    prefilled: Prefilled, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    study = prefilled.flagged[0]
    sign_in(page, prefilled, f"/ui/studies/{study}")
    expect(page.locator(".bar .notice")).to_have_text("AI pre-screening, not for diagnosis")
    expect(page.locator(".meta .model")).to_have_text(re.compile(r"cxr-demo \d"))
    findings = page.locator("#findings tbody tr[data-code]")
    assert findings.count() == 3
    expect(findings.first).to_contain_text(re.compile(r"0\.\d\d"))
    expect(page.locator("#findings .flag").first).to_have_text("Flagged")

    heat, boxes = page.locator("#heatmap"), page.locator("#boxes")
    wait_js(page, "document.getElementById('heatmap').naturalWidth > 0")
    expect(heat).to_be_visible()
    expect(boxes).to_be_visible()
    assert boxes.locator("rect").count() >= 1
    page.screenshot(path=tmp_path / "ui_study.png", full_page=True)
    page.uncheck("#show-heatmap")
    expect(heat).to_be_hidden()
    page.uncheck("#show-boxes")
    expect(boxes).to_be_hidden()
    page.locator("main h1").click()  # keyboard shortcuts act outside form controls
    page.keyboard.press("h")
    page.keyboard.press("b")
    expect(heat).to_be_visible()
    expect(boxes).to_be_visible()

    image = page.locator("#image")
    original = str(image.get_attribute("src"))
    before = _png(context.request.get(prefilled.server.url + original).body())
    page.focus("#ww")
    page.keyboard.press("Home")  # the narrowest window: much more contrast
    expect(image).to_have_attribute("src", re.compile(r"&ww="))
    wait_js(page, "document.getElementById('image').complete")
    after = _png(context.request.get(prefilled.server.url + str(image.get_attribute("src"))).body())
    assert before.shape == after.shape
    assert after.std() > before.std() + 10
    page.click("#preset-default")  # the image's own window again
    expect(image).to_have_attribute("src", original)

    width = page.locator("#stage").bounding_box()["width"]  # type: ignore[index]
    page.click("#zoom-in")
    page.click("#zoom-in")
    assert page.locator("#stage").bounding_box()["width"] == pytest.approx(width * 1.5625, rel=0.02)  # type: ignore[index]
    expect(page.locator("#zoom-value")).to_have_text("156%")


def test_studies_the_model_did_not_read_say_why(prefilled: Prefilled, page: Page) -> None:
    sign_in(page, prefilled, f"/ui/studies/{prefilled.not_analysed}")
    expect(page.locator(".reason-box")).to_contain_text("Not analysed")
    expect(page.locator("#missed-form")).to_have_count(0)
    expect(page.locator("#findings")).to_have_count(0)
    page.goto(f"{prefilled.server.url}/ui/studies/{prefilled.failed}")
    expect(page.locator("div.reason-box")).to_contain_text("Failed")
    expect(page.locator("div.reason-box")).to_contain_text("could not be read")
    expect(page.locator(".viewer .reason-box")).to_contain_text("cannot be displayed")


def test_feedback_is_stored_with_its_reviewer_and_reaches_training(
    prefilled: Prefilled, page: Page, tmp_path: Path
) -> None:
    study = prefilled.flagged[1] if len(prefilled.flagged) > 1 else prefilled.flagged[0]
    sign_in(page, prefilled, f"/ui/studies/{study}")
    flagged_code = str(page.locator("#findings tr.flagged").first.get_attribute("data-code"))
    missed_code = next(c for c in ("consolidation", "nodule") if c != flagged_code)
    page.locator(f'form.verdict[data-code="{flagged_code}"] button[value="agree"]').click()
    expect(page.locator("#saved")).to_be_visible()
    expect(page.locator("#feedback-list")).to_contain_text(token_actor(TOKEN))

    page.check("#tool-mark")  # a drag pans by default; this tool marks
    stage = page.locator("#stage").bounding_box()
    assert stage is not None
    x0, y0 = stage["x"] + 0.25 * stage["width"], stage["y"] + 0.55 * stage["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 0.1 * stage["width"], y0 + 0.1 * stage["height"], steps=4)
    page.mouse.up()
    expect(page.locator("#missed-x")).to_have_value(re.compile(r"^\d+\.\d$"))
    expect(page.locator("#mark-box")).to_have_attribute("visibility", "visible")
    page.select_option("#missed-code", missed_code)
    page.fill("#missed-form input[name=comment]", "subtle, lower zone")
    page.click("#missed-form button[type=submit]")
    expect(page.locator("#saved")).to_be_visible()
    expect(page.locator("#feedback-list li")).to_have_count(2)
    page.screenshot(path=tmp_path / "ui_study_feedback.png", full_page=True)

    with _db(prefilled) as db:
        stored = db.execute(
            "SELECT * FROM feedback WHERE study_instance_uid = ? ORDER BY id", (study,)
        ).fetchall()
    assert [(r["code"], r["verdict"]) for r in stored] == [
        (flagged_code, "agree"),
        (missed_code, "missed"),
    ]
    assert {r["actor"] for r in stored} == {token_actor(TOKEN)}
    assert stored[1]["x"] == pytest.approx(0.30 * 384, abs=4)
    assert stored[1]["y"] == pytest.approx(0.60 * 384, abs=4)
    assert stored[1]["box"] and stored[1]["comment"] == "subtle, lower zone"
    assert len(_audit(prefilled, "feedback_recorded")) >= 2

    out = tmp_path / "feedback"
    export_feedback(prefilled.server.storage, out)
    examples = {e.study_instance_uid: e for e in load_labelled_folder(out, CODES)}
    labels = dict(zip(CODES, examples[study].labels, strict=True))
    assert labels[flagged_code] == 1 and labels[missed_code] == 1
    assert examples[study].boxes[CODES.index(missed_code)] is not None


def test_keyboard_reaches_and_opens_a_study(prefilled: Prefilled, page: Page) -> None:
    sign_in(page, prefilled)
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('study-link')"):
            break
    else:
        raise AssertionError("Tab never reached a study link")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    target = str(page.evaluate("document.activeElement.getAttribute('href')"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(prefilled.server.url + target)
    page.go_back()
    page.locator("main h1").click()
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    first = page.locator("a.study-link").first
    expect(first).to_be_focused()
