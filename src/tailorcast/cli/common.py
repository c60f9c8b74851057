"""Options and helpers shared by every command."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tailorcast.errors import UserError

__all__ = [
    "InsecureOpt",
    "JsonOpt",
    "StoreOpt",
    "console",
    "err_console",
    "print_json",
    "user_errors",
]

# Piped or redirected output gets room for wide tables instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Store folder (default: $TAILORCAST_STORE, else ./tailorcast-store).",
        show_default=False,
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure-dev",
        help="Allow a development store with generated keys kept in the store folder.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def print_json(data: Any) -> None:
    """JSON to stdout, nothing else (so it can be piped)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def user_errors() -> Iterator[None]:
    """A user's mistake ends the command with one line on stderr and exit code 2, also when
    the command runs outside ``tailorcast.cli.main.main`` (which does the same)."""
    try:
        yield
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
