"""One step rendered for a made-up subscriber (a persona): for previews and test sends, no database."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import NamedTuple

from nurture.config import Settings
from nurture.content.library import Content
from nurture.content.personas import Persona
from nurture.domain.model import Sequence, Step
from nurture.rendering.mime import build_message
from nurture.rendering.types import Recipient
from nurture.services.runtime import brand_from, links_from

# Previews link nowhere real: every token is made for this id.
PREVIEW_SUBSCRIBER = uuid.UUID(int=0)


class StepPreview(NamedTuple):
    message: bytes
    subject: str
    html: str
    text: str


def render_step(settings: Settings, content: Content, sequence: Sequence, step: Step,
                persona: Persona, *, to: str, now: datetime,
                subject_prefix: str = "") -> StepPreview:
    """The whole message, its subject, HTML and text part, as `persona` would receive it."""
    links = links_from(settings).for_subscriber(PREVIEW_SUBSCRIBER)
    rendered = content.library.render(sequence, step, Recipient(to, persona.first_name,
                                                                 persona.profile),
                                      links, brand_from(settings))
    if subject_prefix:
        rendered = replace(rendered, subject=subject_prefix + rendered.subject)
    message_id = f"<preview.{sequence.key}.{step.key}.{uuid.uuid4().hex}@{settings.sender_domain}>"
    data = build_message(rendered, to=to, message_id=message_id, links=links, date=now,
                         extra_headers={"X-Nurture-Test": "yes"} if subject_prefix else {})
    return StepPreview(data, rendered.subject, rendered.html, rendered.text)
