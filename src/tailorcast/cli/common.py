"""Options and helpers shared by every command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = [
    "InsecureOpt",
    "JsonOpt",
    "StoreOpt",
    "console",
    "err_console",
    "print_json",
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
