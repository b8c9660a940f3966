"""Keyed one-way replacements: new UIDs, patient pseudonyms and date offsets from a secret salt.

Everything replaced is an HMAC-SHA256 of the original under a salt that never enters the
export. The same salt gives the same replacements in every export (so two exports of one
patient can be linked by whoever may link them), a different salt gives unrelated ones, and
without the salt nothing can be reversed or even checked against a guessed original: PS3.15
E.1.1 warns that unkeyed hashes fall to dictionary attacks, and patient IDs are a small space.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from diagnostics.errors import ConfigurationError

MIN_SALT_BYTES = 16
SHIFT_MIN_DAYS = 365
SHIFT_MAX_DAYS = 3650
"""Dates move back by one to ten years: far enough that the real date cannot be guessed from
the season or weekday pattern of a single study, never into the future."""


class Keys:
    """The salt and the replacements derived from it (memoised: one export asks many times)."""

    def __init__(self, salt: bytes, *, source: str) -> None:
        if len(salt) < MIN_SALT_BYTES:
            raise ConfigurationError(
                f"the salt is {len(salt)} bytes; use at least {MIN_SALT_BYTES} random bytes"
            )
        self._salt = salt
        self.source = source
        """'file' or 'ephemeral': recorded in the manifest, the salt itself never is."""
        self._uids: dict[str, str] = {}

    @classmethod
    def ephemeral(cls) -> Keys:
        """A salt that lives only in memory: pseudonyms that no later export can reproduce."""
        return cls(secrets.token_bytes(32), source="ephemeral")

    @classmethod
    def from_file(cls, path: Path) -> Keys:
        """Read the salt, or create the file with a new random salt (readable by its owner)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigurationError(f"--salt-file {path}: cannot create it: {exc}") from exc
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        try:
            salt = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(f"--salt-file {path}: cannot read it: {exc}") from exc
        return cls(salt, source="file")

    def _digest(self, purpose: str, value: str) -> bytes:
        message = purpose.encode("ascii") + b"\x00" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self._salt, message, hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """The replacement for one UID: the same input always gives the same `2.25.` UID.

        The 128 bits are shaped as an RFC 9562 version 8 (custom) UUID, so the result is a
        proper UUID-derived UID (PS3.5 B.2) and at most 44 characters long.
        """
        original = value.strip().rstrip("\x00")
        known = self._uids.get(original)
        if known is None:
            raw = bytearray(self._digest("uid", original)[:16])
            raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
            raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122/9562 variant
            known = f"2.25.{int.from_bytes(raw, 'big')}"
            self._uids[original] = known
        return known

    def pseudonym(self, patient_key: str) -> str:
        """Patient ID and name in the export: 'ANON' and 16 hex digits, one per patient."""
        return "ANON" + self._digest("patient", patient_key)[:8].hex().upper()

    def day_offset(self, patient_key: str) -> int:
        """Days (negative) added to every date of this patient under --shift-dates."""
        span = SHIFT_MAX_DAYS - SHIFT_MIN_DAYS + 1
        number = int.from_bytes(self._digest("shift", patient_key)[:8], "big")
        return -(SHIFT_MIN_DAYS + number % span)

    def token(self, purpose: str, value: str) -> str:
        """A short stable pseudonym for other people (feedback authors), distinct per purpose."""
        return self._digest(purpose, value)[:6].hex()
