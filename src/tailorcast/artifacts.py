"""Versioned model artifacts in the store folder.

Layout::

    <store>/models/
        20260315T101530.123456Z-3fa2c1/     one version: UTC time + short random id (sortable)
            config.json  state.npz          the model (Recommender.save: JSON + plain arrays)
            metadata.json                   what it was trained on and how well it validated
        LATEST                              the version ``load_model`` returns by default

A save writes everything into ``models/.tmp-<id>/`` and then renames that folder to its
version name (one atomic ``os.rename``), so a crash leaves either no version or a complete
one; ``LATEST`` is replaced atomically afterwards (temporary file + ``os.replace``). Older
versions are kept. Nothing is ever unpickled: the model is JSON + ``np.load(allow_pickle=False)``
and the metadata is JSON validated by :class:`ModelMetadata`.

Example::

    saved = save_model("tailorcast-store", model, metrics={"ndcg@10": 0.41}, n_events=4708)
    list_versions("tailorcast-store")          # ['20260315T101530.123456Z-3fa2c1']
    model = load_model("tailorcast-store")     # the LATEST version
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tailorcast.errors import DataError, NotFittedError, NotFoundError
from tailorcast.models.base import Recommender

__all__ = [
    "LATEST_FILE",
    "METADATA_FILE",
    "MODELS_DIR",
    "Artifact",
    "ModelMetadata",
    "TrialRecord",
    "latest_version",
    "list_versions",
    "load_artifact",
    "load_model",
    "models_dir",
    "save_model",
]

MODELS_DIR: Final = "models"
LATEST_FILE: Final = "LATEST"
METADATA_FILE: Final = "metadata.json"
#: Version of the metadata layout; bumped when a field changes meaning.
METADATA_FORMAT: Final = 1
_TMP_PREFIX: Final = ".tmp-"
_VERSION: Final = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$")
#: Temporary folders older than this are leftovers of a crashed save (removed by the next).
_STALE_SECONDS: Final = 24 * 3600
_NO_MODEL: Final = "no trained model: run `tailorcast train`"


class TrialRecord(BaseModel):
    """One hyperparameter trial of a model search: what was tried, how it validated."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    model: str
    params: dict[str, Any]
    ndcg_at_10: float | None = Field(default=None, alias="ndcg@10")
    """Validation NDCG@10; None when the trial failed."""
    seconds: float
    """Fit plus validation, wall clock."""
    state: str = "complete"
    """``complete``, ``failed`` or ``repeat`` (parameters already tried: not refitted)."""
    error: str | None = None


