"""What several processes or nodes on one store rely on, on both backends (SQLite and a real
PostgreSQL): migrations, claims from two connections, the outbox's hold, the audit chain with
two writers. Each "node" is a store of its own (its own connections) on one storage folder."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from diagnostics.errors import ConfigurationError, StoreError
from diagnostics.results import InstanceResult, ModelRef, StudyResult
from diagnostics.serve import add_parser
from diagnostics.store import Store, postgres_url
from diagnostics.store.records import Claim, Delivery
from tests.helpers.postgres import Cluster
from tests.helpers.synth import SynthStudies

MakeStore = Callable[..., Store]


def _result(study: str) -> StudyResult:
    return StudyResult(
        study_instance_uid=study,
        status="not_analyzed",
        reason="test",
        model=ModelRef(name="m", version="1.0.0", sha256="0" * 64),
        instances=[InstanceResult(sop_instance_uid="1.2", status="not_analyzed", reason="test")],
    )


def _studies(synth_studies: SynthStudies, tmp_path: Path, count: int) -> list[bytes]:
    """`count` one-instance studies (the synthetic ones, copied under new UIDs)."""
    folder, truths = synth_studies
    out = []
    for i in range(count):
        ds = pydicom.dcmread(folder / truths[i % len(truths)].file)
        ds.StudyInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        path = tmp_path / f"s{i}.dcm"
        ds.save_as(path)
        out.append(path.read_bytes())
    return out


def _versions(store: Store) -> list[int]:
    with store.sql_transaction() as db:  # type: ignore[attr-defined]
        return [int(r[0]) for r in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_migrations_run_once_and_a_rerun_is_a_no_op(
    make_store: MakeStore, tmp_path: Path, database: str | None
) -> None:
    first = make_store(tmp_path)
    assert _versions(first) == [1]
    first.audit("test", "opened")
    again = make_store(tmp_path)  # a second node, or a restart: nothing to apply
    assert _versions(again) == [1]
    assert [e["action"] for e in again.audit_entries()] == ["opened"]  # nothing recreated
    with again.sql_transaction() as db:  # type: ignore[attr-defined]
        db.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)")
    with pytest.raises(StoreError, match="schema version 99, newer"):
        make_store(tmp_path)


def test_postgres_migrations_apply_in_order_on_an_empty_database(postgres: Cluster) -> None:
    from diagnostics.store.postgres import PgDb
    from diagnostics.store.postgres.schema import MIGRATIONS, migrate, versions

    db = PgDb(postgres.new_database())
    try:
        later = (*MIGRATIONS, (2, "a later step", "CREATE TABLE later_step (x BIGINT)"))
        assert migrate(db, MIGRATIONS) == [1]
        assert migrate(db, later) == [2]  # only what is missing
        assert migrate(db, later) == []
        assert versions(db) == [1, 2]
    finally:
        db.close()


def test_a_database_url_is_checked(tmp_path: Path) -> None:
    assert postgres_url(None, tmp_path) is None
    assert postgres_url(f"sqlite:///{tmp_path}/intake.sqlite3", tmp_path) is None
    url = "postgresql://u@db.example:5432/diag"
    assert postgres_url(url, tmp_path) == url
    with pytest.raises(ConfigurationError, match="lives in its storage folder"):
        postgres_url("sqlite:///elsewhere/x.db", tmp_path)
    with pytest.raises(ConfigurationError, match="'mysql' is not a database URL"):
        postgres_url("mysql://u:secret@h/db", tmp_path)


def test_two_nodes_claiming_at_once_never_claim_a_study_twice(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    nodes = [make_store(tmp_path), make_store(tmp_path)]
    for data in _studies(synth_studies, tmp_path, 24):
        nodes[0].receive(data, "test")
    taken: list[list[Claim]] = [[], []]
    start = threading.Barrier(2)

    def claim(index: int) -> None:
        start.wait()
        while claims := nodes[index].claim_due(stable_s=0, limit=2):
            taken[index] += claims

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    studies = [c.study_instance_uid for c in taken[0] + taken[1]]
    assert len(studies) == 24 and len(set(studies)) == 24  # every study, each once
    assert all(c.tries == 1 for c in taken[0] + taken[1])
    assert nodes[1].counts()["studies_screening"] == 24


def test_an_expired_lease_is_taken_over_by_the_other_node(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    a, b = make_store(tmp_path, lease_s=1.0), make_store(tmp_path, lease_s=1.0)
    (data,) = _studies(synth_studies, tmp_path, 1)
    a.receive(data, "test")
    (first,) = a.claim_due(stable_s=0)
    assert b.claim_due(stable_s=0) == []  # held by node a
    time.sleep(1.2)  # node a "died": its lease runs out
    (second,) = b.claim_due(stable_s=0)
    assert second.study_instance_uid == first.study_instance_uid and second.tries == 2
    assert a.renew([first]) == [first]  # a late renewal learns the claim is gone
    assert b.complete(second, _result(second.study_instance_uid)) == 1
    assert a.complete(first, _result(first.study_instance_uid)) is None  # never twice
    assert b.latest_version(first.study_instance_uid) == 1


def test_the_outbox_hands_each_item_to_one_sender_and_sent_is_final(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    a, b = make_store(tmp_path), make_store(tmp_path)
    (data,) = _studies(synth_studies, tmp_path, 1)
    a.receive(data, "test")
    (claim,) = a.claim_due(stable_s=0)
    deliveries = [Delivery(f"PACS{i}@127.0.0.1:1", tmp_path / f"SR{i}.dcm") for i in range(6)]
    assert a.complete(claim, _result(claim.study_instance_uid), deliveries) == 1
    got_a, got_b = a.claim_outbox(limit=4), b.claim_outbox(limit=4)
    assert len(got_a) == 4 and len(got_b) == 2
    assert not {i.id for i in got_a} & {i.id for i in got_b}  # never both
    assert a.claim_outbox() == [] and b.due_outbox() == []  # held while being sent
    for item in got_a:
        a.mark_sent(item)
        a.mark_sent(item)  # a repeated acknowledgement changes nothing
    b.release_outbox(got_b)  # a stopping sender gives its items back at once
    assert {i.id for i in a.claim_outbox()} == {i.id for i in got_b}
    assert a.counts()["outbox_pending"] == 2


def test_the_audit_chain_stays_linear_with_two_writers(
    make_store: MakeStore, tmp_path: Path
) -> None:
    nodes = [make_store(tmp_path), make_store(tmp_path)]
    start = threading.Barrier(4)

    def write(node: Store, name: str) -> None:
        start.wait()
        for i in range(25):
            node.audit(name, "tested", n=i)

    threads = [threading.Thread(target=write, args=(nodes[i % 2], f"writer{i}")) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    report = nodes[1].verify_audit()
    assert report.problem is None and report.rows == 100
    ids = [e["id"] for e in nodes[0].audit_entries("tested")]
    assert ids == list(range(1, 101))  # contiguous: no gap reads as a deletion


def test_the_database_url_is_a_setting_and_a_serve_flag(tmp_path: Path) -> None:
    from diagnostics.serve import config_from_args
    from diagnostics.service.settings import ServiceSettings

    url = "postgresql://diagnostics@db.example.org/diagnostics"
    settings = ServiceSettings(storage=tmp_path, database_url=url)
    env = settings.to_env()
    assert env["DIAGNOSTICS_DATABASE_URL"] == url
    assert ServiceSettings.from_env(env) == settings
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--database", url, "--storage", str(tmp_path)])
    assert config_from_args(args, {}).database_url == url
    bad = parser.parse_args(["serve", "--database", "mysql://u:secret@h/db"])
    with pytest.raises(ConfigurationError, match=r"--database: .*not a database URL") as refused:
        config_from_args(bad, {})
    assert "secret" not in str(refused.value)  # a password in a bad URL is never echoed


def test_audit_and_purge_commands_read_a_postgres_store(
    tmp_path: Path,
    postgres: Cluster,
    synth_studies: SynthStudies,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from diagnostics.cli.main import main
    from diagnostics.store import open_store

    url = postgres.new_database()
    store = open_store(tmp_path, database=url)
    try:
        (data,) = _studies(synth_studies, tmp_path, 1)
        received = store.receive(data, "test")
    finally:
        store.close()
    verify = ["audit", "--storage", str(tmp_path), "--database", url, "--verify"]
    assert main([*verify, "--format", "text"]) == 0
    assert "audit trail intact: 1 rows" in capsys.readouterr().out
    assert main(["audit", "--storage", str(tmp_path), "--database", url]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["study_instance_uid"] == received.study_instance_uid
    purge = ["purge", "--storage", str(tmp_path), "--database", url, "--retain-days", "1"]
    assert main([*purge, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True


def test_intake_on_one_node_wakes_a_waiting_worker_on_another(
    tmp_path: Path, postgres: Cluster, synth_studies: SynthStudies
) -> None:
    from diagnostics.store import open_store

    url = postgres.new_database()
    waiting, sending = open_store(tmp_path, database=url), open_store(tmp_path, database=url)
    try:
        assert waiting.wait_for_work(0.1)  # listening from now on; nothing came
        (data,) = _studies(synth_studies, tmp_path, 1)
        took: list[float] = []

        def wait() -> None:
            started = time.monotonic()
            waiting.wait_for_work(30.0)
            took.append(time.monotonic() - started)

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.5)
        sending.receive(data, "test")  # NOTIFY on commit
        thread.join(40)
        assert took and took[0] < 10.0, took  # woken, not timed out
    finally:
        waiting.close()
        sending.close()


def test_sqlite_announces_nothing_so_workers_poll(tmp_path: Path) -> None:
    from diagnostics.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path)  # opened first: creating the schema is not what is timed
    started = time.monotonic()
    assert store.wait_for_work(5.0) is False  # the loop's own wait instead
    assert time.monotonic() - started < 1.0


def test_a_session_signed_out_on_one_node_is_refused_on_every_node(
    tmp_path: Path, postgres: Cluster
) -> None:
    from diagnostics.store import open_store, revoked_sessions

    url = postgres.new_database()
    open_store(tmp_path, database=url).close()  # the first node migrates the database
    here, there = revoked_sessions(tmp_path, url), revoked_sessions(tmp_path / "other", url)
    here.revoke("session-1", expires=time.time() + 3600)
    assert there.is_revoked("session-1") and not there.is_revoked("session-2")
    here.revoke("session-2", expires=time.time() - 1)  # already expired: dropped on a write
    here.revoke("session-3", expires=time.time() + 3600)
    assert not there.is_revoked("session-2") and there.is_revoked("session-3")
    assert not (tmp_path / "ui-sessions.db").exists()  # nothing in the (shared) folder


def test_users_and_tokens_are_shared_by_every_node(tmp_path: Path, database: str | None) -> None:
    """A token made or revoked through one node is seen by another at its next request, and a
    sign-in lockout counted on one holds on the other: they are rows of the shared database."""
    from diagnostics.store import open_users

    # With PostgreSQL the second node is given another storage folder, so only the database
    # can carry what they share; with SQLite the folder is the database.
    other = tmp_path if database is None else tmp_path / "other"
    one, two = open_users(tmp_path, database=database), open_users(other, database=database)
    try:
        one.add_token("orthanc-router", "d" * 64, "test")
        assert two.token_named("d" * 64) == "orthanc-router"
        two.revoke_token("orthanc-router", "test")
        assert one.token_named("d" * 64) is None
        one.add_user("aziza", "radiologist", "scrypt$hash", "test")
        locked = [two.sign_in_failed("aziza", 2, 900.0, time.time()) for _ in range(2)]
        assert locked == [False, True]
        user = one.user("aziza")
        assert user is not None and user.locked_until is not None
    finally:
        for store in (one, two):
            store.close()  # type: ignore[attr-defined]


def test_the_monitoring_query_runs_on_both_backends(make_store: MakeStore, tmp_path: Path) -> None:
    """`diagnostics monitor` and /ui/monitoring read through it; PostgreSQL parses and plans
    the statements even on an empty database, so a dialect slip fails here."""
    assert make_store(tmp_path).monitored_results(0.0) == []
