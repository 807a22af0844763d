"""The care rules in the shipped emails: the safety note wherever a step asks the reader to talk, the
quiet ways forward from day 4, discreet mode offered in the welcome, replies, the call described
from the locale, the page for the partner, the framing and the helpline directory in the footer,
and every chosen reason's advice in why-they-hesitate, for every combination of reasons."""

from __future__ import annotations

import html
import itertools
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.reasons import KNOWN_REASONS, REASONS
from nurture.rendering.compose import Composer, template_context
from nurture.rendering.library import TemplateLibrary
from nurture.rendering.types import Recipient, RenderedEmail
from nurture.rendering.vocabulary import PERSONAL_VARIABLES
from tests.unit.content.test_partner_hesitant import (
    BOOKED_URL,
    BRAND,
    DISCREET_URL,
    PARTNER_YES_URL,
    SHIPPED,
    STARTED_SOLO_URL,
    TEMPLATES,
    body,
    flat,
    links,
    locale_file,
    render,
    sequence,
    shipped_steps,
)

SAFETY_NOTE = (
    "Your safety comes first. If bringing this up has led to anger, threats or fear before, please "
    "talk to a helpline before you raise it again. They can help you think about what is safe. The "
    "support details at the end of this email say where to turn."
)
# The steps that ask the reader to raise the topic with their partner (asks_to_talk: true).
ASKS_TO_TALK = {
    "partner-hesitant": {
        "why-they-hesitate",
        "shift-the-conversation",
        "go-solo",
        "share-resources",
        "offer-a-compromise",
        "consult-invitation",
        "if-they-still-say-no",
    },
    "preparing-together": {"getting-ready", "afterwards"},
    "starting-solo": {"talking-at-home"},
}
QUIET_LINKS = {"We've set up a call": BOOKED_URL, "My partner said yes": PARTNER_YES_URL,
               "I've started on my own": STARTED_SOLO_URL}
PERSONAS = [
    (frozenset(), False, "en"),
    (frozenset({"stigma", "ganged_up_on"}), True, "en-IN"),
    (KNOWN_REASONS, False, "en-IN"),
    (KNOWN_REASONS, True, "en"),
]


def visible(part: str) -> str:
    """The words of an HTML part, tags dropped and entities decoded, whitespace collapsed."""
    return flat(html.unescape(re.sub(r"<[^>]+>", " ", part)))


def step_of(key: str, step_key: str) -> tuple[Sequence, Step]:
    seq = sequence(key)
    found = seq.step(step_key)
    assert found is not None
    return seq, found


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary(TEMPLATES)


# --- safety wherever an email suggests raising the topic -------------------------------------


def test_the_steps_that_ask_to_talk_are_marked() -> None:
    for key in SHIPPED:
        marked = {step.key for step in sequence(key).steps if step.asks_to_talk}
        assert marked == ASKS_TO_TALK[key], key


@pytest.mark.parametrize(("seq", "step"), [(s, t) for s, t in shipped_steps() if t.asks_to_talk],
                         ids=lambda value: getattr(value, "key", ""))
def test_the_safety_note_is_in_both_parts_as_a_quote_of_its_own(
    library: TemplateLibrary, seq: Sequence, step: Step
) -> None:
    for chosen, discreet, locale in PERSONAS:
        email = render(library, seq, step, chosen, discreet=discreet, locale=locale)
        assert SAFETY_NOTE in flat(body(email).replace("> ", " ")), (step.key, chosen, discreet)
        quotes = re.findall(r"<blockquote[^>]*>(.*?)</blockquote>", email.html, re.S)
        # Exactly the note: the paragraph after the include is not pulled into the quote.
        assert visible(quotes[0]) == SAFETY_NOTE, (step.key, visible(quotes[0]))


def test_a_car_and_an_affair_are_out_of_the_copy() -> None:
    for path in (TEMPLATES / "emails").rglob("*.md"):
        text = flat(path.read_text(encoding="utf-8")).lower()
        assert "a walk or a drive" not in text, path
        assert "seeing someone on my own" not in text, path


# --- more ways forward -----------------------------------------------------------------------


