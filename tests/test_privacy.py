"""Keyed pseudonyms, AES-GCM encryption and key handling: nothing secret ever leaks."""

from __future__ import annotations

import base64
import hashlib
import traceback
from pathlib import Path

import pytest

from tailorcast.config import Settings
from tailorcast.errors import KeyMaterialError
from tailorcast.privacy import Keys, generate_key, resolve_keys

PK = b"k" * 32
EK = b"e" * 32


def _settings(**values: object) -> Settings:
    # No .env file and explicit values: the developer's environment must not leak in.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TAILORCAST_PSEUDONYM_KEY", "TAILORCAST_ENCRYPTION_KEY", "TAILORCAST_STORE"):
        monkeypatch.delenv(name, raising=False)


def _secrets_in(text: str, *keys: bytes) -> list[str]:
    """Every representation of the key bytes that shows up in ``text``."""
    found = []
    for key in keys:
        for form in (key.hex(), base64.b64encode(key).decode(), repr(key), key.decode("latin-1")):
            if form in text:
                found.append(form)
    return found


# -- pseudonyms -------------------------------------------------------------------------------
def test_pseudonyms_are_deterministic_per_key() -> None:
    a = Keys(PK, EK).pseudonymizer()
    b = Keys(PK, b"x" * 32).pseudonymizer()  # the encryption key plays no part
    assert a.one("alice") == a.one("alice") == b.one("alice")
    assert a.many(["alice", "bob", "alice"]) == [a.one("alice"), a.one("bob"), a.one("alice")]
    assert a.one("alice") != a.one("bob")
    assert a.one("alice").startswith("p_") and len(a.one("alice")) == 2 + 32


def test_pseudonyms_differ_across_keys() -> None:
    one = Keys(PK, EK).pseudonymizer().one("alice")
    other = Keys(b"K" * 32, EK).pseudonymizer().one("alice")
    assert one != other


def test_pseudonym_is_not_an_unkeyed_hash() -> None:
    pseudonym = Keys(PK, EK).pseudonymizer().one("alice")
    body = pseudonym.removeprefix("p_")
    for algo in (hashlib.sha256, hashlib.md5, hashlib.sha1):
        assert body not in algo(b"alice").hexdigest()
    assert "alice" not in pseudonym


# -- encryption -------------------------------------------------------------------------------
def test_aes_gcm_round_trip_with_random_nonces() -> None:
    cipher = Keys(PK, EK).cipher()
    blob = cipher.encrypt("anna@example.com", "users.email")
    again = cipher.encrypt("anna@example.com", "users.email")
    assert blob != again  # a fresh nonce each time: equal plaintexts are not linkable
    assert b"anna" not in blob
    assert cipher.decrypt(blob, "users.email") == "anna@example.com"
    assert cipher.decrypt_many([blob, None], "users.email") == ["anna@example.com", None]


def test_wrong_key_or_context_cannot_decrypt() -> None:
    blob = Keys(PK, EK).cipher().encrypt("anna@example.com", "users.email")
    with pytest.raises(KeyMaterialError):
        Keys(PK, b"x" * 32).cipher().decrypt(blob, "users.email")
    with pytest.raises(KeyMaterialError):
        Keys(PK, EK).cipher().decrypt(blob, "users.phone")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(KeyMaterialError):
        Keys(PK, EK).cipher().decrypt(tampered, "users.email")


def test_repr_and_errors_never_show_key_material() -> None:
    keys = Keys(PK, EK)
    shown = [repr(keys), str(keys), repr(keys.cipher()), repr(keys.pseudonymizer())]
    assert _secrets_in(" ".join(shown), PK, EK) == []
    blob = keys.cipher().encrypt("x", "identity")
    with pytest.raises(KeyMaterialError) as info:
        Keys(PK, b"x" * 32).cipher().decrypt(blob, "identity")
    text = "".join(traceback.format_exception(info.value))
    assert _secrets_in(text, PK, EK, b"x" * 32) == []


def test_settings_repr_hides_keys() -> None:
    pk, ek = generate_key(), generate_key()
    settings = _settings(pseudonym_key=pk, encryption_key=ek)
    assert pk not in repr(settings) and ek not in repr(settings)


# -- key resolution ---------------------------------------------------------------------------
def test_keys_from_settings(tmp_path: Path) -> None:
    pk, ek = generate_key(), generate_key()
    keys = resolve_keys(
        _settings(pseudonym_key=pk, encryption_key=ek), tmp_path, insecure_dev=False, create=True
    )
    assert keys.pseudonym_key == base64.b64decode(pk)
    assert keys.encryption_key == base64.b64decode(ek)
    assert not keys.development
    assert not (tmp_path / "dev-keys.json").exists()


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("not base64 at all!!", "base64"),
        (base64.b64encode(b"s" * 16).decode(), "32 bytes"),
        (base64.b64encode(b"s" * 33).decode(), "32 bytes"),
    ],
)
@pytest.mark.parametrize("which", ["pseudonym_key", "encryption_key"])
def test_malformed_keys_are_refused_naming_the_variable(
    tmp_path: Path, bad: str, why: str, which: str
) -> None:
    values = {"pseudonym_key": generate_key(), "encryption_key": generate_key(), which: bad}
    with pytest.raises(KeyMaterialError) as info:
        resolve_keys(_settings(**values), tmp_path, insecure_dev=False, create=True)
    message = str(info.value)
    assert f"TAILORCAST_{which.upper()}" in message
    assert why in message
    assert bad not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize("which", ["pseudonym_key", "encryption_key"])
def test_both_keys_are_required(tmp_path: Path, which: str) -> None:
    key = generate_key()
    with pytest.raises(KeyMaterialError) as info:
        resolve_keys(_settings(**{which: key}), tmp_path, insecure_dev=True, create=True)
    assert "TAILORCAST_PSEUDONYM_KEY" in str(info.value)
    assert "TAILORCAST_ENCRYPTION_KEY" in str(info.value)
    assert key not in str(info.value)
    # insecure_dev does not paper over a half-configured environment
    assert not (tmp_path / "dev-keys.json").exists()


def test_keys_from_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pk, ek = generate_key(), generate_key()
    monkeypatch.setenv("TAILORCAST_PSEUDONYM_KEY", pk)
    monkeypatch.setenv("TAILORCAST_ENCRYPTION_KEY", ek)
    keys = resolve_keys(Settings(_env_file=None), tmp_path, insecure_dev=False, create=False)  # type: ignore[call-arg]
    assert keys.fingerprint() == Keys(base64.b64decode(pk), base64.b64decode(ek)).fingerprint()


def test_no_keys_and_no_dev_flag_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="refusing to create"):
        resolve_keys(_settings(), tmp_path, insecure_dev=False, create=True)
    with pytest.raises(KeyMaterialError, match="no keys"):
        resolve_keys(_settings(), tmp_path, insecure_dev=False, create=False)


def test_fingerprint_tells_key_sets_apart_without_revealing_them() -> None:
    a, b = Keys(PK, EK), Keys(PK, b"x" * 32)
    assert a.fingerprint() == Keys(PK, EK).fingerprint()
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() != Keys(b"K" * 32, EK).fingerprint()
    assert _secrets_in(a.fingerprint(), PK, EK) == []
