"""Click counting in the engine: the signed click token, the rewriting of an email's own body links
(and nothing else: not the crisis notes, the footer, the app's own links, mailto: or tel:), and no
change at all to any message while it is off."""

from __future__ import annotations

import re
from dataclasses import replace
from email import message_from_bytes
from email.policy import default
from typing import Any
from uuid import UUID, uuid4

import pytest
from itsdangerous import URLSafeSerializer

from nurture.content.library import Content, ContentHolder
from nurture.engine.click_links import CLICK_SALT, ClickRewriter, ClickSigner
from nurture.engine.decisions import MessageToSend, decide, message_id_for, profile_of
from nurture.engine.tokens import TokenInvalid, TokenSigner
from nurture.rendering.mime import build_message
from nurture.rendering.types import Recipient, RenderedEmail
from tests.support.clock import T0
from tests.support.paths import ROOT
from tests.unit.engine.test_decisions import LETTERHEAD, POLICY, claim

SECRET = "c" * 32
BASE = "https://nurture.test"
DELIVERY = UUID(int=42)
BOOKING = "https://book.example.com/slots?a=1&b=2"
COUNTED = re.compile(re.escape(BASE) + r"/c/[A-Za-z0-9_.\-]+")

HTML = f"""<html><body><div class="card">
<div class="content" style="font-size:17px">
<p>Read <a href="https://example.com/article?x=1&amp;y=2" style="color:#2f5d62">this</a>,
or <a href='http://example.net/plain'>that</a>, or <a href="https://example.com/article">its page</a>.</p>
<p>Call <a href="tel:+441234567">us</a>, write <a href="mailto:help@example.org">here</a>,
<a href="{BASE}/p/TOKEN">pause these notes</a>, and <a href="https://findahelpline.com/">a helpline</a>.</p>
</div>
<div class="crisis" style="margin:0"><p>Find one: <a href="https://findahelpline.com/">Find A Helpline</a>
and <a href="https://example.com/crisis-line">a crisis line</a></p></div>
<div class="footer"><p><a href="{BASE}/p/TOKEN">settings</a>
<a href="{BASE}/u/TOKEN">unsubscribe</a></p></div>
</div></body></html>"""
TEXT = f"""Read this (https://example.com/article?x=1&y=2), or that
(http://example.net/plain), or its page (https://example.com/article).

Call us (tel:+441234567), pause these notes ({BASE}/p/TOKEN), and a helpline
(https://findahelpline.com/).

----------
Find one: Find A Helpline (https://findahelpline.com/) and a crisis line
(https://example.com/crisis-line)
{BASE}/u/TOKEN
"""
EMAIL = RenderedEmail(from_header="Nurture <hello@nurture.test>", subject="Hello", preheader="Hi",
                      html=HTML, text=TEXT)


def rewriter() -> ClickRewriter:
    return ClickRewriter(BASE, ClickSigner(SECRET), DELIVERY)


def targets(html: str) -> list[str]:
    """Where each href of `html` ends up: the counted ones decoded to their target."""
    found = []
    for href in re.findall(r"""href=["']([^"']*)["']""", html):
        if COUNTED.fullmatch(href):
            click = ClickSigner(SECRET).verify(href.rsplit("/", 1)[1])
            assert click.delivery_id == DELIVERY
            found.append("counted " + click.url)
        else:
            found.append(href)
    return found


# -- the token ------------------------------------------------------------------------------------


def test_a_click_token_carries_its_delivery_and_target() -> None:
    signer = ClickSigner(SECRET)
    delivery = uuid4()
    click = signer.verify(signer.sign(delivery, BOOKING))
    assert (click.delivery_id, click.url) == (delivery, BOOKING)


@pytest.mark.parametrize("tamper", [
    lambda t: t[:-2] + ("xy" if not t.endswith("xy") else "ab"),  # the signature
    lambda t: "W" + t[1:] if not t.startswith("W") else "X" + t[1:],  # the payload
    lambda t: t.split(".")[0],  # no signature at all
    lambda t: "",
    lambda t: t + ".",
])
def test_an_edited_click_token_is_refused(tamper: Any) -> None:
    token = ClickSigner(SECRET).sign(DELIVERY, BOOKING)
    with pytest.raises(TokenInvalid):
        ClickSigner(SECRET).verify(tamper(token))


