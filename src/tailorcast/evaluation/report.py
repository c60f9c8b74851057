"""An evaluation report folder: Markdown summary, two PNG plots and the raw JSON.

:func:`write_report` turns an :class:`~tailorcast.evaluation.protocol.EvaluationResult` into

- ``report.md``: protocol, data summary, the metrics table, best model per metric, and the
  best model (by ``ndcg@k``) compared with each other one (paired bootstrap CI, p-value);
- ``metrics_by_model.png``: grouped bars of the accuracy metrics at ``k``, one bar per model;
- ``metric_by_k.png``: ndcg and recall against the cut-off K, one line per model;
- ``results.json``: :meth:`EvaluationResult.to_dict`.

Every file is first written to a hidden temporary file in the folder and renamed into place
only when all four are ready, so a failure never leaves a half-written report behind and a
reader never sees a partial file.

Example::

    write_report(evaluate(inter, ["popularity", "ease"]), "reports/2026-01")
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tailorcast.errors import ConfigError
from tailorcast.evaluation.metrics import ALL_ACCURACY
from tailorcast.evaluation.protocol import Comparison, EvaluationResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["REPORT_FILES", "write_report"]

#: The files of a report folder, in the order they are described above.
REPORT_FILES: Final = ("report.md", "metrics_by_model.png", "metric_by_k.png", "results.json")
#: Metrics drawn against K in ``metric_by_k.png``.
_BY_K: Final = ("ndcg", "recall")
_DPI: Final = 110


def write_report(result: EvaluationResult, folder: str | Path, *, n_boot: int = 5_000) -> Path:
    """Write the report files into ``folder`` (created if needed; same-named files are
    replaced); returns the folder. ``n_boot``: bootstrap resamples per comparison."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"report path {target} exists and is not a folder")
    target.mkdir(parents=True, exist_ok=True)
    comparisons = _comparisons(result, n_boot)
    writers: dict[str, Callable[[Path], object]] = {
        "report.md": lambda path: path.write_text(_markdown(result, comparisons), encoding="utf-8"),
        "metrics_by_model.png": lambda path: _save(_metrics_by_model(result), path),
        "metric_by_k.png": lambda path: _save(_metric_by_k(result), path),
        "results.json": lambda path: path.write_text(
            json.dumps(
                {**result.to_dict(), "comparisons": [c.to_dict() for c in comparisons]},
                indent=2,
                allow_nan=False,
            )
            + "\n",
            encoding="utf-8",
        ),
    }
    staged: list[tuple[Path, Path]] = []
    try:
        for name in REPORT_FILES:
            # Not mkstemp: its files are private (0600); these get the usual permissions.
            temp = target / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            temp.open("xb").close()
            staged.append((temp, target / name))
            writers[name](temp)
        for temp, final in staged:
            os.replace(temp, final)
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
    return target


# -- content ----------------------------------------------------------------------------------
def _comparisons(result: EvaluationResult, n_boot: int) -> list[Comparison]:
    """The best model by ndcg@k against each other model (none with a single model)."""
    if len(result.models) < 2:
        return []
    best = result.best()
    return [result.compare(best, other, n_boot=n_boot) for other in result.labels if other != best]


