"""Rendering: sections per hesitation, discreet mode, escaping, MIME, the fast path and the checks."""

from __future__ import annotations

import email
import itertools
import re
import shutil
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import premailer
import pytest

from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.reasons import KNOWN_REASONS
from nurture.rendering.library import PREMAILER_OPTIONS, TemplateLibrary
from nurture.rendering.mime import build_message, build_message_reference
from nurture.rendering.types import Brand, Links, Recipient, RenderedEmail
from nurture.rendering.vocabulary import HTML_LAYOUT, TEXT_LAYOUT
from tests.support.paths import ROOT

TEMPLATES = ROOT / "templates"
SOURCE = Path("sequences/sample.yaml")

WELCOME = Step(
    key="welcome",
    template="sample/welcome.md",
    subject="{% if first_name %}{{ first_name }}, you{% else %}You{% endif %} are not alone in this",
    delay=timedelta(0),
    preheader="What these notes are, and how to pause them whenever you like",
    discreet_subject="Your notes have started",
    discreet_preheader="A short hello and how to change your settings",
    line=12,
)
UNDERSTANDING = Step(
    key="understanding",
    template="sample/understanding.md",
    subject="Why asking for help can feel risky to them",
    delay=timedelta(days=2),
    preheader="A hesitation is often a way of staying safe",
    discreet_subject="This week's note",
    discreet_preheader="A few ideas for the days ahead",
    line=21,
)
NEXT_STEPS = Step(
    key="next-steps",
    template="sample/next-steps.md",
    subject="One small step you can take this week",
    delay=timedelta(days=3),
    preheader="Starting on your own is a real option",
    discreet_subject="Another note for you",
    discreet_preheader="Something small to try this week",
    line=33,
)
SEQUENCE = Sequence(
    key="sample",
    name="Sample: three short notes",
    steps=(WELCOME, UNDERSTANDING, NEXT_STEPS),
    source=SOURCE,
)
LINKS = Links(
    unsubscribe_url="https://example.org/u/AbC_d-1.x?s=1&t=2",
    preferences_url="https://example.org/p/AbC_d-1.x",
    unsubscribe_mailto="mailto:unsubscribe@example.org?subject=unsubscribe-AbC",
)
BRAND = Brand(
    sender="Nurture <hello@example.org>",
    discreet_sender_name="Notes for you",
    postal_address="Nurture\n12 Example Lane\nSpringfield 40001",
    base_url="https://example.org",
)
DATE = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
STIGMA_HEADING = "Therapy is for couples in serious trouble"
BLAME_HEADING = "Worried about being blamed"
TRICKY_NAME = "<b>&\"'"


@pytest.fixture(scope="module")
def library() -> TemplateLibrary:
    return TemplateLibrary(TEMPLATES)


def person(
    first_name: str | None = "Asha",
    hesitations: frozenset[str] | set[str] = frozenset(),
    *,
    discreet: bool = False,
    locale: str = "en",
    address: str = "asha+notes@example.org",
) -> Recipient:
    profile = Profile(hesitations=frozenset(hesitations), discreet=discreet, locale=locale)
    return Recipient(email=address, first_name=first_name, profile=profile)


def render(library: TemplateLibrary, step: Step, recipient: Recipient, links: Links = LINKS) -> RenderedEmail:
    return library.render(SEQUENCE, step, recipient, links, BRAND)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def copy_templates(tmp_path: Path, bodies: dict[str, str] | None = None) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    for name, source in (bodies or {}).items():
        path = root / "emails" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root


def step_for(template: str, **changes: object) -> Step:
    fields: dict[str, object] = {
        "key": "probe",
        "template": template,
        "subject": "A note",
        "delay": timedelta(0),
        "discreet_subject": "A note",
        "line": 7,
    }
    fields.update(changes)
    return Step(**fields)  # type: ignore[arg-type]


# --- content per hesitation and per person -------------------------------------------------


@pytest.mark.parametrize(
    ("hesitations", "stigma", "blame"),
    [
        ({"stigma"}, True, False),
        ({"fear_of_blame"}, False, True),
        ({"stigma", "fear_of_blame"}, True, True),
        ({"unfamiliar"}, False, False),
    ],
)
def test_sections_follow_hesitations_in_both_parts(
    library: TemplateLibrary, hesitations: set[str], stigma: bool, blame: bool
) -> None:
    rendered = render(library, UNDERSTANDING, person(hesitations=hesitations))
    html_heading_stigma = STIGMA_HEADING in rendered.html
    assert html_heading_stigma is stigma
    assert (STIGMA_HEADING in rendered.text) is stigma
    assert (BLAME_HEADING in rendered.html) is blame
    assert (BLAME_HEADING in rendered.text) is blame
    assert "Being curious about what worries them" in rendered.text


