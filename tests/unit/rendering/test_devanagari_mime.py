"""Devanagari on the wire: subjects and display names as RFC 2047 encoded words, folded between
grapheme clusters, and the text part wrapped by columns, each parsed back with the standard
library and compared with what was rendered."""

from __future__ import annotations

import base64
import binascii
import email
import re
import unicodedata
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.policy import default

import pytest
import regex

from nurture.rendering.mime import build_message, encoded_words, from_header
from nurture.rendering.text import TEXT_WIDTH, columns, wrap_line, wrap_text
from nurture.rendering.types import Links, RenderedEmail

LINKS = Links(unsubscribe_url="https://example.org/u/t", preferences_url="https://example.org/p/t")
DATE = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
SUBJECTS = (
    "मीरा, आप जैसे और भी बहुत लोग हैं",
    "क्षत्रिय, त्र्यंबक और श्रृंगार: संयुक्ताक्षर, मात्राएँ और हलंत एक साथ, एक लंबी पंक्ति में जो "
    "कई शब्दों में बँटेगी",
    "Zoë, you are not alone in this",
    "आपके नोट्स 👩‍👩‍👧‍👦 इस हफ़्ते",
    "Asha, यह हफ़्ता आपके लिए: 3 छोटे कदम",
)
NAMES = ("आपके नोट्स", "नर्चर रिलेशनशिप केयर की ओर से आपके लिए हर हफ़्ते के नोट्स", "Équipe Nurture")
_ENCODED_WORD = re.compile(r"=\?utf-8\?([bq])\?([^?]*)\?=", re.IGNORECASE)


def message(subject: str, name: str) -> bytes:
    rendered = RenderedEmail(from_header("Nurture <hello@example.org>", name), subject, "",
                             "<p>नमस्ते</p>", "नमस्ते\n")
    return build_message(rendered, to="reader@example.org", message_id="<m1@example.org>",
                         links=LINKS, date=DATE)


def header_block(data: bytes) -> list[str]:
    return data.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")


def decoded_alone(kind: str, payload: str) -> str:
    """One encoded word decoded by itself: a cut inside a UTF-8 sequence fails here."""
    if kind.lower() == "b":
        raw = base64.b64decode(payload)
    else:
        raw = binascii.a2b_qp(payload.replace("_", " "), header=True)
    return raw.decode("utf-8")


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("name", NAMES)
def test_subjects_and_names_parse_back_and_fold_between_clusters(subject: str, name: str) -> None:
    data = message(subject, name)
    parsed = email.message_from_bytes(data, policy=default)
    assert parsed["Subject"] == subject
    [address] = parsed["From"].addresses
    assert address.addr_spec == "hello@example.org"
    # policy.default keeps the space between two encoded words of a display name, which RFC 2047
    # 6.2 says to drop; the library's RFC 2047 decoder reads it as mail apps do.
    raw_from = email.message_from_bytes(data, policy=email.policy.compat32)["From"]
    shown = str(make_header(decode_header(raw_from.rsplit("<", 1)[0].strip())))
    assert shown == name
    if len(_ENCODED_WORD.findall(raw_from)) <= 1:
        assert address.display_name == name
    for line in header_block(data):
        words = _ENCODED_WORD.findall(line)
        if not words:
            continue
        assert len(line) <= 76, line
        for kind, payload in words:
            assert len(f"=?utf-8?{kind}?{payload}?=") <= 75
            text = decoded_alone(kind, payload)
            assert not unicodedata.category(text[0]).startswith("M"), \
                f"a word starts with a combining mark, cut from its letter: {text!r}"
            assert text[-1] not in "\u200d\u094d", f"a word ends inside a cluster: {text!r}"


def test_an_encoded_subject_stays_as_short_as_the_shorter_encoding() -> None:
    # Mostly ASCII: Q keeps it readable; mostly Devanagari: B is about a third the size.
    assert encoded_words("Zoë, you are not alone", 9)[0].startswith("=?utf-8?q?")
    assert all(word.startswith("=?utf-8?b?") for word in encoded_words(SUBJECTS[0], 9))


def test_the_text_part_wraps_by_columns_and_never_splits_a_cluster() -> None:
    paragraph = ("- " + "क्षत्रिय श्रृंगार त्र्यंबक संयुक्ताक्षरों वाली पंक्ति आपके लिए है। " * 9).strip()
    wrapped = wrap_line(paragraph)
    lines = wrapped.split("\n")
    assert len(lines) > 1
    assert all(columns(line) <= TEXT_WIDTH for line in lines)
    assert max(columns(line) for line in lines) > 60, "a line holds ~78 columns, not ~78/3"
    assert all(line.startswith("  ") for line in lines[1:]), "continuations indent under the marker"
    assert " ".join(line.strip() for line in lines).removeprefix("- ") == paragraph[2:]
    assert regex.findall(r"\X", wrapped.replace("\n  ", " ")) == regex.findall(r"\X", paragraph)
    assert columns("क्ष") == 1 and len("क्ष") == 3


def test_a_hindi_text_part_travels_as_quoted_printable_and_parses_back() -> None:
    text = wrap_text("नमस्ते मीरा,\n\n" + "यह एक छोटा नोट है, आराम से पढ़ें। " * 12) + "\n"
    rendered = RenderedEmail("Nurture <hello@example.org>", "नोट", "", "<p>नोट</p>", text)
    data = build_message(rendered, to="reader@example.org", message_id="<m2@example.org>",
                         links=LINKS, date=DATE)
    assert b"Content-Transfer-Encoding: quoted-printable" in data
    body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert all(len(line) <= 76 for line in body_lines), "quoted-printable lines (RFC 2045 6.7)"
    parsed = email.message_from_bytes(data, policy=default)
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == text
