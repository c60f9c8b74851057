"""``tailorcast demo``: the whole product end to end on a generated shop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.table import Table

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json

if TYPE_CHECKING:
    from tailorcast.datasets import DemoShop
    from tailorcast.demo import MarketingDemo
    from tailorcast.training import TrainResult

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
        budget: Annotated[
            float, typer.Option(help="Seconds for choosing and tuning the recommender.")
        ] = 20.0,
        as_json: JsonOpt = False,
    ) -> None:
        """Generate a demo shop, ingest and clean it, report on its health, train a
        recommender, then segment, value and target customers with a campaign whose lift is
        measured on simulated weeks after the send date."""
        from tailorcast.cli.ingest_cmd import render_summaries, run_ingest, totals
        from tailorcast.cli.report_cmd import render_report
        from tailorcast.config import Settings
        from tailorcast.datasets import demo_shop
        from tailorcast.demo import demo_config, prepare_demo_store, run_marketing_demo
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
        if not as_json:
            render_summaries(summaries)
            console.rule("[bold]Data health")
            render_report(report)
            console.rule("[bold]Recommender")
            console.print(f"Choosing and tuning a recommender ({budget:.0f} s budget)...")
        trained, customer, history, recs = _train_and_show(folder, shop, budget)
        best_pop = max(
            (t.ndcg_at_10 for t in trained.trials if t.model == "popularity" and t.ndcg_at_10),
            default=None,
        )
        if not as_json:
            console.rule("[bold]Marketing")
            console.print(
                "Segments, lifetime value, a value-weighted audience and a campaign with a "
                "control group; then 4 simulated weeks after the send date..."
            )
        marketing = run_marketing_demo(folder, shop, seed=seed)
        seconds = round(time.perf_counter() - started, 2)
        if as_json:
            print_json(
                {
                    "ingest": totals(summaries),
                    "report": report,
                    "model": trained.to_dict(),
                    "popularity_ndcg@10": best_pop,
                    "customer": customer,
                    "history": history.to_dict(orient="records"),
                    "recommendations": recs.to_dict(orient="records"),
                    "marketing": marketing.to_dict(),
                    "seconds": seconds,
                }
            )
            return
        chosen = trained.metrics.get("ndcg@10")
        console.print(
            f"Chosen: [bold]{trained.name}[/bold] {trained.params}: validation NDCG@10 "
            f"{chosen:.3f} vs {best_pop:.3f} for popularity "
            f"({len(trained.trials)} trials), saved as version {trained.version}"
            if chosen is not None and best_pop is not None
            else f"Chosen: {trained.name} {trained.params}, version {trained.version}"
        )
        console.print(_frame_table(f"Customer {customer}: latest events", history))
        console.print(_frame_table(f"Recommendations for {customer}", recs))
        console.rule("[bold]Marketing")
        _show_marketing(marketing)
        console.print(f"\nDone in {seconds:.1f} s. Store: {folder}")


def _train_and_show(
    folder: Path, shop: DemoShop, budget: float
) -> tuple[TrainResult, str, pd.DataFrame, pd.DataFrame]:
    """Auto-train on the demo store; pick a busy (non-bot) customer and explain their list."""
    from tailorcast.recommend import recommend_for
    from tailorcast.store import open_store
    from tailorcast.training import train

    store, keys = open_store(folder, read_only=True)
    with store:
        result = train(store, "auto", budget_seconds=budget, store_dir=folder)
        events = shop.events
        bots = set(shop.truth.bot_user_ids)
        buyers = events[(events["event_type"] == "purchase") & ~events["user_id"].isin(bots)]
        customer = str(buyers["user_id"].value_counts().index[0])
        titles = shop.items.set_index("item_id")["title"]
        mine = events[events["user_id"] == customer]
        # the raw export holds the planted dirt: show only rows the ingest accepted as valid
        when = pd.to_datetime(mine["timestamp"], errors="coerce", utc=True)
        mine = mine.assign(timestamp=when)[when.notna() & (when <= pd.Timestamp.now(tz="UTC"))]
        history = mine.sort_values("timestamp").tail(8)[["timestamp", "event_type", "item_id"]]
        history = history.assign(title=history["item_id"].map(titles)).reset_index(drop=True)
        recs = recommend_for(store, result.model, [customer], k=5, keys=keys)
        recs = recs.assign(title=recs["item_id"].map(titles))[
            ["rank", "item_id", "title", "score", "reason"]
        ]
    return result, customer, history, recs


def _frame_table(title: str, frame: pd.DataFrame) -> Table:
    table = Table(title=title, title_justify="left")
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    return table


def _show_marketing(result: MarketingDemo) -> None:
    """Segments, CLV, audience and campaign, and the measured lift beside the planted one."""
    from tailorcast.cli.campaign_cmd import render_measurement

    if result.segments:
        counts = ", ".join(f"{k} {v:,}" for k, v in result.segments.items())
        console.print(f"RFM segments: {counts}", highlight=False)
    if result.clv:
        c = result.clv
        console.print(
            f"Lifetime value (BG/NBD + Gamma-Gamma), next {c['horizon_days']} days: "
            f"{c['expected_purchases']:,.0f} purchases worth {c['expected_spend']:,.0f} "
            f"expected from {c['customers']:,} customers (mean P(alive) {c['mean_p_alive']:.2f})",
            highlight=False,
        )
    if result.audience:
        a = result.audience
        kind = (
            "value-weighted (affinity x CLV x propensity)" if a["value_weighted"] else "by affinity"
        )
        excluded = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in a["excluded"].items())
        console.print(
            f"Audience for {', '.join(f'{k} {v}' for k, v in a['target'].items())}: "
            f"{a['size']:,} customers ranked {kind}; excluded: {excluded}",
            highlight=False,
        )
    if result.campaign:
        c = result.campaign
        console.print(
            f"Campaign {c['name']}: {c['treated']:,} treated, {c['control']:,} in a control "
            f"group stratified by segment ({c['holdout']:.0%}, seed {c['seed']}), "
            f"{c['items_per_customer']} offers each, sent {c['send_date'][:10]}",
            highlight=False,
        )
    if result.simulation:
        s = result.simulation
        console.print(
            f"Simulated {s['weeks']} weeks after the send date: {s['events']:,} events "
            f"ingested, {s['responders']:,} treated customers responded to their offers "
            f"(planted effect: conversion {s['true_conversion_lift']:+.1%}, bought an offered "
            f"item {s['true_offer_conversion_lift']:+.1%}, revenue per member "
            f"{s['true_revenue_lift']:+.2f})",
            highlight=False,
        )
    if result.measurement is not None:
        render_measurement(result.measurement)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