def test_quiet_links_from_day_four_in_both_parts(library: TemplateLibrary) -> None:
    seq = sequence("partner-hesitant")
    keys = [step.key for step in seq.steps]
    from_day_four = set(keys[keys.index("go-solo"):])
    for step in seq.steps:
        for chosen, discreet, locale in PERSONAS:
            email = render(library, seq, step, chosen, discreet=discreet, locale=locale)
            for label, url in QUIET_LINKS.items():
                shown = step.key in from_day_four
                where = (step.key, label, discreet)
                assert (f'href="{url}"' in email.html) is shown, where
                assert (f"{label} ({url})" in body(email)) is shown, where


def test_preparing_together_fits_a_call_as_well_as_a_session(library: TemplateLibrary) -> None:
    seq = sequence("preparing-together")
    for step in seq.steps:
        email = render(library, seq, step)
        assert "call or session" in flat(body(email)) or "call or session" in email.subject, step.key


def test_the_talk_at_home_asks_for_the_partners_yes_quietly(library: TemplateLibrary) -> None:
    email = render(library, *step_of("starting-solo", "talking-at-home"))
    assert f'href="{PARTNER_YES_URL}"' in email.html and PARTNER_YES_URL in email.text


def test_share_resources_links_the_page_for_the_partner(library: TemplateLibrary) -> None:
    seq, step = step_of("partner-hesitant", "share-resources")
    for discreet in (False, True):
        email = render(library, seq, step, discreet=discreet)
        page = "https://example.org/for-your-partner"
        assert f'href="{page}"' in email.html and page in email.text
    elsewhere = replace(BRAND, base_url="https://notes.example.net/")
    recipient = Recipient("asha@example.org", "Asha", Profile())
    moved = library.render(seq, step, recipient, links(), elsewhere)
    assert 'href="https://notes.example.net/for-your-partner"' in moved.html


# --- the welcome -----------------------------------------------------------------------------


def welcome(library: TemplateLibrary, *, discreet: bool = False, reply_to: str | None = None
            ) -> RenderedEmail:
    seq, step = step_of("partner-hesitant", "welcome")
    recipient = Recipient("asha@example.org", "Asha", Profile(discreet=discreet))
    return library.render(seq, step, recipient, links(), replace(BRAND, reply_to=reply_to))


def test_the_welcome_offers_discreet_mode_with_one_click(library: TemplateLibrary) -> None:
    email = welcome(library)
    assert f'href="{DISCREET_URL}"' in email.html
    assert f"switch to discreet mode ({DISCREET_URL})" in flat(email.text)
    already = welcome(library, discreet=True)
    assert DISCREET_URL not in already.html and DISCREET_URL not in already.text


def test_the_welcome_invites_replies_only_when_a_person_reads_them(library: TemplateLibrary) -> None:
    read = flat(body(welcome(library, reply_to="care@example.org")))
    unread = flat(body(welcome(library)))
    assert "a person on our team reads every reply" in read
    assert "nothing to reply to" not in read
    assert "nothing to reply to" in unread and "reads every reply" not in unread


# --- the consult call ------------------------------------------------------------------------

BOOKING_LINES = {"duration": "How long", "with_whom": "Who you talk to", "format": "How",
                 "languages": "Languages", "cost": "Cost"}


@pytest.mark.parametrize("locale", ["en", "en-IN"])
def test_the_invitation_describes_the_call_from_the_locale(library: TemplateLibrary, locale: str) -> None:
    booking = locale_file(locale)["booking"]
    assert isinstance(booking, dict)
    email = render(library, *step_of("partner-hesitant", "consult-invitation"), locale=locale)
    for field, label in BOOKING_LINES.items():
        line = f"{label}: {booking[field]}"
        assert line in visible(email.html) and line in flat(email.text), line


