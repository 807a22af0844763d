"""Frozen domain types shared by the core: sequences, steps, conditions, send windows, profiles.

Loading and validation of these from files lives in `sequences.py`; this module holds only data and
the pure rules on it (a condition matching a profile), so the planner and renderer depend on nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import time, timedelta
from functools import cached_property
from pathlib import Path

from nurture.domain.experiments import Experiment, Variant

WEEKDAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Profile:
    """What the planner and the structure of an email may depend on: never the address or the name."""

    time_zone: str = "UTC"
    hesitations: frozenset[str] = frozenset()
    discreet: bool = False
    locale: str = "en"


@dataclass(frozen=True)
class Condition:
    """A structured condition on a profile; every given part must hold (no expressions, no eval)."""

    hesitations_any: frozenset[str] = frozenset()
    hesitations_all: frozenset[str] = frozenset()
    hesitations_none: frozenset[str] = frozenset()
    discreet: bool | None = None
    locale_in: frozenset[str] = frozenset()

    def matches(self, profile: Profile) -> bool:
        if self.hesitations_any and not (self.hesitations_any & profile.hesitations):
            return False
        if self.hesitations_all and not self.hesitations_all <= profile.hesitations:
            return False
        if self.hesitations_none & profile.hesitations:
            return False
        if self.discreet is not None and profile.discreet != self.discreet:
            return False
        if self.locale_in:
            language = profile.locale.split("-", 1)[0]
            if profile.locale not in self.locale_in and language not in self.locale_in:
                return False
        return True

    def describe(self) -> str:
        """A short human text, used as the recorded reason when a step is skipped."""
        parts: list[str] = []
        if self.hesitations_any:
            parts.append("hesitations_any " + ",".join(sorted(self.hesitations_any)))
        if self.hesitations_all:
            parts.append("hesitations_all " + ",".join(sorted(self.hesitations_all)))
        if self.hesitations_none:
            parts.append("hesitations_none " + ",".join(sorted(self.hesitations_none)))
        if self.discreet is not None:
            parts.append(f"discreet {str(self.discreet).lower()}")
        if self.locale_in:
            parts.append("locale_in " + ",".join(sorted(self.locale_in)))
        return "; ".join(parts) or "always"


@dataclass(frozen=True)
class SendWindow:
    """Days and local hours in which an email may go out, in the subscriber's own time zone.

    `days` holds weekday numbers (Monday 0 .. Sunday 6); `start` is inclusive, `end` exclusive, and
    `start < end` (windows do not cross midnight).
    """

    days: frozenset[int] = frozenset(range(7))
    start: time = time(8, 0)
    end: time = time(20, 0)

    @property
    def always_open(self) -> bool:
        """Every day, all day: a window that never holds an email back."""
        return self.days >= frozenset(range(7)) and self.start == time(0, 0) and \
            self.end >= time(23, 59, 59)


ANY_TIME = SendWindow(days=frozenset(range(7)), start=time(0, 0), end=time(23, 59, 59, 999999))


@dataclass(frozen=True)
class Step:
    """One email of a sequence, identified by a key that stays stable across content edits."""

    key: str
    template: str
    subject: str
    delay: timedelta
    preheader: str = ""
    discreet_subject: str | None = None
    discreet_preheader: str | None = None
    when: Condition | None = None
    line: int = 0
    asks_to_talk: bool = False
    """The email suggests raising the topic with the partner, so it must carry the safety note
    (`nurture sequences validate` checks that its template includes the shared partial)."""
    immediate: bool = False
    """Only for the first step: when the person's own confirmation starts the enrollment, the step
    is due at that moment and goes out outside the send window (they are there now); an operator's
    enroll or a CSV import keeps the window. Later steps always keep it."""
    experiment: Experiment | None = None
    """Variants of this step tested against each other (and a holdout); None: one version."""
    variant: str | None = None
    """Which variant of the experiment this is, once `with_variant` made it; None: the step's own."""

    def with_variant(self, key: str) -> Step:
        """The step as variant `key` of its experiment has it: what the variant leaves out is the
        step's own. The step itself when there is no such variant (it was removed from the file)."""
        return self._variant_steps.get(key, self)

    @cached_property
    def _variant_steps(self) -> dict[str, Step]:
        # Made once per content version: a send must not rebuild a step for every email.
        if self.experiment is None:
            return {}
        return {variant.key: self._as_variant(variant) for variant in self.experiment.variants}

    def _as_variant(self, variant: Variant) -> Step:
        key = variant.key
        return replace(
            self,
            variant=key,
            line=variant.line or self.line,
            template=variant.template or self.template,
            subject=variant.subject or self.subject,
            preheader=variant.preheader if variant.preheader is not None else self.preheader,
            discreet_subject=variant.discreet_subject or self.discreet_subject,
            discreet_preheader=variant.discreet_preheader or self.discreet_preheader,
        )

    def versions(self) -> tuple[Step, ...]:
        """The step and each of its variants: what validate checks and previews can show."""
        if self.experiment is None:
            return (self,)
        return (self, *(self.with_variant(key) for key in self.experiment.variant_keys))


@dataclass(frozen=True)
class Sequence:
    """An ordered series of steps, with its send window and the events that end it early."""

    key: str
    name: str
    steps: tuple[Step, ...]
    window: SendWindow = field(default_factory=SendWindow)
    exit_on: frozenset[str] = frozenset()
    follow_ups: tuple[tuple[str, str], ...] = ()
    """(event, sequence key): after this event ends the sequence, enroll in that one."""
    source: Path = Path()

    def step(self, key: str) -> Step | None:
        for step in self.steps:
            if step.key == key:
                return step
        return None