def test_other_keys_purposes_and_targets_are_refused() -> None:
    token = ClickSigner(SECRET).sign(DELIVERY, BOOKING)
    with pytest.raises(TokenInvalid):
        ClickSigner("other" * 8).verify(token)
    with pytest.raises(TokenInvalid):  # an unsubscribe token is no click token
        ClickSigner(SECRET).verify(TokenSigner(SECRET).sign("unsubscribe", DELIVERY))
    with pytest.raises(TokenInvalid):  # and a click token is no unsubscribe token
        TokenSigner(SECRET).verify("unsubscribe", token)
    ours = URLSafeSerializer(SECRET, salt=CLICK_SALT)
    for payload in (["nope", BOOKING], [DELIVERY.hex, "javascript:alert(1)"], [DELIVERY.hex],
                    DELIVERY.hex, [DELIVERY.hex, 3]):
        with pytest.raises(TokenInvalid):
            ClickSigner(SECRET).verify(ours.dumps(payload))


# -- the rewriting --------------------------------------------------------------------------------


def test_only_the_bodys_own_web_links_are_counted() -> None:
    counted = rewriter().rewrite(EMAIL, "----------")
    assert targets(counted.html) == [
        "counted https://example.com/article?x=1&y=2", "counted http://example.net/plain",
        "counted https://example.com/article", "tel:+441234567", "mailto:help@example.org",
        f"{BASE}/p/TOKEN",
        "https://findahelpline.com/",  # in the body too: a helpline never goes through us
        "https://findahelpline.com/", "https://example.com/crisis-line",
        f"{BASE}/p/TOKEN", f"{BASE}/u/TOKEN"]
    body_end = HTML.index('<div class="crisis"')
    assert counted.html[counted.html.index('<div class="crisis"'):] == HTML[body_end:]
    assert (counted.subject, counted.preheader, counted.from_header) == ("Hello", "Hi",
                                                                        EMAIL.from_header)


def test_the_text_part_carries_the_same_counted_links_above_its_footer() -> None:
    counted = rewriter().rewrite(EMAIL, "----------")
    html_links = [href for href in re.findall(r"""href=["']([^"']*)["']""", counted.html)
                  if COUNTED.fullmatch(href)]
    body, footer = counted.text.split("\n----------\n")
    assert COUNTED.findall(body) == [html_links[0], html_links[1], html_links[2]]
    assert footer == TEXT.split("\n----------\n")[1]
    assert "(https://findahelpline.com/)" in body and "(tel:+441234567)" in body
    assert f"({BASE}/p/TOKEN)" in body
    assert "example.com/article" not in body.replace(html_links[0], "").replace(html_links[2], "")


def test_without_the_layouts_markers_nothing_is_rewritten() -> None:
    no_footer = replace(EMAIL, html=HTML.replace('class="crisis"', 'class="x"')
                        .replace('class="footer"', 'class="y"'))
    assert rewriter().rewrite(no_footer, "----------") == no_footer
    no_body = replace(EMAIL, html=HTML.replace('class="content"', 'class="z"'))
    assert rewriter().rewrite(no_body, "----------") == no_body
    # The HTML is still counted; the text part, whose footer cannot be found, is left alone.
    assert rewriter().rewrite(EMAIL, None).text == TEXT
    assert rewriter().rewrite(EMAIL, "=====").text == TEXT


def test_an_email_without_countable_links_is_the_same_object() -> None:
    plain = replace(EMAIL, html=HTML.replace("https://example.com/article?x=1&amp;y=2", "mailto:a@b.c")
                    .replace("http://example.net/plain", f"{BASE}/x")
                    .replace('"https://example.com/article"', '"tel:1"'))
    assert rewriter().rewrite(plain, "----------") is plain


# -- through decide, on the real content and layouts ----------------------------------------------


