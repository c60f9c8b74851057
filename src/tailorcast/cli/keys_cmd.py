"""``tailorcast keys``: key material for stores."""

from __future__ import annotations

import typer

from tailorcast.cli.common import InsecureOpt

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="Keys: data keys for a store (API keys come with the server).")
    app.add_typer(keys, name="keys")

    @keys.command("data-keys")
    def data_keys(insecure_dev: InsecureOpt = False) -> None:
        """Print fresh pseudonym and encryption keys as environment lines (for a .env file)."""
        del insecure_dev  # accepted by every command; fresh keys need no store
        from tailorcast.privacy import generate_key

        print(f"TAILORCAST_PSEUDONYM_KEY={generate_key()}")
        print(f"TAILORCAST_ENCRYPTION_KEY={generate_key()}")
