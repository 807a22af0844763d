"""The wire form of an email: the From header, the mail policy, and the multipart/alternative
message with one-click unsubscribe headers, built directly and through the standard library."""

from __future__ import annotations

import binascii
import functools
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from types import MappingProxyType
from typing import Any, Final

import regex

from nurture.rendering.escaping import MAILTO, UNSAFE_CHARS, URL, check_url, one_line
from nurture.rendering.types import Links, RenderedEmail
from nurture.rendering.wire import MessageParts

# RFC 5322 2.1.1: header lines should stay within 78 characters.
_LINE_LENGTH: Final = 78
_MESSAGE_ID: Final = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>\Z")
_HEADER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_RESERVED_HEADERS: Final = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})
_PLAIN_ADDRESS: Final = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")
# RFC 2047 2: an encoded word is at most 75 characters, and a line holding one at most 76.
_ENCODED_WORD: Final = 75
_ENCODED_LINE: Final = 76
_WORD_FRAME: Final = len("=?utf-8?b??=")
_GRAPHEME: Final = regex.compile(r"\X")
# RFC 2047 5(3): the characters a "Q" encoded word may carry as themselves anywhere, a phrase
# (the From display name) included.
_Q_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_KEPT: Final = bytes(sorted(_Q_SAFE | {0x20}))
"""The bytes Q writes as one character (a space becomes "_")."""


def _fold_ascii(name: str, value: str, linesep: str) -> str:
    """Folds before spaces to keep lines within 78 characters where it can (RFC 5322 2.2.3)."""
    if len(name) + 2 + len(value) <= _LINE_LENGTH:
        return f"{name}: {value}{linesep}"
    lines: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) > _LINE_LENGTH and current.strip() != f"{name}:":
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return linesep.join(lines) + linesep


class _HeaderRegistry(HeaderRegistry):
    """The standard registry creates a new class for every header it parses; create each once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


class _MailPolicy(EmailPolicy):
    """SMTP line endings, with a plain path for the ASCII header values build_message checked.

    The generic header machinery parses and refolds every value, which costs milliseconds per
    message, and folds a URL longer than a line into RFC 2047 encoded words, which providers do
    not decode in List-Unsubscribe, so one-click unsubscribe would silently break. Values that are
    not plain ASCII (a name with accents in the subject) still take the generic path.
    """

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        # Content-* headers are read back many times while the message is built: parse them once.
        if (
            type(value) is str
            and not name.lower().startswith("content-")
            and value.isascii()
            and UNSAFE_CHARS.search(value) is None
            and len(value) < 990
        ):
            return name, value
        return super().header_store_parse(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        # A parsed header's str() is its unfolded value, so ASCII ones fold the same simple way.
        text = str(value)
        if text.isascii() and UNSAFE_CHARS.search(text) is None:
            if name.lower() == "list-unsubscribe":
                folded = text.replace(", ", "," + self.linesep + " ")
                return f"{name}: {folded}{self.linesep}".encode("ascii")
            return _fold_ascii(name, text, self.linesep).encode("ascii")
        return super().fold_binary(name, value)


_POLICY: Final = _MailPolicy(linesep="\r\n", header_factory=_HeaderRegistry())


@functools.lru_cache(maxsize=64)
def from_header(sender: str, display_name: str | None) -> str:
    """The From header value: the brand's address with its own name or the one given."""
    name, address = parseaddr(one_line(sender))
    if "@" not in address:
        raise ValueError(f"brand sender has no address: {sender!r}")
    chosen = one_line(display_name if display_name is not None else name)
    return str(Address(display_name=chosen, addr_spec=address))


def _checked_headers(
    to: str, message_id: str, date: datetime, extra_headers: Mapping[str, str],
) -> tuple[str, str, list[tuple[str, str]]]:
    """Validated (to, message_id, extra headers) shared by both builders."""
    if UNSAFE_CHARS.search(to):
        raise ValueError(f"recipient address contains control characters: {to!r}")
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("date must be timezone-aware")
    message_id = one_line(message_id)
    if not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(f"not a valid Message-ID: {message_id!r}")
    extra: list[tuple[str, str]] = []
    for name, value in extra_headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header name not allowed: {name!r}")
        extra.append((name, one_line(value)))
    return to.strip(), message_id, extra


