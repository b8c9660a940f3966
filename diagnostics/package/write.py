"""Writing a model package: staged, verified by loading, then published in one rename.

`write_package` is how training and `diagnostics export` make a package; it writes the manifest
and generates the card from it, then loads the staged folder, so nothing is published that
`load_package` would refuse.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from diagnostics.durable import publish_folder, staging_folder
from diagnostics.errors import ModelPackageError
from diagnostics.package import card
from diagnostics.package.load import ModelPackage, load_package, sha256_file
from diagnostics.package.manifest import (
    CARD_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_VERSION,
    Manifest,
    describe_errors,
)

_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "monai": ("monai",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "numpy": ("numpy",),
    "pydicom": ("pydicom",),
    "diagnostics": ("radiology-diagnostics",),
}


ManifestFields = Mapping[str, Any] | Manifest


def write_package(
    out_dir: Path,
    onnx_model_path: Path,
    manifest_fields: ManifestFields,
    *,
    overwrite: bool = False,
) -> ModelPackage:
    """Build a package atomically: staged in a sibling folder, verified, then renamed into place.

    `sha256` is always computed here (any given value is replaced). From a mapping,
    `schema_version`, `created` (now, UTC) and `library_versions` (this environment) are filled
    in when absent. A crash or a refused package leaves no folder at `out_dir`.
    """
    out_dir, source = Path(out_dir), Path(onnx_model_path)
    if not source.is_file():
        raise ModelPackageError(f"{source}: no ONNX model file here to package")
    _check_destination(out_dir, overwrite=overwrite)
    with staging_folder(out_dir) as staging:
        staging.chmod(0o755)  # mkdtemp makes it private; a package is meant to be read by services
        shutil.copyfile(source, staging / MODEL_FILE)
        text = _complete_manifest(manifest_fields, sha256_file(staging / MODEL_FILE)).to_json()
        (staging / MANIFEST_FILE).write_text(text, encoding="utf-8")
        written = Manifest.from_json(text)  # the card shows the file, key order included
        (staging / CARD_FILE).write_text(card.render(written), encoding="utf-8")
        verified = load_package(staging)
        try:
            publish_folder(staging, out_dir, replace=overwrite)
        except OSError as exc:
            raise ModelPackageError(f"{out_dir}: could not publish the package ({exc})") from exc
    return dataclasses.replace(verified, path=out_dir)  # the same verified files, renamed


def _check_destination(out_dir: Path, *, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelPackageError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ModelPackageError(
            f"{out_dir}: already exists and is not empty; choose a new folder (packages are "
            "immutable once published) or pass overwrite=True"
        )


def _complete_manifest(fields: ManifestFields, digest: str) -> Manifest:
    data: dict[str, Any] = fields.model_dump() if isinstance(fields, Manifest) else dict(fields)
    data["sha256"] = digest
    data.setdefault("schema_version", SCHEMA_VERSION)
    data.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    data.setdefault("library_versions", library_versions())
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ModelPackageError(f"manifest: {describe_errors(exc)}") from exc


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers; those not installed are omitted."""
    versions = {}
    for name, distributions in _DISTRIBUTIONS.items():
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions
