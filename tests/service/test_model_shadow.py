"""The registry in the running service: the shadow model screens every study after the active
one, its results kept apart (never the study's result, never in the outbox, never the
worklist's flags or priority); radiologists' verdicts given through the review UI's form
compare the two; promote and roll back while studies are screened, none failing, each result
by the model active when it was screened; the admin page lists it all (Chromium)."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from diagnostics.constants import DATABASE_FILE
from diagnostics.package.registry import ModelRegistry
from diagnostics.service import model_admin
from diagnostics.store import open_store, read_snapshot
from tests.helpers.cli import run_cli
from tests.helpers.packages import reversioned
from tests.helpers.service import Server, start_service, ui_session
from tests.helpers.synth import BUNDLED, SynthFactory

CHROMIUM = Path("/usr/bin/chromium")
NONE = "\u2013"
"""What the admin page shows in an empty cell (an en dash)."""
TOKEN = "registry-test-token-0123456789abcdef"
ACTIVE, SHADOW, SITE = "cxr-demo-1.0.0", "cxr-demo-1.1.0", "cxr-demo-1.1.0+site.b"
SWAP_S = 60.0
"""How long a registry change may take to be followed on a loaded 2-core machine (polled each
second; loading and warming the new engine takes the rest)."""


@dataclass
class Running:
    server: Server
    studies: list[bytes]
    uids: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, synth_factory: SynthFactory
) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("registry")
    storage = root / "storage"
    registry = ModelRegistry(storage)
    registry.adopt(BUNDLED, "test")
    registry.install(reversioned(root / "plain", "1.1.0", threshold_scale=0.5), "test")
    registry.install(reversioned(root / "site", "1.1.0+site.b", calibrated=True), "test")
    registry.set_shadow("1.1.0", "test")
    files = sorted(synth_factory("registry-synth", 6, 1604, 256).folder.glob("study-*/*.dcm"))
    # A PACS destination nobody listens on: the outbox keeps every row it was given.
    env = {"DIAGNOSTICS_STABLE_SECONDS": "0.5"}
    flags = ("--workers", "1", "--model", str(BUNDLED), "--results-to", "PACS@127.0.0.1:9")
    server = start_service(root, *flags, token=TOKEN, env=env)
    try:
        yield Running(server, [p.read_bytes() for p in files])
    finally:
        server.stop()


def _screen(server: Server, data: bytes) -> dict[str, object]:
    response = server.post("/v1/screen", data=data, headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _model(result: dict[str, object]) -> str:
    model = result["model"]
    assert isinstance(model, dict)
    return f"{model['name']}-{model['version']}"


def _shadow_record(
    storage: Path, key: str, study: str, timeout: float = SWAP_S
) -> dict[str, object]:
    path = ModelRegistry(storage).shadow_results(key) / f"{study}.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no shadow result for {study}"
        time.sleep(0.2)
    return dict(json.loads(path.read_bytes()))


def test_shadow_runs_on_every_study_and_stays_apart(running: Running) -> None:
    server = running.server
    for data in running.studies:
        result = _screen(server, data)
        assert result["status"] == "analyzed" and _model(result) == ACTIVE
        running.uids.append(str(result["study_instance_uid"]))
    more_flags = 0
    worklist = server.get("/v1/worklist", params={"limit": 500})
    assert worklist.status_code == 200, worklist.text
    listed = {item["study_instance_uid"]: item for item in worklist.json()["items"]}
    for uid in running.uids:
        record = _shadow_record(server.storage, SHADOW, uid)
        assert record["tag"] == "shadow" and record["model"] == SHADOW, record
        shadow = record["result"]
        assert isinstance(shadow, dict) and _model(shadow) == SHADOW
        state = server.wait_for_result(uid)
        assert state["version"] == 1  # the shadow's result is not a version of the study
        result = state["result"]
        assert isinstance(result, dict) and _model(result) == ACTIVE
        active = {f["code"]: f["flagged"] for f in result["findings"]}
        # the worklist's flags and priority are the active result's, never the shadow's
        assert set(listed[uid]["flagged"]) == {code for code, flag in active.items() if flag}
        assert listed[uid]["priority"] == result["priority"]
        more_flags += sum(f["flagged"] and not active[f["code"]] for f in shadow["findings"])
    assert more_flags, "the shadow's halved thresholds should flag something the active did not"
    with read_snapshot(server.storage) as snapshot:
        for uid in running.uids:
            versions = snapshot.results_of(uid)
            assert len(versions) == 1  # the shadow's result is not a version of the study
            assert json.loads(versions[0][1])["model"]["version"] == "1.0.0"
    # the outbox holds the active result's outputs, one screening folder per study, nothing else
    outbox = _outbox(server.storage)
    assert {study for study, _ in outbox} == set(running.uids)
    for uid in running.uids:
        folders = {Path(path).parent for study, path in outbox if study == uid}
        assert len(folders) == 1 and all("shadow" not in str(f) for f in folders), folders


def _outbox(storage: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(f"file:{storage / DATABASE_FILE}?mode=ro", uri=True)
    try:
        return list(db.execute("SELECT study_instance_uid, path FROM outbox"))
    finally:
        db.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found[1]


def test_compare_on_feedback_given_through_the_review_form(running: Running) -> None:
    server = running.server
    assert running.uids, "runs after the shadow test"
    session = ui_session(server, TOKEN)
    for index, uid in enumerate(running.uids):
        page = session.get(f"{server.url}/ui/studies/{uid}", timeout=60)
        version = "1"  # each study's first and only result
        verdict = "disagree" if index == 0 else "agree"
        posted = session.post(
            f"{server.url}/ui/studies/{uid}/feedback",
            data={
                "csrf": _csrf(page.text),
                "version": version,
                "code": "nodule",
                "verdict": verdict,
            },
            timeout=60,
        )
        assert posted.status_code == 200 and "saved=feedback" in posted.url, posted.text[:300]
    result = run_cli("models", "compare", "--storage", server.storage, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["active"] == ACTIVE and report["shadow"] == SHADOW
    assert report["feedback_studies"] == report["shadow_studies"] == len(running.uids)
    (nodule,) = report["findings"]
    assert nodule["code"] == "nodule" and nodule["studies"] == len(running.uids)
    # the radiologists agreed with the active model on every study but one
    assert nodule["active"]["agreement"]["successes"] == len(running.uids) - 1
    assert nodule["active"]["agreement"]["ci_95"][0] < nodule["active"]["agreement"]["value"]
    assert any("too few" in note for note in nodule["notes"])  # six studies decide nothing


def test_promote_and_roll_back_while_studies_are_screened(running: Running) -> None:
    server = running.server
    registry, store = ModelRegistry(server.storage), open_store(server.storage)
    seen: list[tuple[int, float, str, str]] = []  # (sender, when answered, status, model)
    stop = threading.Event()
    errors: list[str] = []  # refused requests and results that are not "analyzed"

    def send(sender: int, path: bytes) -> None:
        while not stop.is_set():
            response = server.post(
                "/v1/screen", data=_renamed(path), headers={"Content-Type": "application/dicom"}
            )
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
                continue
            body = response.json()
            seen.append((sender, time.monotonic(), body["status"], _model(body)))
            if body["status"] != "analyzed":
                errors.append(f"{body['status']} by {_model(body)}: {body.get('reason')}")

    def until(model: str) -> float:
        deadline = time.monotonic() + SWAP_S
        while time.monotonic() < deadline:
            if seen and seen[-1][3] == model:
                return time.monotonic()
            time.sleep(0.2)
        raise AssertionError(f"the service did not switch to {model}: {seen[-5:]}")

    threads = [
        threading.Thread(target=send, args=(index, data))
        for index, data in enumerate(running.studies[:2])
    ]
    try:
        for thread in threads:
            thread.start()
        until(ACTIVE)
        promoted_at = time.monotonic()
        model_admin.promote(store, registry, "1.1.0+site.b", "test")
        until(SITE)
        model_admin.rollback(store, registry, "test")
        until(ACTIVE)
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
        store.close()
    assert not errors, errors
    assert all(model == ACTIVE for _, at, _, model in seen if at < promoted_at)
    for sender in range(len(threads)):
        # each sender's studies: the old model, then the promoted one, then the old one again
        # (a study screened across a swap finishes on the model it started with)
        models = [model for who, _, _, model in seen if who == sender]
        changes = [m for i, m in enumerate(models) if i == 0 or m != models[i - 1]]
        assert changes in ([ACTIVE, SITE, ACTIVE], [ACTIVE, SITE], [ACTIVE]), changes
    assert len(seen) > 4


def _renamed(data: bytes) -> bytes:
    """The same image as a new study (new UIDs), so every send is screened afresh."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_admin_page_lists_versions_and_its_buttons_change_them(running: Running) -> None:
    """After the promotion test: three versions, the history, the agreement table; the study
    page shows the shadow's result to admins; "Run in shadow" and "Stop" work and are audited."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: scripts/setup installs Debian's chromium package")
    from playwright.sync_api import expect, sync_playwright

    server = running.server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.goto(server.url + "/ui/models")
            page.fill("#token", TOKEN)
            page.click(".signin button[type=submit]")
            expect(page).to_have_url(re.compile(r"/ui/models$"))
            rows = page.locator("#installed tbody tr")
            expect(rows).to_have_count(3)
            roles = page.locator("#installed td.role")
            expect(roles).to_have_text(["active", "shadow", NONE])  # installed order
            expect(page.locator("#serving")).to_contain_text(ACTIVE)
            expect(page.locator("#agreement")).to_contain_text("nodule")
            expect(page.locator("#history")).to_contain_text("rollback")
            page.screenshot(path=server.storage.parent / "ui_models.png", full_page=True)

            page.click("text=Stop the shadow model")
            expect(page.locator("#models-done")).to_be_visible()
            expect(roles).to_have_text(["active", NONE, NONE])
            page.locator(f'#installed tr[data-key="{SITE}"] form[action$="/shadow"] button').click()
            expect(roles).to_have_text(["active", NONE, "shadow"])
            # a version without site calibration: no reason, refused with the reason why
            plain = page.locator(f'#installed tr[data-key="{SHADOW}"] form[action$="/promote"]')
            plain.locator("button").click()
            expect(page.locator("#models-error")).to_contain_text("no site calibration")

            page.goto(f"{server.url}/ui/studies/{running.uids[0]}")
            expect(page.locator("#shadow")).to_contain_text(SHADOW)
            page.goto(server.url + "/ui/models?lang=uz")
            expect(page.locator("h1")).to_have_text("Model versiyalari")
        finally:
            browser.close()
    store = open_store(server.storage)
    try:
        shadowed = store.audit_entries("model_shadowed")
        refused = store.audit_entries("model_promote_refused")
    finally:
        store.close()
    assert shadowed[-1]["actor"] != "test" and shadowed[-1]["detail"]["model"] == SITE  # type: ignore[index]
    assert refused and refused[-1]["outcome"] == 4
    assert ModelRegistry(server.storage).state().shadow == SITE