def _unsubscribe(links: Links, separator: str) -> str:
    """The List-Unsubscribe value: the one-click URL, then the mailto address when there is one."""
    unsubscribe = f"<{check_url('unsubscribe_url', links.unsubscribe_url, URL)}>"
    if links.unsubscribe_mailto:
        unsubscribe += f"{separator}<{check_url('unsubscribe_mailto', links.unsubscribe_mailto, MAILTO)}>"
    return unsubscribe


def _q_encoded(data: bytes) -> str:
    return "".join("_" if byte == 0x20 else chr(byte) if byte in _Q_SAFE else f"={byte:02X}"
                   for byte in data)


def _b_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _q_length(data: bytes) -> int:
    """len(_q_encoded(data)), without encoding: each byte that is not kept as it is takes 3."""
    return len(data) + 2 * len(data.translate(None, _Q_KEPT))


def encoded_words(value: str, first_line_used: int) -> list[str]:
    """`value` as RFC 2047 encoded words, one per line: each at most 75 characters, each line
    (the first after `first_line_used` characters of header name) at most 76, and each cut
    between grapheme clusters, so no word splits a UTF-8 sequence or a conjunct. "B" (base64)
    or "Q", whichever is shorter for the whole value, as the standard library chooses."""
    clusters = [cluster.encode("utf-8") for cluster in _GRAPHEME.findall(value)]
    data = b"".join(clusters)
    use_q = _q_length(data) <= _b_length(len(data))
    words: list[str] = []
    room = _ENCODED_LINE - first_line_used

    def size(piece: bytes) -> int:
        """What the piece adds to a word: Q's length adds up byte by byte; B's is counted from
        the bytes of the whole word."""
        return _q_length(piece) if use_q else len(piece)

    def fits(measure: int) -> bool:
        encoded = measure if use_q else _b_length(measure)
        return _WORD_FRAME + encoded <= min(_ENCODED_WORD, room)

    # A cluster too long for any word (a long emoji sequence) goes code point by code point.
    pieces = [piece for cluster in clusters for piece in
              ([cluster] if fits(size(cluster)) else [c.encode("utf-8") for c in cluster.decode()])]
    chunk, measure = b"", 0
    for piece in pieces:
        added = size(piece)
        if chunk and not fits(measure + added):
            words.append(_encoded_word(chunk, use_q))
            chunk, measure, room = b"", 0, _ENCODED_LINE - 1
        chunk += piece
        measure += added
    if chunk:
        words.append(_encoded_word(chunk, use_q))
    return words


def _encoded_word(data: bytes, use_q: bool) -> str:
    if use_q:
        return f"=?utf-8?q?{_q_encoded(data)}?="
    return f"=?utf-8?b?{binascii.b2a_base64(data, newline=False).decode('ascii')}?="


def _encoded_header(name: str, value: str) -> str:
    """One header line (folded, CRLF-terminated): plain ASCII as is, anything else as RFC 2047
    encoded words, folded between them."""
    if value.isascii():
        return _fold_ascii(name, value, "\r\n")
    return f"{name}: " + "\r\n ".join(encoded_words(value, len(name) + 2)) + "\r\n"


def _encoded_from(from_header: str) -> str:
    if from_header.isascii():
        return _fold_ascii("From", from_header, "\r\n")
    # Only the display name may be encoded; the address itself must stay as it is.
    name, address = parseaddr(from_header)
    words = encoded_words(name, len("From: "))
    last = f"<{address}>"
    room = _ENCODED_LINE - (len("From: ") if len(words) == 1 else 1) - len(words[-1]) - 1
    separator = " " if len(last) <= room else "\r\n "
    return "From: " + "\r\n ".join(words) + separator + last + "\r\n"


def _reply_to(rendered: RenderedEmail) -> list[str]:
    """The Reply-To line when a person reads replies; an address only, checked like the recipient's."""
    if not rendered.reply_to:
        return []
    address = one_line(rendered.reply_to)
    if not _PLAIN_ADDRESS.match(address):
        raise ValueError(f"Reply-To must be a plain address, not {address[:80]!r}")
    return [f"Reply-To: {address}\r\n"]


