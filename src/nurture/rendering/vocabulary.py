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
