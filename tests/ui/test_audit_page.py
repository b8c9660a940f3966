"""The audit trail of a running service: its chain verifies while the service writes, the
`diagnostics audit` filters and CSV/JSON output, and the admin page `/ui/audit` in Chromium
(signed-in only, filters, paging, UIDs but no patient names)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pydicom
import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from diagnostics.api.auth import token_actor
from diagnostics.cli.main import main
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.cli import run_cli
from tests.ui.prefilled import TOKEN, Prefilled

pytestmark = pytest.mark.slow
ACTOR = token_actor(TOKEN)


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """`diagnostics ARGS` in this process (the subprocess costs a minute on a busy machine)."""
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    return capsys.readouterr().out


def test_chain_verifies_on_the_live_store(prefilled: Prefilled) -> None:
    result = run_cli("audit", "--storage", prefilled.server.storage, "--verify")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["rows"] > len(prefilled.analysed)


def test_cli_filters_and_formats(
    prefilled: Prefilled, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    storage = prefilled.server.storage
    rows = list(
        csv.DictReader(
            io.StringIO(
                _cli(
                    capsys,
                    "audit",
                    "--storage",
                    storage,
                    "--event",
                    "study_screened",
                    "--format",
                    "csv",
                )
            )
        )
    )
    assert {r["action"] for r in rows} == {"study_screened"}
    screened = {r["study_instance_uid"] for r in rows}
    assert set(prefilled.analysed) <= screened
    assert all(r["outcome"] == "0" and r["outcome_name"] == "success" for r in rows)
    assert all(json.loads(r["detail"])["version"] >= 1 for r in rows)

    study = prefilled.flagged[0]
    about = json.loads(_cli(capsys, "audit", "--storage", storage, "--study", study))
    assert about and {e["study_instance_uid"] for e in about} == {study}
    assert "study_screened" in {e["action"] for e in about}

    mine = json.loads(_cli(capsys, "audit", "--storage", storage, "--user", ACTOR))
    assert mine and {e["actor"] for e in mine} == {ACTOR}
    short = json.loads(_cli(capsys, "audit", "--storage", storage, "--user", ACTOR[6:]))
    assert len(short) == len(mine)

    assert json.loads(_cli(capsys, "audit", "--storage", storage, "--since", "2100-01-01")) == []
    assert json.loads(_cli(capsys, "audit", "--storage", storage, "--until", "2000-01-01")) == []
    recent = json.loads(_cli(capsys, "audit", "--storage", storage, "--since", "1d"))
    assert len(recent) >= len(rows)
    failures = json.loads(_cli(capsys, "audit", "--storage", storage, "--outcome", "failure"))
    assert all(e["outcome"] != 0 for e in failures)

    out = tmp_path / "audit.txt"
    written = json.loads(
        _cli(
            capsys, "audit", "--storage", storage, "--format", "text", "--out", out, "--limit", "3"
        )
    )
    assert written["out"] == str(out)
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in lines)


def test_admin_page_lists_filters_and_pages_without_patient_names(
    prefilled: Prefilled, browser: Browser
) -> None:
    url = prefilled.server.url
    refused = requests.get(url + "/ui/audit", allow_redirects=False, timeout=10)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/ui/login")

    store = SqliteStore(prefilled.server.storage)  # enough rows for a second page
    for n in range(60):
        store.audit("dimse:PAGER", "instance_stored", study=f"1.2.3.{n}", sop=f"1.2.3.{n}.1")
    store.close()

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page: Page = context.new_page()
    try:
        page.goto(url + "/ui/login?next=%2Fui%2Faudit")
        page.fill("#token", "not-the-token-but-long-enough")
        page.click(".signin button[type=submit]")
        page.fill("#token", TOKEN)
        page.click(".signin button[type=submit]")
        expect(page).to_have_url(re.compile(r"/ui/audit$"))
        expect(page.locator("#admin-note")).to_contain_text("Administrators")
        rows = page.locator("#audit tbody tr")
        expect(rows).to_have_count(50)
        expect(page.locator(".pager")).to_contain_text("Page 1 of")
        ids = [int(rows.nth(i).get_attribute("data-id") or 0) for i in range(3)]
        assert ids == sorted(ids, reverse=True)  # newest first
        page.click(".pager a[rel=next]")
        expect(page.locator(".pager")).to_contain_text("Page 2 of")
        assert int(rows.first.get_attribute("data-id") or 0) < ids[-1]

        page.goto(url + "/ui/audit")
        page.fill("input[name=event]", "study_screened")
        page.click(".filters button[type=submit]")
        expect(page).to_have_url(re.compile(r"event=study_screened"))
        events = page.locator("#audit tbody tr td:nth-child(4)")
        assert set(events.all_inner_texts()) == {"study_screened"}
        study = prefilled.flagged[0]
        page.click(f'#audit a[href*="{study}"] >> nth=0')
        expect(page.locator("#audit tbody tr").first).to_contain_text(study)
        assert {
            t.strip() for t in page.locator("#audit tbody td:nth-child(5)").all_inner_texts()
        } == {study}

        page.goto(url + "/ui/audit?outcome=failure&event=ui_sign_in_failed")
        expect(page.locator("#audit tbody tr").first).to_contain_text("minor failure")
        page.goto(url + "/ui/audit?since=yesterday")
        expect(page.locator("h1")).to_have_text("Audit filter not understood")

        page.goto(url + "/ui/audit?user=PAGER")
        text = page.content()
        names = set()
        for path in prefilled.server.storage.glob("instances/**/*.dcm"):
            names.add(str(pydicom.dcmread(path, stop_before_pixels=True).PatientName))
        page.goto(url + "/ui/audit")
        text += page.content()
        assert names and not any(name and name in text for name in names)
    finally:
        context.close()
    reads = json.loads(
        run_cli("audit", "--storage", prefilled.server.storage, "--event", "ui_audit_read").stdout
    )
    assert reads and {r["actor"] for r in reads} == {ACTOR}
