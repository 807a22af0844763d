"""What templates may use: the variables of a body and of a layout, the personal ones, the layouts."""

from __future__ import annotations

from typing import Final

BODY_VARIABLES: Final[frozenset[str]] = frozenset(
    {
        "first_name",
        "hesitations",
        "discreet",
        "locale",
        "sequence",
        "step",
        "crisis",
        "resources",
        "postal_address",
        "unsubscribe_url",
        "preferences_url",
        "action_url",
        "booked_url",
        "partner_yes_url",
        "started_solo_url",
        "discreet_url",
        "replies_read",
        "booking",
        "partner_page_url",
    }
)
LAYOUT_VARIABLES: Final[frozenset[str]] = BODY_VARIABLES | {
    # The locale's `language` block: tag (lang=), direction (dir=), name.
    "language",
    # The layouts' own words (EMAIL_TEXTS), in the locale's language where its file gives them.
    "texts",
    "body",
    "subject",
    "preheader",
    "email",
    "base_url",
}
# Values that differ per recipient: printed only, never structural, so they can be placeholders.
# The order fixes each placeholder's digit.
PERSONAL_VARIABLES: Final[tuple[str, ...]] = (
    "first_name",
    "email",
    "unsubscribe_url",
    "preferences_url",
    "action_url",
    "booked_url",
    "partner_yes_url",
    "started_solo_url",
    "discreet_url",
)

# What `booking` always holds in a template (empty when the locale file leaves a field out).
BOOKING_FIELDS: Final[tuple[str, ...]] = (
    "url",
    "label",
    "duration",
    "with_whom",
    "format",
    "languages",
    "cost",
)
# The page written to the hesitant partner (web/); emails link it as `partner_page_url`.
PARTNER_PAGE_PATH: Final = "/for-your-partner"

HTML_LAYOUT: Final = "layouts/email.html"
TEXT_LAYOUT: Final = "layouts/email.txt"

# The layouts' fixed words, in English; a locale file's `email:` block gives its own, field by
# field (a missing one falls back along the locale's chain, and is logged). Split around the links
# and the address so that a language may order its sentence as it needs.
EMAIL_TEXTS: Final[dict[str, str]] = {
    "directory_lead": "To find a helpline where you live:",
    "settings_before": "You can",
    "settings_link": "pause these emails or change your settings",
    "settings_between": "at any time, or",
    "unsubscribe_link": "unsubscribe",
    "unsubscribe_after": "with one click.",
    "sent_to_before": "This email was sent to",
    "sent_to_after": ".",
    "text_settings": "Pause these emails or change your settings:",
    "text_unsubscribe": "Unsubscribe with one click:",
}
