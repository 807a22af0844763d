"""The bodies of an email encoded for the wire, apart from its headers: the costly half of
building a message, which the relay process can do while the dispatcher renders the next one.

`MessageParts` is what crosses to that process: the headers already made (and checked), the two
bodies as UTF-8 bytes, and the boundary between them. Its `wire()` cannot fail."""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Final

_BASE64_LINE: Final = 76
_BASE64_CHUNK: Final = _BASE64_LINE // 4 * 3
"""Bytes that encode to one full base64 line."""
_MAX_LINE: Final = 998


def text_part(data: bytes) -> tuple[bytes, bytes]:
    """(transfer encoding, encoded body) of the plain-text part (UTF-8): 7bit when it allows."""
    # Lines are split as bytes: str.splitlines() would also break at form feeds, U+2028 and
    # other separators, which are content to the standard library and to mail readers.
    lines = data.splitlines()
    if data.isascii() and max(map(len, lines), default=0) <= _MAX_LINE:
        return b"7bit", b"\r\n".join(lines) + b"\r\n"
    body = binascii.b2a_qp(data, istext=True).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b"quoted-printable", body


def html_part(data: bytes) -> bytes:
    """The HTML part (UTF-8) in base64, in lines of 76 characters."""
    data = b"\r\n".join(data.splitlines()) + b"\r\n"
    # One line of base64 for each 57 bytes: binascii ends each with a newline, made CRLF.
    return b"".join(binascii.b2a_base64(data[start:start + _BASE64_CHUNK])[:-1] + b"\r\n"
                    for start in range(0, len(data), _BASE64_CHUNK))


@dataclass(frozen=True)
class MessageParts:
    """An email with its headers made and its bodies still to encode."""

    head: bytes
    """Every header line, the multipart Content-Type, and the blank line after them."""
    boundary: bytes
    text: bytes
    html: bytes

    def wire(self) -> bytes:
        """The whole message as sent (CRLF)."""
        text_cte, text_body = text_part(self.text)
        boundary = self.boundary
        return b"".join((
            self.head,
            b"--", boundary, b"\r\n",
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: ", text_cte, b"\r\n\r\n",
            text_body,
            # The line break before a boundary belongs to the boundary, not to the part.
            b"\r\n--", boundary, b"\r\n",
            b'Content-Type: text/html; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: base64\r\n\r\n",
            html_part(self.html),
            b"\r\n--", boundary, b"--\r\n",
        ))
