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


def _split(text: str | None) -> tuple[str, ...] | None:
    """ "a, b,c" -> ("a", "b", "c"); None stays None."""
    if text is None:
        return None
    parts = tuple(p.strip() for p in text.split(","))
    if not all(parts):
        raise ConfigError(f"{text!r}: give comma-separated values without empty ones")
    return parts


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
            bool | None,
            typer.Option(
                "--exclude-seen/--include-seen",
                help="Leave out (or keep) items the customer already interacted with. "
                "Default: decided from the data (shops where customers rebuy keep them).",
            ),
        ] = None,
        seen_events: Annotated[
            str | None,
            typer.Option(
                "--seen-events",
                help="Only these event types make an item seen, e.g. purchase or cart,purchase.",
            ),
        ] = None,
        category: Annotated[
            list[str] | None,
            typer.Option("--category", help="Only items of this category (repeatable)."),
        ] = None,
        exclude_category: Annotated[
            list[str] | None,
            typer.Option("--exclude-category", help="Never items of this category (repeatable)."),
        ] = None,
        min_price: Annotated[
            float | None, typer.Option("--min-price", help="Lowest price.")
        ] = None,
        max_price: Annotated[
            float | None, typer.Option("--max-price", help="Highest price.")
        ] = None,
        include_unavailable: Annotated[
            bool,
            typer.Option("--include-unavailable", help="Also items marked not available."),
        ] = False,
        boost: Annotated[
            list[str] | None,
            typer.Option("--boost", help="ITEM=FACTOR: multiply the item's score (repeatable)."),
        ] = None,
        pin: Annotated[
            list[str] | None,
            typer.Option("--pin", help="A promoted item placed first (repeatable, in order)."),
        ] = None,
        max_per_category: Annotated[
            int | None,
            typer.Option("--max-per-category", help="At most N items of one category per list."),
        ] = None,
        session_items: Annotated[
            str | None,
            typer.Option(
                "--session-items",
                help="Items viewed in the current visit, a,b,c: new customers get similar ones.",
            ),
        ] = None,
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
        from tailorcast.rules import build_rules, parse_boost
        from tailorcast.store import open_store

        with user_errors():
            if bool(user) == all_customers:
                raise ConfigError("give --user ID (one or more) or --all, not both or neither")
            _check_k(k)
            rules = build_rules(
                exclude_seen=exclude_seen,
                seen_event_types=_split(seen_events),
                include_categories=tuple(category) if category else None,
                exclude_categories=tuple(exclude_category or ()),
                min_price=min_price,
                max_price=max_price,
                available_only=not include_unavailable,
                boost=parse_boost(boost or []),
                pin=tuple(pin or ()),
                max_per_category=max_per_category,
            )
            opened, keys = open_store(store, insecure_dev=insecure_dev, read_only=True)
            with opened:
                artifact = load_artifact(opened.folder, model_version)
                frame = recommend_for(
                    opened,
                    artifact.model,
                    None if all_customers else user,
                    k,
                    rules=rules,
                    keys=keys,
                    explain=explain,
                    session_items=_split(session_items),
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