def test_greeting_with_and_without_first_name(library: TemplateLibrary) -> None:
    named = render(library, WELCOME, person("Asha"))
    assert named.text.startswith("Hi Asha,\n\n")
    assert named.subject == "Asha, you are not alone in this"
    anonymous = render(library, WELCOME, person(None))
    assert anonymous.text.startswith("Hi,\n\n")
    assert anonymous.subject == "You are not alone in this"
    assert "Hi ," not in anonymous.html


def test_discreet_mode_changes_subject_preheader_and_sender(library: TemplateLibrary) -> None:
    plain = render(library, UNDERSTANDING, person())
    assert plain.subject == "Why asking for help can feel risky to them"
    assert plain.preheader == "A hesitation is often a way of staying safe"
    assert plain.from_header == "Nurture <hello@example.org>"

    discreet = render(library, UNDERSTANDING, person(discreet=True))
    assert discreet.subject == "This week's note"
    assert discreet.preheader == "A few ideas for the days ahead"
    assert discreet.from_header == "Notes for you <hello@example.org>"
    assert "A few ideas for the days ahead" in discreet.html
    assert "staying safe" not in discreet.html


def test_discreet_mode_falls_back_to_regular_subject_when_none_is_set(
    library: TemplateLibrary,
) -> None:
    step = Step("plain", "sample/next-steps.md", "Regular {{ step }}", timedelta(0), "Pre")
    rendered = render(library, step, person(discreet=True))
    assert rendered.subject == "Regular plain"
    assert rendered.preheader == "Pre"
    assert rendered.from_header == "Notes for you <hello@example.org>"


def test_discreet_mode_has_no_images(tmp_path: Path) -> None:
    root = copy_templates(tmp_path, {"probe/pic.md": "Look: ![a photo](https://cdn.example/p.png)\n"})
    library = TemplateLibrary(root)
    step = step_for("probe/pic.md")
    shown = render(library, step, person())
    assert "<img" in shown.html
    hidden = render(library, step, person(discreet=True))
    assert "<img" not in hidden.html
    assert "a photo" not in hidden.text
    assert hidden.html == library.render_naive(SEQUENCE, step, person(discreet=True), LINKS, BRAND).html


def test_name_with_markup_is_escaped_in_html_and_literal_in_text(
    library: TemplateLibrary,
) -> None:
    rendered = render(library, WELCOME, person(TRICKY_NAME))
    assert "Hi &lt;b&gt;&amp;\"',</p>" in rendered.html
    assert "<b>&" not in rendered.html
    assert rendered.text.startswith("Hi <b>&\"',\n")
    assert rendered.subject == "<b>&\"', you are not alone in this"


def test_markdown_in_a_name_stays_text(library: TemplateLibrary) -> None:
    name = "*Sam* [win](https://evil.example) `x`"
    rendered = render(library, WELCOME, person(name))
    assert "<em>" not in rendered.html
    assert 'evil.example"' not in rendered.html
    assert f"Hi {name}," in rendered.text


def test_text_part_turns_links_into_label_and_url_and_wraps(library: TemplateLibrary) -> None:
    rendered = render(library, WELCOME, person(hesitations=KNOWN_REASONS, locale="en-IN"))
    assert f"pause these notes ({LINKS.preferences_url})" in " ".join(rendered.text.split())
    assert "**" not in rendered.text and "](" not in rendered.text and "<a " not in rendered.text
    for line in rendered.text.splitlines():
        assert len(line) <= 78 or " " not in line.strip() or "https://" in line, line
    assert "- what often sits underneath" in rendered.text


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", ["local emergency services", "domestic-abuse or crisis line"]),
        ("en-IN", ["Tele-MANAS", "14416", "1-800-891-4416", "free, 24x7", "112"]),
    ],
)
def test_footer_in_both_parts(library: TemplateLibrary, locale: str, expected: list[str]) -> None:
    rendered = render(library, NEXT_STEPS, person(locale=locale, discreet=locale == "en"))
    for part in (rendered.html, rendered.text):
        flowing = " ".join(part.split())  # the text part is wrapped
        for snippet in expected:
            assert snippet in flowing
        assert "12 Example Lane" in part
        assert "asha+notes@example.org" in part
    assert f'href="{LINKS.unsubscribe_url.replace("&", "&amp;")}"' in rendered.html
    assert f'href="{LINKS.preferences_url}"' in rendered.html
    assert f"Unsubscribe with one click: {LINKS.unsubscribe_url}" in rendered.text
    assert f"change your settings: {LINKS.preferences_url}" in rendered.text
    assert 'class="preheader" style="display:none' in rendered.html