def build_message(
    rendered: RenderedEmail,
    *,
    to: str,
    message_id: str,
    links: Links,
    date: datetime,
    extra_headers: Mapping[str, str] = _NO_HEADERS,
) -> bytes:
    """The wire form (CRLF) of a multipart/alternative email with one-click unsubscribe headers.

    Assembled directly: EmailMessage costs milliseconds per email, most of the send path's time.
    A test parses this and build_message_reference's output for every persona and compares them.
    """
    parts = message_parts(rendered, to=to, message_id=message_id, links=links, date=date,
                          extra_headers=extra_headers)
    return parts if isinstance(parts, bytes) else parts.wire()


def message_parts(
    rendered: RenderedEmail,
    *,
    to: str,
    message_id: str,
    links: Links,
    date: datetime,
    extra_headers: Mapping[str, str] = _NO_HEADERS,
) -> MessageParts | bytes:
    """`build_message`'s headers, made and checked here (every mistake raises ValueError now),
    and its bodies left to encode (`MessageParts.wire()`, which cannot fail); an unusual
    address's whole message, built by the library."""
    to, message_id, extra = _checked_headers(to, message_id, date, extra_headers)
    if not _PLAIN_ADDRESS.match(to):
        # Internationalized, quoted or otherwise unusual addresses (and mistakes such as two
        # addresses) go through the library, which handles or refuses them: rare, so no cost.
        return build_message_reference(rendered, to=to, message_id=message_id, links=links,
                                       date=date, extra_headers=extra_headers)
    unsubscribe = _unsubscribe(links, ",\r\n ")
    boundary = f"=_{secrets.token_hex(16)}"
    lines = [
        _encoded_from(one_line(rendered.from_header)),
        f"To: {to}\r\n",
        *_reply_to(rendered),
        _encoded_header("Subject", one_line(rendered.subject)),
        f"Date: {format_datetime(date)}\r\n",
        f"Message-ID: {message_id}\r\n",
        "MIME-Version: 1.0\r\n",
        f"List-Unsubscribe: {unsubscribe}\r\n",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    ]
    lines += [_encoded_header(name, value) for name, value in extra]
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
    # Encoded here, so that a value no UTF-8 can hold (a lone surrogate) fails here, not later.
    return MessageParts("".join(lines).encode("ascii"), boundary.encode("ascii"),
                        rendered.text.encode("utf-8"), rendered.html.encode("utf-8"))


def build_message_reference(
    rendered: RenderedEmail,
    *,
    to: str,
    message_id: str,
    links: Links,
    date: datetime,
    extra_headers: Mapping[str, str] = _NO_HEADERS,
) -> bytes:
    """build_message through the standard library's EmailMessage: the reference the fast path must
    match (a test parses both), and the baseline of the benchmark."""
    to, message_id, extra = _checked_headers(to, message_id, date, extra_headers)
    unsubscribe = _unsubscribe(links, ", ")

    message = EmailMessage(policy=_POLICY)
    message["From"] = one_line(rendered.from_header)
    message["To"] = Address(addr_spec=to)
    if rendered.reply_to:
        message["Reply-To"] = one_line(rendered.reply_to)
    message["Subject"] = one_line(rendered.subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["MIME-Version"] = "1.0"
    message["List-Unsubscribe"] = unsubscribe
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in extra:
        message[name] = value
    # Choosing the transfer encodings here skips the library's trial encodings: 7bit when the text
    # allows it (RFC 5322 lines up to 998), and base64 for HTML because it is encoded in C, while
    # quoted-printable is pure Python and costs milliseconds on long inlined HTML lines.
    text = rendered.text
    plain_ascii = text.isascii() and max(map(len, text.splitlines()), default=0) <= 998
    message.set_content(text, charset="utf-8", cte="7bit" if plain_ascii else "quoted-printable")
    # A boundary given here spares the generator compiling a fresh regular expression to pick one.
    message.make_alternative(boundary=f"=_{secrets.token_hex(16)}")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="base64")
    for part in message.iter_parts():
        del part["MIME-Version"]
    return message.as_bytes(policy=_POLICY)