def test_a_field_the_locale_leaves_out_leaves_no_empty_line(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    path = root / "locales" / "en.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    del data["booking"]["languages"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    email = render(TemplateLibrary(root), *step_of("partner-hesitant", "consult-invitation"))
    assert "Languages" not in email.text and "How long:" in email.text


# --- the footer: framing and a helpline directory --------------------------------------------


def test_framing_and_directory_show_in_both_parts_when_the_locale_has_them(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    path = root / "locales" / "en.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["crisis"]["framing"] = "These notes are information. They are not care, and not for emergencies."
    data["crisis"]["directory"] = {"name": "A directory of helplines", "url": "https://help.example.org/"}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    for seq, step in shipped_steps():
        email = render(TemplateLibrary(root), seq, step)
        for part in (visible(email.html), flat(email.text)):
            assert data["crisis"]["framing"] in part, step.key
            assert "To find a helpline where you live: A directory of helplines" in part
        assert 'href="https://help.example.org/"' in email.html
        assert email.text.index(data["crisis"]["heading"]) < email.text.index("These notes are")
    del data["crisis"]["framing"], data["crisis"]["directory"]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    plain = render(TemplateLibrary(root), *step_of("partner-hesitant", "welcome"))
    assert 'class="framing"' not in plain.html and "To find a helpline" not in plain.text
    assert "\n\n\n" not in plain.text


# --- why-they-hesitate keeps every chosen reason's advice ------------------------------------

WHY = step_of("partner-hesitant", "why-they-hesitate")
HEADINGS = {
    "stigma": "When asking for help feels like failing",
    "fear_of_blame": "When they expect to be blamed",
    "ganged_up_on": "When they fear being outnumbered",
    "unfamiliar": "When they do not know what happens in the room",
    "vulnerability": "When opening up to a stranger feels like too much",
    "not_that_bad": "When things do not seem bad enough",
    "bad_past_experience": "When an earlier try went badly",
    "cultural_messages": "When they learned to keep things private",
    "shame": "When needing help feels embarrassing",
    "overwhelm": "When it all feels like too much right now",
    "avoiding_conflict": "When they steer clear of arguments",
}


def body_parts(composer: Composer, library: TemplateLibrary, chosen: frozenset[str], discreet: bool
               ) -> tuple[str, str]:
    """The body alone, as HTML and as text: the layout and CSS inlining add nothing to compare."""
    profile = Profile(hesitations=chosen, discreet=discreet)
    values = dict.fromkeys(PERSONAL_VARIABLES, "https://example.org/x") | {"first_name": "Asha"}
    context = template_context(*WHY, profile, library.locale_data("en"), brand=BRAND, values=values)
    html_part, text_part = composer.body_parts(WHY[1], context, discreet=discreet)
    return visible(html_part), flat(text_part)


def advice(composer: Composer, library: TemplateLibrary, reason: str) -> str:
    """The advice paragraph of a reason's section: its last paragraph when chosen alone."""
    _, text = composer.body_parts(WHY[1], template_context(
        *WHY, Profile(hesitations=frozenset({reason})), library.locale_data("en"), brand=BRAND,
        values=dict.fromkeys(PERSONAL_VARIABLES, "x") | {"first_name": ""}), discreet=False)
    section = text.split(HEADINGS[reason] + "\n\n", 1)[1].split("\n\n")
    assert len(section) > 2 and section[0] != section[1], reason  # a description, then advice
    return flat(section[1])


def test_every_specific_reason_has_a_heading_here() -> None:
    assert set(HEADINGS) == KNOWN_REASONS - {"not_sure"}
    assert {"shame", "overwhelm", "avoiding_conflict"} <= set(REASONS)


def test_every_chosen_reasons_advice_is_in_both_parts_for_every_combination(
    library: TemplateLibrary,
) -> None:
    composer = Composer(TEMPLATES)
    advice_of = {reason: advice(composer, library, reason) for reason in HEADINGS}
    reasons = sorted(KNOWN_REASONS)
    for size in range(len(reasons) + 1):
        for combination in itertools.combinations(reasons, size):
            chosen = frozenset(combination)
            for discreet in (False, True):
                html_part, text_part = body_parts(composer, library, chosen, discreet)
                for reason in chosen - {"not_sure"}:
                    where = (reason, sorted(chosen), discreet)
                    assert advice_of[reason] in html_part, where
                    assert advice_of[reason] in text_part, where
