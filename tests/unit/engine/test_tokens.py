"""Link tokens: the same as itsdangerous' own, verifiable both ways, bound to their purpose."""

from __future__ import annotations

import uuid

import pytest
from itsdangerous import URLSafeTimedSerializer

from nurture.engine.tokens import TokenInvalid, TokenSigner

SECRET = "k" * 32


def test_tokens_are_the_ones_itsdangerous_makes_and_links_already_sent_still_work() -> None:
    signer = TokenSigner(SECRET)
    standard = URLSafeTimedSerializer(SECRET, salt="nurture.unsubscribe")
    for _ in range(500):
        subscriber = uuid.uuid4()
        ours, theirs = signer.sign("unsubscribe", subscriber), standard.dumps(subscriber.hex)
        if ours.split(".")[1] == theirs.split(".")[1]:  # made within the same second
            assert ours == theirs
        assert ours.split(".")[0] == theirs.split(".")[0], "same payload encoding"
        assert signer.verify("unsubscribe", theirs) == subscriber
        assert standard.loads(ours) == subscriber.hex


def test_a_token_works_only_for_its_purpose_and_its_secret() -> None:
    subscriber = uuid.uuid4()
    token = TokenSigner(SECRET).sign("unsubscribe", subscriber)
    with pytest.raises(TokenInvalid):
        TokenSigner(SECRET).verify("preferences", token)
    with pytest.raises(TokenInvalid):
        TokenSigner("other" * 8).verify("unsubscribe", token)
    with pytest.raises(TokenInvalid):
        TokenSigner(SECRET).verify("unsubscribe", token[:-2] + "xx")


def test_an_emails_three_tokens_are_each_the_one_for_its_purpose() -> None:
    signer = TokenSigner(SECRET)
    subscriber = uuid.uuid4()
    purposes = ("unsubscribe", "preferences", "booked")
    tokens = signer.sign_each(purposes, subscriber)
    assert len(set(tokens)) == 3
    for purpose, token in zip(purposes, tokens, strict=True):
        assert signer.verify(purpose, token) == subscriber
        assert URLSafeTimedSerializer(SECRET, salt=f"nurture.{purpose}").loads(token) == subscriber.hex
