"""Changing the model registry on a person's behalf, audited: the CLI and the admin page share it.

Every change is an audit row with who did it (ATNA) and an RFC 3881 outcome: a refused promotion
(no site calibration, no override) is recorded as a minor failure with the reason it was refused,
an override with the reason given. The running service follows the registry by itself
(`service/models.py`), so nothing here talks to it.
"""

from __future__ import annotations

from pathlib import Path

from diagnostics.errors import ModelPackageError
from diagnostics.package.registry import Installed, ModelRegistry
from diagnostics.store import Store
from diagnostics.store.audit import MINOR_FAILURE, SUCCESS


def install(store: Store, registry: ModelRegistry, source: Path, actor: str) -> Installed:
    entry, new = registry.install(source, actor)
    if new:
        store.audit(actor, "model_installed", outcome=SUCCESS, model=entry.key)
    return entry


def shadow(store: Store, registry: ModelRegistry, version: str, actor: str) -> Installed:
    entry = registry.set_shadow(version, actor)
    store.audit(actor, "model_shadowed", outcome=SUCCESS, model=entry.key)
    return entry


def unshadow(store: Store, registry: ModelRegistry, actor: str) -> str | None:
    key = registry.unshadow(actor)
    if key is not None:
        store.audit(actor, "model_unshadowed", outcome=SUCCESS, model=key)
    return key


def promote(
    store: Store,
    registry: ModelRegistry,
    version: str | None,
    actor: str,
    override_reason: str = "",
) -> tuple[Installed, str | None]:
    """Make `version` (default: the shadow) active; a refusal is audited, then raised."""
    try:
        entry, previous = registry.promote(version, actor, override_reason=override_reason)
    except ModelPackageError as exc:
        store.audit(
            actor,
            "model_promote_refused",
            outcome=MINOR_FAILURE,
            model=version or "(shadow)",
            reason=str(exc)[:300],
        )
        raise
    detail: dict[str, object] = {"model": entry.key, "previous": previous}
    if override_reason.strip():
        detail["override_calibration"] = override_reason.strip()
    store.audit(actor, "model_promoted", outcome=SUCCESS, **detail)
    return entry, previous


def rollback(store: Store, registry: ModelRegistry, actor: str) -> tuple[Installed, str]:
    try:
        entry, replaced = registry.rollback(actor)
    except ModelPackageError as exc:
        store.audit(actor, "model_rollback_refused", outcome=MINOR_FAILURE, reason=str(exc))
        raise
    store.audit(actor, "model_rolled_back", outcome=SUCCESS, model=entry.key, previous=replaced)
    return entry, replaced
