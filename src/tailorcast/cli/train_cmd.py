"""``tailorcast train``: fit a model (or search for the best one) and save it as a version."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailorcast.cli.common import (
    InsecureOpt,
    JsonOpt,
    StoreOpt,
    console,
    err_console,
    print_json,
    user_errors,
)
from tailorcast.errors import ConfigError

if TYPE_CHECKING:
    from tailorcast.training import TrainProgress, TrainResult

__all__ = ["parse_params", "register", "render_result"]


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is read as JSON (numbers, true/false, null) or else text.

    >>> parse_params(["neighbors=50", "similarity=bm25"])
    {'neighbors': 50, 'similarity': 'bm25'}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--param takes KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw.strip()
    return out


def render_result(result: TrainResult) -> None:
    """The chosen model, its parameters, validation metrics and the saved version."""
    from tailorcast.training import SELECTION_METRIC

    n_trials = len(result.trials)
    console.print(
        f"[bold]Model[/bold] {result.name} "
        f"({SELECTION_METRIC} {result.metrics.get(SELECTION_METRIC, float('nan')):.4f} on "
        f"validation; {n_trials} trial{'s' if n_trials != 1 else ''}, "
        f"{result.seconds:.1f} s)"
    )
    console.print(
        "[bold]Params[/bold] " + ", ".join(f"{k}={_short(v)}" for k, v in result.params.items())
    )
    customers = result.training.get("validation_users")
    console.print(
        "[bold]Validation[/bold] "
        + "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        + (f"  ({customers:,} customers)" if customers else "")
    )
    if result.training.get("mode") == "auto":
        table = Table(title="Search", title_justify="left")
        for column in ("model", "trials", f"best {SELECTION_METRIC}", "seconds"):
            table.add_column(column, justify="left" if column == "model" else "right")
        families: dict[str, list[Any]] = {}
        for trial in result.trials:
            families.setdefault(trial.model, []).append(trial)
        for name, trials in families.items():
            scores = [t.ndcg_at_10 for t in trials if t.ndcg_at_10 is not None]
            table.add_row(
                name,
                str(len(trials)),
                f"{max(scores):.4f}" if scores else "failed",
                f"{sum(t.seconds for t in trials):.1f}",
            )
        for name, why in result.skipped.items():
            table.add_row(name, "0", "skipped", why)
        console.print(table)
    if result.version is not None:
        console.print(f"[bold]Saved[/bold] version {result.version} in {result.path}")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_command(
        model: Annotated[
            str,
            typer.Option(
                "--model",
                "-m",
                help="auto (search models and hyperparameters), or one model: popularity, "
                "itemknn, ease, als, bpr.",
            ),
        ] = "auto",
        budget: Annotated[
            float, typer.Option("--budget", help="Seconds for --model auto, refit included.")
        ] = 60.0,
        protocol: Annotated[
            str,
            typer.Option(help="Validation split: random, temporal, last or last_session."),
        ] = "random",
        seed: Annotated[int, typer.Option(help="Seed of the validation split and search.")] = 2026,
        param: Annotated[
            list[str] | None,
            typer.Option(
                "--param", help="Hyperparameter of a named model, KEY=VALUE (repeatable)."
            ),
        ] = None,
        max_trials: Annotated[
            int | None, typer.Option("--max-trials", help="Stop auto after this many fits.")
        ] = None,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Train a recommender on the store's events and save it as a new model version."""
        del insecure_dev  # accepted by every command; training reads pseudonyms, no keys
        from tailorcast.store import open_store
        from tailorcast.training import train

        with user_errors():
            params = parse_params(param or [])
            opened, _ = open_store(store, read_only=True, need_keys=False)
            with (
                opened,
                Progress(
                    TextColumn("[progress.description]{task.description}"),
                    BarColumn(),
                    TimeElapsedColumn(),
                    console=err_console,
                    transient=True,
                    disable=as_json or not err_console.is_terminal,
                ) as bar,
            ):
                task = bar.add_task("reading events", total=budget if model == "auto" else None)

                def progress(step: TrainProgress) -> None:
                    best = (
                        f" (best: {step.best_model} {step.best_ndcg:.4f})"
                        if step.best_model is not None and step.best_ndcg is not None
                        else ""
                    )
                    bar.update(task, completed=step.elapsed, description=step.message + best)

                result = train(
                    opened,
                    model,
                    budget_seconds=budget,
                    protocol=protocol,
                    seed=seed,
                    params=params or None,
                    max_trials=max_trials,
                    progress=progress,
                )
        if as_json:
            print_json(result.to_dict())
        else:
            render_result(result)
