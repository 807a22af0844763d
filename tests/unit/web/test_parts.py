"""The web app's pure parts, without HTTP: the preferences buttons and their actions, the signup
limits, the admin persona's defaults, and where a sign-in may send someone back to."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from nurture.web.admin.persona import DEFAULT_NAME, parse_choice
from nurture.web.admin.sign_in import safe_next
from nurture.web.preferences import ACTIONS
from nurture.web.security import SignupLimits
from tests.support.paths import ROOT

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_every_button_on_the_preferences_page_has_its_action_and_no_action_is_orphaned() -> None:
    page = (ROOT / "templates" / "pages" / "preferences.html").read_text(encoding="utf-8")
    buttons = set(re.findall(r'hidden\("([a-z_]+)"\)', page))
    assert buttons == set(ACTIONS)


def test_the_address_limit_counts_only_valid_addresses_and_the_ip_limit_everything() -> None:
    limits = SignupLimits.per_hour(per_ip=3, per_address=1)
    assert limits.retry_after("192.0.2.1", "sam@example.org", NOW) is None
    assert limits.retry_after("192.0.2.2", "sam@example.org", NOW) is not None, "same address"
    assert limits.retry_after("192.0.2.1", None, NOW) is None, "not valid: only the IP counts"
    assert limits.retry_after("192.0.2.1", None, NOW) is None
    retry = limits.retry_after("192.0.2.1", None, NOW)
    assert retry is not None and 0 < retry <= 3600
    assert limits.retry_after("192.0.2.1", None, NOW + timedelta(hours=1)) is None, "an hour on"
    assert limits.retry_after(None, None, NOW) is None, "no address known: counted as one client"


def test_the_persona_defaults_fill_in_for_missing_or_unusable_fields() -> None:
    choice, errors = parse_choice({}, NOW)
    assert errors == {}
    assert (choice.name, choice.zone, choice.locale, choice.view) == (DEFAULT_NAME, "UTC", "en",
                                                                       "desktop")
    assert choice.start == "2026-03-02T10:00"
    choice, errors = parse_choice({"reasons": ["stigma", "nonsense"], "locale": ["xx"],
                                   "zone": ["Mars/Olympus"], "start": ["soon"], "view": ["tv"],
                                   "name": [""]}, NOW)
    assert list(errors) == ["reasons", "locale", "zone", "start"], "in the form's order"
    assert choice.reasons == frozenset({"stigma"})
    assert (choice.locale, choice.zone, choice.view, choice.name) == ("en", "UTC", "desktop", "")
    assert choice.start == "2026-03-02T10:00"


def test_a_sign_in_sends_back_only_to_an_admin_page() -> None:
    for kept in ("/admin", "/admin/results?sequence=sample", "/admin/sequences/sample?view=both"):
        assert safe_next(kept) == kept
    for refused in (None, "", "/elsewhere", "https://evil.example/admin", "//evil.example/admin",
                    "/admin\\@evil.example"):
        assert safe_next(refused) == "/admin", refused
