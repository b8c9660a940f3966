"""The model registry of one storage folder: installed packages, the active one, the shadow.

Packages are copied into `<storage>/models/<name>-<version>/` and verified by `load_package`
before they count as installed, so a package deleted or edited at its source cannot change what
the service runs. `registry.json` beside them says which version is active, which (if any) runs
in shadow, and the history of every change; it is replaced durably (`diagnostics.durable`) under
an exclusive lock, so the CLI and the admin page can change it while the service runs. The
service polls the file's mtime and swaps its engine between studies (`service/models.py`).

A version is promoted only when its operating points were derived on local data (its manifest's
`site_calibration`, written by `diagnostics calibrate`), unless an override reason is given:
WHO's guidance for CAD thresholds is local calibration, and an override is a conscious choice.
"""

from __future__ import annotations

import fcntl
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from diagnostics.durable import publish_folder, staging_folder, write_file
from diagnostics.errors import ModelPackageError
from diagnostics.package.load import ModelPackage, load_package
from diagnostics.package.manifest import CARD_FILE, MANIFEST_FILE, MODEL_FILE
from diagnostics.strict import StrictModel

MODELS_DIR = "models"
STATE_FILE = "registry.json"
LOCK_FILE = ".registry.lock"
SHADOW_DIR = "shadow"
"""Under the models folder: the shadow results, one folder per shadow version."""

Action = Literal["install", "activate", "shadow", "unshadow", "promote", "rollback"]


class Installed(StrictModel):
    """One installed package version."""

    key: str
    """`<name>-<version>`: its folder under `<storage>/models/`."""
    name: str
    version: str
    sha256: str
    installed_at: float
    site_calibrated: bool
    """Whether its operating points were derived on local data (`site_calibration`)."""


class Change(StrictModel):
    """One entry of the registry's history."""

    at: float
    action: Action
    key: str
    actor: str
    previous: str | None = None
    """The active version before (promote, rollback, activate)."""
    reason: str = ""
    """The override reason of a promotion without site calibration."""


class RegistryState(StrictModel):
    """`registry.json`."""

    schema_version: Literal[1] = 1
    installed: list[Installed] = Field(default_factory=list)
    active: str | None = None
    shadow: str | None = None
    history: list[Change] = Field(default_factory=list)

    def entry(self, key: str) -> Installed:
        for item in self.installed:
            if item.key == key:
                return item
        raise ModelPackageError(f"model {key} is not installed")

    def find(self, version: str) -> Installed:
        """An installed package by `<name>-<version>` or by its version alone (if unique)."""
        exact = [i for i in self.installed if version in (i.key, f"{i.name} {i.version}")]
        if exact:
            return exact[0]
        matches = [i for i in self.installed if i.version == version]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(i.key for i in self.installed) or "none"
        if matches:
            raise ModelPackageError(
                f"version {version!r} names {len(matches)} installed models; give one of {known}"
            )
        raise ModelPackageError(f"no installed model {version!r}; installed: {known}")

    def previous_active(self) -> str | None:
        """The version that was active before the current one (what `rollback` returns to)."""
        stack: list[str] = []  # the active versions, replayed: a rollback pops one
        for change in self.history:
            if change.action in ("activate", "promote"):
                stack.append(change.key)
            elif change.action == "rollback":
                if stack:
                    stack.pop()
                if not stack or stack[-1] != change.key:
                    stack.append(change.key)
        return stack[-2] if len(stack) >= 2 else None


def package_key(name: str, version: str) -> str:
    return f"{name}-{version}"


