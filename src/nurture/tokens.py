"""Signed, address-free tokens for unsubscribe, preferences and confirmation links."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from nurture.rendering import Links


class TokenInvalid(Exception):
    """The token was tampered with, is for another purpose, or is malformed."""


class TokenExpired(TokenInvalid):
    """The token was genuine but is older than its allowed age."""


@dataclass(frozen=True)
class TokenSigner:
    secret_key: str

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        # The purpose is the salt, so a token for one action never works for another.
        return URLSafeTimedSerializer(self.secret_key, salt=f"nurture.{purpose}")

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
