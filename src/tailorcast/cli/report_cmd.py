"""``tailorcast report``: data health of the store."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json

__all__ = ["register", "render_report"]


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in columns])
    return table


def render_report(data: dict[str, Any]) -> None:
    c = data["counts"]
    console.print(
        f"[bold]Store[/bold] {data['store']}: {c['events']:,} events from "
        f"{data['customers']:,} customers on {data['items_with_events']:,} products, "
        f"{data['sessions']:,} sessions, {data['first_event']} .. {data['last_event']}; "
        f"{c['users']:,} customer records, {c['items']:,} product records; "
        f"revenue {data['revenue']:,.2f}"
    )
    console.print(
        _table("Funnel", data["funnel"], ["event_type", "events", "customers", "per_100_views"])
    )
    if data["rejects_by_reason"]:
        console.print(
            _table("Rejected rows", data["rejects_by_reason"], ["kind", "reason", "rows"])
        )
    d = data["duplicates"]
    console.print(
        f"Duplicates dropped: {d['exact']:,} exact, {d['near']:,} near (double clicks); "
        f"outlier amounts flagged: {data['outlier_amounts']:,}"
    )
    if data["bots"]:
        console.print(
            _table(
                "Bot-like customers (left out of training)",
                data["bots"],
                ["user_id", "events", "events_per_hour", "reason"],
            )
        )
    if data["imputations"]:
        console.print(
            _table(
                "Imputations",
                data["imputations"],
                ["table", "column", "strategy", "n_imputed", "fill_value"],
            )
        )
    if data["top_categories"]:
        console.print(
            _table(
                "Top categories",
                data["top_categories"],
                ["category", "events", "purchases", "customers"],
            )
        )


def register(app: typer.Typer) -> None:
    @app.command()
    def report(
        store: StoreOpt = None, as_json: JsonOpt = False, insecure_dev: InsecureOpt = False
    ) -> None:
        """Data health: counts, funnel, rejects by reason, duplicates, bots, imputations."""
        # --insecure-dev is accepted by every command; reading a report needs no keys.
        del insecure_dev
        from tailorcast.config import Settings
        from tailorcast.report import data_health
        from tailorcast.store import Store

        with Store.open(store or Settings().store, read_only=True) as opened:
            data = data_health(opened)
        if as_json:
            print_json(data)
        else:
            render_report(data)
