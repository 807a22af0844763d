"""What a relay's reply means beyond its class (a destination's request to slow down), and the
reply without the addresses it may quote."""

from __future__ import annotations

import re

from nurture.engine.ports import SendErrorKind, SendResult

_POLICY_CODE = re.compile(r"^\s*4\.7\.\d{1,3}\b")
_ADDRESS = re.compile(r"[^\s<>\"']+@[^\s<>\"']+")


def without_addresses(text: str) -> str:
    """SMTP replies often quote the recipient: such text is personal data, kept without it."""
    return _ADDRESS.sub("<address>", text)


def destination_deferral(result: SendResult) -> bool:
    """The destination asks us to slow down: a temporary refusal with a 4.7.x status (Gmail's
    "421 4.7.0 Try again later", Yahoo's "421 4.7.0 [TSS04]", Outlook's "451 4.7.500")."""
    return (not result.ok and result.error_kind is SendErrorKind.TEMPORARY
            and bool(_POLICY_CODE.match(result.message)))
