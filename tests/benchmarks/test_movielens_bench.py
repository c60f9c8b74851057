"""Smoke test of benchmarks/movielens.py: ``--quick`` on a customer subsample runs end to end
and its figures hang together (never asserting on which model wins: that is the benchmark's
own finding)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "movielens.py"
DATA = ROOT.parent / "shared" / "data" / "ml-100k"
PEERS = {"ease", "als", "bpr", "itemknn-cosine", "itemknn-bm25"}


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="MovieLens 100K not available")
def test_movielens_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "movielens.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--quick", "--users", "100", "--budget", "3"),
            *("--data", str(DATA), "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "auto / best peer ndcg@10" in done.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["n_users"] == 100 and result["quick"] is True
    assert set(result["protocols"]) == {"random", "temporal"}
    for part in result["protocols"].values():
        split = part["split"]
        assert split["n_test_users"] > 0
        # validation is carved out of the training part only
        assert (
            split["n_validation_train_events"] + split["n_validation_events"]
            <= split["n_train_events"]
        )
        models = part["models"]
        assert set(models) == PEERS | {"auto"}
        for name in PEERS:
            peer = models[name]
            assert peer["trials"], name
            assert peer["validation_ndcg@10"] == max(t["ndcg@10"] for t in peer["trials"])
            assert peer["params"] in [t["params"] for t in peer["trials"]]
        for model in models.values():
            for metric in ("ndcg@10", "recall@10"):
                assert 0.0 <= model["metrics"][metric] <= 1.0
        auto = models["auto"]
        assert auto["chosen_model"] in auto["trials_per_model"]
        # A blend is reported exactly when auto chose the hybrid; its weights sum to 1.
        assert (auto["blend"] is not None) == (auto["chosen_model"] == "hybrid")
        if auto["blend"] is not None:
            assert sum(auto["blend"].values()) == pytest.approx(1.0)
        best = part["best_peer"]
        ndcg = part["auto_vs_best_peer"]["ndcg@10"]
        assert ndcg["best_peer_value"] == models[best]["metrics"]["ndcg@10"]
        assert ndcg["ratio"] == pytest.approx(auto["metrics"]["ndcg@10"] / ndcg["best_peer_value"])
        recall = part["auto_vs_best_peer"]["recall@10"]
        assert recall["best_peer_value"] == max(models[p]["metrics"]["recall@10"] for p in PEERS)