@pytest.mark.parametrize(
    ("asked", "found"),
    [("en-IN", "en-IN"), ("en_in", "en-IN"), ("en-GB", "en"), ("fr-FR", "en"), ("", "en")],
)
def test_locale_lookup_falls_back_by_language_then_english(
    library: TemplateLibrary, asked: str, found: str
) -> None:
    assert library.locale_data(asked).key == found


def test_html_body_templates_render_both_parts(tmp_path: Path) -> None:
    body = (
        "<p>Hello{% if first_name %} {{ first_name }}{% endif %},</p>\n"
        '<p>Read <a href="https://example.org/guide">the guide</a>.</p>\n'
        "<ul><li>one</li><li>two</li></ul>\n"
    )
    library = TemplateLibrary(copy_templates(tmp_path, {"probe/page.html": body}))
    step = step_for("probe/page.html")
    recipient = person(TRICKY_NAME)
    rendered = render(library, step, recipient)
    assert "Hello &lt;b&gt;&amp;\"'," in rendered.html
    assert rendered.text.startswith("Hello <b>&\"',\n\nRead the guide (https://example.org/guide).")
    assert "- one\n- two" in rendered.text
    naive = library.render_naive(SEQUENCE, step, recipient, LINKS, BRAND)
    assert (rendered.html, rendered.text) == (naive.html, naive.text)


def test_links_outside_the_safe_url_set_are_refused(library: TemplateLibrary) -> None:
    for bad in ("javascript:alert(1)", "https://x.example/a b", "https://x.example/\r\nBcc: y"):
        with pytest.raises(ValueError, match="URL"):
            render(library, WELCOME, person(), Links(bad, LINKS.preferences_url))


# --- the fast path ------------------------------------------------------------------------


def persona_matrix() -> list[Recipient]:
    reason_sets = [frozenset({reason}) for reason in sorted(KNOWN_REASONS)]
    reason_sets += [KNOWN_REASONS, frozenset()]
    people = []
    for index, (reasons, discreet, name, locale) in enumerate(
        itertools.product(reason_sets, (False, True), (None, "Asha", TRICKY_NAME), ("en", "en-IN"))
    ):
        people.append(
            person(name, reasons, discreet=discreet, locale=locale, address=f"p{index}@example.org")
        )
    return people


@pytest.mark.parametrize("step", SEQUENCE.steps, ids=lambda step: step.key)
def test_fast_path_equals_naive_premailer_for_every_persona(step: Step) -> None:
    library = TemplateLibrary(TEMPLATES)
    for index, recipient in enumerate(persona_matrix()):
        # Distinct links per person, so a cached structure never carries someone else's values.
        links = Links(
            f"https://example.org/u/t{index}_x-y.z?a=1&b={index}",
            f"https://example.org/p/t{index}",
        )
        fast = library.render(SEQUENCE, step, recipient, links, BRAND)
        naive = library.render_naive(SEQUENCE, step, recipient, links, BRAND)
        assert fast == naive, (step.key, recipient)
        assert links.preferences_url in fast.html
        assert "nurtureph" not in fast.html and "nurtureph" not in fast.text
    stats = library.cache_stats()
    assert stats.hits > stats.misses


