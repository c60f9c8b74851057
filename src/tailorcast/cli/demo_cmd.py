"""``tailorcast demo``: the whole product end to end on a generated shop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        customers: Annotated[int, typer.Option(help="Customers in the demo shop.")] = 2000,
        items: Annotated[int, typer.Option(help="Products in the demo shop.")] = 400,
        days: Annotated[int, typer.Option(help="Days of history.")] = 120,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
        as_json: JsonOpt = False,
    ) -> None:
        """Generate a demo shop, ingest and clean it, and report on its health."""
        from tailorcast.cli.ingest_cmd import render_summaries, run_ingest, totals
        from tailorcast.cli.report_cmd import render_report
        from tailorcast.config import Settings
        from tailorcast.datasets import demo_shop
        from tailorcast.demo import demo_config, prepare_demo_store
        from tailorcast.report import data_health
        from tailorcast.store import Store

        started = time.perf_counter()
        folder = Path(store or Settings().store)
        prepare_demo_store(folder)
        if not as_json:
            console.rule("[bold]tailorcast demo")
            console.print(
                f"Generating a shop: {customers:,} customers, {items:,} products, {days} days "
                f"(seed {seed}), with deliberate dirt: duplicates, double clicks, a bot, "
                "outlier amounts, malformed rows, missing attributes."
            )
        shop = demo_shop(n_customers=customers, n_items=items, days=days, seed=seed)
        files = shop.write(folder / "demo-data")
        summaries = run_ingest(
            folder,
            demo_config(),
            events=files.events,
            users=files.customers,
            items=files.items,
            insecure_dev=insecure_dev,
            show_progress=not as_json,
        )
        with Store.open(folder) as opened:
            opened.set_meta("demo", "true")
            report = data_health(opened)
        if as_json:
            print_json(
                {
                    "ingest": totals(summaries),
                    "report": report,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
            return
        render_summaries(summaries)
        console.rule("[bold]Data health")
        render_report(report)
        console.print(f"\nDone in {time.perf_counter() - started:.1f} s. Store: {folder}")
