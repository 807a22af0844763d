"""First-party click counting, as far as the engine goes: the signed click token (delivery and
target) and the rewriting of the links in an email's own body to `{base_url}/c/{token}`.

Only the body is touched. The crisis resources, the footer's settings and unsubscribe links,
mailto: and tel: links and every link of the app itself stay exactly as rendered: a person in
difficulty must reach a helpline even when this service is down, and what they change about
their subscription is none of the counting's business."""

from __future__ import annotations

import html
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final
from uuid import UUID

from itsdangerous import BadSignature, URLSafeSerializer

from nurture.content.samples import footer_separator
from nurture.engine.tokens import TokenInvalid
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import RenderedEmail

CLICK_SALT: Final = "nurture.click"
CLICK_PATH: Final = "/c/"
# Where the layout's body starts and where the part after it (crisis notes, footer) begins; with
# either missing (a layout rewritten by hand) nothing is rewritten rather than guessing.
_BODY_START: Final = re.compile(r"""<div\b[^>]*\bclass=["'][^"']*\bcontent\b[^"']*["'][^>]*>""", re.I)
_BODY_END: Final = re.compile(r"""<div\b[^>]*\bclass=["'][^"']*\b(?:crisis|footer)\b""", re.I)
_HREF: Final = re.compile(r"""(<a\b[^>]*?\bhref=)(["'])(.*?)\2""", re.I | re.S)
_WEB: Final = re.compile(r"https?://", re.I)
# A URL in the text part ends where the text does, or at punctuation that closes a sentence.
_URL_END: Final = r"""(?![^\s<>()\[\]"'.,;:!?]|[.,;:!?][^\s<>()\[\]"'])"""


@dataclass(frozen=True)
class Click:
    delivery_id: UUID
    url: str


@lru_cache(maxsize=8)
def _click_serializer(secret_key: str) -> URLSafeSerializer:
    # Built once, as engine/tokens.py builds its serializers, not for each link of each email.
    return URLSafeSerializer(secret_key, salt=CLICK_SALT)


@dataclass(frozen=True)
class ClickSigner:
    """Signs and reads click tokens. Without a timestamp: a link in an old email keeps working;
    the counting of it stops when its delivery's row is purged."""

    secret_key: str

    def _serializer(self) -> URLSafeSerializer:
        return _click_serializer(self.secret_key)

    def sign(self, delivery_id: UUID, url: str) -> str:
        token: str = self._serializer().dumps([delivery_id.hex, url])
        return token

    def verify(self, token: str) -> Click:
        """The click the token stands for; TokenInvalid for anything not signed by us, so an
        edited token can never redirect anywhere."""
        try:
            value = self._serializer().loads(token)
        except BadSignature as error:
            raise TokenInvalid("this link is not valid") from error
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(part, str) for part in value) and _WEB.match(value[1])):
            raise TokenInvalid("this link is not valid")
        try:
            return Click(UUID(hex=value[0]), value[1])
        except ValueError as error:
            raise TokenInvalid("this link is not valid") from error


@dataclass(frozen=True)
class ClickRewriter:
    """Rewrites one delivery's body links to counted ones under `base_url`."""

    base_url: str
    signer: ClickSigner
    delivery_id: UUID

    def counted_url(self, url: str) -> str:
        return f"{self.base_url}{CLICK_PATH}{self.signer.sign(self.delivery_id, url)}"

    def rewrite(self, email: RenderedEmail, text_footer: str | None) -> RenderedEmail:
        """The email with its body links counted; unchanged when the layout's markers are not
        found. `text_footer` is the text layout's footer separator line."""
        start, end = _body_span(email.html)
        if start is None or end is None:
            return email
        kept = {url for _, url in _hrefs(email.html[end:])}
        counted: dict[str, str] = {}
        parts: list[str] = []
        position = start
        for match, url in _hrefs(email.html[start:end]):
            if not self._counts(url, kept):
                continue
            counted.setdefault(url, self.counted_url(url))
            parts += [email.html[position:start + match.start(3)], html.escape(counted[url])]
            position = start + match.end(3)
        if not counted:
            return email
        new_html = "".join(parts) + email.html[position:]
        return replace(email, html=new_html, text=_rewrite_text(email.text, counted, text_footer))

    def _counts(self, url: str, kept: set[str]) -> bool:
        """A web link of the body's own, not the app's and not one the footer also carries."""
        own = url == self.base_url or url.startswith(self.base_url + "/")
        return bool(_WEB.match(url)) and not own and url not in kept


def _body_span(page: str) -> tuple[int | None, int | None]:
    start = _BODY_START.search(page)
    if start is None:
        return None, None
    end = _BODY_END.search(page, start.end())
    return start.end(), None if end is None else end.start()


def _hrefs(fragment: str) -> list[tuple[re.Match[str], str]]:
    return [(match, html.unescape(match.group(3)).strip()) for match in _HREF.finditer(fragment)]


def _rewrite_text(text: str, counted: dict[str, str], footer: str | None) -> str:
    """The same URLs replaced above the text layout's footer separator; nothing when the
    separator is not found, since the footer carries the helplines."""
    if footer is None:
        return text
    cut = max(text.rfind(f"\n{footer}\n"), text.rfind(f"\n{footer}\r\n"))
    if cut < 0:
        return text
    body = text[:cut]
    # Longest first, so a URL that begins another is not replaced inside it.
    for url in sorted(counted, key=len, reverse=True):
        # A function, not a template: the new URL's characters are not a replacement pattern.
        body = re.sub(re.escape(url) + _URL_END, _constant(counted[url]), body)
    return body + text[cut:]


def _constant(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: value


_FOOTERS: weakref.WeakKeyDictionary[TemplateLibrary, str | None] = weakref.WeakKeyDictionary()


def text_footer_of(library: TemplateLibrary) -> str | None:
    """The text layout's footer separator, read once per content version's library."""
    if library not in _FOOTERS:
        _FOOTERS[library] = footer_separator(library)
    return _FOOTERS[library]


def count_clicks(email: RenderedEmail, *, library: TemplateLibrary, base_url: str,
                 secret_key: str, delivery_id: UUID) -> RenderedEmail:
    """`email` with the links of its body going through the counted redirect of `delivery_id`."""
    rewriter = ClickRewriter(base_url.rstrip("/"), ClickSigner(secret_key), delivery_id)
    return rewriter.rewrite(email, text_footer_of(library))
