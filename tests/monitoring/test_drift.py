"""Monitoring without a service: the PSI against hand-computed values, the reference block's
validation, the store's window query, daily statistics, drift judgements, `diagnostics monitor`."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from diagnostics.errors import ModelPackageError
from diagnostics.package import ModelPackage
from diagnostics.package.manifest import Manifest
from diagnostics.package.reference import PROBABILITY_EDGES, histogram, psi
from diagnostics.service.monitoring import MonitorConfig, Report, build_report, reason_category
from diagnostics.store.sqlite import SqliteStore
from diagnostics.store.sqlite.monitoring import FEEDBACK_SQL, RESULTS_SQL
from tests.helpers.cli import run_cli
from tests.monitoring.history import DAY_S, add_feedback, record, reference_like

CONFIG = MonitorConfig(days=10, drift_days=7, threshold=0.2, min_studies=100)


def test_psi_matches_hand_computed_values() -> None:
    assert psi([50, 50], [50, 50]) == 0.0
    # shares (0.6, 0.4) -> (0.4, 0.6): 2 x 0.2 x ln(1.5)
    assert psi([60, 40], [40, 60]) == pytest.approx(0.4 * math.log(1.5), abs=1e-12)
    assert psi([60, 40], [40, 60]) == pytest.approx(0.162186043, abs=1e-9)
    # an empty reference bin counts as 1e-4: (0.5 - 1)ln(0.5/1) + (0.5 - 1e-4)ln(0.5/1e-4)
    expected = -0.5 * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi([100, 0], [50, 50]) == pytest.approx(expected, abs=1e-12)
    assert psi([10, 20, 30, 40], [20, 40, 60, 80]) == pytest.approx(0.0, abs=1e-15)  # same shares
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])


def test_histogram_uses_fixed_edges_and_keeps_outliers() -> None:
    counts = histogram([0.0, 0.05, 0.1, 0.95, 1.0, 1.5, -1.0], PROBABILITY_EDGES)
    assert counts == [3, 1, 0, 0, 0, 0, 0, 0, 0, 3] and sum(counts) == 7


def test_a_bad_reference_block_is_refused_naming_the_field(referenced: ModelPackage) -> None:
    data = json.loads(referenced.manifest.to_json())
    data["reference_distributions"]["findings"]["nodule"] = [1, 2, 3]
    with pytest.raises(ModelPackageError, match=r"reference_distributions.*10 bins"):
        Manifest.from_json(json.dumps(data))
    data = json.loads(referenced.manifest.to_json())
    del data["reference_distributions"]["findings"]["nodule"]
    with pytest.raises(ModelPackageError, match="no reference distribution for finding 'nodule'"):
        Manifest.from_json(json.dumps(data))
    data = json.loads(referenced.manifest.to_json())
    data["reference_distributions"]["probability_edges"][3] = 0.1
    with pytest.raises(ModelPackageError, match="increasing"):
        Manifest.from_json(json.dumps(data))
    assert "## Reference distributions" in referenced.card_path.read_text()


def _draws(package: ModelPackage, n: int, seed: int, shift: bool = False) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    out = {}
    for code in package.finding_codes:
        values = reference_like(package, code, n, rng)
        out[code] = [v**0.25 for v in values] if shift else values  # shifted: pushed high
    return out


def _report(store: SqliteStore, package: ModelPackage, config: MonitorConfig = CONFIG) -> Report:
    return build_report(store, package, config, UTC)


def test_unshifted_studies_raise_no_alarm(tmp_path: Path, referenced: ModelPackage) -> None:
    store = SqliteStore(tmp_path)
    rng = np.random.default_rng(11)
    appearance = [float(v) for v in rng.choice([0.25, 0.35, 0.45], size=400, p=[0.3, 0.5, 0.2])]
    record(store, referenced, _draws(referenced, 400, seed=1), appearance=appearance)
    report = _report(store, referenced)
    assert {d.name: d.state for d in report.drift} == dict.fromkeys(
        ("nodule", "consolidation", "cardiomegaly", "appearance"), "ok"
    )
    assert all(d.psi is not None and d.psi < 0.1 for d in report.drift)
    assert report.window.studies == 400 and not report.alarm

    # every study at 0.3, one bin of the reference's three: the appearance drifts alone
    other = SqliteStore(tmp_path / "other")
    record(other, referenced, _draws(referenced, 400, seed=1), appearance=0.3)
    states = {d.name: d.state for d in _report(other, referenced).drift}
    assert states["appearance"] == "alarm" and states["nodule"] == "ok"


def test_shifted_scores_raise_the_alarm(tmp_path: Path, referenced: ModelPackage) -> None:
    store = SqliteStore(tmp_path)
    record(store, referenced, _draws(referenced, 400, seed=2, shift=True))
    report = _report(store, referenced)
    findings = [d for d in report.drift if d.name != "appearance"]
    assert all(d.state == "alarm" and d.psi is not None and d.psi > 0.2 for d in findings)
    assert report.alarm


def test_too_few_studies_are_not_judged(tmp_path: Path, referenced: ModelPackage) -> None:
    store = SqliteStore(tmp_path)
    record(store, referenced, _draws(referenced, 30, seed=3, shift=True))
    report = _report(store, referenced)
    assert {d.state for d in report.drift} == {"too_few"}
    assert not report.alarm and all(d.psi is None for d in report.drift)


def test_studies_older_than_the_window_or_of_another_version_are_not_judged(
    tmp_path: Path, referenced: ModelPackage, unreferenced: ModelPackage
) -> None:
    store = SqliteStore(tmp_path)
    old = time.time() - 8 * DAY_S
    record(
        store, referenced, _draws(referenced, 300, seed=4, shift=True), start=old, spread_s=DAY_S
    )
    record(store, unreferenced, _draws(referenced, 300, seed=5, shift=True), prefix="1.2.3.9")
    report = _report(store, referenced)
    assert {d.state for d in report.drift} == {"too_few"}
    assert report.window.studies == 0
    assert sum(day.studies for day in report.days) == 600  # the daily table counts them all


def test_an_old_package_without_reference_says_no_reference(
    tmp_path: Path, unreferenced: ModelPackage
) -> None:
    assert unreferenced.manifest.reference_distributions is None
    store = SqliteStore(tmp_path)
    record(store, unreferenced, _draws_from_uniform(unreferenced, 200))
    report = _report(store, unreferenced)
    assert {d.state for d in report.drift} == {"no_reference"}
    assert report.reference is None and not report.alarm
    assert report.window.studies == 200


def _draws_from_uniform(package: ModelPackage, n: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(9)
    return {code: [float(v) for v in rng.uniform(0, 1, n)] for code in package.finding_codes}


def test_daily_statistics_count_flags_reasons_and_verdicts(
    tmp_path: Path, referenced: ModelPackage
) -> None:
    store = SqliteStore(tmp_path)
    probabilities = {code: [1.0, 1.0, 0.0, 0.0] for code in referenced.finding_codes}
    now = time.time()
    uids = record(store, referenced, probabilities, start=now, spread_s=60, not_analysed=2)
    add_feedback(store, uids[0], "nodule", "disagree")
    add_feedback(store, uids[0], "nodule", "agree")  # the latest verdict counts
    add_feedback(store, uids[1], "nodule", "disagree")
    add_feedback(store, uids[2], "cardiomegaly", "missed")
    add_feedback(store, uids[2], "cardiomegaly", "comment")  # not a verdict
    report = build_report(store, referenced, CONFIG, UTC, now=now + 1)
    today = report.days[0]
    assert (today.studies, today.analysed, today.not_analysed) == (6, 4, 2)
    assert today.not_analysed_rate == pytest.approx(2 / 6)
    assert today.top_reasons() == [("body part outside the scope", 2)]
    assert all(today.findings[c].flag_rate == 0.5 for c in referenced.finding_codes)
    assert today.verdicts["nodule"] == {"agree": 1, "disagree": 1}
    assert today.verdicts["cardiomegaly"] == {"missed": 1}
    assert all(day.studies == 0 for day in report.days[1:]) and len(report.days) == 10
    text = json.dumps(report.to_dict())
    assert "KNEE" not in text and "1.2.826" not in text  # no header values, no UIDs


def test_reasons_become_categories() -> None:
    assert reason_category("CT is outside this model's scope: it reads DX") == (
        "modality outside the scope"
    )
    assert reason_category("the image does not look like the chest radiographs") == (
        "appearance unlike the training images"
    )
    assert reason_category("something new with PATIENT NAME") == "other reason"


def test_monitor_command_prints_the_same_and_exits_1_on_alarm(
    tmp_path: Path, referenced: ModelPackage, unreferenced: ModelPackage
) -> None:
    store = SqliteStore(tmp_path / "storage")
    record(store, referenced, _draws(referenced, 150, seed=6, shift=True))
    store.close()
    shown = run_cli(
        "monitor",
        "--storage",
        tmp_path / "storage",
        "--model",
        referenced.path,
        "--json",
        "--days",
        "5",
        "--timezone",
        "Asia/Tashkent",
    )
    assert shown.returncode == 1, shown.stderr
    data = json.loads(shown.stdout)
    assert data["alarm"] is True and data["time_zone"] == "Asia/Tashkent"
    assert {d["name"]: d["state"] for d in data["drift"]}["nodule"] == "alarm"
    assert len(data["days"]) == 5 and sum(d["studies"] for d in data["days"]) == 150
    text = run_cli("monitor", "--storage", tmp_path / "storage", "--model", unreferenced.path)
    assert text.returncode == 0, text.stderr
    assert "no reference" in text.stdout and "Traceback" not in text.stderr
    few = run_cli(
        "monitor",
        "--storage",
        tmp_path / "storage",
        "--model",
        referenced.path,
        "--min-studies",
        "1000",
    )
    assert few.returncode == 0 and "too few studies" in few.stdout


def test_the_window_query_reads_recent_results_through_the_index(tmp_path: Path) -> None:
    """Bounded cost: both statements search `results_by_created`, never scan every result."""
    store = SqliteStore(tmp_path)
    with store.sql_transaction() as db:
        for sql in (RESULTS_SQL, FEEDBACK_SQL):
            plan = " ".join(str(row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + sql, (0,)))
            assert "USING INDEX results_by_created" in plan, plan
            assert "SCAN r" not in plan, plan