class ModelMetadata(BaseModel):
    """``metadata.json`` of a model version."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    format: int = METADATA_FORMAT
    version: str
    model: str
    params: dict[str, Any]
    metrics: dict[str, float] = Field(default_factory=dict)
    """Validation metrics of the chosen configuration (``ndcg@10``, ``recall@10``, ...)."""
    fingerprint: str
    """``Interactions.fingerprint()`` of the data the saved model was fitted on."""
    n_events: int
    n_users: int
    n_items: int
    created_at: datetime
    tailorcast_version: str
    trials: list[TrialRecord] = Field(default_factory=list)
    """The search trace, in the order the trials ran."""
    skipped: dict[str, str] = Field(default_factory=dict)
    """Models left out of the search, with the reason."""
    training: dict[str, Any] = Field(default_factory=dict)
    """How training ran: protocol, seed, budget, seconds, interactions config."""


@dataclass(frozen=True)
class Artifact:
    """A saved model version: the folder, its metadata and (once loaded) the model."""

    version: str
    path: Path
    metadata: ModelMetadata
    model: Recommender[Any]


def models_dir(store_dir: str | Path) -> Path:
    """``<store>/models``."""
    return Path(store_dir) / MODELS_DIR


def list_versions(store_dir: str | Path) -> list[str]:
    """Saved versions, oldest first (temporary folders of saves in progress left out)."""
    root = models_dir(store_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _VERSION.match(p.name) and p.is_dir())


def latest_version(store_dir: str | Path) -> str | None:
    """The version named in ``LATEST``; the newest folder if that file is missing or names
    a version that is gone; None when nothing was saved."""
    root = models_dir(store_dir)
    try:
        named = (root / LATEST_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        named = ""
    if _VERSION.match(named) and (root / named).is_dir():
        return named
    versions = list_versions(store_dir)
    return versions[-1] if versions else None


def save_model(
    store_dir: str | Path,
    model: Recommender[Any],
    *,
    metrics: Mapping[str, float] | None = None,
    n_events: int = 0,
    trials: Sequence[TrialRecord] = (),
    skipped: Mapping[str, str] | None = None,
    training: Mapping[str, Any] | None = None,
) -> Artifact:
    """Save a fitted model as a new version and point ``LATEST`` at it.

    Either the version appears complete (model files and ``metadata.json``) and ``LATEST``
    names it, or, when anything fails, no version appears and ``LATEST`` is unchanged.
    """
    if not model.is_fitted:
        raise NotFittedError(f"{type(model).__name__} is not fitted yet: nothing to save")
    root = models_dir(store_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    now = datetime.now(UTC)
    version = f"{now:%Y%m%dT%H%M%S.%f}Z-{secrets.token_hex(3)}"
    metadata = ModelMetadata(
        version=version,
        model=model.name,
        params=model.config_.model_dump(mode="json"),
        metrics=dict(metrics or {}),
        fingerprint=model.fingerprint_,
        n_events=n_events,
        n_users=model.n_users,
        n_items=model.n_items,
        created_at=now,
        tailorcast_version=_package_version(),
        trials=list(trials),
        skipped=dict(skipped or {}),
        training=dict(training or {}),
    )
    tmp = root / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
    try:
        tmp.mkdir()
        model.save(tmp)
        _write_text(tmp / METADATA_FILE, _dump(metadata))
        for name in os.listdir(tmp):
            _fsync_file(tmp / name)
        _fsync_dir(tmp)
        final = root / version
        os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_text(root / LATEST_FILE, version + "\n")
    return Artifact(version=version, path=final, metadata=metadata, model=model)


def load_artifact(store_dir: str | Path, version: str | None = None) -> Artifact:
    """A saved version (default: the latest) with its model and metadata.

    Raises:
        NotFoundError: nothing saved yet, or no such version.
        DataError: the version's files are damaged or disagree with each other.
    """
    root = models_dir(store_dir)
    if version is None:
        version = latest_version(store_dir)
        if version is None:
            raise NotFoundError(f"{_NO_MODEL} (no model in {root})")
    elif not _VERSION.match(version) or not (root / version).is_dir():
        known = list_versions(store_dir)
        hint = f"; saved: {', '.join(known[-5:])}" if known else f"; {_NO_MODEL}"
        raise NotFoundError(f"no model version {version!r} in {root}{hint}")
    folder = root / version
    meta_file = folder / METADATA_FILE
    try:
        metadata = ModelMetadata.model_validate_json(meta_file.read_bytes())
    except FileNotFoundError:
        raise DataError("missing metadata.json", source=str(folder)) from None
    except ValidationError as exc:
        raise DataError(
            f"unreadable metadata ({exc.error_count()} problems)", source=str(meta_file)
        ) from None
    model: Recommender[Any] = Recommender.load(folder)
    if model.fingerprint_ != metadata.fingerprint or model.name != metadata.model:
        raise DataError("model files and metadata.json disagree", source=str(folder))
    return Artifact(version=version, path=folder, metadata=metadata, model=model)


def load_model(store_dir: str | Path, version: str | None = None) -> Recommender[Any]:
    """The fitted model of a saved version (default: the latest); see :func:`load_artifact`."""
    return load_artifact(store_dir, version).model


# -- helpers ------------------------------------------------------------------------------------
def _package_version() -> str:
    try:
        return importlib.metadata.version("tailorcast")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def _dump(metadata: ModelMetadata) -> str:
    data = metadata.model_dump(mode="json", by_alias=True)
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` atomically: a temporary file beside it, then ``os.replace``."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    try:
        _write_text(tmp, text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; not every platform can open a folder (Windows), so best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform-specific
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - platform-specific
        pass
    finally:
        os.close(fd)


def _remove_stale(root: Path) -> None:
    """Temporary folders of saves that crashed a day or more ago (a running save is younger)."""
    cutoff = time.time() - _STALE_SECONDS
    for entry in root.iterdir():
        if entry.name.startswith(_TMP_PREFIX):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    if entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink()
