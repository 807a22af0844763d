"""One step rendered for a made-up subscriber (a persona): for previews and test sends, no database;
and the step as one variant of its experiment, which previews, timelines and test sends can ask for."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import NamedTuple

from nurture.config import Settings
from nurture.content.library import Content
from nurture.content.personas import Persona
from nurture.domain.experiments import HOLDOUT
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


class VariantUnknown(ValueError):
    """A --variant that the step (or no step) of the sequence has: the message names the ones it
    has, so the person can correct the command."""


def _tested(sequence: Sequence) -> str:
    tested = [f"{s.key} ({', '.join(_arms(s))})" for s in sequence.steps if s.experiment is not None]
    return ("; steps under an experiment: " + ", ".join(tested)) if tested else \
        f"; sequence '{sequence.key}' has no experiment"


def _arms(step: Step) -> tuple[str, ...]:
    if step.experiment is None:
        return ()
    return (*step.experiment.variant_keys, *((HOLDOUT,) if step.experiment.holdout else ()))


def as_variant(sequence: Sequence, steps: list[Step], key: str, *,
               holdout: bool = False) -> list[Step]:
    """`steps` with the tested ones as variant `key`; the others as written. The holdout, which
    gets no email, is accepted only where the caller can show a skipped step (`holdout`)."""
    tested = [step for step in steps if step.experiment is not None]
    if not tested:
        names = ", ".join(step.key for step in steps)
        raise VariantUnknown(f"--variant {key}: step {names} of '{sequence.key}' is under no "
                             f"experiment{_tested(sequence)}")
    for step in tested:
        assert step.experiment is not None
        known = _arms(step)
        if key not in known or (key == HOLDOUT and not holdout):
            offered = [arm for arm in known if holdout or arm != HOLDOUT]
            extra = " (the holdout gets no email: see it with `nurture timeline`)" \
                if key == HOLDOUT else ""
            raise VariantUnknown(f"step '{step.key}' of '{sequence.key}' has no variant '{key}'"
                                 f"{extra}; its variants: {', '.join(offered)}")
    return [step.with_variant(key) if step.experiment is not None else step for step in steps]
