"""Server settings: one object, from ``tailorcast serve`` flags or ``TAILORCAST_SERVE_*``.

The environment is how the flags reach every uvicorn worker process (``--workers N`` starts
the app from an import string in each worker, so nothing can be passed as an argument).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServeSettings"]


class ServeSettings(BaseSettings):
    """How the HTTP server behaves.

    Example::

        TAILORCAST_SERVE_RATE_LIMIT=50 tailorcast serve --store shop --cors-origin https://shop.example
    """

    model_config = SettingsConfigDict(env_prefix="TAILORCAST_SERVE_", extra="ignore", frozen=True)

    store: Path = Field(default=Path("tailorcast-store"), description="Store folder.")
    insecure_dev: bool = Field(default=False, description="Allow a development store's keys.")
    docs: bool = Field(default=True, description="Serve /openapi.json and /docs.")
    cors_origins: tuple[str, ...] = Field(
        default=(), description="Origins allowed by CORS; none: CORS stays off."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1, description="Largest request body.")
    rate_limit: float = Field(
        default=200.0, ge=0, description="Requests a second per key and worker (0: no limit)."
    )
    rate_burst: float = Field(default=400.0, ge=1, description="Requests a key may burst.")
    retrain_every_s: float | None = Field(
        default=None, gt=0, description="Retrain in the background this often (seconds)."
    )
    experiment: str | None = Field(
        default=None,
        description="Serve this A/B test (`tailorcast experiment create`): each customer's "
        "list comes from their variant's model and is recorded with the variant.",
    )