class ModelRegistry:
    """The registry under `<storage>/models/`: every change is one locked read-modify-write."""

    def __init__(self, storage: Path) -> None:
        self.root = Path(storage) / MODELS_DIR
        self.state_path = self.root / STATE_FILE

    # -- reading -----------------------------------------------------------------------

    def state(self) -> RegistryState:
        """The current state (an empty one before anything is installed)."""
        try:
            data = self.state_path.read_bytes()
        except FileNotFoundError:
            return RegistryState()
        try:
            return RegistryState.model_validate_json(data)
        except ValidationError as exc:
            raise ModelPackageError(f"{self.state_path}: not a model registry ({exc})") from None

    def mtime(self) -> float:
        """When the state last changed (0 before it exists): what the service polls."""
        try:
            return self.state_path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            return 0.0

    def path_of(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> ModelPackage:
        """The installed package, verified again (a changed file on disk is refused)."""
        return load_package(self.path_of(key))

    def shadow_results(self, key: str) -> Path:
        return self.root / SHADOW_DIR / key

    # -- changing ----------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[RegistryState]:
        """The state under an exclusive lock; callers replace it with `_save`."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self.state()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _save(self, state: RegistryState) -> RegistryState:
        write_file(self.state_path, state.model_dump_json(indent=2).encode())
        return state

    def install(self, source: str | Path, actor: str) -> tuple[Installed, bool]:
        """Copy and verify a package; returns its entry and whether it was new. Installing the
        same package again is a no-op; another package under an installed name and version is
        refused (packages are immutable)."""
        package = load_package(source)
        manifest = package.manifest
        key = package_key(manifest.name, manifest.version)
        with self._locked() as state:
            for item in state.installed:
                if item.key == key:
                    if item.sha256 != manifest.sha256:
                        raise ModelPackageError(
                            f"{key} is installed already with another model.onnx (sha256 "
                            f"{item.sha256[:12]}); give the new package a new version"
                        )
                    return item, False
            target = self.path_of(key)
            if target.exists():  # left by an install that crashed before the state was saved
                shutil.rmtree(target)
            with staging_folder(target) as staging:
                for name in (MODEL_FILE, MANIFEST_FILE, CARD_FILE):
                    if (package.path / name).is_file():
                        shutil.copyfile(package.path / name, staging / name)
                load_package(staging)  # the copy, not the source, is what will run
                publish_folder(staging, target)
            entry = Installed(
                key=key,
                name=manifest.name,
                version=manifest.version,
                sha256=manifest.sha256,
                installed_at=time.time(),
                site_calibrated=manifest.site_calibration is not None,
            )
            change = Change(at=time.time(), action="install", key=key, actor=actor)
            self._save(
                state.model_copy(
                    update={
                        "installed": [*state.installed, entry],
                        "history": [*state.history, change],
                    }
                )
            )
            return entry, True

    def adopt(self, source: Path, actor: str) -> RegistryState:
        """The service's `--model` at start: installed and made active when the registry does
        not hold it yet (so a first start, or a new `--model`, runs as it always did); an
        installed one leaves the registry's choice alone (a promotion survives a restart)."""
        entry, new = self.install(source, actor)
        with self._locked() as state:
            if state.active is not None and not new:
                return state
            return self._save(self._activate(state, entry.key, "activate", actor))

    def set_shadow(self, version: str, actor: str) -> Installed:
        with self._locked() as state:
            entry = state.find(version)
            if entry.key == state.active:
                raise ModelPackageError(f"{entry.key} is the active model; it cannot shadow itself")
            change = Change(at=time.time(), action="shadow", key=entry.key, actor=actor)
            self._save(
                state.model_copy(update={"shadow": entry.key, "history": [*state.history, change]})
            )
            return entry

    def unshadow(self, actor: str) -> str | None:
        with self._locked() as state:
            if state.shadow is None:
                return None
            change = Change(at=time.time(), action="unshadow", key=state.shadow, actor=actor)
            self._save(
                state.model_copy(update={"shadow": None, "history": [*state.history, change]})
            )
            return state.shadow

    def promote(
        self, version: str | None, actor: str, *, override_reason: str = ""
    ) -> tuple[Installed, str | None]:
        """Make `version` (default: the shadow) active; returns it and the version it replaced.

        Refused for a package without `site_calibration` unless `override_reason` says why."""
        with self._locked() as state:
            if version is None:
                if state.shadow is None:
                    raise ModelPackageError("no shadow model to promote; name a version")
                entry = state.entry(state.shadow)
            else:
                entry = state.find(version)
            if entry.key == state.active:
                raise ModelPackageError(f"{entry.key} is already the active model")
            if not entry.site_calibrated and not override_reason.strip():
                raise ModelPackageError(
                    f"{entry.key} has no site calibration: its operating points were not derived "
                    "on this site's studies. Run `diagnostics calibrate` on local labelled "
                    'studies and install that package, or give --override-calibration "reason"'
                )
            previous = state.active
            self._save(
                self._activate(state, entry.key, "promote", actor, reason=override_reason.strip())
            )
            return entry, previous

    def rollback(self, actor: str) -> tuple[Installed, str]:
        """Return to the previously active version; returns it and the one it replaced."""
        with self._locked() as state:
            back = state.previous_active()
            if back is None or state.active is None:
                raise ModelPackageError("nothing to roll back to: no earlier active model")
            entry = state.entry(back)
            self._save(self._activate(state, back, "rollback", actor))
            return entry, state.active

    @staticmethod
    def _activate(
        state: RegistryState, key: str, action: Action, actor: str, reason: str = ""
    ) -> RegistryState:
        change = Change(
            at=time.time(),
            action=action,
            key=key,
            actor=actor,
            previous=state.active,
            reason=reason,
        )
        shadow = None if state.shadow == key else state.shadow
        return state.model_copy(
            update={"active": key, "shadow": shadow, "history": [*state.history, change]}
        )
