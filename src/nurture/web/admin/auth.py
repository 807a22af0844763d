"""Admin sign-in: users with argon2 hashes from NURTURE_ADMIN_USERS, and signed, expiring session cookies."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

from nurture.config import Settings

SESSION_COOKIE: Final = "nurture_admin"
SESSION_PATH: Final = "/admin"
SESSION_SECONDS: Final = 8 * 3600
MIN_PASSWORD_LENGTH: Final = 12
# Far above any real password; a huge paste still costs one ordinary hash, never more.
MAX_PASSWORD_LENGTH: Final = 1024
MAX_COOKIE_LENGTH: Final = 512
# Tolerates a little clock skew between web processes issuing and reading sessions.
FUTURE_SKEW_SECONDS: Final = 60
# Each check takes a second of CPU and 64 MiB with argon2's defaults: a few at a time, so a flood of
# sign-in attempts queues up instead of exhausting the machine.
MAX_CONCURRENT_CHECKS: Final = 2
CHECK_WAIT_SECONDS: Final = 15.0
_SALT: Final = "nurture.admin.session"


def hash_password(plain: str) -> str:
    """An argon2id hash for NURTURE_ADMIN_USERS (`name:hash`); raises ValueError for a short password."""
    if len(plain) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(plain) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    return PasswordHasher().hash(plain)


@dataclass(frozen=True)
class AdminOptions:
    """Who may sign in to /admin. No users: the admin pages are switched off."""

    users: tuple[tuple[str, str], ...] = ()
    """(name, argon2 hash) pairs."""
    session_seconds: int = SESSION_SECONDS

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def password_hash(self, name: str) -> str | None:
        return dict(self.users).get(name)

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminOptions:
        return cls(users=settings.admin_users)


class AdminBusy(Exception):
    """Too many password checks at once; the caller should ask to try again shortly."""


def _fingerprint(password_hash: str) -> str:
    # In the session so that a new password (or a removed user) ends every session made before.
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]


class AdminAuth:
    """Checks passwords and reads and writes the session cookie (signed, HttpOnly, SameSite=Strict)."""

    def __init__(self, options: AdminOptions, secret_key: str, *, secure: bool,
                 clock: Callable[[], datetime]) -> None:
        if not options.enabled:
            raise ValueError("no admin users are configured")
        self._options = options
        self._users = dict(options.users)
        self._secure = secure
        self._clock = clock
        self._serializer = URLSafeSerializer(secret_key, salt=_SALT)
        self._hasher = PasswordHasher()
        self._checks = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)
        # Unknown names are checked against this, with the same cost as a real hash, so the time
        # a failure takes does not tell whether the name exists.
        first_hash = options.users[0][1]
        self._dummy_hash = PasswordHasher.from_parameters(extract_parameters(first_hash)).hash(
            "not a password: only here to spend the same time")

    def check_password(self, name: str, password: str) -> str | None:
        """The user's name when the password is right, else None; slow on purpose (argon2).
        Raises AdminBusy when other checks hold the machine for too long."""
        stored = self._users.get(name)
        candidate = password if len(password) <= MAX_PASSWORD_LENGTH else ""
        if not self._checks.acquire(timeout=CHECK_WAIT_SECONDS):
            raise AdminBusy
        matched: bool
        try:
            matched = self._hasher.verify(stored or self._dummy_hash, candidate)
        except (VerificationError, InvalidHashError):
            matched = False
        finally:
            self._checks.release()
        return name if matched and stored is not None and candidate else None

    def user(self, request: Request) -> str | None:
        """The signed-in user of this request, or None."""
        raw = request.cookies.get(SESSION_COOKIE, "")
        if not raw or len(raw) > MAX_COOKIE_LENGTH:
            return None
        try:
            data = self._serializer.loads(raw)
        except BadSignature:
            return None
        if not isinstance(data, list) or len(data) != 3:
            return None
        name, fingerprint, issued = data
        if not isinstance(name, str) or not isinstance(fingerprint, str) \
                or not isinstance(issued, int):
            return None
        stored = self._users.get(name)
        if stored is None or not hmac.compare_digest(fingerprint, _fingerprint(stored)):
            return None
        age = self._clock().timestamp() - issued
        if age < -FUTURE_SKEW_SECONDS or age >= self._options.session_seconds:
            return None
        return name

    def start_session(self, response: Response, name: str) -> None:
        stored = self._users[name]
        value = self._serializer.dumps([name, _fingerprint(stored), int(self._clock().timestamp())])
        response.set_cookie(SESSION_COOKIE, value, max_age=self._options.session_seconds,
                            path=SESSION_PATH, httponly=True, samesite="strict", secure=self._secure)

    def end_session(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=SESSION_PATH, httponly=True, samesite="strict",
                               secure=self._secure)
