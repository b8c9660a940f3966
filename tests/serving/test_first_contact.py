"""First contact as an administrator has it: `diagnostics serve --bind 127.0.0.1` with the DICOM
listener on, behind a TLS-terminating proxy on this host (`--trusted-proxy 127.0.0.9/8`: a
network written with host bits, which uvicorn alone would not match).

What it prints (where it listens, the ready line), that nothing answers on the machine's other
address, the API page `/docs` (ours, no outside request, in Chromium too), and the `Secure`
cookie when the trusted proxy says the request came over https.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers.service import Server, start_service
from tests.helpers.wait import free_port, wait_for

pytestmark = pytest.mark.slow
TOKEN = "first-contact-token-0123456789"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("first-contact")
    server = start_service(
        root,
        "--bind", "127.0.0.1",
        "--allow-ae", "STORESCU",
        "--trusted-proxy", "127.0.0.9/8",
        token=TOKEN,
        dicom_port=free_port(),
    )  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


def _other_address() -> str | None:
    """An address of this machine that is not loopback (`hostname -I`)."""
    done = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
    for address in done.stdout.split():
        if not address.startswith("127.") and address != "::1":
            return address
    return None


def _refused(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect((address, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return True  # unreachable counts as not answering too
    return False


def test_bound_to_loopback_only_and_says_so(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    log = wait_for(
        lambda: (text := server.log.read_text("utf-8", "replace")) and "ready: " in text and text,
        30,
        "the ready line",
    )
    dicom = f"DICOM on 127.0.0.1:{server.dicom_port} as AE DIAGNOSTICS"
    assert f"Listening: HTTP on 127.0.0.1:{port}, {dicom}" in log  # the banner
    assert f"ready: HTTP on http://127.0.0.1:{port}, {dicom}" in log  # when /readyz turns ready
    # The banner's commands use the bound address, which answers.
    assert f"dcmsend -aet STORESCU -aec DIAGNOSTICS 127.0.0.1 {server.dicom_port}" in log
    assert f"API docs http://127.0.0.1:{port}/docs" in log
    echo = subprocess.run(
        ["echoscu", "-aet", "STORESCU", "-aec", "DIAGNOSTICS", "127.0.0.1", str(server.dicom_port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert echo.returncode == 0, echo.stderr
    other = _other_address()
    if other is None:
        pytest.fail("this machine has no address but loopback: `hostname -I` printed none")
    assert _refused(other, port), f"HTTP answers on {other}"
    assert _refused(other, server.dicom_port), f"DICOM answers on {other}"


def test_docs_page_is_ours_and_needs_a_token_or_a_session(server: Server) -> None:
    page = server.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.text
    assert "/v1/screen" in text and "/dicomweb/studies" in text and "StudyResult" in text
    assert "googletagmanager" not in text.lower() and "<script" not in text.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", text), "an outside asset"
    spec = server.get("/docs.json").json()
    assert {"/v1/screen", "/v1/infer", "/v1/worklist"} <= set(spec["paths"])
    home = server.get("/")  # BentoML's Swagger UI (and its Google Tag Manager) no more
    assert home.url.endswith("/docs") and "googletagmanager" not in home.text.lower()

    # Without credentials: a client asking for JSON gets 401, a browser the sign-in page.
    for path in ("/", "/docs", "/docs.json"):
        assert requests.get(server.url + path, timeout=30).status_code == 401
    browser = requests.get(
        server.url + "/docs", headers={"Accept": "text/html"}, allow_redirects=False, timeout=30
    )
    assert browser.status_code == 303
    assert browser.headers["location"] == "/ui/login?next=%2Fdocs"


def test_docs_in_chromium_with_the_ui_session_and_nothing_from_outside(server: Server) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: scripts/setup installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(server.url + "/")  # BentoML's page was here: now ours, after sign-in
            assert "/ui/login" in page.url
            page.fill("#token", TOKEN)
            page.click(".signin button[type=submit]")
            page.wait_for_url(re.compile(r"/docs$"))
            body = page.inner_text("body")
            assert "/v1/screen" in body and "StudyResult" in body
            spec = page.goto(server.url + "/docs.json")
            assert spec is not None and spec.status == 200  # the same cookie reads the document
            page.goto(server.url + "/ui/")  # and the UI itself still works with it
            assert "/ui/login" not in page.url
        finally:
            browser.close()
    outside = [url for url in requested if not url.startswith(server.url + "/")]
    assert requested and outside == []


def test_secure_cookie_only_when_the_trusted_proxy_says_https(server: Server) -> None:
    """The proxy on 127.0.0.1 is trusted here (in 127.0.0.9/8); tests/serving/test_service.py
    checks that the same header from a client nobody named changes nothing."""
    over_https = requests.get(
        server.url + "/ui/login", headers={"X-Forwarded-Proto": "https"}, timeout=30
    )
    assert over_https.status_code == 200
    assert "Secure" in over_https.headers["set-cookie"]
    plain = requests.get(server.url + "/ui/login", timeout=30)
    assert "Secure" not in plain.headers["set-cookie"]


# -- the README, as pasted ---------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"
RUN = Path(__file__).resolve().parents[2] / "scripts" / "run"


def _readme_block() -> list[str]:
    """The commands of "Two commands" that send a study, one per line (continuations joined)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("TOKEN=$(cat work/api-token)", 1)[1].split("```", 1)[0]
    return ["TOKEN=$(cat work/api-token)", *block.replace("\\\n", " ").strip().splitlines()]