def _markdown(result: EvaluationResult, comparisons: Sequence[Comparison]) -> str:
    k = result.k
    options = ", ".join(f"{key}={value}" for key, value in result.split_options.items())
    lines = [
        "# Evaluation report",
        "",
        f"Protocol **{result.protocol}**{f' ({options})' if options else ''}, seed "
        f"{result.seed}; headline cut-off k={k}, accuracy also at K = "
        f"{', '.join(map(str, result.ks))}.",
        "Metric definitions follow RecBole. Every item a customer did not interact with in "
        "train is ranked (no sampled negatives); coverage, novelty and diversity are at k.",
        "",
        "## Data",
        "",
        *_md_table(
            ["", "value"],
            [
                ["customers", f"{result.n_users:,}"],
                ["items", f"{result.n_items:,}"],
                ["train events", f"{result.n_train_events:,}"],
                ["test events", f"{result.n_test_events:,}"],
                [
                    "test customers",
                    f"{result.n_test_users:,} ({result.n_cold_test_users:,} without train history)",
                ],
                ["data fingerprint", f"`{result.fingerprint[:16]}`"],
            ],
        ),
        "",
        f"## Metrics at k={k}",
        "",
    ]
    table = result.table()
    rows = [
        [
            label,
            *(_number(float(v)) for v in table.loc[label]),
            f"{result.models[label].fit_seconds:.2f}",
            f"{result.models[label].recommend_seconds:.2f}",
        ]
        for label in table.index
    ]
    lines += _md_table(["model", *table.columns, "fit s", "recommend s"], rows)
    lines += ["", "![Metrics by model](metrics_by_model.png)", "", "## Metrics by cut-off", ""]
    columns = [f"{name}@{cut}" for name in _BY_K for cut in result.ks]
    lines += _md_table(
        ["model", *columns],
        [[label, *(_number(m.metrics[c]) for c in columns)] for label, m in result.models.items()],
    )
    lines += ["", "![ndcg and recall by K](metric_by_k.png)", "", "## Best model per metric", ""]
    best_rows = []
    for column in table.columns:
        values = table[column]
        if values.notna().any():
            best = result.best(column)
            best_rows.append([column, best, _number(float(values[best]))])
        else:
            best_rows.append([column, "n/a", "n/a"])
    lines += _md_table(["metric", "best model", "value"], best_rows, text_columns=2)
    if comparisons:
        first = comparisons[0]
        lines += [
            "",
            "## Best model against the others",
            "",
            f"Best by {first.metric}: **{_cell(first.a)}**. Differences are paired over the "
            f"{first.n_users:,} test customers: {first.confidence:.0%} confidence interval "
            f"from a paired bootstrap ({first.n_boot:,} resamples, seed {result.seed}), "
            "p-value from a paired t-test.",
            "",
        ]
        lines += _md_table(
            ["model", first.metric, "difference (best - model)", "CI", "p-value"],
            [
                [
                    c.b,
                    _number(c.mean_b),
                    f"{c.mean_diff:+.4f}",
                    f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
                    _p_value(c.p_value),
                ]
                for c in comparisons
            ],
        )
    return "\n".join(lines) + "\n"


def _md_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1
) -> list[str]:
    """A Markdown table; the first ``text_columns`` are left-aligned, numbers right."""

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(_cell(str(c)) for c in cells) + " |"

    align = ["---" if i < text_columns else "---:" for i in range(len(header))]
    return [row(header), "| " + " | ".join(align) + " |", *(row(r) for r in rows)]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def _p_value(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


# -- plots ------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    # A bare Figure with its own Agg canvas: no pyplot, so no global figure registry to
    # leak, and no interactive backend is ever chosen.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, format="png")


def _metrics_by_model(result: EvaluationResult) -> Figure:
    labels = result.labels
    names = list(ALL_ACCURACY)
    figure = _figure(max(7.0, 1.1 * len(names) + 0.25 * len(labels) * len(names) / 2), 4.5)
    axes = figure.add_subplot()
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        values = [result.models[label].metrics[f"{name}@{result.k}"] for name in names]
        positions = [j - 0.4 + width * (i + 0.5) for j in range(len(names))]
        axes.bar(positions, values, width=width, label=label)
    axes.set_xticks(range(len(names)), [f"{name}@{result.k}" for name in names])
    axes.set_ylabel("mean over test customers")
    axes.set_title(
        f"Accuracy at k={result.k} ({result.protocol} split, "
        f"{result.n_test_users:,} test customers)"
    )
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small", ncols=min(len(labels), 4))
    return figure


def _metric_by_k(result: EvaluationResult) -> Figure:
    figure = _figure(10.0, 4.2)
    grid = figure.subplots(1, len(_BY_K), squeeze=False)
    for axes, name in zip(grid[0], _BY_K, strict=True):
        for label, model in result.models.items():
            axes.plot(
                result.ks,
                [model.metrics[f"{name}@{cut}"] for cut in result.ks],
                marker="o",
                label=label,
            )
        axes.set_xticks(list(result.ks))
        axes.set_xlabel("K")
        axes.set_ylabel(f"{name}@K")
        axes.set_title(f"{name} by cut-off")
        axes.grid(alpha=0.3)
    grid[0][0].legend(fontsize="small")
    return figure