def test_naive_path_is_premailer_over_the_directly_rendered_html(
    library: TemplateLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_transform = premailer.transform

    def spy(html: str, **options: object) -> str:
        assert options == dict(PREMAILER_OPTIONS)
        seen.append(html)
        result: str = real_transform(html, **options)
        return result

    monkeypatch.setattr(premailer, "transform", spy)
    recipient = person(TRICKY_NAME, {"stigma"}, locale="en-IN")
    naive = library.render_naive(SEQUENCE, UNDERSTANDING, recipient, LINKS, BRAND)
    assert len(seen) == 1
    assert "Hi &lt;b&gt;&amp;&#34;&#39;," in seen[0]
    assert "asha+notes@example.org" in seen[0]
    assert naive.html == real_transform(seen[0], **PREMAILER_OPTIONS)


def test_structures_do_not_multiply_for_hesitations_a_template_ignores(tmp_path: Path) -> None:
    library = TemplateLibrary(TEMPLATES)
    for reason in KNOWN_REASONS:
        render(library, WELCOME, person(hesitations={reason}))
    assert library.cache_stats().size == 1
    for reason in KNOWN_REASONS:
        render(library, UNDERSTANDING, person(hesitations={reason}))
    # understanding tests stigma and fear_of_blame: three combinations seen (one, other, none).
    assert library.cache_stats().size == 1 + 3


def test_templates_using_hesitations_freely_still_match_naive(tmp_path: Path) -> None:
    body = "{% for reason in hesitations|sort %}- {{ reason }}\n{% endfor %}\n\nBye {{ first_name }}\n"
    library = TemplateLibrary(copy_templates(tmp_path, {"probe/list.md": body}))
    step = step_for("probe/list.md")
    for reasons in ({"stigma"}, {"stigma", "unfamiliar"}, set()):
        recipient = person(TRICKY_NAME, reasons)
        fast = render(library, step, recipient)
        assert fast == library.render_naive(SEQUENCE, step, recipient, LINKS, BRAND)
        for reason in reasons:
            assert f"<li>{reason}</li>" in fast.html


def test_included_templates_are_keyed_conservatively(tmp_path: Path) -> None:
    bodies = {
        "probe/outer.md": "Before.\n\n{% include 'emails/probe/inner.md' %}\n",
        "probe/inner.md": "{% if first_name %}Dear {{ first_name }}{% else %}Dear reader{% endif %}.\n"
        "{% if 'stigma' in hesitations %}Stigma note.{% endif %}\n",
    }
    library = TemplateLibrary(copy_templates(tmp_path, bodies))
    step = step_for("probe/outer.md")
    for recipient in (person("Asha", {"stigma"}), person(None), person(TRICKY_NAME)):
        fast = render(library, step, recipient)
        assert fast == library.render_naive(SEQUENCE, step, recipient, LINKS, BRAND)
    assert "Dear reader." in render(library, step, person(None)).text
    assert "Stigma note." not in render(library, step, person("Asha")).text


def test_partials_included_by_name_keep_structures_narrow(tmp_path: Path) -> None:
    bodies = {
        "probe/outer.md": "Before.\n\n{% include 'emails/probe/inner.md' %}\n",
        "probe/inner.md": "{% if 'stigma' in hesitations %}Stigma note.{% endif %}\n",
    }
    library = TemplateLibrary(copy_templates(tmp_path, bodies))
    step = step_for("probe/outer.md")
    for reason in KNOWN_REASONS:
        recipient = person("Asha", {reason, "unfamiliar"})
        assert render(library, step, recipient) == library.render_naive(
            SEQUENCE, step, recipient, LINKS, BRAND)
    # The partial tests stigma only: two structures (with it, without it), not one per reason.
    assert library.cache_stats().size == 2


def test_whether_replies_are_read_is_part_of_the_structure(tmp_path: Path) -> None:
    from dataclasses import replace

    body = "{% if replies_read %}Write back.{% else %}No replies.{% endif %}\n"
    library = TemplateLibrary(copy_templates(tmp_path, {"probe/replies.md": body}))
    step = step_for("probe/replies.md")
    reading = replace(BRAND, reply_to="replies@example.org")
    assert "No replies." in library.render(SEQUENCE, step, person(), LINKS, BRAND).text
    assert "Write back." in library.render(SEQUENCE, step, person(), LINKS, reading).text


def test_a_filter_on_a_personal_value_is_refused_at_render_time(tmp_path: Path) -> None:
    library = TemplateLibrary(copy_templates(tmp_path, {"probe/title.md": "Hi {{ first_name|title }}\n"}))
    with pytest.raises(ValueError, match="changes a personal value"):
        render(library, step_for("probe/title.md"), person("asha"))


# --- MIME ---------------------------------------------------------------------------------


def test_message_parses_back_with_both_parts_and_unsubscribe_headers(
    library: TemplateLibrary,
) -> None:
    rendered = render(library, WELCOME, person(locale="en-IN"))
    raw = build_message(
        rendered, to="asha+notes@example.org", message_id="<m1@example.org>", links=LINKS, date=DATE
    )
    assert b"\r\n" in raw and re.search(rb"(?<!\r)\n", raw) is None
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    assert text_part.get_content_charset() == "utf-8"
    assert text_part.get_content().replace("\r\n", "\n") == rendered.text
    assert html_part.get_content().replace("\r\n", "\n").rstrip("\n") == rendered.html
    assert message["Message-ID"] == "<m1@example.org>"
    assert message["From"] == "Nurture <hello@example.org>"
    assert message["To"] == "asha+notes@example.org"
    assert message["Subject"] == "Asha, you are not alone in this"
    assert message["Date"].datetime == DATE
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == (f"<{LINKS.unsubscribe_url}>, <{LINKS.unsubscribe_mailto}>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for absent in ("Precedence", "Auto-Submitted", "X-Nurture-Step", "Bcc", "Cc"):
        assert absent not in message


def test_reply_to_is_set_only_when_a_person_reads_replies(library: TemplateLibrary) -> None:
    from dataclasses import replace

    without = render(library, WELCOME, person())
    assert "Reply-To" not in parse(build_message(
        without, to="a@example.org", message_id="<r0@example.org>", links=LINKS, date=DATE))
    reading = replace(BRAND, reply_to="replies@example.org")
    rendered = library.render(SEQUENCE, WELCOME, person(), LINKS, reading)
    for builder in (build_message, build_message_reference):
        message = parse(builder(rendered, to="a@example.org", message_id="<r1@example.org>",
                                links=LINKS, date=DATE))
        assert message["Reply-To"] == "replies@example.org", builder.__name__
    forged = replace(rendered, reply_to="replies@example.org\r\nBcc: x@example.org")
    with pytest.raises(ValueError, match="Reply-To"):
        build_message(forged, to="a@example.org", message_id="<r2@example.org>", links=LINKS,
                      date=DATE)


def test_list_unsubscribe_without_mailto_and_with_a_long_url(library: TemplateLibrary) -> None:
    long_url = "https://example.org/unsubscribe/" + "A1b2_C3-d4." * 20
    links = Links(long_url, LINKS.preferences_url)
    rendered = render(library, WELCOME, person(), links)
    raw = build_message(rendered, to="a@example.org", message_id="<m2@example.org>", links=links, date=DATE)
    assert b"=?" not in raw.split(b"\r\n\r\n", 1)[0]
    assert parse(raw)["List-Unsubscribe"] == f"<{long_url}>"


def test_non_ascii_names_are_encoded_in_headers(library: TemplateLibrary) -> None:
    brand = Brand("Nurture <hello@example.org>", "Zoë's notes", "Somewhere", "https://example.org")
    recipient = person("Zoë ✓", discreet=False)
    rendered = library.render(SEQUENCE, WELCOME, recipient, LINKS, brand)
    message = parse(
        build_message(rendered, to="z@example.org", message_id="<m3@x.org>", links=LINKS, date=DATE)
    )
    assert message["Subject"] == "Zoë ✓, you are not alone in this"
    assert "Zoë ✓" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    discreet = library.render(SEQUENCE, WELCOME, person("Zoë", discreet=True), LINKS, brand)
    parsed = parse(
        build_message(discreet, to="z@example.org", message_id="<m4@x.org>", links=LINKS, date=DATE)
    )
    assert parsed["From"].addresses[0].display_name == "Zoë's notes"
    assert parsed["From"].addresses[0].addr_spec == "hello@example.org"


def test_header_injection_through_the_first_name_stays_in_the_body(
    library: TemplateLibrary,
) -> None:
    recipient = person("Bob\r\nBcc: x@evil.example", hesitations={"stigma"})
    rendered = render(library, WELCOME, recipient)
    assert "\r" not in rendered.subject and "\n" not in rendered.subject
    raw = build_message(rendered, to="bob@example.org", message_id="<m5@example.org>", links=LINKS, date=DATE)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"^Bcc:", head, re.MULTILINE | re.IGNORECASE) is None
    message = parse(raw)
    assert "Bcc" not in message
    assert message["Subject"] == "Bob Bcc: x@evil.example, you are not alone in this"
    assert "Hi Bob Bcc: x@evil.example," in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hi Bob Bcc: x@evil.example," in rendered.html


@pytest.mark.parametrize(
    "to", ["a@example.org\r\nBcc: x@evil.example", "a@example.org\nBcc: x@evil.example", "a@x.org, b@y.org"]
)
def test_bad_recipient_address_raises(library: TemplateLibrary, to: str) -> None:
    rendered = render(library, WELCOME, person())
    with pytest.raises(ValueError):
        build_message(rendered, to=to, message_id="<m6@example.org>", links=LINKS, date=DATE)


def test_control_characters_never_reach_any_header(library: TemplateLibrary) -> None:
    rendered = render(library, WELCOME, person())
    sneaky = RenderedEmail(
        from_header="Nurture <hello@example.org>\r\nBcc: a@evil.example",
        subject="Hi\r\nBcc: b@evil.example\x00",
        preheader="",
        html=rendered.html,
        text=rendered.text,
    )
    raw = build_message(
        sneaky,
        to="a@example.org",
        message_id="<m7@example.org>",
        links=LINKS,
        date=DATE,
        extra_headers={"X-Campaign": "spring\r\nBcc: c@evil.example"},
    )
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert re.search(r"^Bcc:", head, re.MULTILINE | re.IGNORECASE) is None
    assert "\x00" not in head
    assert parse(raw)["X-Campaign"] == "spring Bcc: c@evil.example"


def test_build_message_refuses_naive_dates_and_reserved_extra_headers(
    library: TemplateLibrary,
) -> None:
    rendered = render(library, WELCOME, person())
    with pytest.raises(ValueError, match="timezone"):
        build_message(rendered, to="a@x.org", message_id="<m@x.org>", links=LINKS, date=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="header name"):
        build_message(
            rendered,
            to="a@x.org",
            message_id="<m@x.org>",
            links=LINKS,
            date=DATE,
            extra_headers={"Bcc": "x@evil.example"},
        )


# --- content checks -----------------------------------------------------------------------


def test_sample_content_and_layouts_have_no_problems(library: TemplateLibrary) -> None:
    for step in SEQUENCE.steps:
        assert library.check_step(SEQUENCE, step) == []
    assert library.check_layouts() == []


def test_check_step_reports_a_missing_template_at_the_step(library: TemplateLibrary) -> None:
    step = step_for("sample/nowhere.md", line=42)
    [problem] = library.check_step(SEQUENCE, step)
    assert (problem.path, problem.line) == (SOURCE, 42)
    assert "not found" in problem.message
    assert problem.fix == "create templates/emails/sample/nowhere.md or correct the name"


def test_check_step_reports_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    root = copy_templates(tmp_path, {"probe/broken.md": "Hi,\n\nfine\n{% if first_name %}\nno end\n"})
    library = TemplateLibrary(root)
    [problem] = library.check_step(SEQUENCE, step_for("probe/broken.md"))
    assert problem.path == root / "emails" / "probe" / "broken.md"
    assert problem.line == 5
    assert "endif" in problem.message


def test_check_step_reports_an_unknown_filter_with_its_line(tmp_path: Path) -> None:
    # Jinja finds it only when compiling: it once escaped the checks as a crash.
    root = copy_templates(tmp_path, {"probe/filter.md": "Hi,\n\n{{ 'x' | no_such_filter }}\n"})
    library = TemplateLibrary(root)
    [problem] = library.check_step(SEQUENCE, step_for("probe/filter.md"))
    assert (problem.path, problem.line) == (root / "emails" / "probe" / "filter.md", 3)
    assert problem.message == "body: No filter named 'no_such_filter'"


def test_check_step_reports_unknown_variables_with_the_known_ones(tmp_path: Path) -> None:
    root = copy_templates(tmp_path, {"probe/unknown.md": "Hi,\n\n{{ firstname }}\n"})
    library = TemplateLibrary(root)
    step = step_for("probe/unknown.md", subject="For {{ nickname }}")
    problems = library.check_step(SEQUENCE, step)
    messages = {(p.path, p.line, p.message) for p in problems}
    assert (root / "emails/probe/unknown.md", 3, "body: unknown variable 'firstname'") in messages
    assert (SOURCE, 7, "subject: unknown variable 'nickname'") in messages
    assert all("first_name" in p.fix for p in problems)


def test_check_step_reports_filters_on_personal_values_and_unknown_reasons(
    tmp_path: Path,
) -> None:
    body = (
        "Hi {{ first_name|upper }},\n"
        "{% if first_name == 'Sam' %}x{% endif %}\n"
        "{% if 'stigmatized' in hesitations %}y{% endif %}\n"
        "{{ first_name or 'friend' }} {% if not first_name %}z{% endif %}\n"
        "<{{ unsubscribe_url }}>\n"
    )
    library = TemplateLibrary(copy_templates(tmp_path, {"probe/misuse.md": body}))
    problems = library.check_step(SEQUENCE, step_for("probe/misuse.md"))
    found = sorted((p.line, p.message.split(";")[0]) for p in problems)
    assert found == [
        (1, "body: 'first_name' is changed or compared"),
        (2, "body: 'first_name' is changed or compared"),
        (3, "body: unknown hesitation 'stigmatized'"),
        (5, "'unsubscribe_url' is written as an autolink <...>"),
    ]


def test_check_step_reports_subject_syntax_errors_and_missing_discreet_subject(
    library: TemplateLibrary,
) -> None:
    step = step_for("sample/welcome.md", subject="{% if first_name %}Hi", discreet_subject=None)
    problems = library.check_step(SEQUENCE, step)
    assert {(p.path, p.line) for p in problems} == {(SOURCE, 7)}
    assert any(p.message.startswith("subject:") for p in problems)
    assert any("discreet_subject" in p.message and p.severity == "warning" for p in problems)


def test_check_step_reports_errors_that_show_only_when_rendering(tmp_path: Path) -> None:
    body = "Hi,\n\nCall {{ crisis.phone }}\n"
    library = TemplateLibrary(copy_templates(tmp_path, {"probe/runtime.md": body}))
    problems = library.check_step(SEQUENCE, step_for("probe/runtime.md"))
    assert problems and problems[0].line == 3
    assert "phone" in problems[0].message


def test_check_step_reports_subject_errors_that_show_only_when_rendering(
    library: TemplateLibrary,
) -> None:
    step = step_for("sample/welcome.md", subject="Call {{ crisis.phone }}")
    problems = library.check_step(SEQUENCE, step)
    assert problems
    assert {(p.path, p.line) for p in problems} == {(SOURCE, 7)}
    assert "phone" in problems[0].message


def test_check_layouts_finds_a_layout_without_an_unsubscribe_link(tmp_path: Path) -> None:
    root = copy_templates(tmp_path)
    layout = root / HTML_LAYOUT
    source = layout.read_text(encoding="utf-8")
    layout.write_text(
        source.replace('<a href="{{ unsubscribe_url }}">{{ texts.unsubscribe_link }}</a>',
                       "{{ texts.unsubscribe_link }}"),
        encoding="utf-8",
    )
    [problem] = TemplateLibrary(root).check_layouts()
    assert (problem.path, problem.line) == (layout, 1)
    assert "unsubscribe_url" in problem.message


def test_check_layouts_finds_an_unsubscribe_url_that_is_not_a_link(tmp_path: Path) -> None:
    root = copy_templates(tmp_path)
    layout = root / HTML_LAYOUT
    lines = layout.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if "{{ unsubscribe_url }}" in line)
    lines[index] = lines[index].replace(
        '<a href="{{ unsubscribe_url }}">{{ texts.unsubscribe_link }}</a>',
        "{{ texts.unsubscribe_link }} ({{ unsubscribe_url }})")
    layout.write_text("\n".join(lines), encoding="utf-8")
    [problem] = TemplateLibrary(root).check_layouts()
    assert (problem.path, problem.line) == (layout, index + 1)
    assert "href" in problem.message


