"""`diagnostics bench`: the report's shape and internal consistency, never its speed.

The quick run goes through the real CLI in a subprocess, as `tests/test_cli.py` does. Timings
depend on the machine and its load, so nothing here compares a number with a threshold; what is
checked is that every number is there, positive, and agrees with the numbers it is derived from
(a ratio is the quotient of the throughputs it names, GFLOP/s is FLOPs times images/s).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from diagnostics.bench import GOALS, BenchConfig, time_interleaved
from diagnostics.bench.config import GOALS_AT_MOST
from diagnostics.bench.server import process_memory, role, serve_command
from diagnostics.bench.service import ServiceBenchConfig
from diagnostics.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_RATIOS = (
    "ort_vs_eager_batch1",
    "ort_vs_eager_batch8",
    "densenet121_ort_vs_eager_batch8",
    "densenet121_share_of_matmul_peak",
    "pipeline_vs_model_uncompressed",
    "pipeline_vs_model_jpeg2000",
    "engine_vs_openvino_fp32",
    "reduced_precision_vs_fp32",
    "reduced_precision_auroc_drop",
)


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "diagnostics.cli", *map(str, args)]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=1e-9)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "out.json"
    result = _run("bench", "--quick", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_report_has_every_section(quick: tuple[dict[str, Any], str]) -> None:
    report, _ = quick
    assert report["quick"] is True
    for key in (
        "method",
        "environment",
        "matmul_peak",
        "models",
        "pipeline",
        "runtimes",
        "int8",
        "memory",
    ):
        assert report[key], key
    assert set(report["models"]) == {"bundled", "densenet121"}
    assert report["models"]["bundled"]["architecture"] == "compact"
    assert set(report["ratios"]) >= set(REQUIRED_RATIOS)
    env = report["environment"]
    assert env["cpu"] and env["torch"] and env["onnxruntime"]
    assert env["torch_threads"] >= 1 and env["ort_intra_op_threads"] >= 1
    assert report["memory"]["peak_rss_mib"] > 0
    assert all(s["seconds"] > 0 for s in report["sections"].values())


@pytest.mark.slow
def test_model_numbers_are_positive_and_consistent(quick: tuple[dict[str, Any], str]) -> None:
    report, _ = quick
    for name, model in report["models"].items():
        flops = model["flops_per_image"]
        assert flops > 0, name
        for batch in (1, 8):
            row = model[f"batch_{batch}"]
            assert row["batch"] == batch and row["rounds"] >= 1
            ort, eager = row["ort_images_per_s"], row["eager_images_per_s"]
            layouts = {
                layout: row[f"eager_{layout}_images_per_s"]
                for layout in ("contiguous", "channels_last")
            }
            assert ort > 0 and all(value > 0 for value in layouts.values())
            assert eager == max(layouts.values())
            assert eager == layouts[row["eager_memory_format"]]
            assert _close(row["ort_vs_eager"], ort / eager)
            assert _close(row["ort_gflops"], flops * ort / 1e9)
            assert _close(row["eager_gflops"], flops * eager / 1e9)


@pytest.mark.slow
def test_ratios_are_the_quotients_of_reported_numbers(quick: tuple[dict[str, Any], str]) -> None:
    report, _ = quick
    ratios, models, peak = report["ratios"], report["models"], report["matmul_peak"]
    bundled, densenet = models["bundled"], models["densenet121"]
    assert peak["peak_gflops"] == max(peak["torch_gflops"], peak["numpy_gflops"]) > 0
    assert _close(peak["flops"], 2 * peak["size"] ** 3)
    for batch in (1, 8):
        row = bundled[f"batch_{batch}"]
        expected = row["ort_images_per_s"] / row["eager_images_per_s"]
        assert _close(ratios[f"ort_vs_eager_batch{batch}"], expected)
    row = densenet["batch_8"]
    assert _close(
        ratios["densenet121_ort_vs_eager_batch8"],
        row["ort_images_per_s"] / row["eager_images_per_s"],
    )
    assert _close(
        ratios["densenet121_share_of_matmul_peak"],
        densenet["flops_per_image"] * row["ort_images_per_s"] / 1e9 / peak["peak_gflops"],
    )
    pipeline = report["pipeline"]
    model_only = pipeline["model_only_images_per_s"]
    assert model_only > 0
    for label in ("uncompressed", "jpeg2000"):
        assert pipeline[label]["images_per_s"] > 0
        assert _close(
            ratios[f"pipeline_vs_model_{label}"], pipeline[label]["images_per_s"] / model_only
        )
    runtimes, int8 = report["runtimes"], report["int8"]
    assert _close(
        ratios["engine_vs_openvino_fp32"],
        runtimes["ours_images_per_s"] / runtimes["openvino_fp32_images_per_s"],
    )
    assert runtimes["chosen"] in ("OnnxEngine", "OpenVinoEngine")
    assert _close(
        ratios["reduced_precision_vs_fp32"],
        int8["int8_images_per_s"] / int8["fp32_images_per_s"],
    )
    assert ratios["reduced_precision_auroc_drop"] == max(int8["auroc_drop"].values())
    kept = all(drop <= int8["auroc_drop_limit"] for drop in int8["auroc_drop"].values())
    kept = kept and all(rise <= 0.01 for rise in int8["ece_rise"].values())
    assert int8["accepted"] is kept
    speeds = {k: v for k, v in ratios.items() if k != "reduced_precision_auroc_drop"}
    assert all(value > 0 for value in speeds.values())


@pytest.mark.slow
def test_pipeline_analysed_every_synthetic_study(quick: tuple[dict[str, Any], str]) -> None:
    """A throughput over refused studies would measure the gate, not the pipeline."""
    pipeline = quick[0]["pipeline"]
    for label in ("uncompressed", "jpeg2000"):
        assert pipeline[label]["analyzed"] == pipeline["studies"], pipeline[label]
        assert pipeline[label]["rejected"] == 0
        assert pipeline[label]["stage_ms_per_image"]
    assert pipeline["jpeg2000"]["mean_bytes"] < pipeline["uncompressed"]["mean_bytes"]


@pytest.mark.slow
def test_goals_follow_from_the_ratios(quick: tuple[dict[str, Any], str]) -> None:
    report, stdout = quick
    goals = report["goals"]
    assert {name: goal.get("goal", goal.get("goal_at_most")) for name, goal in goals.items()} == {
        "pipeline_vs_model_uncompressed": 0.8,
        "pipeline_vs_model_jpeg2000": 0.5,
        "engine_vs_openvino_fp32": 1.0,
        "reduced_precision_vs_fp32": 1.5,
        "reduced_precision_auroc_drop": 0.005,
    }
    for name, goal in goals.items():
        assert goal["value"] == report["ratios"][name]
        if "goal" in goal:
            assert goal["met"] is (goal["value"] >= goal["goal"])
        else:
            assert goal["met"] is (goal["value"] <= goal["goal_at_most"])
        assert f"goal {name}" in stdout
    assert any("quick" in warning for warning in report["warnings"])


@pytest.mark.slow
def test_a_missing_package_is_refused_in_one_line(tmp_path: Path) -> None:
    result = _run("bench", "--quick", "--model", tmp_path / "nowhere")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ModelPackageError: "), result.stderr


def test_interleaved_timing_rotates_and_stops() -> None:
    calls: list[str] = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = time_interleaved(runners, warmup=1, rounds=3, min_rounds=1, max_seconds=60.0)
    assert calls[:3] == ["a", "b", "c"]  # warm-up, in order
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {name: len(values) for name, values in times.items()} == {"a": 3, "b": 3, "c": 3}
    times = time_interleaved(runners, warmup=0, rounds=50, min_rounds=2, max_seconds=1e-9)
    assert all(len(values) == 2 for values in times.values())


def test_config_names_the_bad_setting() -> None:
    with pytest.raises(ConfigurationError, match="iterations"):
        BenchConfig(iterations=0)
    with pytest.raises(ConfigurationError, match="densenet_size"):
        BenchConfig(densenet_size=16)
    assert set(GOALS) | set(GOALS_AT_MOST) <= set(REQUIRED_RATIOS)


# -- diagnostics bench --service --------------------------------------------------------------


@pytest.fixture(scope="module")
def service_quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench-service") / "out.json"
    result = _run("bench", "--service", "--quick", "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_service_bench_reports_every_number(service_quick: tuple[dict[str, Any], str]) -> None:
    """The real service was started, screened every study sent, and was measured."""
    report, stdout = service_quick
    assert report["benchmark"] == "diagnostics bench --service" and report["quick"] is True
    service = report["service"]
    assert service["cold_start_s"] > 0 and service["exit_code"] == 0
    for memory in (service["memory_at_ready"], service["memory_after"]):
        roles = [p["role"] for p in memory["processes"]]
        assert roles.count("worker") == 1 and "cli" in roles, roles
        assert all(p["rss_mib"] > 0 for p in memory["processes"])
        assert memory["rss_mib_per_worker"] == max(memory["worker_rss_mib"]) > 0
    assert service["rss_mib_per_worker"] == service["memory_after"]["rss_mib_per_worker"]
    latency, throughput = report["latency"], report["throughput"]
    rounds = report["config"]["rounds"]
    for side in ("http_ms", "inprocess_ms"):
        stats = latency[side]
        assert stats["count"] == rounds * latency["studies_per_round"]
        assert 0 < stats["p50"] <= stats["p95"]
    assert latency["http_round_trip_floor_ms"]["p50"] > 0
    assert throughput["clients"] == throughput["inprocess_threads"] == 8
    for side in ("http", "inprocess"):
        assert len(throughput[f"{side}_rounds"]) == rounds
        assert throughput[f"{side}_studies_per_s"] > 0
    # Every study went through the model on both sides: nothing refused, nothing left pending.
    sent = rounds * (latency["studies_per_round"] + throughput["studies_per_round"])
    assert report["outcomes"] == {"http_analyzed": sent, "inprocess_analyzed": sent}
    assert "cold start to ready" in stdout


@pytest.mark.slow
def test_service_ratios_and_goals(service_quick: tuple[dict[str, Any], str]) -> None:
    report, stdout = service_quick
    ratios, latency, throughput = report["ratios"], report["latency"], report["throughput"]
    assert _close(
        ratios["http_p50_vs_inprocess"], latency["http_ms"]["p50"] / latency["inprocess_ms"]["p50"]
    )
    assert _close(
        ratios["http_8clients_vs_inprocess"],
        throughput["http_studies_per_s"] / throughput["inprocess_studies_per_s"],
    )
    goals = report["goals"]
    assert goals["http_p50_vs_inprocess"]["goal_at_most"] == 1.2
    assert goals["http_8clients_vs_inprocess"]["goal"] == 0.9
    for name, goal in goals.items():
        assert goal["value"] == ratios[name] > 0
        bound = goal.get("goal", goal.get("goal_at_most"))
        assert goal["met"] is (goal["value"] >= bound if "goal" in goal else goal["value"] <= bound)
        assert f"goal {name}" in stdout
    assert any("quick" in warning for warning in report["warnings"])


@pytest.mark.slow
def test_service_bench_times_cstore_to_result(service_quick: tuple[dict[str, Any], str]) -> None:
    """storescu -> result recorded, when DCMTK is here (a number without a goal)."""
    cstore = service_quick[0]["cstore"]
    if shutil.which("storescu") is None:
        assert "storescu" in cstore["skipped"]
        return
    assert cstore["studies"] == service_quick[0]["config"]["cstore_studies"]
    assert cstore["statuses"] == {"analyzed": cstore["studies"]}
    assert 0 < cstore["p50_ms"] <= cstore["p95_ms"]


def test_service_memory_is_read_from_proc() -> None:
    """This process and a child of it, found under it in /proc with their resident memory."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        rows = process_memory(os.getpid())
        pids = {row["pid"] for row in rows}
        assert {os.getpid(), child.pid} <= pids
        assert all(float(row["rss_mib"]) > 0 for row in rows)
    finally:
        child.kill()
        child.wait()
    assert role(["python", "-m", "diagnostics.cli", "serve", "--port", "1"]) == "cli"
    assert role(["python", "-m", "bentoml", "serve", "diagnostics.serving.service:X"]) == (
        "supervisor"
    )


def test_service_config_names_the_bad_setting() -> None:
    with pytest.raises(ConfigurationError, match="rounds"):
        ServiceBenchConfig(rounds=0)
    with pytest.raises(ConfigurationError, match="cstore_studies"):
        ServiceBenchConfig(cstore_studies=-1)
    with pytest.raises(ConfigurationError, match="engine"):
        ServiceBenchConfig(engine="tensorrt")  # type: ignore[arg-type]


def test_service_config_turns_the_disk_floor_off(tmp_path: Path) -> None:
    """The benchmark's service runs on a temporary folder (often a small /tmp): the 1 GiB
    default floor would make it measure 507s, not screening."""
    from diagnostics.cli.main import build_parser
    from diagnostics.serve import config_from_args
    from diagnostics.service.retention import DiskWatermark

    command = serve_command(1, 2, tmp_path / "storage", tmp_path, "onnxruntime", 5.0)
    args = build_parser().parse_args(command[command.index("serve") :])
    config = config_from_args(args, environ={})
    assert config.min_free_disk == "0"
    assert DiskWatermark(tmp_path, config.min_free_disk).refusal(1 << 60) is None
