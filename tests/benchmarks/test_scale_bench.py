"""Smoke test of benchmarks/scale.py on a tiny log: it runs end to end and its figures are
consistent (never asserting on wall-clock targets, which belong to the benchmark itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


@pytest.mark.slow
def test_scale_benchmark_runs_on_a_tiny_log(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--events",
            "30000",
            "--customers",
            "3000",
            "--items",
            "400",
            "--repeat",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    data = result["data"]
    assert data["events"] == 30_000
    # every customer got a visit, and the matrix holds their (customer, item) cells
    assert data["customers_with_events"] == 3000
    assert 0 < data["matrix_nnz"] <= data["events"]
    train, recommend = result["train"], result["recommend"]
    assert {r["side"] for r in train["runs"]} == {"tailorcast", "implicit"}
    assert train["ratio"] > 0
    # same implicit ALS underneath, same seed: the factors match and so do the lists
    assert train["same_factors"] is True
    assert recommend["users"] == 3000
    assert all(r["rows"] == 3000 * result["k"] for r in recommend["runs"])
    assert recommend["top10_agreement"] >= 0.99
    parts = recommend["breakdown_seconds"]
    assert 0 < parts["rank"] <= parts["recommend"] <= parts["total"]
    assert parts["users_per_second_without_reasons"] >= recommend["tailorcast_users_per_second"]
    memory = result["memory"]
    assert memory["process_peak_mb"] >= max(memory["phase_peak_mb"].values()) > 0
    assert set(result["pass"]) == {"train", "recommend", "peak", "all"}
    assert "tailorcast" in done.stdout and "pass:" in done.stdout
