"""Keyed pseudonyms for customer IDs and AES-GCM encryption of personal data.

Two keys, both 32 random bytes, base64-encoded in settings or the environment:

- the *pseudonym key*: customer IDs are replaced by ``HMAC-SHA256(key, id)``; without the
  key a pseudonym cannot be linked back to the ID (an unkeyed hash could be, by hashing
  every plausible ID);
- the *encryption key*: personal columns (email, phone, ...) and the pseudonym -> ID table
  are encrypted with AES-256-GCM, so outputs for the shop's own tools can carry the IDs
  as the shop sent them.

Keys are never printed, logged or put into error messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tailorcast.config import Settings
from tailorcast.errors import KeyMaterialError

__all__ = [
    "DEV_KEYS_FILE",
    "Cipher",
    "Keys",
    "Pseudonymizer",
    "generate_key",
    "resolve_keys",
]

DEV_KEYS_FILE = "dev-keys.json"
_NONCE_BYTES = 12
_PSEUDONYM_PREFIX = "p_"


def generate_key() -> str:
    """A fresh random 256-bit key, base64-encoded (what the settings expect)."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _decode_key(text: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyMaterialError(f"{name} is not valid base64") from None
    if len(raw) != 32:
        raise KeyMaterialError(f"{name} must decode to 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True, repr=False)
class Keys:
    """The two store keys. ``repr`` never shows key material."""

    pseudonym_key: bytes
    encryption_key: bytes
    development: bool = False
    source: str = field(default="environment")

    def __repr__(self) -> str:
        return f"Keys(source={self.source!r}, development={self.development})"

    def fingerprint(self) -> str:
        """A short public value that tells whether two key sets are the same."""
        mac = hmac.new(self.pseudonym_key, b"tailorcast-key-check", hashlib.sha256)
        mac.update(hashlib.sha256(self.encryption_key).digest())
        return mac.hexdigest()[:16]

    def pseudonymizer(self) -> Pseudonymizer:
        return Pseudonymizer(self.pseudonym_key)

    def cipher(self) -> Cipher:
        return Cipher(self.encryption_key)


class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms, truncated to 128 bits (collision-free in practice)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymizer(<key hidden>)"

    def one(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return _PSEUDONYM_PREFIX + digest[:32]

    def many(self, values: Iterable[str]) -> list[str]:
        """``one`` for each value; the loop runs over *distinct* IDs only."""
        # Copying one keyed HMAC skips hashing the key block for every value (a fifth faster).
        keyed = hmac.new(self._key, digestmod=hashlib.sha256)
        out = []
        for v in values:
            mac = keyed.copy()
            mac.update(v.encode("utf-8"))
            out.append(_PSEUDONYM_PREFIX + mac.hexdigest()[:32])
        return out


class Cipher:
    """AES-256-GCM with a random 96-bit nonce per value; ``context`` is bound as AAD."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Cipher(<key hidden>)"

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode())

    def decrypt(self, blob: bytes, context: str) -> str:
        try:
            return self._aead.decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode()
            ).decode("utf-8")
        except InvalidTag:
            raise KeyMaterialError(
                f"cannot decrypt {context}: the encryption key does not match this store"
            ) from None

    def encrypt_many(self, values: Sequence[str | None], context: str) -> list[bytes | None]:
        return [None if v is None else self.encrypt(v, context) for v in values]

    def decrypt_many(self, blobs: Sequence[bytes | None], context: str) -> list[str | None]:
        return [None if b is None else self.decrypt(b, context) for b in blobs]


def _read_dev_keys(path: Path) -> Keys:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Keys(
            _decode_key(data["pseudonym_key"], "pseudonym_key in " + str(path)),
            _decode_key(data["encryption_key"], "encryption_key in " + str(path)),
            development=True,
            source=str(path),
        )
    except (OSError, ValueError, KeyError, TypeError):
        raise KeyMaterialError(f"cannot read development keys from {path}") from None


def resolve_keys(settings: Settings, store_dir: Path, *, insecure_dev: bool, create: bool) -> Keys:
    """Find the keys for a store.

    Order: keys from settings/environment; else development keys kept in the store folder;
    else, when creating a store with ``insecure_dev``, fresh development keys written there
    (with a note on stderr). Anything else is refused with the reason.
    """
    pk, ek = settings.pseudonym_key, settings.encryption_key
    if pk is not None or ek is not None:
        if pk is None or ek is None:
            raise KeyMaterialError(
                "set both TAILORCAST_PSEUDONYM_KEY and TAILORCAST_ENCRYPTION_KEY (one is missing)"
            )
        return Keys(
            _decode_key(pk.get_secret_value(), "TAILORCAST_PSEUDONYM_KEY"),
            _decode_key(ek.get_secret_value(), "TAILORCAST_ENCRYPTION_KEY"),
        )
    dev_file = store_dir / DEV_KEYS_FILE
    if dev_file.exists():
        return _read_dev_keys(dev_file)
    if create and insecure_dev:
        store_dir.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"pseudonym_key": generate_key(), "encryption_key": generate_key()})
        fd = os.open(dev_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(payload)
        print(
            f"note: --insecure-dev: generated development keys into {dev_file}; "
            "do not use this store for real customer data",
            file=sys.stderr,
        )
        return _read_dev_keys(dev_file)
    if create:
        raise KeyMaterialError(
            "refusing to create a store without keys: set TAILORCAST_PSEUDONYM_KEY and "
            "TAILORCAST_ENCRYPTION_KEY (make them with `tailorcast keys data-keys`), "
            "or pass --insecure-dev for a development store"
        )
    raise KeyMaterialError(
        f"no keys for the store at {store_dir}: set TAILORCAST_PSEUDONYM_KEY and "
        "TAILORCAST_ENCRYPTION_KEY"
    )
