"""Accessibility: axe-core (npm, installed by scripts/setup into tests/ui/axe) runs inside
Chromium on every review page (sign-in, worklist, study pages, audit trail, a message page)
in Uzbek, Russian and English; no serious or critical violation is allowed (WCAG 2.1 A and AA
rules plus axe's best practices)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.ui.prefilled import TOKEN, Prefilled

pytestmark = pytest.mark.slow
AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
LANGUAGES = ("uz", "ru", "en")
RUN_AXE = """async () => {
  const result = await axe.run(document, {
    runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
    resultTypes: ["violations"],
  });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id} (${v.help}): ` +
         v.nodes.slice(0, 4).map((n) => n.target.join(" ")).join(" | "));
}"""


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    if not AXE.exists():
        pytest.fail("axe-core is missing: scripts/setup installs it (npm ci in tests/ui/axe)")
    # The UI's Content Security Policy forbids injected scripts, as it should; axe is the
    # test's own script, so only this context bypasses it.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    yield context
    context.close()


def _violations(page: Page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    return list(page.evaluate(RUN_AXE))


def test_every_page_in_every_language_has_no_serious_violation(
    prefilled: Prefilled, context: BrowserContext
) -> None:
    url = prefilled.server.url
    page = context.new_page()
    found: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        page.goto(f"{url}/ui/login?lang={lang}")
        found[f"login {lang}"] = _violations(page)
    page.fill("#token", TOKEN)
    page.click(".signin button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/"))
    flagged, routine = prefilled.flagged[0], prefilled.analysed[-1]
    pages = {
        "worklist": "/ui/",
        "worklist, all": "/ui/?read=all",
        "worklist, bad filter": "/ui/?status=maybe",
        "flagged study": f"/ui/studies/{flagged}",
        "routine study": f"/ui/studies/{routine}",
        "not analysed study": f"/ui/studies/{prefilled.not_analysed}",
        "failed study": f"/ui/studies/{prefilled.failed}",
        "no such study": "/ui/studies/1.2.3.999",
        "audit trail": "/ui/audit",
    }
    for lang in LANGUAGES:
        for name, path in pages.items():
            page.goto(f"{url}{path}{'&' if '?' in path else '?'}lang={lang}")
            expect(page.locator("html")).to_have_attribute("lang", lang)
            found[f"{name} {lang}"] = _violations(page)
    bad = {name: problems for name, problems in found.items() if problems}
    assert bad == {}, "\n".join(f"{k}: {v}" for k, v in bad.items())
    assert len(found) == len(LANGUAGES) * (len(pages) + 1)


def test_axe_fails_a_page_with_serious_violations(context: BrowserContext) -> None:
    """The check can fail: an unlabelled image and button and faint text are reported."""
    page = context.new_page()
    page.set_content(
        '<!doctype html><html lang="en"><head><title>t</title></head><body><main>'
        '<img src="data:,"><button></button>'
        '<p style="color:#ddd;background:#fff">faint</p></main></body></html>'
    )
    found = " ".join(_violations(page))
    for rule in ("image-alt", "button-name", "color-contrast"):
        assert f" {rule} " in found, found
