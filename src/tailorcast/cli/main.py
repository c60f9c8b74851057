"""The ``tailorcast`` command: a thin shell over the library.

Exit codes: 0 ok, 1 runtime failure, 2 usage or bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import sys

import typer

from tailorcast.errors import UserError

__all__ = ["app", "main"]

app = typer.Typer(
    name="tailorcast",
    help="AI engine for personalized marketing in online shops.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Each command group lives in its own module and adds itself to ``app``.
    from tailorcast.cli import (
        audience_cmd,
        campaign_cmd,
        demo_cmd,
        evaluate_cmd,
        experiment_cmd,
        ingest_cmd,
        keys_cmd,
        propensity_cmd,
        recommend_cmd,
        report_cmd,
        segment_cmd,
        serve_cmd,
        train_cmd,
    )

    for module in (
        demo_cmd,
        ingest_cmd,
        report_cmd,
        evaluate_cmd,
        train_cmd,
        recommend_cmd,
        keys_cmd,
        serve_cmd,
        segment_cmd,
        propensity_cmd,
    ):
        module.register(app)
    for marketing in (audience_cmd, campaign_cmd, experiment_cmd):
        marketing.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
