"""The study page's viewer in Chromium against the real service: the whole image fits the
window at 1400 x 1000 and 1920 x 1080, presets and mouse window/level change the pixels the
server renders, dragging pans, zooming asks for more pixels, the R/L marker follows Patient
Orientation (and says "orientation unknown" when it is empty), a PA and a lateral stand side by
side, and the patient's other studies are listed and linked."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, expect
from pydicom.uid import generate_uid

from tests.helpers.service import Server, start_service
from tests.helpers.synth import SynthFactory

pytestmark = pytest.mark.slow
TOKEN = "viewer-ui-token-0123456789abcdef"
SIZES = ({"width": 1400, "height": 1000}, {"width": 1920, "height": 1080})


@dataclass
class Studies:
    server: Server
    pa_lateral: str
    """A 2048-pixel PA (Patient Orientation L\\F) and a lateral (A\\F) of patient VIEW-1."""
    prior: str
    """An earlier study of VIEW-1 (256 pixels)."""
    unknown: str
    """A study of another patient whose Patient Orientation is empty."""


def _dataset(path: Path, study: str, **changes: object) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for key, value in changes.items():
        setattr(ds, key, value)
    return ds


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _screen(server: Server, *datasets: pydicom.Dataset) -> dict[str, object]:
    files = [
        ("file", (f"{n}.dcm", _bytes(ds), "application/dicom")) for n, ds in enumerate(datasets)
    ]
    response = requests.post(
        server.url + "/v1/screen", files=files, headers=server.auth, timeout=180
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def studies(
    tmp_path_factory: pytest.TempPathFactory, synth_factory: SynthFactory
) -> Iterator[Studies]:
    root = tmp_path_factory.mktemp("viewer-ui")
    large = synth_factory("viewer-2048", 1, 11, 2048).files[0]
    small = sorted(synth_factory("viewer-256", 2, 12, 256).folder.glob("study-*/*.dcm"))
    server = start_service(
        root, "--workers", "1", token=TOKEN, env={"DIAGNOSTICS_STABLE_SECONDS": "0.5"}
    )
    try:
        study = generate_uid()
        patient = {"PatientID": "VIEW-1", "PatientName": "Viewer^Test"}
        pa = _dataset(
            large,
            study,
            PatientOrientation=["L", "F"],
            StudyDate="20261201",
            StudyDescription="CHEST PA AND LATERAL",
            **patient,
        )
        lateral = _dataset(
            large,
            study,
            PatientOrientation=["A", "F"],
            ViewPosition="LL",
            StudyDate="20261201",
            StudyDescription="CHEST PA AND LATERAL",
            **patient,
        )
        both = _screen(server, pa, lateral)
        assert both["status"] == "analyzed", both
        prior = _dataset(
            small[0],
            generate_uid(),
            StudyDate="20250115",
            StudyDescription="CHEST PRIOR",
            **patient,
        )
        assert _screen(server, prior)["status"] == "analyzed"
        unknown = _dataset(small[1], generate_uid(), PatientOrientation="", PatientID="VIEW-2")
        assert _screen(server, unknown)["status"] == "analyzed"
        yield Studies(server, study, str(prior.StudyInstanceUID), str(unknown.StudyInstanceUID))
    finally:
        server.stop()


def _page(browser: Browser, studies: Studies, size: dict[str, int]) -> Page:
    context = browser.new_context(viewport=size)  # type: ignore[arg-type]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(studies.server.url + "/ui/")
    page.fill("#token", TOKEN)
    page.click(".signin button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/$"))
    return page


@pytest.fixture
def page(browser: Browser, studies: Studies) -> Iterator[Page]:
    page = _page(browser, studies, SIZES[0])
    yield page
    page.context.close()
    assert page.errors == []  # type: ignore[attr-defined]


def _open(page: Page, studies: Studies, uid: str) -> None:
    page.goto(f"{studies.server.url}/ui/studies/{uid}")
    _wait(page, "document.getElementById('image').complete")


def _wait(page: Page, expression: str, timeout: float = 20.0) -> None:
    """Poll `expression` (`wait_for_function` evaluates a string, which the page's Content
    Security Policy forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        time.sleep(0.05)


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    return dict(box)


def _query(page: Page, selector: str = "#image") -> dict[str, str]:
    src = str(page.locator(selector).get_attribute("src"))
    return {k: v[0] for k, v in parse_qs(urlsplit(src).query).items()}


def _pixels(page: Page, studies: Studies, selector: str = "#image") -> np.ndarray:
    src = str(page.locator(selector).get_attribute("src"))
    data = page.context.request.get(studies.server.url + src).body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s['width']}x{s['height']}")