def test_check_layouts_finds_missing_footer_parts_in_the_text_layout(tmp_path: Path) -> None:
    root = copy_templates(tmp_path)
    (root / TEXT_LAYOUT).write_text("{{ body }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    problems = TemplateLibrary(root).check_layouts()
    missing = {p.message for p in problems if p.path == root / TEXT_LAYOUT}
    assert any("preferences_url" in m for m in missing)
    assert any("postal_address" in m for m in missing)
    assert any("crisis" in m for m in missing)


def test_check_layouts_reports_a_malformed_locale_file(tmp_path: Path) -> None:
    root = copy_templates(tmp_path)
    (root / "locales" / "de.yaml").write_text("crisis:\n  heading: Hilfe\n", encoding="utf-8")
    library = TemplateLibrary(root)
    [problem] = library.check_layouts()
    assert problem.path == root / "locales" / "de.yaml"
    assert "crisis.text" in problem.message
    assert library.locale_data("de").key == "en"


# --- the assembled MIME message ----------------------------------------------------------------

COMPARED_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                    "List-Unsubscribe", "List-Unsubscribe-Post", "X-Nurture-Test")


@pytest.mark.parametrize("discreet_brand", [False, True])
def test_assembled_message_parses_like_the_standard_library_one(discreet_brand: bool) -> None:
    library = TemplateLibrary(TEMPLATES)
    brand = BRAND if not discreet_brand else Brand(
        sender="Équipe Nurture <hello@example.org>", discreet_sender_name="Notes de la semaine",
        postal_address=BRAND.postal_address, base_url=BRAND.base_url)
    links = Links(LINKS.unsubscribe_url, LINKS.preferences_url,
                  unsubscribe_mailto="mailto:leave@example.org?subject=unsubscribe")
    date = datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    for index, recipient in enumerate(persona_matrix()):
        for step in SEQUENCE.steps:
            rendered = library.render(SEQUENCE, step, recipient, links, brand)
            extra = {"X-Nurture-Test": "yes"} if index % 2 else {}
            options = {"to": recipient.email, "message_id": f"<m{index}.{step.key}@example.org>",
                       "links": links, "date": date, "extra_headers": extra}
            assert_builders_agree(rendered, options)


