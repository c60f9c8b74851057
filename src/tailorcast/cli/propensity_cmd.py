"""``tailorcast propensity train|score``: who is likely to buy in a category soon.

``train`` fits one calibrated model per category and keeps them beside the store
(``<store>/marketing/propensity/``, skops files + ``meta.json``); ``score`` applies them.
Customer IDs are pseudonyms unless ``--shop-ids`` (with the store's keys).
"""

from __future__ import annotations

import sys
from typing import Annotated

import pandas as pd
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
from tailorcast.cli.segment_cmd import AsOfOpt, OutOpt, ShopIdsOpt, finish_table

__all__ = ["register"]

propensity_app = typer.Typer(
    help="Purchase propensity per category: train calibrated models, score customers.",
    no_args_is_help=True,
)
TrainAsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="End of the labelled window (default: the latest event); features stop "
        "--window-days before it.",
    ),
]
CategoryOpt = Annotated[
    list[str] | None,
    typer.Option("--category", "-c", help="A category to model (repeatable; default: all)."),
]


def _metrics_table(frame: pd.DataFrame, importances: dict[str, list[str]]) -> Table:
    table = Table(title="Propensity models (test customers)", title_justify="left")
    for column in (
        "category",
        "model",
        "ROC-AUC",
        "PR-AUC",
        "lift@10%",
        "buy rate",
        "top features",
    ):
        table.add_column(column, justify="left" if column in ("category", "model") else "right")
    for row in frame.itertuples(index=False):
        table.add_row(
            str(row.category),
            str(row.family),
            f"{row.roc_auc:.3f}",
            f"{row.pr_auc:.3f}",
            f"{row.lift_top_decile:.2f}",
            f"{row.base_rate:.3f}",
            ", ".join(importances[str(row.category)]),
        )
    return table


@propensity_app.command("train")
def train_command(
    category: CategoryOpt = None,
    as_of: TrainAsOfOpt = None,
    window_days: Annotated[
        int, typer.Option("--window-days", help="Predict purchases within N days.")
    ] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the models.")] = 2026,
    store: StoreOpt = None,
    insecure_dev: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train per-category purchase models (tree, forest, boosting; best on validation,
    calibrated) on features up to AS_OF - WINDOW and purchases in the window after."""
    del insecure_dev  # training reads pseudonyms only; no keys needed
    from tailorcast.config import Settings
    from tailorcast.marketing import propensity_folder, train_propensity
    from tailorcast.store import Store

    with (
        user_errors(),
        Store.open(store or Settings().store, read_only=True) as opened,
        Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=as_json or not err_console.is_terminal,
        ) as bar,
    ):
        task = bar.add_task("reading events", total=1.0)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, completed=done / total, description=f"training {what}")

        models = train_propensity(
            opened, category or None, as_of, window_days, seed, progress=progress
        )
        folder = models.save(propensity_folder(opened.folder))
    frame = models.metrics_frame()
    top = {c: list(m["importances"])[:3] for c, m in models.metrics.items()}
    if as_json:
        print_json(
            {
                "folder": str(folder),
                "as_of": models.as_of.isoformat(),
                "cutoff": models.cutoff.isoformat(),
                "window_days": window_days,
                "metrics": models.metrics,
                "skipped": models.skipped,
            }
        )
        return
    console.print(_metrics_table(frame, top))
    for name, why in models.skipped.items():
        console.print(f"skipped {name}: {why}")
    console.print(
        f"Features up to {models.cutoff:%Y-%m-%d %H:%M}, purchases until "
        f"{models.as_of:%Y-%m-%d %H:%M}; models saved to {folder}"
    )


@propensity_app.command("score")
def score_command(
    as_of: AsOfOpt = None,
    category: CategoryOpt = None,
    out: OutOpt = None,
    shop_ids: ShopIdsOpt = False,
    store: StoreOpt = None,
    insecure_dev: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Probability that each customer buys in each category within the trained window after
    AS_OF. Without --out, CSV goes to stdout."""
    from tailorcast.errors import ConfigError
    from tailorcast.marketing import load_propensity, propensity_folder
    from tailorcast.store import open_store

    with user_errors():
        opened, keys = open_store(
            store, insecure_dev=insecure_dev, read_only=True, need_keys=shop_ids
        )
        with opened:
            models = load_propensity(propensity_folder(opened.folder))
            if category:
                unknown = sorted(set(category) - set(models.categories))
                if unknown:
                    raise ConfigError(
                        f"no model for {', '.join(unknown)}; trained: "
                        f"{', '.join(models.categories)}"
                    )
                models.models = {c: models.models[c] for c in dict.fromkeys(category)}
            frame = finish_table(opened, models.score(opened, as_of), out, shop_ids, keys)
    if out is None:
        if as_json:
            print_json(frame.to_dict("records"))
        else:
            frame.to_csv(sys.stdout, index=False)
        return
    summary = frame.groupby("category")["probability"].agg(["mean", "sum"]).reset_index()
    if as_json:
        print_json({"out": str(out), "rows": len(frame), "categories": summary.to_dict("records")})
        return
    console.print(
        f"Wrote {len(frame):,} scores ({frame['user_id'].nunique():,} customers x "
        f"{len(summary)} categories, window {models.window_days} days) to {out}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(propensity_app, name="propensity")
