"""The one exception tree of tailorcast.

::

    TailorcastError                 base of everything raised on purpose
    ├── UserError                   caused by the user: CLI exit code 2, one line, no traceback
    │   ├── DataError               a file or frame that cannot be used (names file, row, column)
    │   ├── ConfigError             bad settings, flags, mapping or TOML
    │   ├── KeyMaterialError        missing or wrong keys for a store
    │   └── NotFoundError           an unknown customer, item, model or campaign
    ├── NoModelError                a service asked for recommendations before any training
    └── NotFittedError              a model used before ``fit`` (a bug in the caller's code)

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "KeyMaterialError",
    "NoModelError",
    "NotFittedError",
    "NotFoundError",
    "TailorcastError",
    "UserError",
]


class TailorcastError(Exception):
    """Base class of every error tailorcast raises on purpose."""


class UserError(TailorcastError):
    """An error the user caused and can fix; the CLI prints it on one line and exits 2."""


class DataError(UserError):
    """Input data that cannot be used.

    The message names the file (or frame) and, where it applies, the row and column.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.row = row
        self.column = column
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class ConfigError(UserError):
    """Bad settings, command-line flags, column mapping or configuration file."""


class KeyMaterialError(UserError):
    """Keys are missing, malformed, or do not belong to this store."""


class NotFoundError(UserError):
    """An unknown customer, item, model version or campaign was asked for."""


class NoModelError(TailorcastError):
    """No trained model yet: the server answers 503 and says to run ``tailorcast train``."""


class NotFittedError(TailorcastError, ValueError):
    """A model (or other estimator) was used before ``fit`` was called."""
