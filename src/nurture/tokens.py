"""Signed, address-free tokens for unsubscribe, preferences and confirmation links."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.serializer import Serializer

from nurture.rendering import Links


class TokenInvalid(Exception):
    """The token was tampered with, is for another purpose, or is malformed."""


class TokenExpired(TokenInvalid):
    """The token was genuine but is older than its allowed age."""


class _KeyOnceSigner(TimestampSigner):
    """TimestampSigner deriving its key once rather than at every signature."""

    _key: bytes | None = None

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        if self._key is None:
            self._key = super().derive_key()
        return self._key


class _IdSerializer(URLSafeTimedSerializer):
    """URLSafeTimedSerializer with one signer for its salt, and without its attempt to
    zlib-compress each payload: a 32-character hex id never comes out shorter, so the tokens
    are the same, at a fraction of the cost (every email carries three)."""

    default_signer = _KeyOnceSigner

    def make_signer(self, salt: str | bytes | None = None) -> TimestampSigner:
        if salt is not None and salt != self.salt:
            return _KeyOnceSigner(self.secret_keys, salt=salt, **self.signer_kwargs)
        signer: TimestampSigner | None = self.__dict__.get("_signer")
        if signer is None:
            signer = self.__dict__["_signer"] = _KeyOnceSigner(self.secret_keys, salt=self.salt,
                                                               **self.signer_kwargs)
        return signer

    def dump_payload(self, obj: object) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


@lru_cache(maxsize=64)
def _serializer(secret_key: str, purpose: str) -> URLSafeTimedSerializer:
    # The purpose is the salt, so a token for one action never works for another. Built once
    # per purpose rather than for each of an email's links.
    return _IdSerializer(secret_key, salt=f"nurture.{purpose}")


@dataclass(frozen=True)
class TokenSigner:
    secret_key: str

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return _serializer(self.secret_key, purpose)

    def sign(self, purpose: str, subscriber_id: UUID) -> str:
        return self._serializer(purpose).dumps(subscriber_id.hex)

    def verify(self, purpose: str, token: str, *, max_age_seconds: int | None = None) -> UUID:
        try:
            value = self._serializer(purpose).loads(token, max_age=max_age_seconds)
        except SignatureExpired as error:
            raise TokenExpired("this link has expired") from error
        except BadSignature as error:
            raise TokenInvalid("this link is not valid") from error
        try:
            return UUID(hex=str(value))
        except ValueError as error:
            raise TokenInvalid("this link is not valid") from error


@dataclass(frozen=True)
class LinkMaker:
    """Builds the per-subscriber links that every email carries."""

    base_url: str
    signer: TokenSigner
    unsubscribe_mailto: str | None = None

    def confirm_url(self, subscriber_id: UUID) -> str:
        return f"{self.base_url}/confirm/{self.signer.sign('confirm', subscriber_id)}"

    def for_subscriber(self, subscriber_id: UUID) -> Links:
        unsubscribe = self.signer.sign("unsubscribe", subscriber_id)
        preferences = self.signer.sign("preferences", subscriber_id)
        booked = self.signer.sign("booked", subscriber_id)
        mailto = None
        if self.unsubscribe_mailto:
            mailto = f"mailto:{self.unsubscribe_mailto}?subject=unsubscribe%20{unsubscribe}"
        return Links(
            unsubscribe_url=f"{self.base_url}/u/{unsubscribe}",
            preferences_url=f"{self.base_url}/p/{preferences}",
            unsubscribe_mailto=mailto,
            booked_url=f"{self.base_url}/booked/{booked}",
        )
