"""Sign-in decisions on a real store (no service): lockout after repeated failures, one refusal
for every reason, the per-address limit, names and passwords checked, tokens hashed."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from diagnostics.errors import RequestError
from diagnostics.service.users import (
    LOCK_AFTER,
    AddressLimiter,
    PasswordAuthenticator,
    add_token,
    add_user,
    revoke_token,
    set_disabled,
)
from diagnostics.store.sqlite import SqliteStore

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path)
    add_user(store, "Aziza", "radiologist", PASSWORD, "test")
    return store


def test_lockout_and_one_refusal_for_every_reason(store: SqliteStore) -> None:
    auth = PasswordAuthenticator(store)
    assert auth.sign_in("AZIZA ", PASSWORD, "10.0.0.1").name == "aziza"  # names are lower-case
    unknown = auth.sign_in("nobody", PASSWORD, "10.0.0.1")
    assert (unknown.refusal, unknown.why) == ("bad_credentials", "unknown_user")
    for _ in range(LOCK_AFTER):
        assert auth.sign_in("aziza", "wrong password!", "10.0.0.1").why == "wrong_password"
    locked = auth.sign_in("aziza", PASSWORD, "10.0.0.1")
    assert (locked.refusal, locked.why, locked.name) == ("bad_credentials", "locked", None)
    user = store.user("aziza")
    assert user is not None and user.locked_until is not None and user.failed == 0
    set_disabled(store, "aziza", False, "test")  # enabling lifts the lock
    assert auth.sign_in("aziza", PASSWORD, "10.0.0.1").role == "radiologist"
    set_disabled(store, "aziza", True, "test")
    assert auth.sign_in("aziza", PASSWORD, "10.0.0.1").why == "disabled"
    actions = [r["action"] for r in store.audit_entries()]
    assert actions == ["user_added", "user_locked", "user_enabled", "user_disabled"]


def test_address_limit_whatever_the_name(store: SqliteStore) -> None:
    auth = PasswordAuthenticator(store, AddressLimiter(limit=3, window_s=60.0))
    for name in ("a1", "a2", "a3"):
        assert auth.sign_in(name, PASSWORD, "10.0.0.9").why == "unknown_user"
    assert auth.sign_in("aziza", PASSWORD, "10.0.0.9").refusal == "address_limited"
    assert auth.sign_in("aziza", PASSWORD, "10.0.0.10").name == "aziza"  # another address


def test_names_passwords_and_duplicates_refused(store: SqliteStore) -> None:
    with pytest.raises(RequestError, match="at least 10"):
        add_user(store, "ben", "admin", "short", "test")
    with pytest.raises(RequestError, match="a name is"):
        add_user(store, "../ben", "admin", PASSWORD, "test")
    with pytest.raises(RequestError, match="role must be"):
        add_user(store, "ben", "superuser", PASSWORD, "test")
    with pytest.raises(RequestError, match="exists already"):
        add_user(store, "aziza", "admin", PASSWORD, "test")


def test_tokens_stored_as_sha256_and_revocable(store: SqliteStore, tmp_path: Path) -> None:
    name, token = add_token(store, "RIS", "test")
    assert name == "ris" and store.token_named(hashlib.sha256(token.encode()).hexdigest()) == "ris"
    db = sqlite3.connect(tmp_path / "intake.sqlite3")
    assert token not in repr(db.execute("SELECT * FROM api_tokens").fetchall())
    db.close()
    with pytest.raises(RequestError, match="exists already"):
        add_token(store, "ris", "test")
    revoke_token(store, "ris", "test")
    assert store.token_named(hashlib.sha256(token.encode()).hexdigest()) is None
    assert add_token(store, "ris", "test")[1] != token  # a revoked name may be used again
