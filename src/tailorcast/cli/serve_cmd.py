"""``tailorcast serve``: the HTTP API on uvicorn (see :mod:`tailorcast.serving.app`)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from tailorcast.cli.common import InsecureOpt, StoreOpt, err_console, user_errors

__all__ = ["register", "serve_env"]


def serve_env(
    store: Path,
    *,
    insecure_dev: bool = False,
    docs: bool = True,
    cors_origins: list[str] | None = None,
    retrain_every: float | None = None,
    rate_limit: float | None = None,
    max_body_bytes: int | None = None,
    experiment: str | None = None,
) -> dict[str, str]:
    """The ``TAILORCAST_SERVE_*`` variables that carry the flags into every worker."""
    env = {
        "TAILORCAST_SERVE_STORE": str(store),
        "TAILORCAST_SERVE_INSECURE_DEV": "true" if insecure_dev else "false",
        "TAILORCAST_SERVE_DOCS": "true" if docs else "false",
        "TAILORCAST_SERVE_CORS_ORIGINS": json.dumps(list(cors_origins or [])),
    }
    if retrain_every is not None:
        env["TAILORCAST_SERVE_RETRAIN_EVERY_S"] = str(retrain_every)
    if rate_limit is not None:
        env["TAILORCAST_SERVE_RATE_LIMIT"] = str(rate_limit)
    if max_body_bytes is not None:
        env["TAILORCAST_SERVE_MAX_BODY_BYTES"] = str(max_body_bytes)
    if experiment is not None:
        env["TAILORCAST_SERVE_EXPERIMENT"] = experiment
    return env


def _log_config() -> dict[str, Any]:
    import uvicorn.config

    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # tailorcast writes its own access log (route templates, no IDs); uvicorn's shows paths.
    config["loggers"]["tailorcast"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        store: StoreOpt = None,
        insecure_dev: InsecureOpt = False,
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 8000,
        workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
        no_docs: Annotated[
            bool, typer.Option("--no-docs", help="Do not serve /openapi.json and /docs.")
        ] = False,
        cors_origin: Annotated[
            list[str] | None,
            typer.Option("--cors-origin", help="Allow this browser origin (repeatable)."),
        ] = None,
        retrain_every: Annotated[
            float | None,
            typer.Option("--retrain-every", help="Retrain in the background every S seconds."),
        ] = None,
        rate_limit: Annotated[
            float | None,
            typer.Option(help="Requests a second per API key and worker (0: no limit)."),
        ] = None,
        max_body_bytes: Annotated[
            int | None, typer.Option(help="Largest request body in bytes.", min=1)
        ] = None,
        experiment: Annotated[
            str | None,
            typer.Option(help="Run this A/B test (`tailorcast experiment create`) on the lists."),
        ] = None,
    ) -> None:
        """Serve the HTTP API (recommendations, events, catalog) until interrupted."""
        import uvicorn

        from tailorcast.config import Settings
        from tailorcast.privacy import resolve_keys
        from tailorcast.serving.auth import KeyStore
        from tailorcast.store import DB_FILE

        folder = store or Settings().store
        with user_errors():
            if not (folder / DB_FILE).exists():
                from tailorcast.errors import NotFoundError

                raise NotFoundError(
                    f"no store at {folder} (run `tailorcast ingest` first, or pass --store)"
                )
            # Fail here, with one line, rather than in every worker with a traceback.
            resolve_keys(Settings(), folder, insecure_dev=insecure_dev, create=False)
            if experiment is not None:
                from tailorcast.marketing.experiments import check_experiment

                check_experiment(folder, experiment)
            if not any(k.active for k in KeyStore(folder).entries()):
                err_console.print(
                    "note: this store has no API keys yet; every request but /healthz will "
                    "get 401. Make one with `tailorcast keys create --scope read`."
                )
        os.environ.update(
            serve_env(
                folder,
                insecure_dev=insecure_dev,
                docs=not no_docs,
                cors_origins=cors_origin,
                retrain_every=retrain_every,
                rate_limit=rate_limit,
                max_body_bytes=max_body_bytes,
                experiment=experiment,
            )
        )
        uvicorn.run(
            "tailorcast.serving.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_config=_log_config(),
            server_header=False,
        )
