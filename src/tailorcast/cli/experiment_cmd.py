"""``tailorcast experiment``: A/B tests of recommenders: create, serve (lists recorded with
their variant), measure (per-variant KPIs with significance)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json, user_errors
from tailorcast.errors import ConfigError

__all__ = ["register"]

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The experiment's name.")]


def _variants(
    specs: list[str], weights: list[str]
) -> tuple[dict[str, str | None], dict[str, float]]:
    """``NAME=VERSION`` (or ``NAME`` for the latest model) and ``NAME=WEIGHT`` flags."""
    variants: dict[str, str | None] = {}
    for spec in specs:
        name, _, version = spec.partition("=")
        if not name.strip() or name.strip() in variants:
            raise ConfigError(f"--variant {spec!r}: give NAME=MODEL_VERSION, each name once")
        variants[name.strip()] = version.strip() or None
    shares: dict[str, float] = {}
    for spec in weights:
        name, _, value = spec.partition("=")
        try:
            shares[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--weight {spec!r}: give NAME=NUMBER") from None
    unknown = sorted(set(shares) - set(variants))
    if unknown:
        raise ConfigError(f"--weight for unknown variant(s) {', '.join(unknown)}")
    return variants, shares


def register(app: typer.Typer) -> None:
    experiment = typer.Typer(help="A/B tests of recommenders: assignment, serving, KPIs.")
    app.add_typer(experiment, name="experiment")

    @experiment.command("create")
    def create(
        name: NameArg,
        variant: Annotated[
            list[str],
            typer.Option(
                "--variant",
                help="NAME=MODEL_VERSION (repeat; the first is the control; no version: latest).",
            ),
        ],
        weight: Annotated[
            list[str] | None, typer.Option("--weight", help="NAME=SHARE of traffic (default 1).")
        ] = None,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Create an experiment; customers are assigned to variants by hashing."""
        del insecure_dev
        from tailorcast.artifacts import load_artifact
        from tailorcast.config import Settings
        from tailorcast.marketing.experiments import create_experiment
        from tailorcast.store import open_store

        with user_errors():
            variants, shares = _variants(variant, weight or [])
            folder = Path(store or Settings().store)
            for version in variants.values():
                if version is not None:
                    load_artifact(folder, version)  # an unknown version fails now, not later
            opened, _ = open_store(folder, need_keys=False)
            with opened:
                made = create_experiment(opened, name, variants, weights=shares)
        if as_json:
            print_json(made.model_dump())
        else:
            arms = ", ".join(
                f"{v.name} ({v.model_version or 'latest'}, weight {v.weight:g})"
                for v in made.variants
            )
            console.print(f"Experiment {made.name}: {arms}", highlight=False)

    @experiment.command("serve")
    def serve(
        name: NameArg,
        user: Annotated[
            list[str] | None,
            typer.Option("--user", "-u", help="A customer ID (repeat); default: every customer."),
        ] = None,
        k: Annotated[int, typer.Option("-k", help="Items per list.")] = 10,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="Write the lists (CSV/Parquet/JSON).")
        ] = None,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Recommend with each customer's variant and record every served list."""
        del insecure_dev
        from tailorcast.artifacts import load_artifact
        from tailorcast.config import Settings
        from tailorcast.marketing._data import with_shop_ids
        from tailorcast.marketing.experiments import get_experiment, serve_experiment
        from tailorcast.recommend import write_table
        from tailorcast.store import open_store

        with user_errors():
            if k < 1:
                raise ConfigError(f"-k must be at least 1, got {k}")
            folder = Path(store or Settings().store)
            opened, keys = open_store(folder)
            with opened:
                experiment = get_experiment(opened, name)
                models = {
                    v.name: load_artifact(folder, v.model_version).model
                    for v in experiment.variants
                }
                if user:
                    ids: Any = (
                        keys.pseudonymizer().many(user)
                        if opened.pseudonymized and keys is not None
                        else user
                    )
                else:
                    first = models[experiment.control]
                    ids = first.user_ids_[
                        first.user_items_.indptr[1:] > first.user_items_.indptr[:-1]
                    ]
                served = serve_experiment(opened, experiment, models, ids, k)
                shown = with_shop_ids(opened, served, keys)
                if out is not None:
                    write_table(shown, out)
        counts = served.drop_duplicates("user_id")["variant"].value_counts().to_dict()
        if as_json:
            print_json({"name": name, "customers": counts, "out": str(out) if out else None})
        else:
            console.print(
                f"Served and recorded {sum(counts.values()):,} lists: "
                + ", ".join(f"{v} {n:,}" for v, n in sorted(counts.items()))
                + (f"; written to {out}" if out else ""),
                highlight=False,
            )

    @experiment.command("measure")
    def measure(
        name: NameArg,
        window_days: Annotated[
            float, typer.Option("--window-days", help="Days after each customer's first list.")
        ] = 14.0,
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Per-variant conversion, hit rate and revenue, each vs the control, with p-values.

        Lists a server (``tailorcast serve --experiment``) spooled and no merge has reached
        the store yet are merged first, so they are counted."""
        del insecure_dev
        from tailorcast.config import Settings
        from tailorcast.marketing.experiments import measure_experiment
        from tailorcast.serving.spool import segments
        from tailorcast.store import open_store

        with user_errors():
            if window_days <= 0:
                raise ConfigError(f"--window-days must be positive, got {window_days}")
            folder = Path(store or Settings().store)
            # Opening for writing (with the keys) merges what a server left in its spool.
            pending = bool(segments(folder))
            opened, _ = open_store(folder, read_only=not pending, need_keys=pending)
            with opened:
                report = measure_experiment(opened, name, window_days=window_days)
        if as_json:
            print_json(report.to_dict())
            return
        table = Table(
            title=f"Experiment {report.name} ({report.window_days:g} days, control "
            f"{report.control})",
            title_justify="left",
        )
        for col in ("variant", "customers", "conversion", "lift", "p", "hit rate", "p (hits)",
                    "revenue/customer", "p (revenue)"):  # fmt: skip
            table.add_column(col, justify="left" if col == "variant" else "right")
        for v in report.variants:
            table.add_row(
                v.variant,
                f"{v.customers:,}",
                f"{v.conversion:.1%}",
                f"{v.conversion_lift:+.1%} [{v.conversion_ci[0]:+.1%}, {v.conversion_ci[1]:+.1%}]",
                f"{v.conversion_p:.3g}",
                f"{v.hit_rate:.1%}",
                f"{v.hit_rate_p:.3g}",
                f"{v.revenue_per_customer:.2f}",
                f"{v.revenue_p:.3g}",
            )
        console.print(table)
        console.print(
            f"Across variants (chi-square, conversion): p = {report.conversion_chi2_p:.3g}. "
            f"Tests: {report.method}.",
            highlight=False,
        )
