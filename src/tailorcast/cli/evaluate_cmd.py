"""``tailorcast evaluate``: compare recommenders offline on one split of the store's data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailorcast.cli.common import InsecureOpt, StoreOpt, console, err_console, print_json
from tailorcast.errors import ConfigError

if TYPE_CHECKING:
    from tailorcast.evaluation.protocol import EvaluationResult

__all__ = ["DEFAULT_MODELS", "register", "render_result", "run_evaluate"]

#: Models compared when ``--models`` is not given.
DEFAULT_MODELS: Final = "popularity,itemknn,ease,als"


def run_evaluate(
    store_dir: Path | None,
    models: str = DEFAULT_MODELS,
    *,
    protocol: str = "random",
    k: int = 10,
    seed: int = 2026,
    show_progress: bool = True,
) -> EvaluationResult:
    """Read the store's training view (read-only) and evaluate ``models`` (a comma list of
    specs, see :func:`~tailorcast.evaluation.protocol.parse_model_list`) on it."""
    from tailorcast.config import Settings
    from tailorcast.data.interactions import Interactions
    from tailorcast.evaluation.protocol import DEFAULT_KS, evaluate, parse_model_list
    from tailorcast.store import Store

    specs = parse_model_list(models)  # refuse a malformed list before reading any data
    with Store.open(store_dir or Settings().store, read_only=True) as store:
        inter = Interactions.from_store(store)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not show_progress or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("evaluating", total=1.0)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done / total, description=what)

        return evaluate(
            inter, specs, protocol=protocol, k=k, ks=DEFAULT_KS, seed=seed, progress=progress
        )


def render_result(result: EvaluationResult) -> None:
    """The metrics at k as a table, the best value of each column in bold."""
    table = result.table()
    view = Table(
        title=(
            f"Evaluation: {result.protocol} split (seed {result.seed}), "
            f"{result.n_test_users:,} test customers of {result.n_users:,}, "
            f"{result.n_items:,} items"
        ),
        title_justify="left",
    )
    view.add_column("model")
    for column in [*table.columns, "fit s", "recommend s"]:
        view.add_column(column, justify="right")
    best = {column: table[column].max() for column in table.columns if table[column].notna().any()}
    for label in table.index:
        cells = []
        for column in table.columns:
            value = float(table.loc[label, column])
            text = f"{value:.4f}" if math.isfinite(value) else "n/a"
            cells.append(f"[bold]{text}[/bold]" if value == best.get(column) else text)
        model = result.models[label]
        cells += [f"{model.fit_seconds:.2f}", f"{model.recommend_seconds:.2f}"]
        view.add_row(label, *cells)
    console.print(view)
    if len(result.models) > 1:
        winner = result.best()
        for other in result.labels:
            if other == winner:
                continue
            c = result.compare(winner, other, n_boot=2_000)
            console.print(
                f"{winner} vs {other}: {c.metric} {c.mean_diff:+.4f} "
                f"({c.confidence:.0%} CI {c.ci_low:+.4f} .. {c.ci_high:+.4f}, "
                f"p={c.p_value:.2g})"
            )


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_command(
        store: StoreOpt = None,
        models: Annotated[
            str,
            typer.Option(
                "--models",
                help="Comma list of models, each NAME or NAME:param=value,param=value.",
            ),
        ] = DEFAULT_MODELS,
        protocol: Annotated[
            str,
            typer.Option("--protocol", help="Split: random, temporal, last or session."),
        ] = "random",
        k: Annotated[int, typer.Option("-k", "--k", help="Cut-off of the headline metrics.")] = 10,
        json_out: Annotated[
            str | None,
            typer.Option("--json", metavar="FILE", help="Write the results as JSON ('-': stdout)."),
        ] = None,
        report: Annotated[
            Path | None,
            typer.Option("--report", metavar="DIR", help="Write a report folder (Markdown, PNG)."),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the random split.")] = 2026,
        insecure_dev: InsecureOpt = False,
    ) -> None:
        """Fit each model on a train split and rank all unseen items for the test customers:
        precision, recall, ndcg, map, mrr, hit at K; coverage, novelty, diversity."""
        del insecure_dev  # accepted by every command; evaluating needs no keys
        to_stdout = json_out == "-"
        result = run_evaluate(
            store, models, protocol=protocol, k=k, seed=seed, show_progress=not to_stdout
        )
        if to_stdout:
            print_json(result.to_dict())
        else:
            render_result(result)
            if json_out is not None:
                _write_json(Path(json_out), result)
                console.print(f"JSON: {json_out}")
        if report is not None:
            from tailorcast.evaluation.report import write_report

            folder = write_report(result, report)
            (err_console if to_stdout else console).print(f"Report: {folder / 'report.md'}")


def _write_json(path: Path, result: EvaluationResult) -> None:
    text = json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the JSON to {path}: {exc.strerror or exc}") from None
