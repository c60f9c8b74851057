"""``tailorcast campaign``: create (audience + control group + offers), export for the
mail/push tool, measure the lift afterwards, and list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tailorcast.cli.audience_cmd import (
    AsOfOpt,
    MinSizeOpt,
    RecentOpt,
    SizeOpt,
    WeightedOpt,
    audience_target,
    load_latest_model,
)
from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json, user_errors

__all__ = ["register", "render_measurement"]

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The campaign's name.")]


def register(app: typer.Typer) -> None:
    campaign = typer.Typer(help="Campaigns: audience, control group, offers, measured lift.")
    app.add_typer(campaign, name="campaign")

    @campaign.command("create")
    def create(
        name: Annotated[str, typer.Option("--name", help="A unique campaign name.")],
        audience_item: Annotated[
            str | None, typer.Option("--audience-item", help="Audience: buyers-to-be of item.")
        ] = None,
        audience_category: Annotated[
            str | None, typer.Option("--audience-category", help="Audience: a category.")
        ] = None,
        audience_segment: Annotated[
            str | None, typer.Option("--audience-segment", help="Audience: an RFM segment.")
        ] = None,
        holdout: Annotated[
            str, typer.Option("--holdout", help="Control group share, e.g. 10% or 0.1.")
        ] = "10%",
        items_per_customer: Annotated[
            int, typer.Option("--items-per-customer", help="Offers per customer.")
        ] = 3,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the control draw.")] = 0,
        send_date: Annotated[
            str | None, typer.Option("--send-date", help="When it is sent (default: now).")
        ] = None,
        rules_file: Annotated[
            Path | None,
            typer.Option(
                "--rules",
                help="Business rules for the offers (JSON: include_categories, max_price, "
                "exclude_items, pin, ...).",
            ),
        ] = None,
        size: SizeOpt = None,
        value_weighted: WeightedOpt = False,
        min_size: MinSizeOpt = 50,
        recent_days: RecentOpt = 30.0,
        as_of: AsOfOpt = None,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Store a campaign: members, a seeded control group stratified by RFM segment, each
        member's next-best offers, and the send date."""
        del insecure_dev
        from tailorcast.config import Settings
        from tailorcast.marketing.campaigns import create_campaign, parse_holdout
        from tailorcast.store import open_store

        with user_errors():
            target = audience_target(audience_item, audience_category, audience_segment)
            share = parse_holdout(holdout)
            rules = _read_rules(rules_file)
            folder = Path(store or Settings().store)
            model, version = load_latest_model(folder, needed=True)
            opened, _ = open_store(folder, need_keys=False)
            with opened:
                summary = create_campaign(
                    opened,
                    name,
                    target,
                    model=model,
                    model_version=version,
                    holdout=share,
                    items_per_customer=items_per_customer,
                    seed=seed,
                    size=size,
                    value_weighted=value_weighted,
                    min_size=min_size,
                    recent_days=recent_days,
                    send_date=send_date,
                    as_of=as_of,
                    rules=rules,
                )
        if as_json:
            print_json(summary.to_dict())
            return
        console.print(
            f"Campaign [bold]{summary.name}[/bold]: {summary.members:,} members, "
            f"{summary.treated:,} treated, {summary.control:,} in the control group "
            f"({summary.holdout:.0%}, seed {summary.seed}), send date {summary.send_date}",
            highlight=False,
        )
        table = Table(title="Members by segment", title_justify="left")
        for col in ("segment", "treated", "control"):
            table.add_column(col, justify="left" if col == "segment" else "right")
        for segment, arms in summary.segments.items():
            table.add_row(segment, str(arms.get("treated", 0)), str(arms.get("control", 0)))
        console.print(table)

    @campaign.command("export")
    def export(
        name: NameArg,
        out: Annotated[Path, typer.Option("--out", "-o", help="CSV, Parquet or JSON file.")],
        pseudonymized: Annotated[
            bool,
            typer.Option("--pseudonymized", help="Pseudonyms only, no IDs or contact fields."),
        ] = False,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Write the treated members' file for the mail/push tool: customer ID, email, first
        name (decrypted with the keys) and each offer's title, price, links and reason."""
        del insecure_dev
        from tailorcast.config import Settings
        from tailorcast.marketing.campaigns import export_campaign
        from tailorcast.store import open_store

        with user_errors():
            folder = Path(store or Settings().store)
            opened, keys = open_store(folder, need_keys=not pseudonymized)
            with opened:
                path, rows = export_campaign(
                    opened, name, out, keys=keys, pseudonymized=pseudonymized
                )
        if as_json:
            print_json({"name": name, "out": str(path), "rows": rows})
        else:
            console.print(f"Wrote {rows:,} treated members to {path}", highlight=False)

    @campaign.command("measure")
    def measure(
        name: NameArg,
        window_days: Annotated[
            float, typer.Option("--window-days", help="Days after the send date.")
        ] = 28.0,
        confidence: Annotated[
            float, typer.Option("--confidence", help="Confidence level of the intervals.")
        ] = 0.95,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Conversion, revenue per member and lift vs the control group, with intervals."""
        del insecure_dev
        from tailorcast.config import Settings
        from tailorcast.marketing.campaigns import measure_campaign
        from tailorcast.store import open_store

        with user_errors():
            folder = Path(store or Settings().store)
            opened, _ = open_store(folder, read_only=True, need_keys=False)
            with opened:
                result = measure_campaign(
                    opened, name, window_days=window_days, confidence=confidence
                )
        if as_json:
            print_json(result.to_dict())
        else:
            render_measurement(result)

    @campaign.command("list")
    def list_command(
        store: StoreOpt = None, insecure_dev: InsecureOpt = False, as_json: JsonOpt = False
    ) -> None:
        """The store's campaigns, newest first."""
        del insecure_dev
        from tailorcast.config import Settings
        from tailorcast.marketing.campaigns import list_campaigns
        from tailorcast.store import open_store

        with user_errors():
            opened, _ = open_store(Path(store or Settings().store), read_only=True, need_keys=False)
            with opened:
                frame = list_campaigns(opened)
        if as_json:
            print_json(frame.to_dict(orient="records"))
            return
        table = Table(title="Campaigns", title_justify="left")
        for col in frame.columns:
            table.add_column(str(col))
        for row in frame.itertuples(index=False):
            table.add_row(*[str(v) for v in row])
        console.print(table)


def _read_rules(path: Path | None) -> Any:
    """Business rules from a JSON file (None: the defaults)."""
    import json

    from tailorcast.errors import ConfigError
    from tailorcast.rules import build_rules

    if path is None:
        return None
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read rules from {path}: {exc}") from None
    if not isinstance(fields, dict):
        raise ConfigError(f"{path}: rules must be a JSON object")
    return build_rules(**fields)


def render_measurement(result: Any) -> None:
    """A campaign's measured outcome on the console."""
    level = f"{result.confidence:.0%}"
    table = Table(
        title=(
            f"Campaign {result.name}: {result.n_treated:,} treated vs {result.n_control:,} "
            f"control, {result.send_date[:10]} to {result.window_end[:10]}"
        ),
        title_justify="left",
    )
    for col in ("metric", "treated", "control", "lift", f"{level} interval", "p-value"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    rows = (
        ("conversion", result.conversion, "{:.1%}", "{:+.1%}"),
        ("bought an offered item", result.offer_conversion, "{:.1%}", "{:+.1%}"),
        ("revenue per member", result.revenue_per_member, "{:.2f}", "{:+.2f}"),
    )
    for label, lift, fmt, dfmt in rows:
        table.add_row(
            label,
            fmt.format(lift.treated),
            fmt.format(lift.control),
            dfmt.format(lift.difference),
            f"[{dfmt.format(lift.low)}, {dfmt.format(lift.high)}]",
            f"{lift.p_value:.3g}",
        )
    console.print(table)
    console.print(
        f"Incremental revenue: {result.incremental_revenue:,.2f}. Intervals: {result.method}.",
        highlight=False,
    )
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