def test_readme_commands_work_for_every_demo_transfer_syntax(
    server: Server, tmp_path: Path
) -> None:
    """The demo `scripts/run` writes (its own synth line), the README's commands as pasted, with
    only the ports and the working folder changed: every study arrives, RLE and JPEG-LS too."""
    import sys

    import pydicom

    run = RUN.read_text(encoding="utf-8")
    synth = re.search(r"diagnostics synth (--out \"\$demo\".*?)>/dev/null", run, re.S)
    assert synth is not None, "scripts/run no longer writes the demo with `diagnostics synth`"
    options = synth.group(1).replace('"$demo"', "work/demo").replace("\\\n", " ").split()
    work = tmp_path / "work"
    subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", "synth", *options],
        cwd=tmp_path, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (work / "api-token").write_text(TOKEN + "\n")
    files = sorted((work / "demo").glob("study-*/IM-0001.dcm"))
    syntaxes = {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for f in files}  # fmt: skip
    # Uncompressed and RLE, which plain `storescu` cannot send (it offers uncompressed only).
    assert {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"} <= syntaxes, syntaxes

    lines = _readme_block()
    assert any(line.startswith("dcmsend ") for line in lines)
    script = []
    for line in lines:
        line = line.replace("http://localhost:3000", server.url)
        line = line.replace("localhost 11112", f"127.0.0.1 {server.dicom_port}")
        if line.startswith("dcmsend "):  # the README sends one study; send each of the demo
            script += [re.sub(r"work/demo/\S+", str(f.relative_to(tmp_path)), line) for f in files]
        else:
            script.append(line)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for f in files:
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID)
        state = server.wait_for_result(uid, timeout=120)
        assert state["result"], state


def test_readme_paths_match_scripts_run() -> None:
    """What the README tells to pass as --storage is where `scripts/run` keeps it."""
    run = RUN.read_text(encoding="utf-8")
    storage = re.search(r"DIAGNOSTICS_STORAGE:-([^}]+)\}", run)
    assert storage is not None
    readme = README.read_text(encoding="utf-8")
    # `restore` writes into a new folder on purpose; every other command reads the service's.
    given = set(re.findall(r"^(?!.*\brestore\b).*--storage (\S+)", readme, re.MULTILINE))
    assert given == {storage.group(1)}, given
    assert "work/api-token" in run and "work/demo" in run