def assert_builders_agree(rendered: RenderedEmail, options: dict[str, object]) -> None:
    fast = build_message(rendered, **options)  # type: ignore[arg-type]
    reference = build_message_reference(rendered, **options)  # type: ignore[arg-type]
    assert b"\r\n" in fast and b"\n" not in fast.replace(b"\r\n", b"")
    assert b"\r" not in fast.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in fast.split(b"\r\n"))
    ours = email.message_from_bytes(fast, policy=default)
    theirs = email.message_from_bytes(reference, policy=default)
    for name in COMPARED_HEADERS:
        assert str(ours.get(name)) == str(theirs.get(name)), name
    assert ours.get_content_type() == theirs.get_content_type() == "multipart/alternative"
    for kind in ("plain", "html"):
        mine, reference_part = ours.get_body((kind,)), theirs.get_body((kind,))
        assert mine is not None and reference_part is not None
        assert mine.get_content() == reference_part.get_content(), kind
        assert mine.get_content_charset() == "utf-8"


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\u2028", "\u2029",
                                       "\r", "\r\n"])
def test_only_cr_and_lf_break_lines_in_the_assembled_message(separator: str) -> None:
    text = f"Hello{separator}there\nsecond line\n"
    html = f"<p>Hello{separator}there</p>\n<p>second</p>\n"
    rendered = RenderedEmail("Nurture <hello@example.org>", "Subject", "", html, text)
    options = {"to": "asha@example.org", "message_id": "<m1@example.org>", "links": LINKS,
               "date": datetime(2026, 3, 8, 7, 30, tzinfo=UTC)}
    assert_builders_agree(rendered, options)
    parsed = email.message_from_bytes(build_message(rendered, **options), policy=default)  # type: ignore[arg-type]
    plain = parsed.get_body(("plain",))
    assert plain is not None
    if separator not in ("\r", "\r\n"):
        assert separator in plain.get_content(), "kept inside its line"


