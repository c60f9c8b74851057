"""``tailorcast audience``: the customers most likely to want an item or category, or the
members of an RFM segment, ranked and exported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json, user_errors
from tailorcast.errors import ConfigError

__all__ = ["audience_target", "load_latest_model", "register"]

ItemOpt = Annotated[str | None, typer.Option("--item", help="An item ID to find buyers for.")]
CategoryOpt = Annotated[str | None, typer.Option("--category", help="A category.")]
SegmentOpt = Annotated[
    str | None, typer.Option("--segment", help="An RFM segment, e.g. 'At risk'.")
]
SizeOpt = Annotated[int | None, typer.Option("--size", help="Keep the best N customers.")]
WeightedOpt = Annotated[
    bool,
    typer.Option("--value-weighted", help="Weight affinity by expected value (CLV x propensity)."),
]
MinSizeOpt = Annotated[
    int, typer.Option("--min-size", help="Refuse smaller audiences (no one singled out).")
]
RecentOpt = Annotated[
    float,
    typer.Option("--recent-days", help="Leave out customers who bought it within N days."),
]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="The audience's date (default: latest event).")
]


def audience_target(item: str | None, category: str | None, segment: str | None) -> Any:
    """The one target given (``ConfigError``, exit 2, for none or several)."""
    from tailorcast.marketing.audiences import AudienceTarget

    return AudienceTarget.of(item=item, category=category, segment=segment)


def load_latest_model(folder: Path, needed: bool) -> tuple[Any, str | None]:
    """The latest saved model and its version; (None, None) when not ``needed`` and none."""
    from tailorcast.artifacts import load_artifact
    from tailorcast.errors import NotFoundError

    try:
        artifact = load_artifact(folder)
    except NotFoundError:
        if needed:
            raise
        return None, None
    return artifact.model, artifact.version


def register(app: typer.Typer) -> None:
    @app.command("audience")
    def audience(
        item: ItemOpt = None,
        category: CategoryOpt = None,
        segment: SegmentOpt = None,
        size: SizeOpt = None,
        value_weighted: WeightedOpt = False,
        min_size: MinSizeOpt = 50,
        recent_days: RecentOpt = 30.0,
        as_of: AsOfOpt = None,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Write CSV, Parquet or JSON.")
        ] = None,
        reveal: Annotated[
            bool,
            typer.Option(
                "--reveal",
                help="Write the shop's customer IDs and decrypted contacts (needs the keys).",
            ),
        ] = False,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Customers ranked by affinity for an item or category (or a segment's members),
        with marketing consent, not recent buyers; refused below --min-size."""
        del insecure_dev  # an existing store's keys are found without it
        from tailorcast.config import Settings
        from tailorcast.marketing.audiences import build_audience, export_audience
        from tailorcast.store import open_store

        with user_errors():
            target = audience_target(item, category, segment)
            if reveal and out is None:
                raise ConfigError("--reveal only applies to a file: give --out")
            folder = Path(store or Settings().store)
            opened, keys = open_store(folder, read_only=True, need_keys=reveal)
            with opened:
                model, _ = load_latest_model(folder, needed=target.segment is None)
                result = build_audience(
                    opened,
                    target,
                    model=model,
                    size=size,
                    value_weighted=value_weighted,
                    min_size=min_size,
                    recent_days=recent_days,
                    as_of=as_of,
                )
                if out is not None:
                    export_audience(opened, result, out, keys=keys, reveal=reveal)
        summary = result.summary() | ({"out": str(out)} if out is not None else {})
        if as_json:
            top = result.members.drop(columns=["raw_affinity"], errors="ignore").head(20)
            print_json(summary | {"top": top.to_dict(orient="records")})
            return
        excluded = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.excluded.items())
        console.print(
            f"Audience for {target.describe()}: [bold]{len(result):,}[/bold] customers "
            f"as of {result.as_of:%Y-%m-%d} (excluded: {excluded})"
            + (f"; written to {out}" if out is not None else ""),
            highlight=False,
        )
        if out is None:
            console.print(_top_table(result.members.head(15)))


def _top_table(frame: Any) -> Table:
    table = Table(title="Best-ranked customers (pseudonyms)", title_justify="left")
    shown = [c for c in frame.columns if c != "raw_affinity"]
    for col in shown:
        table.add_column(col, justify="left" if col in ("user_id", "segment") else "right")
    for row in frame[shown].itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    return table
