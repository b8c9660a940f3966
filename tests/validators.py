"""The real validators every DICOM output is checked with: dicom3tools' dciodvfy and PixelMed's
DicomSRValidator (the validator IHE uses for AI Results at Connectathon)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")
BATCH_SOURCE = Path(__file__).parent / "validators_java" / "SrBatch.java"
# Current Java's XPath limits are too small for PixelMed's template stylesheets.
XPATH_LIMITS = [
    "-Djdk.xml.xpathExprGrpLimit=0",
    "-Djdk.xml.xpathExprOpLimit=0",
    "-Djdk.xml.xpathTotalOpLimit=0",
]


@dataclass(frozen=True)
class Verdict:
    errors: list[str]
    warnings: list[str]


def _verdict(lines: Sequence[str]) -> Verdict:
    return Verdict(
        errors=[line for line in lines if line.startswith("Error")],
        warnings=[line for line in lines if line.startswith("Warning")],
    )


def dciodvfy(path: Path) -> Verdict:
    """dicom3tools' IOD check of one file: its Error and Warning lines."""
    run = subprocess.run(
        ["dciodvfy", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    return _verdict((run.stderr + run.stdout).splitlines())


@cache
def _batch_classes() -> Path:
    """SrBatch compiled once per test process: one JVM validates many files."""
    folder = Path(tempfile.mkdtemp(prefix="srbatch-"))
    shutil.copy(BATCH_SOURCE, folder)
    subprocess.run(
        ["javac", "-cp", str(PIXELMED_JAR), "-d", str(folder), str(folder / BATCH_SOURCE.name)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return folder


def pixelmed_sr(paths: Sequence[Path]) -> dict[Path, Verdict]:
    """PixelMed's DicomSRValidator with template-ID and ambiguity checks, one verdict per SR."""
    classes = _batch_classes()
    run = subprocess.run(
        ["java", *XPATH_LIMITS, "-cp", f"{PIXELMED_JAR}:{classes}", "SrBatch", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60 + 30 * len(paths),
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"DicomSRValidator failed: {run.stderr[-2000:]}")
    verdicts: dict[Path, Verdict] = {}
    for chunk in run.stdout.split("@@@ ")[1:]:
        name, _, report = chunk.partition("\n")
        verdicts[Path(name)] = _verdict(report.splitlines())
    return verdicts
