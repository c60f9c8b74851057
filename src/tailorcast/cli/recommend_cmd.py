"""``tailorcast recommend`` and ``tailorcast similar``: what the saved model suggests."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json, user_errors
from tailorcast.errors import ConfigError

__all__ = ["records", "register", "render_frame"]

KOpt = Annotated[int, typer.Option("-k", help="Items per list.")]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write CSV, Parquet or JSON (by extension) instead."),
]
VersionOpt = Annotated[
    str | None,
    typer.Option("--model-version", help="A saved model version (default: the latest)."),
]


def render_frame(frame: pd.DataFrame, title: str) -> None:
    """A recommendation table on the console."""
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), justify="right" if column in ("rank", "score") else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return ""
    return f"{value:.4f}" if isinstance(value, float | np.floating) else str(value)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (missing values as null, float32 scores as plain floats)."""
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return rows


def _check_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")


def register(app: typer.Typer) -> None:
    @app.command("recommend")
    def recommend_command(
        user: Annotated[
            list[str] | None,
            typer.Option("--user", "-u", help="A customer ID as the shop sends it (repeatable)."),
        ] = None,
        all_customers: Annotated[
            bool, typer.Option("--all", help="Every customer with history, in one batch.")
        ] = False,
        k: KOpt = 10,
        explain: Annotated[
            bool, typer.Option("--explain/--no-explain", help="A reason on every item.")
        ] = True,
        exclude_seen: Annotated[
            bool,
            typer.Option(
                "--exclude-seen/--include-seen",
                help="Leave out items the customer already viewed, saved, carted or bought.",
            ),
        ] = True,
        out: OutOpt = None,
        model_version: VersionOpt = None,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Recommendations with reasons for customers (--user ID) or everyone (--all).

        Without --out, --all writes CSV to stdout; --user shows a table. Customer IDs are
        the shop's own (re-identified with the store's keys where they were pseudonymized).
        """
        from tailorcast.artifacts import load_artifact
        from tailorcast.recommend import recommend_for, write_table
        from tailorcast.store import open_store

        with user_errors():
            if bool(user) == all_customers:
                raise ConfigError("give --user ID (one or more) or --all, not both or neither")
            _check_k(k)
            opened, keys = open_store(store, insecure_dev=insecure_dev, read_only=True)
            with opened:
                artifact = load_artifact(opened.folder, model_version)
                frame = recommend_for(
                    opened,
                    artifact.model,
                    None if all_customers else user,
                    k,
                    exclude_seen=exclude_seen,
                    keys=keys,
                    explain=explain,
                )
            if out is not None:
                write_table(frame, out)
        customers = int(frame["user_id"].nunique())
        if out is not None:
            summary = {
                "out": str(out),
                "rows": len(frame),
                "customers": customers,
                "model": artifact.metadata.model,
                "version": artifact.version,
            }
            if as_json:
                print_json(summary)
            else:
                console.print(
                    f"Wrote {len(frame):,} recommendations for {customers:,} customers to {out} "
                    f"(model {artifact.metadata.model}, version {artifact.version})"
                )
        elif as_json:
            print_json(records(frame))
        elif all_customers:
            frame.to_csv(sys.stdout, index=False)
        else:
            render_frame(frame, f"Recommendations ({artifact.metadata.model}, {artifact.version})")

    @app.command("similar")
    def similar_command(
        item_id: Annotated[str, typer.Argument(help="An item ID of the catalog.")],
        k: KOpt = 10,
        out: OutOpt = None,
        model_version: VersionOpt = None,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Items similar to ITEM_ID, by the saved model (item IDs are never pseudonymized)."""
        del insecure_dev  # accepted by every command; items need no keys
        from tailorcast.artifacts import load_artifact
        from tailorcast.config import Settings
        from tailorcast.recommend import similar_to, write_table

        with user_errors():
            _check_k(k)
            artifact = load_artifact(store or Settings().store, model_version)
            frame = similar_to(artifact.model, item_id.strip(), k)
            if out is not None:
                write_table(frame, out)
        if out is not None:
            if as_json:
                print_json({"out": str(out), "rows": len(frame), "version": artifact.version})
            else:
                console.print(f"Wrote {len(frame):,} similar items to {out}")
        elif as_json:
            print_json(records(frame))
        else:
            render_frame(frame, f"Similar to {item_id} ({artifact.metadata.model})")
