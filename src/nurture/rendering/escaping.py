"""Making values safe where they go: one-line header values, checked links, and HTML escaping that
matches what premailer's serializer writes in text, attributes and URI attributes."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from enum import Enum
from typing import Final

from lxml import etree  # premailer's parser; no stubs

# Cc, line/paragraph separators (str.splitlines() splits on them, and so does the email package)
# and bidi overrides, which can make a name or subject display as something else.
UNSAFE_CHARS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
WHITESPACE: Final = re.compile(r"\s+")
# Links are built by the web layer; anything outside this set means a bug upstream. Commas and
# angle brackets would also break the List-Unsubscribe header.
URL: Final = re.compile(r"https?://[A-Za-z0-9\-._~%&+/:;=?@#]+\Z")
MAILTO: Final = re.compile(r"mailto:[A-Za-z0-9\-._~%&+/:;=?@#]+\Z")


def one_line(value: str) -> str:
    """A header-safe single line: control characters become spaces, whitespace collapses."""
    return WHITESPACE.sub(" ", UNSAFE_CHARS.sub(" ", value)).strip()


def check_url(name: str, value: str, pattern: re.Pattern[str]) -> str:
    if len(value) > 900 or not pattern.match(value):
        raise ValueError(f"{name} is not an acceptable URL: {value!r}")
    return value


def _escape_text(value: str) -> str:
    # Exactly what lxml's HTML serializer (used by premailer) writes for text.
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attribute(value: str) -> str:
    return _escape_text(value).replace('"', "&quot;")


_URI_UNCHANGED: Final = re.compile(r"[A-Za-z0-9._~:/?#@!$()*+,;=%-]*")
"""Characters libxml2 writes as they are in a URI attribute; a test holds it to that."""


def _escape_uri_attribute(value: str) -> str:
    # Links carry per-subscriber tokens, so a cache of libxml2's answers never hits for them;
    # the common all-safe URL needs no asking.
    if _URI_UNCHANGED.fullmatch(value):
        return value
    return _escape_uri_attribute_by_libxml2(value)


@functools.lru_cache(maxsize=4096)
def _escape_uri_attribute_by_libxml2(value: str) -> str:
    # libxml2 percent-encodes some characters in href/src/action/a@name, and which ones depends
    # on its version, so ask it rather than imitate it.
    element = etree.Element("a")
    element.set("href", value)
    serialized: str = etree.tostring(element, method="html", encoding="utf-8").decode("utf-8")
    return serialized[len('<a href="') : -len('"></a>')]


class Context(Enum):
    """Where in serialized HTML a value goes."""

    TEXT = "text"
    ATTRIBUTE = "attribute"
    URI_ATTRIBUTE = "uri"


ESCAPERS: Final[dict[Context, Callable[[str], str]]] = {
    Context.TEXT: _escape_text,
    Context.ATTRIBUTE: _escape_attribute,
    Context.URI_ATTRIBUTE: _escape_uri_attribute,
}
_TAG_NAME: Final = re.compile(r"<([A-Za-z][A-Za-z0-9:-]*)")
_OPEN_ATTRIBUTE: Final = re.compile(r"([^\s\"'=<>/]+)\s*=\s*\"[^\"]*\Z")


def context_at(html: str, position: int) -> Context:
    """Where a placeholder sits in serialized HTML, which decides how its value is escaped."""
    tag_start = html.rfind("<", 0, position)
    if tag_start <= html.rfind(">", 0, position):
        return Context.TEXT
    tag = _TAG_NAME.match(html, tag_start)
    attribute = _OPEN_ATTRIBUTE.search(html, tag_start, position)
    if tag is None or attribute is None:
        raise ValueError(f"personal value in an unexpected place in the HTML: {html[tag_start:]!r}")
    name = attribute.group(1).lower()
    if name in ("href", "src", "action") or (name == "name" and tag.group(1).lower() == "a"):
        return Context.URI_ATTRIBUTE
    return Context.ATTRIBUTE
