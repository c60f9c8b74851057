"""write_report: the Markdown summary, valid PNG plots, the JSON, and atomic replacement."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorcast.data import Interactions
from tailorcast.errors import ConfigError
from tailorcast.evaluation import EvaluationResult, evaluate, write_report
from tailorcast.evaluation import report as report_module
from tailorcast.evaluation.report import REPORT_FILES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def shop_events(seed: int = 0) -> pd.DataFrame:
    """Three taste groups of 20 customers over 30 items; 6 items each, one per day."""
    rng = np.random.default_rng(seed)
    rows = []
    for group in range(3):
        for u in range(20):
            items = group * 10 + rng.choice(10, size=6, replace=False)
            for day, item in enumerate(items):
                rows.append(
                    {
                        "user_id": f"c{group}{u:02d}",
                        "item_id": f"p{item:02d}",
                        "event_type": "purchase" if day == 5 else "view",
                        "timestamp": pd.Timestamp("2025-02-01") + pd.Timedelta(days=int(day)),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def result() -> EvaluationResult:
    inter = Interactions.from_events(shop_events())
    return evaluate(inter, ["popularity", "itemknn", "ease:regularization=10"], seed=4)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_report_files(result: EvaluationResult, tmp_path: Path) -> None:
    folder = write_report(result, tmp_path / "new" / "report")
    assert folder == tmp_path / "new" / "report"
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES)  # no temp files
    for name in ("metrics_by_model.png", "metric_by_k.png"):
        path = folder / name
        assert path.stat().st_size > 1024
        width, height = png_size(path)
        assert width > 400 and height > 300

    data = json.loads((folder / "results.json").read_text())
    comparisons = data.pop("comparisons")
    assert data == json.loads(json.dumps(result.to_dict()))
    best = result.best()
    assert best != "popularity"
    assert [(c["a"], c["b"]) for c in comparisons] == [
        (best, other) for other in result.labels if other != best
    ]


def test_markdown_holds_the_table_and_the_comparisons(
    result: EvaluationResult, tmp_path: Path
) -> None:
    text = (write_report(result, tmp_path) / "report.md").read_text()
    table = result.table()
    header = "| model | " + " | ".join(table.columns) + " | fit s | recommend s |"
    assert header in text
    for label in result.labels:
        values = " | ".join(f"{v:.4f}" for v in table.loc[label])
        assert f"| {label} | {values} |" in text
    assert "Protocol **random**" in text and "seed 4" in text
    assert f"| test customers | {result.n_test_users:,} (0 without train history) |" in text
    assert f"`{result.fingerprint[:16]}`" in text
    assert "![Metrics by model](metrics_by_model.png)" in text
    assert "![ndcg and recall by K](metric_by_k.png)" in text
    best = result.best()
    ndcg = result.models[best].metrics["ndcg@10"]
    assert f"| ndcg@10 | {best} | {ndcg:.4f} |" in text
    c = result.compare(best, "popularity", n_boot=5_000)
    assert f"Best by ndcg@10: **{best}**" in text
    ci = f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
    assert f"| popularity | {c.mean_b:.4f} | {c.mean_diff:+.4f} | {ci} |" in text


def test_single_model_report_has_no_comparison(tmp_path: Path) -> None:
    inter = Interactions.from_events(shop_events(1))
    single = evaluate(inter, ["popularity"], k=1, ks=(1, 2))
    folder = write_report(single, tmp_path)
    text = (folder / "report.md").read_text()
    assert "against the others" not in text
    assert "| diversity@1 | n/a | n/a |" in text  # undefined with one item per list
    assert json.loads((folder / "results.json").read_text())["comparisons"] == []
    assert png_size(folder / "metric_by_k.png")[0] > 400


def test_a_failure_leaves_the_old_report_untouched(
    result: EvaluationResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_report(result, tmp_path)
    before = {name: (folder / name).read_bytes() for name in REPORT_FILES}

    def broken(_: EvaluationResult) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(report_module, "_metric_by_k", broken)
    other = evaluate(Interactions.from_events(shop_events(2)), ["popularity"])
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_report(other, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES)
    assert {name: (folder / name).read_bytes() for name in REPORT_FILES} == before


def test_a_file_in_the_way_is_refused(result: EvaluationResult, tmp_path: Path) -> None:
    path = tmp_path / "report"
    path.write_text("not a folder")
    with pytest.raises(ConfigError, match="not a folder"):
        write_report(result, path)