def test_uri_values_left_unescaped_are_the_ones_libxml2_leaves_alone() -> None:
    import random

    from nurture.rendering.escaping import (
        _URI_UNCHANGED,
        _escape_uri_attribute,
        _escape_uri_attribute_by_libxml2,
    )

    alphabet = "ABCXYZabcxyz0189._~:/?#@!$()*+,;=%-"
    assert _URI_UNCHANGED.fullmatch(alphabet)
    chance = random.Random(7)
    samples = ["", *alphabet, *("https://example.org/" + c for c in alphabet)]
    samples += ["".join(chance.choices(alphabet, k=chance.randint(1, 40))) for _ in range(2000)]
    for value in samples:
        assert _escape_uri_attribute(value) == _escape_uri_attribute_by_libxml2(value), value
    # Outside the set, libxml2 decides.
    assert _escape_uri_attribute("https://x/a b&c") == "https://x/a%20b&amp;c"


def test_single_spaced_wrapping_matches_textwrap() -> None:
    import random
    import textwrap

    from nurture.rendering.text import TEXT_WIDTH, wrap_line

    chance = random.Random(11)
    words = ["a", "to", "the", "partner", "therapy", "https://example.org/" + "x" * 70, "é", "—",
             "x" * 77, "y" * 78, "z" * 79, "(consult)", "well,"]
    prefixes = ["", "- ", "  * ", "> ", "> > 12. ", "1) ", " " * 30]
    for _ in range(3000):
        prefix = chance.choice(prefixes)
        body = " ".join(chance.choices(words, k=chance.randint(1, 40)))
        line = prefix + body
        expected = line if len(line) <= TEXT_WIDTH else textwrap.fill(
            body, width=TEXT_WIDTH, initial_indent=prefix,
            subsequent_indent=re.sub(r"[-*+]|\d{1,3}[.)]", lambda m: " " * len(m.group(0)), prefix),
            break_long_words=False, break_on_hyphens=False) or line
        assert wrap_line(line) == expected, line
