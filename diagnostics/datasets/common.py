"""What every research layout needs: checked tables, options, image lookup, boxes and splits.

Errors name the file, the line and the column, because a label file with 100 000 rows is fixed
by opening it at the right line, not by reading a stack trace. Data problems are
`DatasetError`s; a wrong option (an unknown policy, a fraction of 2) is a `ConfigurationError`.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from diagnostics.datasets.records import Box
from diagnostics.errors import ConfigurationError, DatasetError

log = logging.getLogger(__name__)

Split = Literal["all", "train", "test"]
SPLITS: tuple[Split, ...] = ("all", "train", "test")
Missing = Literal["error", "skip"]

BOX_TOLERANCE_PX = 1.0
"""Boxes may overshoot the image by this much (rounding in the annotation tools)."""


# --- options ---------------------------------------------------------------------------------


def choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """`value` when it is one of `allowed`; otherwise a ConfigurationError naming the option."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigurationError(
            f"option {name} must be one of {', '.join(map(repr, allowed))}, not {value!r}"
        )
    return value


def fraction(name: str, value: object) -> float:
    """A number strictly between 0 and 1 (e.g. the share of patients held out for testing)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ConfigurationError(f"option {name} must be a number in (0, 1), not {value!r}")
    return float(value)


def missing_policy(value: object) -> Missing:
    """The `missing` option: "error" (default) stops on absent images, "skip" leaves them out."""
    return "skip" if choice("missing", value, ("error", "skip")) == "skip" else "error"


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"option {name} must be true or false, not {value!r}")
    return value


# --- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One data row of a CSV file, with its line number for messages (the header is line 1)."""

    line: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        return (self.values.get(column) or "").strip()


@dataclass(frozen=True)
class Table:
    path: Path
    columns: tuple[str, ...]
    rows: list[Row] = field(repr=False)

    def error(self, row: Row | int, column: str, problem: str) -> DatasetError:
        """A DatasetError that says where: file, line and column."""
        line = row.line if isinstance(row, Row) else row
        return DatasetError(f"{self.path}, line {line}, column {column!r}: {problem}")


def require_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; the {layout} layout needs it")
    return path


def _check_width(path: Path, line: int, header: list[str], record: list[str]) -> None:
    """A short row would read its missing labels as blank (negative in most layouts)."""
    if len(record) < len(header):
        raise DatasetError(
            f"{path}, line {line}: {len(record)} cells where the header has {len(header)}; "
            f"column {header[len(record)]!r} onwards is missing"
        )
    if any(cell.strip() for cell in record[len(header) :]):
        raise DatasetError(
            f"{path}, line {line}: {len(record)} cells where the header has {len(header)}"
        )


def read_csv(path: Path, required: Iterable[str], layout: str) -> Table:
    """Read a CSV file whole, checking that the `required` columns are there.

    A byte-order mark is tolerated (spreadsheets write one); header names are stripped.
    """
    require_file(path, layout)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            rows = []
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue  # blank lines, e.g. at the end of the file
                _check_width(path, reader.line_num, header, record)
                values = {name: value for name, value in zip(header, record, strict=False) if name}
                rows.append(Row(reader.line_num, values))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from None
    missing = [name for name in required if name not in header]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))} (found "
            f"{', '.join(repr(h) for h in header if h) or 'no header'}); is this the "
            f"{layout} layout?"
        )
    return Table(path, tuple(header), rows)


def read_lines(path: Path, layout: str) -> list[str]:
    """Every line of a text file, so that messages can give line numbers."""
    require_file(path, layout)
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read as text ({exc})") from None


def read_list(path: Path, layout: str) -> list[str]:
    """The non-blank lines of a text list (official splits), stripped."""
    return [line.strip() for line in read_lines(path, layout) if line.strip()]


def number(table: Table, row: Row, column: str) -> float:
    text = row.get(column)
    try:
        value = float(text)
    except ValueError:
        raise table.error(row, column, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise table.error(row, column, f"{text!r} is not a finite number")
    return value


# --- images ----------------------------------------------------------------------------------


@dataclass
class ImageCheck:
    """Collects listed images that do not exist, then fails or skips them all at once.

    All at once, so that a partly downloaded dataset is reported with a count rather than one
    file per run; `missing="skip"` trains on what is there, saying how much was left out.
    """

    layout: str
    missing: Missing
    absent: list[tuple[str, Path]] = field(default_factory=list)

    def exists(self, where: str, path: Path) -> bool:
        if path.is_file():
            return True
        self.absent.append((where, path))
        return False

    def finish(self) -> None:
        if not self.absent:
            return
        where, path = self.absent[0]
        if self.missing == "skip":
            log.warning(
                "%s layout: %d listed image(s) do not exist and were skipped, e.g. %s (%s)",
                self.layout,
                len(self.absent),
                path,
                where,
            )
            return
        raise DatasetError(
            f"{where}: image {path} does not exist ({len(self.absent)} listed image(s) are "
            "missing); restore them, or pass the option missing='skip' to use the rest"
        )


# --- boxes -----------------------------------------------------------------------------------


def pixel_box(
    table: Table,
    row: Row,
    columns: tuple[str, str, str, str],
    values: tuple[float, float, float, float],
    size: tuple[int, int],
) -> Box:
    """(x, y, width, height) in pixels to fractions, refusing boxes that cannot be right.

    `size` is the image's (rows, columns). `columns` name the four values for messages.
    """
    x, y, w, h = values
    rows, cols = size
    if w <= 0:
        raise table.error(row, columns[2], f"box width {w:g} must be positive")
    if h <= 0:
        raise table.error(row, columns[3], f"box height {h:g} must be positive")
    if x < -BOX_TOLERANCE_PX or x + w > cols + BOX_TOLERANCE_PX:
        raise table.error(
            row, columns[0], f"box x {x:g} .. {x + w:g} lies outside the image's {cols} columns"
        )
    if y < -BOX_TOLERANCE_PX or y + h > rows + BOX_TOLERANCE_PX:
        raise table.error(
            row, columns[1], f"box y {y:g} .. {y + h:g} lies outside the image's {rows} rows"
        )
    x0, y0 = max(x, 0.0) / cols, max(y, 0.0) / rows
    x1, y1 = min(x + w, cols) / cols, min(y + h, rows) / rows
    return (x0, y0, x1, y1)


def enclosing(first: Box | None, second: Box) -> Box:
    """The smallest box holding both: `Example` keeps one box per finding, so several boxes of
    one finding (two consolidations, say) become the region that contains all of them."""
    if first is None:
        return second
    return (
        min(first[0], second[0]),
        min(first[1], second[1]),
        max(first[2], second[2]),
        max(first[3], second[3]),
    )


# --- splits ----------------------------------------------------------------------------------


def in_split(patient: str, split: Split, test_fraction: float, salt: str) -> bool:
    """Whether a patient belongs to `split` for layouts without an official test list.

    A hash of the patient decides, so the split is the same on every machine and every run,
    and no patient has images on both sides.
    """
    if split == "all":
        return True
    digest = hashlib.sha256(f"{salt}:{patient}".encode()).digest()
    is_test = int.from_bytes(digest[:8], "big") / 2**64 < test_fraction
    return is_test if split == "test" else not is_test


def details(row: Row, **extra: str) -> dict[str, str]:
    """A row's values (and a few derived ones) for `Example.details`."""
    out = {name: value.strip() for name, value in row.values.items()}
    out.update(extra)
    return out
