"""A Chromium page that fails the test on a JavaScript error or a Content Security Policy
breach: what every review UI test drives."""

from __future__ import annotations

from collections.abc import Iterator

from playwright.sync_api import BrowserContext, Page


def watched_page(context: BrowserContext) -> Iterator[Page]:
    """For a fixture: `yield from watched_page(context)`; checks at teardown."""
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield page
    assert problems == []
