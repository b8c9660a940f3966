"""Named users, roles and API tokens on a running service (issue #14 item 2): users added by
the CLI (password on stdin) sign in at /ui/login, their feedback is attributed to `user:NAME`,
wrong passwords lock the account with the same message an unknown user gets, the admin pages
are the admin's, and revoking a token or disabling a user takes effect at the next request,
without a restart."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from diagnostics.cli.main import main
from diagnostics.service.users import LOCK_AFTER, hash_password, verify_password
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.service import Server, start_service
from tests.helpers.synth import ROOT, SynthFactory

pytestmark = pytest.mark.slow
TOKEN = "users-test-env-token-0123456789"
PASSWORD = "correct horse battery"
ADMIN_PASSWORD = "admin horse battery staple"


@dataclass
class Site:
    server: Server
    study: str


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`diagnostics ARGS` as a subprocess with `stdin` piped (not a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "diagnostics.cli", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=180
    )


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def _audit(site: Site, action: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(site.server.storage / "intake.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM audit WHERE action = ?", (action,)).fetchall()
    finally:
        db.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, synth_factory: SynthFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("users")
    path = sorted(synth_factory("users-synth", 1, 5, 256).folder.glob("study-*/*.dcm"))[0]
    server = start_service(root, "--workers", "1", token=TOKEN)
    try:
        screened = requests.post(
            server.url + "/v1/screen",
            data=path.read_bytes(),
            headers={**server.auth, "Content-Type": "application/dicom"},
            timeout=120,
        )
        assert screened.status_code == 200, screened.text
        yield Site(server, str(screened.json()["study_instance_uid"]))
    finally:
        server.stop()


def _nonce(session: requests.Session, url: str) -> str:
    page = session.get(url + "/ui/login", timeout=30)
    found = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _sign_in(url: str, name: str, password: str) -> tuple[requests.Session, requests.Response]:
    session = requests.Session()
    form = {"nonce": _nonce(session, url), "next": "/ui/", "username": name, "password": password}
    answer = session.post(url + "/ui/login", data=form, allow_redirects=False, timeout=60)
    return session, answer


def _error(answer: requests.Response) -> str:
    found = re.search(r'id="login-error">([^<]*)<', answer.text)
    assert found, answer.text
    return found.group(1)


def test_hashes_are_salted_scrypt(tmp_path: Path) -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password(PASSWORD, first) and not verify_password(PASSWORD + "x", first)
    assert not verify_password(PASSWORD, "scrypt$damaged")
    store = SqliteStore(tmp_path)
    for name in ("ann", "ben"):
        store.add_user(name, "radiologist", hash_password(PASSWORD), "test")
    hashes = [u.password for u in store.users()]
    assert len(set(hashes)) == 2 and PASSWORD not in "".join(hashes)
    store.close()


def test_user_from_stdin_signs_in_and_is_named_in_the_audit(
    site: Site, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = str(site.server.storage)
    added = _cli(
        "users",
        "add",
        "Aziza",
        "--role",
        "radiologist",
        "--storage",
        storage,
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"name": "aziza", "role": "radiologist"}
    listed = _in_process(capsys, "users", "list", "--storage", storage)
    assert isinstance(listed, list)
    assert [u["name"] for u in listed] == ["aziza"] and "password" not in listed[0]

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page: Page = context.new_page()
    try:
        url = site.server.url
        page.goto(f"{url}/ui/studies/{site.study}")
        page.fill("#username", "aziza")
        page.fill("#password", PASSWORD)
        page.click("#password-form button[type=submit]")
        expect(page).to_have_url(re.compile(re.escape(f"/ui/studies/{site.study}")))
        expect(page.locator(".who")).to_have_text("user:aziza")
        expect(page.locator("a.admin")).to_have_count(0)  # no admin links for a radiologist
        page.locator("form.verdict button[value=agree]").first.click()
        expect(page.locator("#saved")).to_be_visible()
        expect(page.locator(".by").first).to_contain_text("user:aziza")
        page.select_option("#requested-priority", "stat")
        page.click("#priority-form button")
        expect(page.locator("#saved")).to_be_visible()
        page.click("#read-form button[type=submit]")
        expect(page.locator("#saved")).to_be_visible()
    finally:
        context.close()
    for action in ("feedback_recorded", "priority_set", "study_read", "ui_sign_in"):
        assert [r["actor"] for r in _audit(site, action)] == ["user:aziza"], action
    listed = _in_process(capsys, "users", "list", "--storage", storage)
    assert isinstance(listed, list) and listed[0]["last_login"]


def test_wrong_passwords_lock_with_the_unknown_users_message(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    storage, url = str(site.server.storage), site.server.url
    _cli_add = ["users", "add", "bahrom", "--role", "radiologist", "--storage", storage]
    _stdin_main(capsys, _cli_add, PASSWORD)
    _, unknown = _sign_in(url, "nobody-here", PASSWORD)
    assert unknown.status_code == 401
    message = _error(unknown)
    for _ in range(LOCK_AFTER):
        _, wrong = _sign_in(url, "bahrom", "not the password at all")
        assert wrong.status_code == 401 and _error(wrong) == message
    _, locked = _sign_in(url, "bahrom", PASSWORD)  # the right password, while locked
    assert locked.status_code == 401 and _error(locked) == message
    assert "diagnostics_session" not in locked.cookies
    assert [r["actor"] for r in _audit(site, "user_locked")] == ["user:bahrom"]
    assert all(r["outcome"] == 4 for r in _audit(site, "ui_sign_in_failed"))
    _in_process(capsys, "users", "enable", "bahrom", "--storage", storage)  # unlocks
    _, unlocked = _sign_in(url, "bahrom", PASSWORD)
    assert unlocked.status_code == 303


def _stdin_main(capsys: pytest.CaptureFixture[str], args: list[str], password: str) -> None:
    """`diagnostics ARGS` in this process with the password on a piped stdin."""
    read, write = os.pipe()
    os.write(write, (password + "\n").encode())
    os.close(write)
    saved = sys.stdin
    with os.fdopen(read) as pipe:
        sys.stdin = pipe
        try:
            _in_process(capsys, *args)
        finally:
            sys.stdin = saved


def test_roles_and_disabled_sessions(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    storage, url = str(site.server.storage), site.server.url
    _stdin_main(
        capsys, ["users", "add", "chora", "--role", "radiologist", "--storage", storage], PASSWORD
    )
    _stdin_main(
        capsys, ["users", "add", "root", "--role", "admin", "--storage", storage], ADMIN_PASSWORD
    )
    radiologist, answer = _sign_in(url, "chora", PASSWORD)
    assert answer.status_code == 303
    admin, answer = _sign_in(url, "root", ADMIN_PASSWORD)
    assert answer.status_code == 303
    for path in ("/ui/audit", "/ui/users"):
        assert radiologist.get(url + path, timeout=30).status_code == 403, path
        assert admin.get(url + path, timeout=30).status_code == 200, path
    assert radiologist.get(url + "/ui/", timeout=30).status_code == 200
    # Changes need the admin role and the page's CSRF token.
    change = {"action": "disable", "name": "root"}
    assert radiologist.post(url + "/ui/users", data=change, timeout=30).status_code == 403
    assert admin.post(url + "/ui/users", data=change, timeout=30).status_code == 400
    assert _audit(site, "user_change_refused") and not _audit(site, "user_disabled")
    # Tokens are for the API once named users exist; the env token keeps working there.
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(url + "/ui/", headers=bearer, timeout=30).status_code == 403
    assert requests.get(url + "/v1/worklist", headers=bearer, timeout=30).status_code == 200
    nonce_session = requests.Session()
    form = {"nonce": _nonce(nonce_session, url), "next": "/ui/", "token": TOKEN}
    token_form = nonce_session.post(url + "/ui/login", data=form, allow_redirects=False)
    assert token_form.status_code == 401

    _in_process(capsys, "users", "disable", "chora", "--storage", storage)
    gone = radiologist.get(url + "/ui/", allow_redirects=False, timeout=30)
    assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/login")
    _, again = _sign_in(url, "chora", PASSWORD)
    assert again.status_code == 401
    assert admin.get(url + "/ui/", timeout=30).status_code == 200  # others unaffected


def test_tokens_revoked_without_restart(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    storage, url = str(site.server.storage), site.server.url
    made = _cli("tokens", "add", "ris", "--storage", storage)
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(url + "/v1/worklist", headers=headers, timeout=30).status_code == 200
    listed = _in_process(capsys, "tokens", "list", "--storage", storage)
    assert isinstance(listed, list)
    assert listed[0]["name"] == "ris" and listed[0]["last_used"] and not listed[0]["revoked"]
    assert token not in json.dumps(listed) and token not in site.server.log.read_text()
    _in_process(capsys, "tokens", "revoke", "ris", "--storage", storage)
    refused = requests.get(url + "/v1/worklist", headers=headers, timeout=30)
    assert refused.status_code == 401
    assert [r["actor"] for r in _audit(site, "token_revoked")] == ["cli:" + _os_user()]


def _os_user() -> str:
    import getpass

    return getpass.getuser()


def test_admin_page_manages_users_and_tokens(site: Site, browser: Browser) -> None:
    store = SqliteStore(site.server.storage)
    if store.user("dilnoza") is None:
        store.add_user("dilnoza", "admin", hash_password(ADMIN_PASSWORD), "test")
    store.close()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page: Page = context.new_page()
    url = site.server.url
    try:
        page.goto(url + "/ui/login?next=%2Fui%2Fusers")
        page.fill("#username", "dilnoza")
        page.fill("#password", ADMIN_PASSWORD)
        page.click("#password-form button[type=submit]")
        expect(page).to_have_url(re.compile(r"/ui/users$"))
        add = page.locator("#add-user")
        add.locator("input[name=name]").fill("eldor")
        add.locator("select[name=role]").select_option("radiologist")
        add.locator("input[name=password]").fill(PASSWORD)
        add.locator("button").click()
        expect(page.locator("#users-done")).to_be_visible()
        row = page.locator("tr[data-user=eldor]")
        expect(row.locator(".state")).to_have_text("active")
        row.locator("button[value=disable]").click()
        expect(page.locator("tr[data-user=eldor] .state")).to_have_text("disabled")
        page.locator("tr[data-user=eldor] button[value=enable]").click()
        expect(page.locator("tr[data-user=eldor] .state")).to_have_text("active")

        page.locator("#add-token input[name=name]").fill("orthanc")
        page.locator("#add-token button").click()
        token = page.locator("#new-token").inner_text()
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(url + "/v1/worklist", headers=headers, timeout=30).status_code == 200
        page.goto(url + "/ui/users")
        expect(page.locator("#new-token")).to_have_count(0)  # shown once
        expect(page.locator("tr[data-token=orthanc] .last-used")).to_have_text(re.compile(r"\d"))
        assert token not in page.content()
        page.locator("tr[data-token=orthanc] button[value=token_revoke]").click()
        expect(page.locator("tr[data-token=orthanc] .state")).to_have_text("revoked")
        refused = requests.get(url + "/v1/worklist", headers=headers, timeout=30)
        assert refused.status_code == 401
    finally:
        context.close()
    for action in ("user_added", "user_disabled", "user_enabled", "token_added", "token_revoked"):
        actors = {r["actor"] for r in _audit(site, action)}
        assert "user:dilnoza" in actors, action
        assert all(r["outcome"] == 0 for r in _audit(site, action))


def test_a_users_language_follows_them(site: Site) -> None:
    url = site.server.url
    store = SqliteStore(site.server.storage)
    if store.user("farida") is None:
        store.add_user("farida", "radiologist", hash_password(PASSWORD), "test")
    store.close()
    first, answer = _sign_in(url, "farida", PASSWORD)
    assert answer.status_code == 303
    assert '<html lang="uz">' in first.get(url + "/ui/?lang=uz", timeout=30).text
    elsewhere, answer = _sign_in(url, "farida", PASSWORD)  # another workstation: no cookie
    assert "diagnostics_lang" not in elsewhere.cookies
    assert '<html lang="uz">' in elsewhere.get(url + "/ui/", timeout=30).text
    english = {"Accept-Language": "en"}
    assert '<html lang="en">' in requests.get(url + "/ui/login", headers=english, timeout=30).text