def test_the_whole_image_fits_the_window(
    browser: Browser, studies: Studies, size: dict[str, int]
) -> None:
    page = _page(browser, studies, size)
    try:
        for uid in (studies.prior, studies.pa_lateral):
            _open(page, studies, uid)
            for selector in ("#image", "#image-2") if uid == studies.pa_lateral else ("#image",):
                box = _box(page, selector)
                assert box["x"] >= 0 and box["y"] >= 0, (selector, box)
                assert box["x"] + box["width"] <= size["width"] + 0.5, (selector, box)
                assert box["y"] + box["height"] <= size["height"] + 0.5, (selector, box)
                assert box["width"] / box["height"] == pytest.approx(1.0, rel=0.01)  # square source
            if uid == studies.prior:  # one image: as large as the window allows
                assert _box(page, "#image")["height"] > 0.55 * size["height"]
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


def test_presets_and_mouse_window_change_the_rendered_pixels(page: Page, studies: Studies) -> None:
    _open(page, studies, studies.prior)
    original = str(page.locator("#image").get_attribute("src"))
    default = _pixels(page, studies)
    page.click("#preset-lung")
    expect(page.locator("#preset-lung")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#image")).to_have_attribute("src", re.compile(r"&ww="))
    lung = _pixels(page, studies)
    assert lung.shape == default.shape and np.abs(lung - default).mean() > 5
    lung_window = _query(page)["wc"]
    page.locator("main h1").click()
    page.keyboard.press("4")  # bone
    expect(page.locator("#preset-bone")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#image")).not_to_have_attribute("src", re.compile(f"wc={lung_window}&"))
    assert float(_query(page)["wc"]) > float(lung_window)  # denser is brighter: bone is higher
    page.keyboard.press("1")  # the image's own window again
    expect(page.locator("#image")).to_have_attribute("src", original)

    width_before = float(str(page.locator("#ww-value").text_content()))
    box = _box(page, "#viewport")
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button="right")  # the right button always sets the window
    page.mouse.move(x + 150, y, steps=5)
    page.mouse.up(button="right")
    assert float(str(page.locator("#ww-value").text_content())) > width_before
    expect(page.locator("#image")).to_have_attribute("src", re.compile(r"&ww="))
    expect(page.locator("#preset-default")).to_have_attribute("aria-pressed", "false")


def test_drag_pans_and_zoom_asks_for_full_resolution(page: Page, studies: Studies) -> None:
    _open(page, studies, studies.pa_lateral)
    assert _query(page)["size"] == "1024"
    before = _box(page, "#image")
    x, y = before["x"] + before["width"] / 2, before["y"] + before["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 80, y + 50, steps=5)
    page.mouse.up()
    after = _box(page, "#image")
    assert after["x"] - before["x"] == pytest.approx(80, abs=2)
    assert after["y"] - before["y"] == pytest.approx(50, abs=2)
    page.dblclick("#viewport")  # fits again
    assert _box(page, "#image")["x"] == pytest.approx(before["x"], abs=1)

    page.focus("#viewport")
    for _ in range(5):
        page.keyboard.press("+")
    expect(page.locator("#zoom-value")).to_have_text("305%")
    # More pixels than the fitted 1024, at least as many as are displayed.
    expect(page.locator("#image")).not_to_have_attribute("src", re.compile(r"size=1024"))
    assert int(_query(page)["size"]) >= _box(page, "#image")["width"] > 1024
    page.keyboard.press("+")
    page.keyboard.press("+")
    expect(page.locator("#image")).to_have_attribute("src", re.compile(r"size=2048"))
    _wait(page, "document.getElementById('image').complete")
    assert _pixels(page, studies).shape == (2048, 2048)  # the source's own pixels, no more
    zoomed = _box(page, "#image")
    assert zoomed["width"] == pytest.approx(before["width"] * 1.25**7, rel=0.02)
    page.keyboard.press("0")
    assert _box(page, "#image")["width"] == pytest.approx(before["width"], rel=0.01)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -100)  # the wheel zooms too
    expect(page.locator("#zoom-value")).to_have_text("125%")


def test_the_image_route_renders_a_size_and_region_and_refuses_bad_ones(studies: Studies) -> None:
    url = f"{studies.server.url}/ui/studies/{studies.pa_lateral}/image/0.png"
    cookies = _session(studies)
    shown = requests.get(
        url, params={"size": "300", "region": "1024,0,2048,512"}, cookies=cookies, timeout=60
    )
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(shown.content)).size == (300, 150)  # 1024 x 512 scaled down
    full = requests.get(
        url, params={"size": "8192", "region": "0,0,100,50"}, cookies=cookies, timeout=60
    )
    assert Image.open(io.BytesIO(full.content)).size == (100, 50)  # never scaled up
    for params, message in (
        ({"size": "0"}, "size must be"),
        ({"size": "99999"}, "size must be"),
        ({"size": "big"}, "size must be"),
        ({"region": "0,0,10"}, "four whole numbers"),
        ({"region": "10,0,5,5"}, "inside the image"),
        ({"region": "0,0,4096,10"}, "inside the image"),
    ):
        response = requests.get(url, params=params, cookies=cookies, timeout=60)
        assert response.status_code == 400, params
        assert message in response.text, (params, response.text)


