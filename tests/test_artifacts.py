"""Versioned model artifacts: atomic saves, kept versions, LATEST, loading and refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tailorcast import artifacts
from tailorcast.artifacts import (
    LATEST_FILE,
    METADATA_FILE,
    TrialRecord,
    latest_version,
    list_versions,
    load_artifact,
    load_model,
    models_dir,
    save_model,
)
from tailorcast.data import Interactions
from tailorcast.errors import DataError, NotFittedError, NotFoundError
from tailorcast.models import ItemKNNRecommender, PopularityRecommender


def _inter(shift: int = 0) -> Interactions:
    """A small shop; ``shift`` changes the events (and so the fingerprint)."""
    rng = np.random.default_rng(shift)
    n = 300
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 40, n)],
            "item_id": [f"i{i}" for i in rng.integers(0, 25, n)],
            "event_type": rng.choice(["view", "cart", "purchase"], n),
            "timestamp": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(rng.integers(0, 86_400 * 30, n), unit="s"),
        }
    )
    return Interactions.from_events(frame)


def _fitted(shift: int = 0) -> ItemKNNRecommender:
    return ItemKNNRecommender(neighbors=10).fit(_inter(shift))


def _tmp_entries(store: Path) -> list[str]:
    return [p.name for p in models_dir(store).iterdir() if p.name.startswith(".tmp-")]


def test_save_then_load_latest_round_trips(tmp_path: Path) -> None:
    model = _fitted()
    trial = TrialRecord(model="itemknn", params={"neighbors": 10}, ndcg_at_10=0.25, seconds=0.1)
    saved = save_model(
        tmp_path,
        model,
        metrics={"ndcg@10": 0.25},
        n_events=300,
        trials=[trial],
        training={"protocol": "random"},
    )
    assert saved.path == models_dir(tmp_path) / saved.version
    assert (models_dir(tmp_path) / LATEST_FILE).read_text().strip() == saved.version
    files = sorted(p.name for p in saved.path.iterdir())
    assert files == ["config.json", METADATA_FILE, "state.npz"]

    meta = json.loads((saved.path / METADATA_FILE).read_text())
    assert meta["model"] == "itemknn"
    assert meta["params"]["neighbors"] == 10
    assert meta["metrics"] == {"ndcg@10": 0.25}
    assert meta["fingerprint"] == model.fingerprint_
    assert meta["n_events"] == 300
    assert meta["trials"][0]["ndcg@10"] == 0.25  # the trace keeps the metric's own name
    assert meta["tailorcast_version"]
    assert meta["created_at"].startswith(saved.version[:4])

    loaded = load_artifact(tmp_path)
    assert loaded.version == saved.version
    assert loaded.metadata.trials[0].ndcg_at_10 == 0.25
    users = ["u1", "u2", "nobody"]
    a, b = model.recommend(users, k=5), loaded.model.recommend(users, k=5)
    assert (a.item_ids == b.item_ids).all()
    np.testing.assert_array_equal(a.scores, b.scores)


def test_versions_are_kept_sorted_and_each_loadable(tmp_path: Path) -> None:
    models = [_fitted(shift) for shift in range(3)]
    versions = [save_model(tmp_path, m).version for m in models]
    assert list_versions(tmp_path) == versions == sorted(versions)
    assert latest_version(tmp_path) == versions[-1]
    assert load_model(tmp_path).fingerprint_ == models[-1].fingerprint_
    for version, model in zip(versions, models, strict=True):
        assert load_model(tmp_path, version).fingerprint_ == model.fingerprint_
    assert len({m.fingerprint_ for m in models}) == 3


@pytest.mark.parametrize("where", ["metadata", "rename"])
def test_failed_save_leaves_no_version_and_latest_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    first = save_model(tmp_path, _fitted(0)).version

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    if where == "metadata":  # the model files are written, metadata.json fails
        monkeypatch.setattr(artifacts, "_write_text", fail)
    else:  # everything is written, the rename into place fails
        monkeypatch.setattr(artifacts.os, "rename", fail)
    with pytest.raises(OSError, match="No space left"):
        save_model(tmp_path, _fitted(1))
    monkeypatch.undo()

    assert list_versions(tmp_path) == [first]
    assert (models_dir(tmp_path) / LATEST_FILE).read_text().strip() == first
    assert _tmp_entries(tmp_path) == []
    assert load_model(tmp_path).fingerprint_ == _fitted(0).fingerprint_


def test_unfitted_model_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        save_model(tmp_path, PopularityRecommender())
    assert not models_dir(tmp_path).exists()


def test_nothing_saved_says_run_train(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no trained model: run `tailorcast train`"):
        load_model(tmp_path)
    assert list_versions(tmp_path) == []
    assert latest_version(tmp_path) is None


@pytest.mark.parametrize("version", ["20990101T000000.000000Z-abcdef", "../models", ".tmp-x", ""])
def test_unknown_or_malformed_version_is_not_found(tmp_path: Path, version: str) -> None:
    save_model(tmp_path, _fitted())
    with pytest.raises(NotFoundError, match="no model version"):
        load_model(tmp_path, version)


def test_latest_falls_back_to_newest_folder_when_file_is_missing_or_stale(
    tmp_path: Path,
) -> None:
    old = save_model(tmp_path, _fitted(0)).version
    new = save_model(tmp_path, _fitted(1)).version
    latest = models_dir(tmp_path) / LATEST_FILE
    latest.write_text(old)
    assert latest_version(tmp_path) == old  # LATEST wins over the newest folder
    latest.unlink()
    assert latest_version(tmp_path) == new
    latest.write_text("20000101T000000.000000Z-000000")  # names a version that is gone
    assert latest_version(tmp_path) == new


def test_damaged_metadata_or_mismatched_files_are_data_errors(tmp_path: Path) -> None:
    saved = save_model(tmp_path, _fitted(0))
    meta_file = saved.path / METADATA_FILE
    good = meta_file.read_text()
    meta_file.write_text("{not json")
    with pytest.raises(DataError, match="unreadable metadata"):
        load_model(tmp_path)
    data = json.loads(good)
    data["fingerprint"] = "0" * 64
    meta_file.write_text(json.dumps(data))
    with pytest.raises(DataError, match="disagree"):
        load_model(tmp_path)
    meta_file.unlink()
    with pytest.raises(DataError, match=r"missing metadata\.json"):
        load_model(tmp_path)


def test_stale_temporary_folders_are_cleaned_by_the_next_save(tmp_path: Path) -> None:
    save_model(tmp_path, _fitted(0))
    stale, fresh = models_dir(tmp_path) / ".tmp-stale", models_dir(tmp_path) / ".tmp-fresh"
    stale.mkdir()
    fresh.mkdir()  # a save running right now in another process
    day_ago = os.stat(stale).st_mtime - 2 * 86_400
    os.utime(stale, (day_ago, day_ago))
    save_model(tmp_path, _fitted(1))
    assert _tmp_entries(tmp_path) == [".tmp-fresh"]
    assert len(list_versions(tmp_path)) == 2