@pytest.fixture(scope="module")
def content() -> Content:
    return ContentHolder(ROOT / "sequences", ROOT / "templates").current


@pytest.fixture
def frozen_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Link tokens carry the second they were made in, and MIME boundaries are random: fix both,
    so two renders may be compared byte for byte."""
    monkeypatch.setattr("nurture.engine.tokens.time.time", lambda: 1_790_000_000.0)
    monkeypatch.setattr("nurture.rendering.mime.secrets.token_hex", lambda n: "b" * 2 * n)


def invitation() -> Any:
    return claim(step_key="consult-invitation", sequence_key="partner-hesitant",
                 done=frozenset({"welcome"}), delivery_id=DELIVERY)


def parts(sent: MessageToSend) -> tuple[str, str, Any]:
    message = message_from_bytes(sent.message.wire(), policy=default)
    html, plain = message.get_body(("html",)), message.get_body(("plain",))
    assert html is not None and plain is not None
    return html.get_content(), plain.get_content().replace("\r\n", "\n"), message


def test_a_sent_step_counts_its_body_link_and_nothing_of_its_footer(content: Content) -> None:
    letterhead = replace(LETTERHEAD, count_clicks=True,
                         brand=replace(LETTERHEAD.brand, booking_url=BOOKING))
    sent = decide(invitation(), content, POLICY, letterhead, T0)
    assert isinstance(sent, MessageToSend)
    html, text, message = parts(sent)
    counted = [href for href in re.findall(r'href="([^"]*)"', html) if "/c/" in href]
    assert len(counted) == 1
    click = ClickSigner(LETTERHEAD.links.signer.secret_key).verify(counted[0].rsplit("/", 1)[1])
    assert (click.delivery_id, click.url) == (DELIVERY, BOOKING)
    assert counted[0] in text.split("\n----------\n")[0]
    assert "book.example.com" not in html and "book.example.com" not in text
    footer = html[html.index('class="crisis"'):]
    assert "/c/" not in footer and "/c/" not in text.split("\n----------\n")[1]
    assert 'href="https://findahelpline.com/"' in footer and "/u/" in footer and "/p/" in footer
    for quiet in ("/booked/", "/yes/", "/solo/"):
        assert f"{BASE}{quiet}" in html, "the app's own links go straight to the app"
    assert message["Message-ID"] == message_id_for(DELIVERY, "nurture.test")
    assert sent.message.message_id == message_id_for(DELIVERY, "nurture.test")


def test_off_every_message_is_byte_for_byte_what_it_was(content: Content,
                                                        frozen_tokens: None) -> None:
    """With counting off (the default), decide builds exactly what rendering and MIME make of
    the step on their own, for every step of every sequence; and an email without a countable
    link is unchanged with counting on too."""
    assert LETTERHEAD.count_clicks is False
    checked = counted = 0
    for sequence in content.sequences.values():
        if sequence.key == "system":
            continue
        for step in sequence.steps:
            if step.experiment is not None or step.when is not None:
                continue
            one = claim(step_key=step.key, sequence_key=sequence.key, delivery_id=DELIVERY)
            sent = decide(one, content, POLICY, LETTERHEAD, T0)
            if not isinstance(sent, MessageToSend):
                continue
            links = LETTERHEAD.links.for_subscriber(one.subscriber.id)
            rendered = content.library.render(
                sequence, step, Recipient(one.subscriber.email, one.subscriber.first_name,
                                          profile_of(one)), links, LETTERHEAD.brand)
            expected = build_message(rendered, to=one.subscriber.email,
                                     message_id=message_id_for(DELIVERY, "nurture.test"),
                                     links=links, date=T0)
            assert sent.message.wire() == expected, f"{sequence.key}/{step.key}"
            on = decide(one, content, POLICY, replace(LETTERHEAD, count_clicks=True), T0)
            assert isinstance(on, MessageToSend)
            if on.message.wire() != expected:
                counted += 1
                assert f"{BASE}/c/" in on.message.wire().decode("ascii")
            checked += 1
    assert checked >= 5
    assert 0 < counted < checked, "some steps have a link of their own (the booking page), some none"
