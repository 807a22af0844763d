"""A dispatcher for tests: the test brand, links and Message-ID domain, with the store, content,
transport and whatever policy a test needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nurture.content.library import Content
from nurture.engine.dispatcher import Dispatcher
from nurture.engine.policy import DispatchPolicy
from nurture.engine.ports import Transport
from nurture.engine.throttle import Throttle
from nurture.engine.tokens import LinkMaker, TokenSigner
from nurture.rendering.types import Brand

DOMAIN = "nurture.test"
SENDER = f"Nurture <hello@{DOMAIN}>"
POSTAL = "Nurture Test, 12 Sample Road, Testville"
BRAND = Brand(sender=SENDER, discreet_sender_name="Notes for you", postal_address=POSTAL,
              base_url=f"https://{DOMAIN}")
LINKS = LinkMaker(base_url=f"https://{DOMAIN}", signer=TokenSigner("x" * 32),
                  unsubscribe_mailto=f"unsubscribe@{DOMAIN}")


def make_dispatcher(store: Any, content: Callable[[], Content],
                    transport: Transport, *, owner: str = "test-owner",
                    throttle: Throttle | None = None, **policy: Any) -> Dispatcher:
    """`store` is a DeliveryStore, or a test's wrapper around one; `policy` holds DispatchPolicy
    fields; without a `throttle`, the dispatcher's default (a breaker after 5 failures, no rate
    limit)."""
    dispatcher = Dispatcher(store=store, transport=transport, content=content, brand=BRAND,
                            links=LINKS, owner=owner, message_id_domain=DOMAIN,
                            policy=DispatchPolicy(**policy))
    if throttle is not None:
        dispatcher.throttle = throttle
    return dispatcher
