"""Monitoring in the running service: the drift and rate gauges on `/metrics`, and the admin
page `/ui/monitoring` in Chromium (signed-in only, the alarm and what to do, per-day rows,
translated, no header values), over a store whose recent scores have shifted."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from diagnostics.package import ModelPackage
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.service import Server, start_service
from tests.monitoring.conftest import make_package
from tests.monitoring.history import add_feedback, record, reference_like
from tests.ui.prefilled import TOKEN

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ModelPackage]]:
    root = tmp_path_factory.mktemp("monitoring")
    package = make_package(root / "pkg", reference=True, version="1.0.0-drifted")
    rng = np.random.default_rng(5)
    shifted = {
        code: [v**0.25 for v in reference_like(package, code, 120, rng)]
        for code in package.finding_codes
    }
    store = SqliteStore(root / "storage")
    uids = record(store, package, shifted, not_analysed=6)
    add_feedback(store, uids[0], "nodule", "disagree")
    store.close()
    server = start_service(
        root,
        "--model",
        str(package.path),
        "--drift-min-studies",
        "50",
        "--monitor-refresh-seconds",
        "0",
        "--timezone",
        "Asia/Tashkent",
        token=TOKEN,
    )
    try:
        yield server, package
    finally:
        server.stop()


def test_metrics_show_drift_flag_and_not_analysed_gauges(
    drifted: tuple[Server, ModelPackage],
) -> None:
    server, _ = drifted
    text = requests.get(server.url + "/metrics", timeout=30).text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("diagnostics_") and " " in line
    }
    for code in ("nodule", "consolidation", "cardiomegaly"):
        assert samples[f'diagnostics_drift_psi{{finding="{code}"}}'] > 0.2
        assert samples[f'diagnostics_drift_alarm{{finding="{code}"}}'] == 1.0
        assert 0.0 <= samples[f'diagnostics_flag_rate{{finding="{code}"}}'] <= 1.0
    assert samples['diagnostics_drift_state{finding="nodule",state="alarm"}'] == 1.0
    assert samples["diagnostics_not_analysed_rate"] == pytest.approx(6 / 126)
    assert samples["diagnostics_drift_window_studies"] == 126
    assert samples['diagnostics_feedback_verdicts{finding="nodule",verdict="disagree"}'] == 1.0
    assert "1.2.826" not in text and "KNEE" not in text  # no UIDs, no header values


def test_admin_page_shows_the_alarm_per_day_rows_and_translates(
    drifted: tuple[Server, ModelPackage], browser: Browser
) -> None:
    server, package = drifted
    refused = requests.get(server.url + "/ui/monitoring", allow_redirects=False, timeout=10)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/ui/login")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page: Page = context.new_page()
    try:
        page.goto(server.url + "/ui/login?next=%2Fui%2Fmonitoring")
        page.fill("#token", TOKEN)
        page.click(".signin button[type=submit]")
        expect(page).to_have_url(re.compile(r"/ui/monitoring$"))
        expect(page.locator("h1")).to_have_text("Monitoring")
        expect(page.locator("#drift-alarm")).to_contain_text("diagnostics calibrate")
        expect(page.locator("#drift-alarm")).to_contain_text("PACS routing")
        for code in package.finding_codes:
            row = page.locator(f'#drift tr[data-name="{code}"]')
            expect(row).to_have_attribute("data-state", "alarm")
            expect(row.locator("svg.chart rect")).to_have_count(20)
        expect(page.locator("#model")).to_contain_text("1.0.0-drifted")
        expect(page.locator("#model")).to_contain_text("Asia/Tashkent")
        days = page.locator("#days tbody tr")
        expect(days).to_have_count(30)
        counted = sum(int(days.nth(i).get_attribute("data-studies") or 0) for i in range(30))
        assert counted == 126
        body = page.locator("main").inner_text()
        assert "body part outside the scope" in body and "KNEE" not in body
        page.goto(server.url + "/ui/monitoring?lang=ru")
        expect(page.locator("html")).to_have_attribute("lang", "ru")
        expect(page.locator("h1")).not_to_have_text("Monitoring")
        page.goto(server.url + "/ui/monitoring?lang=uz")
        expect(page.locator("#drift-alarm")).to_contain_text("diagnostics calibrate")
        expect(page.locator("h2").first).to_contain_text("kundagi siljish")
        expect(page.locator('#drift tr[data-name="nodule"] td').nth(1)).to_have_text(
            "siljish ogohlantirishi"
        )
    finally:
        context.close()
