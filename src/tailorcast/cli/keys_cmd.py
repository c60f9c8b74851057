"""``tailorcast keys``: API keys for the server, and data keys for stores.

API keys live in the store folder (``api-keys.json``, hashes only) and can be made and
revoked while the server runs; a revoked key stops working within a second.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tailorcast.cli.common import InsecureOpt, JsonOpt, StoreOpt, console, print_json, user_errors

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="Keys: API keys for the server, and data keys for a store.")
    app.add_typer(keys, name="keys")

    @keys.command("create")
    def create(
        scope: Annotated[
            list[str],
            typer.Option("--scope", help="read, write or admin (repeat for several)."),
        ],
        name: Annotated[str, typer.Option(help="A note saying who uses the key.")] = "",
        store: StoreOpt = None,
        as_json: JsonOpt = False,
        insecure_dev: InsecureOpt = False,
    ) -> None:
        """Make an API key. The key is printed once; only its hash is kept."""
        del insecure_dev  # API keys need no data keys
        from tailorcast.config import Settings
        from tailorcast.serving.audit import append_audit
        from tailorcast.serving.auth import KeyStore

        folder = store or Settings().store
        with user_errors():
            created = KeyStore(folder).create(scope, name=name)
            append_audit(
                folder,
                "api_key.create",
                {"id": created.info.id, "scopes": list(created.info.scopes)},
                actor="cli",
            )
        if as_json:
            print_json({"key": created.key, **created.info.to_dict()})
        else:
            print(created.key)
            console.print(
                f"[dim]key id {created.info.id}, scopes {', '.join(created.info.scopes)}; "
                "shown once: store it now[/dim]",
                highlight=False,
            )

    @keys.command("list")
    def list_keys(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
        """The store's API keys (ids, names, scopes, revoked or not; never the keys)."""
        from rich.table import Table

        from tailorcast.config import Settings
        from tailorcast.serving.auth import KeyStore

        with user_errors():
            entries = KeyStore(store or Settings().store).entries()
        if as_json:
            print_json([e.to_dict() for e in entries])
            return
        table = Table(title="API keys", title_justify="left")
        for column in ("id", "name", "scopes", "created", "status"):
            table.add_column(column)
        for e in entries:
            status = "active" if e.active else f"revoked {e.revoked_at}"
            table.add_row(e.id, e.name, ", ".join(e.scopes), e.created_at, status)
        console.print(table)

    @keys.command("revoke")
    def revoke(
        key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (keys list).")],
        store: StoreOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Revoke an API key; a running server refuses it within a second."""
        from tailorcast.config import Settings
        from tailorcast.serving.audit import append_audit
        from tailorcast.serving.auth import KeyStore

        folder = store or Settings().store
        with user_errors():
            revoked = KeyStore(folder).revoke(key_id)
            append_audit(folder, "api_key.revoke", {"id": revoked.id}, actor="cli")
        if as_json:
            print_json(revoked.to_dict())
        else:
            console.print(f"revoked API key {revoked.id}", highlight=False)

    @keys.command("data-keys")
    def data_keys(insecure_dev: InsecureOpt = False) -> None:
        """Print fresh pseudonym and encryption keys as environment lines (for a .env file)."""
        del insecure_dev  # accepted by every command; fresh keys need no store
        from tailorcast.privacy import generate_key

        print(f"TAILORCAST_PSEUDONYM_KEY={generate_key()}")
        print(f"TAILORCAST_ENCRYPTION_KEY={generate_key()}")
