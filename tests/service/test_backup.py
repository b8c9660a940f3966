"""Backup and restore (#15): a backup taken while the real service runs (and while a STOW-RS
upload is in flight) restores into a new storage folder, where a new service shows the same
worklist, results and review page; a damaged, altered or incomplete backup is refused, naming
the problem, and a running service's folder is never restored over."""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests

from diagnostics.api.session import KEY_FILE
from diagnostics.serve import BENTOML_HOME
from diagnostics.service.backup import MANIFEST_FILE, SESSION_KEY_FILE, TRANSIENT
from diagnostics.store import open_store
from diagnostics.store.audit import SUCCESS
from tests.helpers.service import Server, start_service
from tests.helpers.synth import ROOT, SynthFactory
from tests.helpers.wait import free_port

TOKEN = "backup-test-token-0123456789abcdef"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def related(parts: list[bytes], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(
        f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
        for data in parts
    )
    body += f"\r\n--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def sign_in(server: Server) -> requests.Session:
    """A browser's way in: the sign-in form's nonce, then the token; keeps the cookie."""
    session = requests.Session()
    form = session.get(server.url + "/ui/login", timeout=60)
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text
    signed = session.post(
        server.url + "/ui/login",
        data={"nonce": nonce.group(1), "token": TOKEN, "next": "/ui/"},
        timeout=60,
        allow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    return session


def worklist_rows(html: str) -> list[str]:
    """The studies of the worklist page in the order shown."""
    return re.findall(r'href="/ui/studies/([0-9.]+)"', html)


@pytest.fixture(scope="module")
def studies(synth_factory: SynthFactory) -> list[Path]:
    return sorted(synth_factory("backup-synth", 5, 515, 256).folder.glob("study-*/*.dcm"))


def test_backup_while_serving_restores_the_same_worklist_and_results(
    tmp_path: Path, studies: list[Path]
) -> None:
    pacs = f"PACS@127.0.0.1:{free_port()}"  # nobody listens: outputs stay in the outbox
    flags = ["--workers", "1", "--results-to", pacs]
    env = {"DIAGNOSTICS_STABLE_SECONDS": "0.5"}
    (tmp_path / "a").mkdir()
    first = start_service(tmp_path / "a", *flags, token=TOKEN, env=env)
    try:
        screened = []
        for path in studies[:4]:
            reply = first.post(
                "/v1/screen",
                data=path.read_bytes(),
                headers={"Content-Type": "application/dicom"},
            )
            assert reply.status_code == 200, reply.text
            screened.append(str(reply.json()["study_instance_uid"]))
        browser = sign_in(first)
        # A STOW-RS upload in flight while the backup runs: whether its study makes the
        # snapshot or not, the backup must be consistent.
        body, kind = related([studies[4].read_bytes()])
        stow: list[int] = []
        uploader = threading.Thread(
            target=lambda: stow.append(
                first.post(
                    "/dicomweb/studies", data=body, headers={"Content-Type": kind}
                ).status_code
            )
        )
        uploader.start()
        made = cli("backup", "--storage", first.storage, "--out", tmp_path / "backup")
        uploader.join(120)
        assert made.returncode == 0, made.stderr
        assert stow == [200]
        summary = json.loads(made.stdout)
        assert "bentoml" in summary["skipped"] and "lead.lock" in summary["skipped"]
        before_json = first.get("/v1/worklist").json()
        before_results = {uid: first.get(f"/v1/studies/{uid}").json() for uid in screened}
        before_html = browser.get(first.url + "/ui/", timeout=60).text
        # Never over a running service's folder, even when told to replace its contents.
        over = cli("restore", tmp_path / "backup", "--storage", first.storage, "--force")
        assert over.returncode == 2 and "running service" in over.stderr, over.stderr
        assert open_store(first.storage).audit_entries("backup")[-1]["outcome"] == SUCCESS
    finally:
        first.stop()

    manifest = json.loads((tmp_path / "backup" / MANIFEST_FILE).read_text())
    kinds = {f["kind"] for f in manifest["files"]}
    assert kinds == {"database", "key", "instance", "output"}, kinds
    assert not any(f["path"].startswith(("bentoml", "incoming")) for f in manifest["files"])

    new = tmp_path / "b" / "storage"
    restored = cli("restore", tmp_path / "backup", "--storage", new)
    assert restored.returncode == 0, restored.stderr
    db = sqlite3.connect(new / "intake.sqlite3")
    outbox = [row[0] for row in db.execute("SELECT path FROM outbox")]
    assert outbox and all(p.startswith(str(new.resolve())) and Path(p).is_file() for p in outbox)
    missing = [
        p
        for (p,) in db.execute("SELECT path FROM instances")
        if not (new / "instances" / p).is_file()
    ]
    assert not missing
    db.close()

    second = start_service(tmp_path / "b", *flags, token=TOKEN, env=env, storage=new)
    try:
        after_results = {uid: second.get(f"/v1/studies/{uid}").json() for uid in screened}
        assert after_results == before_results
        after_json = second.get("/v1/worklist").json()
        # The worklist as it was at the snapshot: the study uploaded during the backup is
        # there or not (it arrived around the snapshot); every other entry is the same, in the
        # same order.
        late = str(pydicom.dcmread(studies[4], stop_before_pixels=True).StudyInstanceUID)
        restored_rows = {str(item["study_instance_uid"]) for item in after_json["items"]}
        assert set(screened) <= restored_rows <= set(screened) | {late}
        assert _items(after_json, screened) == _items(before_json, screened)
        # The session key came back: the cookie issued by the first service still works.
        page = browser.get(second.url + "/ui/", timeout=60, allow_redirects=False)
        assert page.status_code == 200, page.text
        shown = [uid for uid in worklist_rows(page.text) if uid in screened]
        assert shown == [uid for uid in worklist_rows(before_html) if uid in screened]
        assert open_store(new).audit_entries("restore")[-1]["outcome"] == SUCCESS
    finally:
        second.stop()


def _items(page: dict[str, Any], uids: list[str]) -> list[dict[str, Any]]:
    return [item for item in page["items"] if item["study_instance_uid"] in uids]


def _stored(tmp_path: Path, studies: list[Path]) -> Path:
    storage = tmp_path / "storage"
    store = open_store(storage)
    for path in studies[:3]:
        store.receive(path.read_bytes(), source="test")
    return storage


def test_a_damaged_altered_or_incomplete_backup_is_refused(
    tmp_path: Path, studies: list[Path]
) -> None:
    storage = _stored(tmp_path, studies)
    backup = tmp_path / "backup"
    assert cli("backup", "--storage", storage, "--out", backup).returncode == 0
    assert cli("restore", backup, "--check").returncode == 0
    manifest = json.loads((backup / MANIFEST_FILE).read_text())
    victim = next(f["path"] for f in manifest["files"] if f["kind"] == "instance")
    data = bytearray((backup / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (backup / victim).write_bytes(bytes(data))

    refused = cli("restore", backup, "--storage", tmp_path / "new")
    assert refused.returncode == 2
    assert victim in refused.stderr and "SHA-256" in refused.stderr, refused.stderr
    assert not (tmp_path / "new" / "intake.sqlite3").exists(), "nothing is restored"
    assert victim in cli("restore", backup, "--check").stderr

    (backup / victim).unlink()
    gone = cli("restore", backup, "--storage", tmp_path / "new")
    assert gone.returncode == 2 and f"{victim} is missing" in gone.stderr

    (backup / MANIFEST_FILE).write_text(json.dumps({**manifest, "files": "x"}))
    altered = cli("restore", backup, "--storage", tmp_path / "new")
    assert altered.returncode == 2 and "altered" in altered.stderr, altered.stderr

    (backup / MANIFEST_FILE).unlink()
    incomplete = cli("restore", backup, "--storage", tmp_path / "new")
    assert incomplete.returncode == 2 and "incomplete backup" in incomplete.stderr


def test_restore_refuses_a_non_empty_folder_unless_forced_and_keeps_its_contents(
    tmp_path: Path, studies: list[Path]
) -> None:
    storage = _stored(tmp_path, studies)
    backup = tmp_path / "backup"
    assert cli("backup", "--storage", storage, "--out", backup).returncode == 0
    again = cli("backup", "--storage", storage, "--out", backup)
    assert again.returncode == 2 and "not empty" in again.stderr
    inside = cli("backup", "--storage", storage, "--out", storage / "backup")
    assert inside.returncode == 2 and "inside the storage folder" in inside.stderr

    target = tmp_path / "target"
    open_store(target).receive(studies[4].read_bytes(), source="test")
    refused = cli("restore", backup, "--storage", target)
    assert refused.returncode == 2 and "not empty" in refused.stderr
    forced = cli("restore", backup, "--storage", target, "--force")
    assert forced.returncode == 0, forced.stderr
    aside = Path(json.loads(forced.stdout)["moved_aside"])
    assert (aside / "intake.sqlite3").is_file(), "the old store is moved aside, not deleted"
    assert open_store(target).counts()["instances"] == 3
    assert open_store(storage).audit_entries("backup")[0]["detail"]["files"] == 4


def test_what_a_backup_leaves_out_matches_the_service() -> None:
    assert SESSION_KEY_FILE == KEY_FILE
    assert BENTOML_HOME in TRANSIENT


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_backup_timer_and_unit_verify(tmp_path: Path) -> None:
    deploy = ROOT / "deploy"
    service = (deploy / "diagnostics-backup.service").read_text(encoding="utf-8")
    installed = "/opt/diagnostics/.venv/bin/diagnostics backup"
    assert installed in service
    entry_point = str(Path(sys.executable).with_name("diagnostics"))
    (tmp_path / "diagnostics-backup.service").write_text(
        service.replace("/opt/diagnostics/.venv/bin/diagnostics", entry_point)
    )
    shutil.copy(deploy / "diagnostics-backup.timer", tmp_path)
    units = [
        str(tmp_path / name) for name in ("diagnostics-backup.service", "diagnostics-backup.timer")
    ]
    done = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "Unknown" not in done.stderr, done.stderr


def test_a_backup_taken_during_a_stream_of_writes_is_consistent(
    tmp_path: Path, studies: list[Path]
) -> None:
    """Instances keep arriving (another thread, as the listener would) while backups run: each
    restored store has a file for every instance row and the counts of its queue agree."""
    from diagnostics.service.backup import backup
    from diagnostics.service.restore import restore

    storage = _stored(tmp_path, studies)
    template = pydicom.dcmread(studies[3])
    stop = threading.Event()
    written: list[int] = []

    def write() -> None:
        store = open_store(storage)
        while not stop.is_set():
            template.StudyInstanceUID = pydicom.uid.generate_uid()
            template.SOPInstanceUID = pydicom.uid.generate_uid()
            template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
            buffer = io.BytesIO()
            template.save_as(buffer, enforce_file_format=True)
            store.receive(buffer.getvalue(), source="test")
            written.append(1)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for n in range(3):
            backup(storage, tmp_path / f"backup-{n}")
    finally:
        stop.set()
        writer.join(60)
    assert written, "the writer ran during the backups"
    for n in range(3):
        target = tmp_path / f"restored-{n}"
        restore(tmp_path / f"backup-{n}", target)
        db = sqlite3.connect(target / "intake.sqlite3")
        paths = [p for (p,) in db.execute("SELECT path FROM instances")]
        assert len(paths) >= 3 and all((target / "instances" / p).is_file() for p in paths)
        queued = db.execute("SELECT SUM(instance_count) FROM studies").fetchone()[0]
        assert queued == len(paths)
        db.close()
