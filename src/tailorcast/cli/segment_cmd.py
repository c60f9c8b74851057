"""``tailorcast segment rfm|clusters|clv``: customer segments and lifetime value.

Customer IDs in the output are the store's pseudonyms (the IDs the models and the HTTP API use
inside); ``--shop-ids`` writes the shop's own IDs instead, decrypted with the store's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json, user_errors
from tailorcast.errors import ConfigError

if TYPE_CHECKING:
    from tailorcast.store import Store

__all__ = ["AsOfOpt", "OutOpt", "ShopIdsOpt", "finish_table", "register", "segment_summary"]

AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Only events up to this date/time (default: the latest event)."),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Write every customer as CSV, Parquet or JSON (by extension)."
    ),
]
ShopIdsOpt = Annotated[
    bool,
    typer.Option(
        "--shop-ids",
        help="Write the shop's customer IDs (needs the store's keys) instead of pseudonyms.",
    ),
]

segment_app = typer.Typer(
    help="Customer segments: RFM, behavioural clusters, lifetime value.", no_args_is_help=True
)


def segment_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Customers, share and mean recency/frequency/monetary per RFM segment, best first."""
    from tailorcast.marketing.rfm import SEGMENTS

    grouped = table.groupby("segment", observed=True)
    out = grouped.agg(
        customers=("user_id", "size"),
        recency_days=("recency_days", "mean"),
        frequency=("frequency", "mean"),
        monetary=("monetary", "mean"),
    )
    out["share"] = out["customers"] / max(len(table), 1)
    order = [s for s in SEGMENTS if s in out.index]
    return out.loc[order].reset_index()


def finish_table(
    store: Store, frame: pd.DataFrame, out: Path | None, shop_ids: bool, keys: Any
) -> pd.DataFrame:
    """``frame`` with shop IDs where asked, written to ``out`` (if given)."""
    from tailorcast.marketing import with_shop_ids
    from tailorcast.recommend import write_table

    shown = with_shop_ids(store, frame, keys) if shop_ids else frame
    if out is not None:
        write_table(shown, out)
    return shown


def _render(frame: pd.DataFrame, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), justify="left" if frame[column].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(
            *(
                f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
                for v in row
            )
        )
    console.print(table)


def _open(store: Path | None, insecure_dev: bool, shop_ids: bool) -> tuple[Store, Any]:
    from tailorcast.store import open_store

    # Pseudonymous output reads the store only; shop IDs need the keys to decrypt them.
    return open_store(store, insecure_dev=insecure_dev, read_only=True, need_keys=shop_ids)


@segment_app.command("rfm")
def rfm_command(
    as_of: AsOfOpt = None,
    out: OutOpt = None,
    shop_ids: ShopIdsOpt = False,
    store: StoreOpt = None,
    insecure_dev: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """RFM scores (quintiles) and named segments of every customer with an order."""
    from tailorcast.marketing import rfm_segments

    with user_errors():
        opened, keys = _open(store, insecure_dev, shop_ids)
        with opened:
            table = rfm_segments(opened, as_of)
            finish_table(opened, table, out, shop_ids, keys)
    summary = segment_summary(table)
    if as_json:
        print_json({"customers": len(table), "out": out, "segments": summary.to_dict("records")})
        return
    _render(summary, f"RFM segments of {len(table):,} customers")
    if out is not None:
        console.print(f"Wrote {len(table):,} customers to {out}")


@segment_app.command("clusters")
def clusters_command(
    k: Annotated[
        int | None, typer.Option("--k", help="Number of clusters (default: best silhouette).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of k-means.")] = 2026,
    as_of: AsOfOpt = None,
    out: OutOpt = None,
    shop_ids: ShopIdsOpt = False,
    store: StoreOpt = None,
    insecure_dev: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Behavioural clusters (k-means on customer features), each described by the features
    that set it apart."""
    from tailorcast.marketing import cluster_customers

    with user_errors():
        opened, keys = _open(store, insecure_dev, shop_ids)
        with opened:
            result = cluster_customers(opened, k, seed, as_of=as_of)
            finish_table(opened, result.labels, out, shop_ids, keys)
    described = result.descriptions
    if as_json:
        print_json(
            {
                "k": result.k,
                "silhouette": result.silhouette,
                "out": out,
                "clusters": described.to_dict("records"),
            }
        )
        return
    score = result.silhouette.get(result.k, float("nan"))
    _render(
        described[["cluster", "customers", "share", "description"]],
        f"{result.k} clusters of {len(result.labels):,} customers (silhouette {score:.3f})",
    )
    if out is not None:
        console.print(f"Wrote {len(result.labels):,} customers to {out}")


@segment_app.command("clv")
def clv_command(
    as_of: Annotated[str, typer.Option("--as-of", help="Fit on the orders up to this date/time.")],
    horizon_days: Annotated[
        float, typer.Option("--horizon-days", help="Predict purchases and spend for N days.")
    ],
    out: OutOpt = None,
    shop_ids: ShopIdsOpt = False,
    store: StoreOpt = None,
    insecure_dev: InsecureOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Customer lifetime value: expected purchases (BG/NBD), expected spend (Gamma-Gamma)
    and the probability of being still active, for every customer with an order."""
    from tailorcast.marketing import fit_clv

    with user_errors():
        if not horizon_days > 0:
            raise ConfigError(f"--horizon-days must be positive, got {horizon_days}")
        opened, keys = _open(store, insecure_dev, shop_ids)
        with opened:
            model = fit_clv(opened, as_of)
            table = finish_table(opened, model.predict(horizon_days), out, shop_ids, keys)
    totals = {
        "customers": len(table),
        "expected_purchases": float(table["expected_purchases"].sum()),
        "expected_spend": float(table["expected_spend"].sum()),
        "mean_p_alive": float(table["p_alive"].mean()),
    }
    if as_json:
        print_json({"horizon_days": horizon_days, "out": out, **totals, **model.parameters()})
        return
    p = model.parameters()
    console.print(
        f"BG/NBD r={p['bgnbd']['r']:.3f} alpha={p['bgnbd']['alpha']:.2f} "
        f"a={p['bgnbd']['a']:.3f} b={p['bgnbd']['b']:.3f}; Gamma-Gamma "
        f"p={p['gamma_gamma']['p']:.3f} q={p['gamma_gamma']['q']:.3f} "
        f"gamma={p['gamma_gamma']['gamma']:.3f}"
    )
    console.print(
        f"Next {horizon_days:g} days after {model.as_of:%Y-%m-%d %H:%M}: "
        f"{totals['expected_purchases']:,.1f} purchases, {totals['expected_spend']:,.2f} spend "
        f"from {len(table):,} customers (mean P(alive) {totals['mean_p_alive']:.2f})"
    )
    top = table.sort_values("expected_spend", ascending=False).head(10)
    _render(top, "Highest expected spend")
    if out is not None:
        console.print(f"Wrote {len(table):,} customers to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(segment_app, name="segment")
