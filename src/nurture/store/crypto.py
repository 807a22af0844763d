"""Encryption at rest of the most sensitive fields (first names, answers about the partner).

Keys come from NURTURE_DATA_KEYS: comma-separated Fernet keys, the first encrypts, all decrypt, so a
key is rotated by putting a new one first and running `nurture db rotate-keys`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import Dialect
from sqlalchemy.types import Text, TypeDecorator

PREFIX = "enc1:"


class DataKeyError(Exception):
    """A data key is malformed, or a stored value was encrypted with a key that is not configured."""


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise DataKeyError("NURTURE_DATA_KEYS: give at least one key")
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except (ValueError, TypeError):
            raise DataKeyError("NURTURE_DATA_KEYS: each key must be 32 url-safe base64-encoded "
                               "bytes; make one with `nurture db new-data-key`") from None
        self.fingerprint = hashlib.sha256(keys[0].strip().encode()).hexdigest()[:12]

    def encrypt(self, text: str) -> str:
        return PREFIX + self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before encryption was enabled; rotate-keys encrypts it
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise DataKeyError("a stored value was encrypted with a key that is not in "
                               "NURTURE_DATA_KEYS; add the old key after the new one") from None

    def rotate(self, stored: str) -> str:
        """The value encrypted with the first key (plaintext from before encryption included)."""
        return self.encrypt(self.decrypt(stored))


def derived_key(secret: str) -> str:
    """A development-only data key derived from the secret key, so a fresh install just works."""
    digest = hashlib.sha256(b"nurture data key\0" + secret.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


_lock = threading.Lock()
_keyring: KeyRing | None = None


def configure(keyring: KeyRing) -> None:
    global _keyring
    with _lock:
        _keyring = keyring


def keyring() -> KeyRing:
    if _keyring is None:
        # Tests and tools that build engines directly get the development key; the services
        # always configure the ring from settings first.
        from nurture.config import DEFAULT_SECRET_KEY

        configure(KeyRing([derived_key(DEFAULT_SECRET_KEY)]))
    assert _keyring is not None
    return _keyring


def decrypt_text(stored: str | None) -> str | None:
    return None if stored is None else keyring().decrypt(str(stored))


def decrypt_list(stored: str | None) -> list[str] | None:
    if stored is None:
        return None
    return [str(item) for item in json.loads(keyring().decrypt(str(stored)))]


class EncryptedText(TypeDecorator[str]):
    """A text column stored encrypted."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return keyring().encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return decrypt_text(value)


class EncryptedList(TypeDecorator[list[str]]):
    """A list of short strings (reason keys) stored as encrypted JSON."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return keyring().encrypt(json.dumps(sorted(value)))

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str] | None:
        return decrypt_list(value)
