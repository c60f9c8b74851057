"""``tailorcast ingest``: load events, customers and products into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, err_console, print_json
from tailorcast.errors import UserError
from tailorcast.ingest.config import IngestConfig, parse_mapping
from tailorcast.ingest.events import IngestSummary, ingest_events

__all__ = ["register", "render_summaries", "totals"]


def totals(summaries: list[IngestSummary]) -> dict[str, Any]:
    """Totals over several files; they reconcile because each file's counts do."""
    reasons: dict[str, int] = {}
    for s in summaries:
        for r, n in s.rejected_by_reason.items():
            key = r if s.kind == "events" else f"{s.kind}: {r}"
            reasons[key] = reasons.get(key, 0) + n
    return {
        "rows_read": sum(s.rows_read for s in summaries),
        "accepted": sum(s.accepted for s in summaries),
        "rejected": sum(s.rejected for s in summaries),
        "duplicates": sum(s.duplicates for s in summaries),
        "rejected_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "files": [s.to_dict() for s in summaries],
    }


def render_summaries(summaries: list[IngestSummary]) -> None:
    table = Table(title="Ingest summary", title_justify="left")
    for col in ("file", "kind", "read", "accepted", "rejected", "duplicates", "seconds"):
        table.add_column(col, justify="right" if col not in ("file", "kind") else "left")
    for s in summaries:
        table.add_row(
            s.source,
            s.kind,
            f"{s.rows_read:,}",
            f"{s.accepted:,}",
            f"{s.rejected:,}",
            f"{s.duplicates:,}",
            f"{s.seconds:.1f}",
        )
    console.print(table)
    for s in summaries:
        notes = []
        if s.kind == "events":
            notes.append(f"{s.near_duplicates:,} near-duplicates (double clicks)")
            notes.append(f"{s.outliers:,} outlier amounts ({s.outlier_action})")
            notes.append(f"{s.sessions_derived:,} sessions derived")
            notes.append(f"{s.bots_flagged:,} bot-like customers flagged")
            if s.extra_columns:
                notes.append("extra columns kept: " + ", ".join(s.extra_columns))
        for imp in s.imputations:
            notes.append(
                f"imputed {imp['n_imputed']:,} x {imp['table']}.{imp['column']} "
                f"({imp['strategy']}{', ' + str(imp['fill_value']) if imp['fill_value'] else ''})"
            )
        if notes:
            console.print(f"[bold]{s.source}[/bold]: " + "; ".join(notes))
        if s.rejected_by_reason:
            reasons = ", ".join(f"{r} ({n:,})" for r, n in s.rejected_by_reason.items())
            console.print(f"  rejected: {reasons}")


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        events: Annotated[
            Path | None, typer.Argument(help="Events file: CSV (.gz ok), Parquet or JSON Lines.")
        ] = None,
        users: Annotated[Path | None, typer.Option("--users", help="Customers table.")] = None,
        items: Annotated[Path | None, typer.Option("--items", help="Products table.")] = None,
        mapping: Annotated[
            list[str] | None,
            typer.Option("--map", help="Column mapping SOURCE=TARGET, e.g. customer_id=user_id."),
        ] = None,
        config: Annotated[
            Path | None, typer.Option("--config", help="Ingest configuration (TOML).")
        ] = None,
        timestamp_format: Annotated[
            str | None,
            typer.Option("--timestamp-format", help="strftime format, e.g. %Y%m%d."),
        ] = None,
        event_type: Annotated[
            str | None,
            typer.Option("--event-type", help="Event type for files without that column."),
        ] = None,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Validate, clean and load shop data; every refused row is kept with its reason."""
        if events is None and users is None and items is None:
            raise UserError("nothing to ingest: give an EVENTS file, --users or --items")
        cfg = IngestConfig.load(
            config,
            mapping=parse_mapping(mapping or []),
            event_type=event_type,
            timestamp_format=timestamp_format,
        )
        summaries = run_ingest(
            store,
            cfg,
            events=events,
            users=users,
            items=items,
            insecure_dev=insecure_dev,
            show_progress=not as_json,
        )
        if as_json:
            print_json(totals(summaries))
        else:
            render_summaries(summaries)


def run_ingest(
    store_dir: Path | None,
    cfg: IngestConfig,
    *,
    events: Any = None,
    users: Any = None,
    items: Any = None,
    insecure_dev: bool = False,
    show_progress: bool = True,
) -> list[IngestSummary]:
    """Products first (their prices help judge purchase amounts), then customers, then events."""
    from tailorcast.store import open_store

    store, keys = open_store(store_dir, insecure_dev=insecure_dev, create=True)
    summaries: list[IngestSummary] = []
    with store:
        if items is not None or users is not None:
            from tailorcast.ingest.tables import ingest_table

            if items is not None:
                summaries.append(ingest_table(store, "items", items, config=cfg, keys=keys))
            if users is not None:
                summaries.append(ingest_table(store, "users", users, config=cfg, keys=keys))
        if events is not None:
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
                disable=not show_progress or not err_console.is_terminal,
            ) as bar:
                task = bar.add_task("ingesting events", total=1.0)

                def progress(step: str, fraction: float) -> None:
                    bar.update(task, completed=fraction, description=f"events: {step}")

                summaries.append(
                    ingest_events(store, events, config=cfg, keys=keys, progress=progress)
                )
    return summaries
