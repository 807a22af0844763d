"""The shipped partner-hesitant, preparing-together and starting-solo content: sections per reason,
discreet mode, locales, golden text parts, the content rules, and a clean load.

Golden files live in tests/golden/<sequence>/<persona>/<step>.txt: the subject, preheader and sender,
then the rendered text part, for three fixed personas with fixed links. After an intended change to
the content or the layouts, regenerate them and review the diff:

    NURTURE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/content/test_partner_hesitant.py -k golden
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from functools import cache

import pytest
import yaml

from nurture.content.library import check_content, load_content
from nurture.content.readability import flesch_reading_ease, readability_report
from nurture.content.rules import DEFAULT_REVEALING_WORDS, check_rules
from nurture.content.samples import body_text
from nurture.content.sequences import load_sequence_file
from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.reasons import KNOWN_REASONS
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import Brand, Links, Recipient, RenderedEmail
from tests.support.paths import ROOT

SEQUENCES_DIR = ROOT / "sequences"
TEMPLATES = ROOT / "templates"
GOLDEN = ROOT / "tests" / "golden"
UPDATE_GOLDEN = os.environ.get("NURTURE_UPDATE_GOLDEN") == "1"

CONSULT = "consult-invitation"

UNSUBSCRIBE_URL = "https://example.org/u/golden-token"
PREFERENCES_URL = "https://example.org/p/golden-token"
BOOKED_URL = "https://example.org/booked/golden-token"
PARTNER_YES_URL = "https://example.org/yes/golden-token"
STARTED_SOLO_URL = "https://example.org/solo/golden-token"
DISCREET_URL = "https://example.org/p/golden-token/discreet"
BRAND = Brand(
    sender="Nurture <hello@example.org>",
    discreet_sender_name="Notes for you",
    postal_address="Nurture\n12 Example Lane\nSpringfield 40001",
    base_url="https://example.org",
)
FOOTER_SEPARATOR = "----------"
SPECIFIC = KNOWN_REASONS - {"not_sure"}
SHIPPED = ("partner-hesitant", "preparing-together", "starting-solo")
REVEALING = re.compile(
    r"(?<![A-Za-z])(" + "|".join(sorted(DEFAULT_REVEALING_WORDS)) + r")(?:s|es|'s)?(?![A-Za-z])",
    re.IGNORECASE,
)


def links() -> Links:
    return Links(unsubscribe_url=UNSUBSCRIBE_URL, preferences_url=PREFERENCES_URL, booked_url=BOOKED_URL,
                 partner_yes_url=PARTNER_YES_URL, started_solo_url=STARTED_SOLO_URL,
                 discreet_url=DISCREET_URL)


@cache
def sequence(key: str) -> Sequence:
    loaded, problems = load_sequence_file(SEQUENCES_DIR / f"{key}.yaml")
    assert loaded is not None, problems
    return loaded


def shipped_steps() -> Iterator[tuple[Sequence, Step]]:
    for key in SHIPPED:
        for step in sequence(key).steps:
            yield sequence(key), step


def step_params() -> list[object]:
    return [
        pytest.param(
            seq,
            step,
            id=f"{seq.key}/{step.key}",
        )
        for seq, step in shipped_steps()
    ]


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    # Through the content loader, which reads the per-locale texts (emails/<sequence>/<locale>/).
    return load_content(SEQUENCES_DIR, TEMPLATES).library


def render(
    library: TemplateLibrary,
    seq: Sequence,
    step: Step,
    hesitations: frozenset[str] = frozenset(),
    *,
    discreet: bool = False,
    locale: str = "en",
    first_name: str | None = "Asha",
) -> RenderedEmail:
    profile = Profile(hesitations=hesitations, discreet=discreet, locale=locale)
    recipient = Recipient(email="asha@example.org", first_name=first_name, profile=profile)
    return library.render(seq, step, recipient, links(), BRAND)


def flat(text: str) -> str:
    return " ".join(text.split())


def body(email: RenderedEmail) -> str:
    return body_text(email.text, FOOTER_SEPARATOR)


def locale_file(locale: str) -> dict[str, object]:
    data = yaml.safe_load((TEMPLATES / "locales" / f"{locale}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# Reason sets of the matrix: each reason alone, all of them, none, both pairs that have a combined
# paragraph, "not sure" with a reason, and three and four reasons either side of the short form.
REASON_SETS = [frozenset({reason}) for reason in sorted(KNOWN_REASONS)] + [
    KNOWN_REASONS,
    frozenset(),
    frozenset({"fear_of_blame", "ganged_up_on"}),
    frozenset({"stigma", "cultural_messages"}),
    frozenset({"not_sure", "stigma"}),
    frozenset({"stigma", "fear_of_blame", "ganged_up_on"}),
    frozenset({"stigma", "fear_of_blame", "ganged_up_on", "unfamiliar"}),
    frozenset({"shame", "overwhelm", "avoiding_conflict"}),
    frozenset({"shame", "overwhelm", "avoiding_conflict", "not_sure"}),
    frozenset({"shame", "overwhelm", "avoiding_conflict", "not_that_bad", "not_sure"}),
]


def matrix() -> Iterator[tuple[frozenset[str], bool, str]]:
    yield from itertools.product(REASON_SETS, (False, True), ("en", "en-IN"))


# --- the sequences ---------------------------------------------------------------------------


def test_partner_hesitant_steps_order_delays_and_exit() -> None:
    seq = sequence("partner-hesitant")
    assert [step.key for step in seq.steps] == [
        "welcome",
        "why-they-hesitate",
        "shift-the-conversation",
        "go-solo",
        "share-resources",
        "offer-a-compromise",
        "consult-invitation",
        "if-they-still-say-no",
    ]
    days = list(itertools.accumulate(step.delay.total_seconds() / 86400 for step in seq.steps))
    assert days == [0, 2, 4, 7, 10, 14, 17, 24]
    assert seq.exit_on == frozenset({"consult_booked", "partner_said_yes", "started_solo"})
    assert dict(seq.follow_ups) == {
        "consult_booked": "preparing-together",
        "partner_said_yes": "preparing-together",
        "started_solo": "starting-solo",
    }


def test_starting_solo_is_three_emails_that_end_in_the_talk_at_home() -> None:
    seq = sequence("starting-solo")
    assert [step.key for step in seq.steps] == ["finding-someone", "first-session", "talking-at-home"]
    assert [step.asks_to_talk for step in seq.steps] == [False, False, True]
    assert dict(seq.follow_ups) == {
        "consult_booked": "preparing-together",
        "partner_said_yes": "preparing-together",
    }
    for step in seq.steps:
        assert step.discreet_subject and step.discreet_preheader


def test_preparing_together_is_short_and_complete() -> None:
    seq = sequence("preparing-together")
    assert 2 <= len(seq.steps) <= 3
    for step in seq.steps:
        assert step.discreet_subject and step.discreet_preheader


# --- sections per reason ---------------------------------------------------------------------


def has(*keys: str) -> Callable[[frozenset[str]], bool]:
    return lambda chosen: all(key in chosen for key in keys)


def any_of(*keys: str) -> Callable[[frozenset[str]], bool]:
    return lambda chosen: any(key in chosen for key in keys)


def many(chosen: frozenset[str]) -> bool:
    """More than three reasons: each section of why-they-hesitate keeps its advice, not its description."""
    return len(chosen & SPECIFIC) > 3


def general(chosen: frozenset[str]) -> bool:
    return not chosen & SPECIFIC or ("not_sure" in chosen and not many(chosen))


def few(*keys: str) -> Callable[[frozenset[str]], bool]:
    return lambda chosen: has(*keys)(chosen) and not many(chosen)


# A stable phrase per adaptive section (its heading), and who should see it.
SECTIONS: dict[str, dict[str, Callable[[frozenset[str]], bool]]] = {
    "why-they-hesitate": {
        "Some common reasons people hold back": general,
        "You told us a little about what might be going on": lambda chosen: bool(chosen & SPECIFIC),
        "When asking for help feels like failing": has("stigma"),
        "When they expect to be blamed": has("fear_of_blame"),
        "When they fear being outnumbered": has("ganged_up_on"),
        "kept short because you chose several": many,
        "saying yes can feel like saying": few("stigma"),
        "the way someone might see a coach": has("stigma"),
        "their faults are listed one by one": few("fear_of_blame"),
        "A good couples therapist does not pick a side": has("fear_of_blame"),
        "When both of those fears come together": few("fear_of_blame", "ganged_up_on"),
        "When needing help feels embarrassing": has("shame"),
        "Shame eases when it is met with warmth": has("shame"),
        "being seen at their worst": few("shame"),
        "When they steer clear of arguments": has("avoiding_conflict"),
        "makes hard talks calmer, not louder": has("avoiding_conflict"),
        "every old fight gets dragged back out": few("avoiding_conflict"),
        "When it all feels like too much right now": has("overwhelm"),
        "You can make it smaller": has("overwhelm"),
        "one more thing to sort out": few("overwhelm"),
        "if you are the one who hesitates": lambda chosen: True,
        "In the next email": lambda chosen: not many(chosen),
        "When they do not know what happens in the room": has("unfamiliar"),
        "When opening up to a stranger feels like too much": has("vulnerability"),
        "When things do not seem bad enough": has("not_that_bad"),
        "When an earlier try went badly": has("bad_past_experience"),
        "When they learned to keep things private": has("cultural_messages"),
        "When pride and upbringing point the same way": few("stigma", "cultural_messages"),
    },
    "shift-the-conversation": {
        "If blame is part of the worry": any_of("fear_of_blame", "ganged_up_on"),
        "If they feel things are fine": has("not_that_bad"),
    },
    "go-solo": {"If your partner fears being outnumbered": has("ganged_up_on")},
    "share-resources": {
        "When the unknown is the main worry": has("unfamiliar"),
        "When a past try went badly": has("bad_past_experience"),
    },
    "offer-a-compromise": {
        "If opening up is the hard part": has("vulnerability"),
        "If a past try went badly": has("bad_past_experience"),
    },
    "consult-invitation": {
        "If they worry about taking the blame": any_of("fear_of_blame", "ganged_up_on"),
        "If it all feels unknown": any_of("unfamiliar", "vulnerability"),
    },
    "if-they-still-say-no": {"If they still feel things are fine": has("not_that_bad")},
    "getting-ready": {
        "If your partner worries about sides": any_of("fear_of_blame", "ganged_up_on"),
        "If opening up feels hard": has("vulnerability"),
    },
    "on-the-day": {"If your partner finds it hard to open up": has("vulnerability")},
    "afterwards": {
        "If your partner had a hard time before": has("bad_past_experience"),
        "If your partner still feels things are fine": has("not_that_bad"),
    },
}


def test_every_reason_has_a_section_in_why_they_hesitate() -> None:
    single = {marker for marker, shown in SECTIONS["why-they-hesitate"].items() if shown(KNOWN_REASONS)}
    for reason in SPECIFIC:
        assert any(shown(frozenset({reason})) for shown in SECTIONS["why-they-hesitate"].values())
    assert len(single) >= len(SPECIFIC)


@pytest.mark.parametrize(("seq", "step"), step_params())
def test_sections_follow_the_reasons_in_both_parts(
    library: TemplateLibrary, seq: Sequence, step: Step
) -> None:
    sections = SECTIONS.get(step.key, {})
    for chosen, discreet, locale in matrix():
        email = render(library, seq, step, chosen, discreet=discreet, locale=locale)
        html, text = flat(email.html), flat(email.text)
        for marker, shown in sections.items():
            expected = shown(chosen)
            where = (marker, sorted(chosen), discreet, locale)
            assert (marker in html) is expected, where
            assert (marker in text) is expected, where


@pytest.mark.parametrize(("seq", "step"), step_params())
def test_length_and_readability(library: TemplateLibrary, seq: Sequence, step: Step) -> None:
    for chosen in [frozenset({reason}) for reason in sorted(KNOWN_REASONS)] + [frozenset()]:
        for discreet in (False, True):
            text = body(render(library, seq, step, chosen, discreet=discreet))
            words = len(re.findall(r"[A-Za-z']+", re.sub(r"https?://\S+", "", text)))
            assert 180 <= words <= 480, (step.key, sorted(chosen), discreet, words)
            assert flesch_reading_ease(text) >= 60, (step.key, sorted(chosen), discreet)
    # Someone who chose every reason gets every section's advice: still one sitting's read.
    everything = body(render(library, seq, step, KNOWN_REASONS))
    assert len(everything.split()) <= 650
    assert flesch_reading_ease(everything) >= 60


# --- discreet mode ---------------------------------------------------------------------------


@pytest.mark.parametrize(("seq", "step"), step_params())
def test_discreet_mode_reveals_nothing_at_a_glance(
    library: TemplateLibrary, seq: Sequence, step: Step
) -> None:
    for chosen, _, locale in matrix():
        for first_name in ("Asha", None):
            email = render(library, seq, step, chosen, discreet=True, locale=locale, first_name=first_name)
            where = (step.key, sorted(chosen), locale, first_name)
            assert REVEALING.search(email.subject) is None, (email.subject, where)
            assert REVEALING.search(email.preheader) is None, (email.preheader, where)
            # What a glance shows: the greeting and at least two neutral sentences, 300 characters.
            opening = body(email)[:300]
            assert len(opening) == 300 and REVEALING.search(opening) is None, (opening, where)
            neutral = opening.split("\n\n")[1]
            assert neutral.count(". ") >= 2, (neutral, where)
            assert email.from_header == "Notes for you <hello@example.org>"
            assert "<img" not in email.html
    regular = render(library, seq, step)
    assert regular.subject != render(library, seq, step, discreet=True).subject
    assert regular.from_header == BRAND.sender


# --- locales ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seq", "step"), step_params())
def test_crisis_footer_follows_the_locale(library: TemplateLibrary, seq: Sequence, step: Step) -> None:
    india = render(library, seq, step, locale="en-IN")
    generic = render(library, seq, step, locale="en")
    for part in (india.html, india.text):
        assert "14416" in part and "1-800-891-4416" in part
    for part in (generic.html, generic.text):
        assert "local emergency services" in flat(part)
        assert "14416" not in part
    for email in (india, generic):
        assert UNSUBSCRIBE_URL in email.text and PREFERENCES_URL in email.text
        assert f'href="{UNSUBSCRIBE_URL}"' in email.html
        assert "12 Example Lane" in email.html and "12 Example Lane" in email.text


@pytest.mark.parametrize("locale", ["en", "en-IN"])
def test_locale_resources_are_complete_and_shown(library: TemplateLibrary, locale: str) -> None:
    resources = locale_file(locale)["resources"]
    assert isinstance(resources, list) and resources
    seq = sequence("partner-hesitant")
    step = seq.step("share-resources")
    assert step is not None
    email = render(library, seq, step, locale=locale)
    for item in resources:
        assert set(item) == {"title", "kind", "description", "url"}
        assert item["kind"] in {"article", "video", "guide"}
        assert item["url"].startswith("https://")
        assert item["title"] in email.html and item["title"] in flat(email.text)
        assert f'href="{item["url"]}"' in email.html and item["url"] in email.text


@pytest.mark.parametrize("locale", ["en", "en-IN"])
def test_locale_booking_settings(locale: str) -> None:
    booking = locale_file(locale)["booking"]
    assert isinstance(booking, dict)
    assert set(booking) == {"url", "label", "duration", "with_whom", "format", "languages", "cost"}
    assert booking["url"].startswith("https://") and all(booking.values())


@pytest.mark.parametrize("locale", ["en", "en-IN"])
def test_consult_invitation_links_to_booking_and_booked(library: TemplateLibrary, locale: str) -> None:
    booking = locale_file(locale)["booking"]
    assert isinstance(booking, dict)
    seq = sequence("partner-hesitant")
    step = seq.step(CONSULT)
    assert step is not None
    email = render(library, seq, step, locale=locale)
    assert f'href="{booking["url"]}"' in email.html and booking["url"] in email.text
    assert booking["label"] in email.html and booking["label"] in email.text
    assert f'href="{BOOKED_URL}"' in email.html and BOOKED_URL in email.text


# --- golden text parts -----------------------------------------------------------------------

GOLDEN_PERSONAS: dict[str, tuple[frozenset[str], bool, str, str | None]] = {
    "stigma": (frozenset({"stigma"}), False, "en", "Asha"),
    "blame-and-ganged-up-on-discreet-en-IN": (
        frozenset({"fear_of_blame", "ganged_up_on"}),
        True,
        "en-IN",
        "Ravi",
    ),
    "not-sure": (frozenset({"not_sure"}), False, "en", None),
}
# One Hindi persona, once the Hindi texts are in templates/ (they land separately from the code).
if all((TEMPLATES / "emails" / key / "hi-IN").is_dir() for key in SHIPPED):
    GOLDEN_PERSONAS["stigma-and-blame-hi-IN"] = (
        frozenset({"stigma", "fear_of_blame"}), False, "hi-IN", "मीरा")


def golden_text(email: RenderedEmail) -> str:
    head = f"Subject: {email.subject}\nPreheader: {email.preheader}\nFrom: {email.from_header}"
    return f"{head}\n\n{email.text}"


@pytest.mark.parametrize(("seq", "step"), step_params())
def test_golden_text_parts(library: TemplateLibrary, seq: Sequence, step: Step) -> None:
    for persona, (chosen, discreet, locale, first_name) in GOLDEN_PERSONAS.items():
        email = render(library, seq, step, chosen, discreet=discreet, locale=locale, first_name=first_name)
        path = GOLDEN / seq.key / persona / f"{step.key}.txt"
        actual = golden_text(email)
        if UPDATE_GOLDEN:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
        assert path.is_file(), f"{path} is missing: run with NURTURE_UPDATE_GOLDEN=1"
        assert actual == path.read_text(encoding="utf-8"), f"{path} differs"


# --- the rules and loading -------------------------------------------------------------------


def test_content_rules_find_nothing_in_the_shipped_content() -> None:
    sequences, library, problems = check_content(SEQUENCES_DIR, TEMPLATES)
    assert problems == []
    assert library is not None
    assert check_rules(sequences, library) == []
    report = readability_report(sequences, library)
    english = [entry for entry in report if entry.locale == "en"]
    # Every step, and every variant of a step under an experiment, is measured.
    assert len(english) == sum(len(step.versions()) for sequence in sequences.values()
                               for step in sequence.steps)
    for entry in english:
        assert entry.score >= 60, entry
    # Each translation is measured in its own way, and reads easily by it.
    assert all(entry.passes for entry in report), [e for e in report if not e.passes]
    assert len(report) == len(english) * (1 + len(library.translations.locales - {"en"}))


def test_shipped_content_loads() -> None:
    content = load_content(SEQUENCES_DIR, TEMPLATES)
    assert {"partner-hesitant", "preparing-together"} <= set(content.sequences)
    assert content.warnings == ()
