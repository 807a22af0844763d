"""Request safety for the web app: CSRF double-submit tokens, per-process rate limits, the client's IP
behind trusted proxies, security headers, a request body limit and CORS limited to the JSON API."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE: Final = "nurture_csrf"
CSRF_FIELD: Final = "csrf_token"
_COOKIE_VALUE: Final = re.compile(r"[A-Za-z0-9_-]{43}\Z")

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    # Token links are capabilities: no page may pass its address on to another site.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
MAX_BODY_BYTES: Final = 64 * 1024
MAX_CONTENT_BODY_BYTES: Final = 2 * 1024 * 1024
"""The admin editor posts whole content files (up to 200,000 characters, which a form encodes in
up to nine bytes each for Devanagari)."""
CONTENT_PATHS: Final = "/admin/content/"


class CsrfGuard:
    """Double-submit CSRF protection: a random HttpOnly cookie, and a form field carrying an HMAC of
    it under the app's secret, so a field cannot be made up without the secret."""

    def __init__(self, secret_key: str, *, secure: bool) -> None:
        self._key = hashlib.sha256(b"nurture.csrf\0" + secret_key.encode("utf-8")).digest()
        self._secure = secure

    def cookie_value(self, request: Request) -> str:
        """The request's cookie when it is well formed (so several tabs agree), else a new one."""
        current = request.cookies.get(CSRF_COOKIE, "")
        return current if _COOKIE_VALUE.match(current) else secrets.token_urlsafe(32)

    def field_for(self, cookie_value: str) -> str:
        return hmac.new(self._key, cookie_value.encode("ascii"), hashlib.sha256).hexdigest()

    def valid(self, request: Request, submitted: str | None) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not _COOKIE_VALUE.match(cookie) or not submitted:
            return False
        return hmac.compare_digest(self.field_for(cookie), submitted)

    def set_cookie(self, response: Response, cookie_value: str) -> None:
        response.set_cookie(CSRF_COOKIE, cookie_value, httponly=True, samesite="strict",
                            secure=self._secure, path="/")


class SlidingWindowLimiter:
    """At most `limit` hits per key within `window`, counted in this process's memory only: with
    several web processes each one counts separately. Thread-safe; memory bounded by `max_keys`."""

    def __init__(self, limit: int, window: timedelta, *, max_keys: int = 100_000) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = window.total_seconds()
        self._max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, now: datetime) -> float | None:
        """Count one hit; None when allowed, else the seconds until the next one would be."""
        moment = now.timestamp()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = deque()
                self._hits[key] = hits
                while len(self._hits) > self._max_keys:
                    self._hits.popitem(last=False)
            else:
                self._hits.move_to_end(key)
            while hits and hits[0] <= moment - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1.0, hits[0] + self.window - moment)
            hits.append(moment)
            return None


@dataclass(frozen=True)
class SignupLimits:
    """The signup limits: per client IP, and per address once the address is valid."""

    per_ip: SlidingWindowLimiter
    per_address: SlidingWindowLimiter

    @classmethod
    def per_hour(cls, per_ip: int, per_address: int) -> SignupLimits:
        hour = timedelta(hours=1)
        return cls(SlidingWindowLimiter(per_ip, hour), SlidingWindowLimiter(per_address, hour))

    def retry_after(self, ip: str | None, email: str | None, now: datetime) -> float | None:
        """Count one signup; None when allowed, else the seconds to wait. `email` is normalized."""
        retry = self.per_ip.hit(ip or "unknown", now)
        if retry is None and email is not None:
            # Keyed by a digest, as the suppression list is, so no address is held in memory.
            retry = self.per_address.hit(hashlib.sha256(email.encode("utf-8")).hexdigest(), now)
        return retry


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class ClientAddress:
    """The client's IP: the direct peer, or, only when that peer is a trusted proxy, the nearest
    address in X-Forwarded-For that is not itself a trusted proxy. Anything else can be forged."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._networks = tuple(_network(item) for item in trusted_proxies)

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self._networks)

    def __call__(self, request: Request) -> str | None:
        peer_text = request.client.host if request.client else ""
        peer = _address(peer_text)
        if peer is None:
            return None
        if not self._trusted(peer):
            return str(peer)
        hops = [hop.strip() for value in request.headers.getlist("x-forwarded-for")
                for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                # A garbled chain: believe nothing beyond our own proxy.
                return str(peer)
            if not self._trusted(address):
                return str(address)
        return str(peer)


class _BodyTooLarge(Exception):
    pass


class SecurityMiddleware:
    """Adds the security headers to every response, `Cache-Control: no-store` to all but static
    files (pages show personal data), and refuses request bodies larger than `max_body` bytes."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        max_body = max(self.max_body, MAX_CONTENT_BODY_BYTES) if path.startswith(CONTENT_PATHS) \
            else self.max_body
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > max_body):
                await _too_large(send)
                return
        static = path.startswith("/static/")
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise _BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in SECURITY_HEADERS if item[0] not in present)
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            if not started:
                await _too_large(send_with_headers)


async def _too_large(send: Send) -> None:
    body = b"The request is too large.\n"
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
    ]})
    await send({"type": "http.response.body", "body": body})


class ApiCors:
    """CORS for the JSON API only (/api/...): the HTML pages are never meant for other origins."""

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...]) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=list(origins), allow_methods=["POST"],
                                   allow_headers=["Content-Type"], allow_credentials=False,
                                   max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/api/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
