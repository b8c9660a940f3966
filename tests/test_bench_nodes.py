"""`diagnostics bench --nodes`: the report's shape and consistency, never its speed. The quick
run starts real nodes (`diagnostics serve`) on a real throwaway PostgreSQL."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from diagnostics.bench.nodes import NodesBenchConfig, node_cpus
from diagnostics.cli.bench import node_counts
from diagnostics.errors import ConfigurationError
from tests.helpers.postgres import require_binaries

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def nodes_quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    require_binaries()
    out = tmp_path_factory.mktemp("bench-nodes") / "out.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "diagnostics.cli", "bench", "--nodes", "1,2", "--quick"]
    result = subprocess.run(
        [*command, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_every_study_sent_to_either_deployment_is_screened_once(
    nodes_quick: tuple[dict[str, Any], str],
) -> None:
    report, stdout = nodes_quick
    assert report["benchmark"] == "diagnostics bench --nodes" and report["quick"] is True
    rounds, studies = report["config"]["rounds"], report["config"]["studies"]
    assert [d["nodes"] for d in report["deployments"]] == [1, 2]
    for deployment in report["deployments"]:
        assert len(deployment["cold_start_s"]) == deployment["nodes"]
        assert len(deployment["rounds_studies_per_s"]) == rounds
        assert deployment["latency_ms"]["count"] == rounds * studies
        assert 0 < deployment["latency_ms"]["p50"] <= deployment["latency_ms"]["p95"]
        # Warm-up (one study per node) and the rounds, every one acknowledged.
        assert deployment["outcomes"] == {"stow_200": deployment["nodes"] + rounds * studies}
    assert not [w for w in report["warnings"] if "version" in w or "went through" in w]
    assert "2 node(s):" in stdout


@pytest.mark.slow
def test_nodes_ratio_is_the_quotient_of_the_throughputs(
    nodes_quick: tuple[dict[str, Any], str],
) -> None:
    report, stdout = nodes_quick
    one, two = report["deployments"]
    ratio = report["ratios"]["nodes2_vs_nodes1"]
    assert math.isclose(ratio, two["studies_per_s"] / one["studies_per_s"], rel_tol=1e-9)
    goal = report["goals"]["nodes2_vs_nodes1"]
    assert goal["goal"] == 1.7 and goal["value"] == ratio and goal["met"] is (ratio >= 1.7)
    assert "goal nodes2_vs_nodes1" in stdout


def test_each_node_gets_its_own_share_of_the_cores() -> None:
    assert [node_cpus(i, 2, [0, 1]) for i in range(2)] == [{0}, {1}]
    assert [node_cpus(i, 2, [0, 1, 2, 3]) for i in range(2)] == [{0, 1}, {2, 3}]
    assert [node_cpus(i, 3, [0, 1]) for i in range(3)] == [{0}, {1}, {0}]  # fewer cores: shared


def test_node_counts_are_parsed_and_bad_ones_named() -> None:
    assert node_counts("1,2") == (1, 2)
    for bad in ("1,x", "0,1", "2,2"):
        with pytest.raises(argparse.ArgumentTypeError, match=bad):
            node_counts(bad)
    with pytest.raises(ConfigurationError, match="rounds"):
        NodesBenchConfig(rounds=0)
    with pytest.raises(ConfigurationError, match="node counts"):
        NodesBenchConfig(nodes=())
