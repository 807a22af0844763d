"""Stand-ins for the personal values while an email's structure is rendered and inlined once for
everyone, and the filling in of each recipient's own values afterwards."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping

from nurture.domain.model import Step
from nurture.rendering.escaping import Context, context_at
from nurture.rendering.vocabulary import PERSONAL_VARIABLES


class Placeholders:
    """One placeholder per personal variable, with a random part no template can guess."""

    def __init__(self) -> None:
        nonce = secrets.token_hex(5)
        self._values = {name: f"nurtureph{nonce}v{index}x" for index, name in enumerate(PERSONAL_VARIABLES)}
        self._names = dict(enumerate(PERSONAL_VARIABLES))
        self._prefix = f"nurtureph{nonce}"
        self._pattern = re.compile(f"nurtureph{nonce}v([0-9])x")

    def values(self, *, has_first_name: bool) -> dict[str, str]:
        """The placeholders, by variable name, to render with instead of the real values."""
        placeholders = dict(self._values)
        if not has_first_name:
            # Emptiness is structure ({% if first_name %}), so an empty name stays empty.
            placeholders["first_name"] = ""
        return placeholders

    def fill(self, text: str, values: Mapping[str, str], escaper: Callable[[str], str]) -> str:
        """The text with each placeholder replaced by its escaped value."""
        return self._pattern.sub(lambda match: escaper(values[self._names[int(match.group(1))]]), text)

    def found_in(self, text: str) -> bool:
        return self._pattern.search(text) is not None

    def check_intact(self, text: str, step: Step) -> None:
        # A filter that slipped past check_step (say `|title`) would leave a mangled placeholder
        # that no longer matches; refuse rather than send it.
        if text.lower().count(self._prefix) != len(self._pattern.findall(text)):
            raise ValueError(
                f"template {step.template!r} changes a personal value; run check_step for details"
            )

    def split_html(self, html: str) -> tuple[tuple[str, ...], tuple[tuple[str, Context], ...]]:
        """The serialized HTML cut at each placeholder: the literals around them, and for each one
        its variable and the context that decides its escaping."""
        literals: list[str] = []
        slots: list[tuple[str, Context]] = []
        position = 0
        for match in self._pattern.finditer(html):
            literals.append(html[position : match.start()])
            slots.append((self._names[int(match.group(1))], context_at(html, match.start())))
            position = match.end()
        literals.append(html[position:])
        return tuple(literals), tuple(slots)
