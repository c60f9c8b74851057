"""Settings: one object read from the environment (``TAILORCAST_*``) and ``.env``.

Secrets are ``SecretStr`` so they never show up in ``repr``, logs or error messages.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_STORE", "Settings", "get_settings"]

DEFAULT_STORE = Path("tailorcast-store")


class Settings(BaseSettings):
    """Process-wide settings.

    Example::

        TAILORCAST_STORE=/data/shop TAILORCAST_PSEUDONYM_KEY=... tailorcast report
    """

    model_config = SettingsConfigDict(
        env_prefix="TAILORCAST_", env_file=".env", extra="ignore", frozen=True
    )

    store: Path = Field(default=DEFAULT_STORE, description="Store folder.")
    pseudonym_key: SecretStr | None = Field(
        default=None,
        description="Key for keyed HMAC pseudonyms of customer IDs (base64, 32 bytes).",
    )
    encryption_key: SecretStr | None = Field(
        default=None, description="AES-256-GCM key for personal data at rest (base64, 32 bytes)."
    )
    pseudonymize: bool = Field(
        default=True, description="Store keyed pseudonyms instead of raw customer IDs."
    )
    threads: int | None = Field(default=None, description="DuckDB threads (default: all cores).")
    memory_limit: str | None = Field(default=None, description="DuckDB memory limit, e.g. '4GB'.")


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides winning."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