def _session(studies: Studies) -> dict[str, str]:
    with requests.Session() as session:
        login = session.get(studies.server.url + "/ui/login", timeout=30)
        nonce = re.search(r'name="nonce" value="([^"]+)"', login.text)
        assert nonce is not None
        session.post(
            studies.server.url + "/ui/login",
            data={"token": TOKEN, "nonce": nonce.group(1), "next": "/ui/"},
            timeout=30,
        )
        return session.cookies.get_dict()


def test_markers_follow_patient_orientation(page: Page, studies: Studies) -> None:
    _open(page, studies, studies.pa_lateral)
    # Row direction L: the patient's left is at the image's right edge.
    expect(page.locator("#marker-left")).to_have_text("R")
    expect(page.locator("#marker-right")).to_have_text("L")
    expect(page.locator("#marker-left-2")).to_have_text("P")  # the lateral: A\F
    expect(page.locator("#marker-right-2")).to_have_text("A")
    expect(page.locator("#orientation")).to_have_count(0)
    _open(page, studies, studies.unknown)
    expect(page.locator("#orientation")).to_have_text("orientation unknown")
    expect(page.locator(".marker")).to_have_count(0)


def test_pa_and_lateral_side_by_side(page: Page, studies: Studies) -> None:
    _open(page, studies, studies.pa_lateral)
    expect(page.locator(".pane")).to_have_count(2)
    pa, lateral = _box(page, "#viewport"), _box(page, "#viewport-2")
    assert lateral["x"] >= pa["x"] + pa["width"] - 1 and lateral["y"] == pytest.approx(
        pa["y"], abs=1
    )
    expect(page.locator("#pane .pane-caption")).to_contain_text("Analysed")
    caption = page.locator("#pane-2 .pane-caption")
    expect(caption).to_contain_text("LL")
    expect(caption).to_contain_text("Not analysed")
    expect(caption).to_contain_text("the model did not read this image")
    _wait(page, "document.getElementById('image-2').complete")
    assert _pixels(page, studies, "#image-2").shape[0] > 0
    _open(page, studies, studies.prior)
    expect(page.locator(".pane")).to_have_count(1)


def test_the_patients_other_studies_are_listed_and_linked(page: Page, studies: Studies) -> None:
    _open(page, studies, studies.pa_lateral)
    rows = page.locator("#priors tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-uid", studies.prior)
    expect(rows.first).to_contain_text("2025-01-15")
    expect(rows.first).to_contain_text("CHEST PRIOR")
    expect(rows.first).to_contain_text("Analysed")
    rows.first.locator("a.prior-link").click()
    expect(page).to_have_url(re.compile(re.escape(studies.prior) + "$"))
    expect(page.locator("#priors tbody tr")).to_have_count(1)
    expect(page.locator("#priors tbody tr").first).to_contain_text("2026-12-01")
    _open(page, studies, studies.unknown)  # another patient: none
    expect(page.locator("#no-priors")).to_be_visible()
