"""API keys for the HTTP server: scoped, stored hashed, checked in constant time.

A key looks like ``tck_<id>_<secret>``: ``id`` is 12 hex characters, public (it names the key
in ``tailorcast keys list``, in audit entries and in the access log), ``secret`` is 32 random
bytes (base64url). Only SHA-256 of the whole key is kept. A slow password hash (scrypt,
argon2) protects *low-entropy* secrets against guessing; a 256-bit random secret cannot be
guessed either way, and checking it with scrypt would cost tens of milliseconds per request
(or a cache of verified keys, i.e. plaintext-equivalent material in memory). The hash is
compared with :func:`hmac.compare_digest`; an unknown id is compared against a dummy digest,
so a miss costs the same as a hit.

Scopes are *exact*, not nested: ``read`` (recommendations, rankings, similar items, segments,
readiness, metrics), ``write`` (events, customers and items), ``admin`` (model info and
retraining, erasure, audiences, campaigns). A key may hold several. A storefront's read key
cannot post events, an event pipeline's write key cannot read anyone's recommendations.

Keys live in ``<store>/api-keys.json`` (mode 0600), a small JSON file and not a DuckDB table:
the server must not hold the DuckDB file (CLI jobs write it while the server runs), and
``keys create``/``keys revoke`` must work while the server is up. Writers take an
``flock`` on ``api-keys.lock`` and replace the file atomically; the server rereads it when
its modification time changes (checked at most once a second), so a revoked key stops working
within a second without a restart.

Example::

    store = KeyStore(Path("tailorcast-store"))
    created = store.create(["read"], name="storefront")
    print(created.key)            # shown once; only its hash is kept
    store.verify(created.key)     # -> ApiKey(id=..., scopes=("read",), ...)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from tailorcast.errors import ConfigError, NotFoundError
from tailorcast.store import DB_FILE

__all__ = [
    "KEYS_FILE",
    "SCOPES",
    "ApiKey",
    "CreatedKey",
    "KeyStore",
    "Scope",
    "TokenBuckets",
]

KEYS_FILE: Final = "api-keys.json"
_LOCK_FILE: Final = "api-keys.lock"
Scope = Literal["read", "write", "admin"]
SCOPES: Final[tuple[Scope, ...]] = ("read", "write", "admin")
_PREFIX: Final = "tck_"
_KEY_RE: Final = re.compile(r"^tck_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY_DIGEST: Final = hashlib.sha256(b"tailorcast-no-such-key").hexdigest()
#: How often the server looks at the keys file for changes (revocations), in seconds.
RELOAD_EVERY_S: Final = 1.0


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class ApiKey:
    """A stored key without its secret."""

    id: str
    name: str
    scopes: tuple[Scope, ...]
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "active": self.active,
        }


@dataclass(frozen=True, repr=False)
class CreatedKey:
    """A new key: ``key`` is the secret, shown to the user once and never stored."""

    key: str
    info: ApiKey

    def __repr__(self) -> str:
        return f"CreatedKey(id={self.info.id!r}, key=<hidden>)"


class KeyStore:
    """The API keys of one store folder (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / KEYS_FILE
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[ApiKey, str]] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0

    # -- writing (CLI) --------------------------------------------------------------------
    def create(self, scopes: Sequence[str], *, name: str = "") -> CreatedKey:
        """Make a key with ``scopes``; its secret is in the result and nowhere else."""
        clean = _check_scopes(scopes)
        if len(name) > 100:
            raise ConfigError("a key name has at most 100 characters")
        key_id = secrets.token_hex(6)
        key = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        info = ApiKey(id=key_id, name=name, scopes=clean, created_at=_now_iso())
        with self._locked() as records:
            records.append({**info.to_dict(), "sha256": _digest(key)})
            records[-1].pop("active")
        return CreatedKey(key=key, info=info)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id (it stays listed, marked revoked).

        Raises:
            NotFoundError: no key has this id.
        """
        with self._locked() as records:
            for record in records:
                if record.get("id") == key_id:
                    if record.get("revoked_at") is None:
                        record["revoked_at"] = _now_iso()
                    return _to_key(record)
        raise NotFoundError(f"no API key with id {key_id!r} (see `tailorcast keys list`)")

    def entries(self) -> list[ApiKey]:
        """Every key, oldest first, revoked ones included."""
        return [_to_key(r) for r in self._read()]

    # -- checking (server) ----------------------------------------------------------------
    def verify(self, presented: str) -> ApiKey | None:
        """The active key matching ``presented``, or None (unknown, malformed or revoked)."""
        self._maybe_reload()
        match = _KEY_RE.match(presented)
        entry = self._by_id.get(match.group(1)) if match else None
        stored = entry[1] if entry else _DUMMY_DIGEST
        ok = hmac.compare_digest(_digest(presented), stored)
        if not ok or entry is None or not entry[0].active:
            return None
        return entry[0]

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_EVERY_S and self._stamp is not None:
            return
        with self._lock:
            self._checked = now
            try:
                st = self.path.stat()
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stamp = (0, 0, 0)
            if stamp == self._stamp:
                return
            records = self._read() if stamp != (0, 0, 0) else []
            self._by_id = {str(r["id"]): (_to_key(r), str(r["sha256"])) for r in records}
            self._stamp = stamp

    # -- file handling --------------------------------------------------------------------
    def _read(self) -> list[dict[str, object]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            data = json.loads(text)
            records = data["keys"]
            if not isinstance(records, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"cannot read API keys from {self.path}: not a keys file") from None
        return records

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[dict[str, object]]]:
        """Read-modify-write under an exclusive lock, then an atomic, fsync'd replace."""
        if not (self.folder / DB_FILE).is_file():
            raise NotFoundError(
                f"no store at {self.folder} (run `tailorcast ingest` first, or pass --store)"
            )
        lock_fd = os.open(self.folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            records = self._read()
            yield records
            tmp = self.path.with_name(f".{KEYS_FILE}.tmp-{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": 1, "keys": records}, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            os.close(lock_fd)  # closing the descriptor releases the flock


def _check_scopes(scopes: Sequence[str]) -> tuple[Scope, ...]:
    if not scopes:
        raise ConfigError(f"give at least one scope ({', '.join(SCOPES)})")
    out: list[Scope] = []
    for scope in scopes:
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
        if scope not in out:
            out.append(scope)
    return tuple(out)


def _to_key(record: dict[str, object]) -> ApiKey:
    scopes = record.get("scopes")
    revoked = record.get("revoked_at")
    return ApiKey(
        id=str(record["id"]),
        name=str(record.get("name") or ""),
        scopes=_check_scopes([str(s) for s in scopes]) if isinstance(scopes, list) else (),
        created_at=str(record.get("created_at") or ""),
        revoked_at=None if revoked is None else str(revoked),
    )


class TokenBuckets:
    """Per-key rate limits: a token bucket per key id (``rate`` tokens a second, up to
    ``burst``). Not thread-safe on purpose: it runs on the server's event loop only.

    Hand-written because it is a dozen lines; the limiter libraries around either need a
    Redis or wrap the whole app in their own middleware with its own key function.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str) -> float:
        """Spend one token; 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, last = self._state.get(key_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._state[key_id] = (tokens - 1.0, now)
            return 0.0
        self._state[key_id] = (tokens, now)
        return (1.0 - tokens) / self.rate
