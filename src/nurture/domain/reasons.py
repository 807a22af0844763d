"""The hesitation reasons a subscriber can report for their partner: stable keys and their labels."""

from __future__ import annotations

from typing import Final

# Keys are stored in the database and named in sequence conditions: never rename one, only add.
REASONS: Final[dict[str, str]] = {
    "stigma": "Therapy feels like it is only for serious problems",
    "fear_of_blame": "Worried they will be blamed",
    "ganged_up_on": "Worried the therapist and I will gang up on them",
    "unfamiliar": "Not sure what therapy actually involves",
    "vulnerability": "Uncomfortable opening up in front of a stranger",
    "not_that_bad": "Feels things are not that bad",
    "bad_past_experience": "Had a bad experience with therapy before",
    "cultural_messages": "Grew up with messages that you handle things yourself",
    "shame": "Feels ashamed or embarrassed that we need help",
    "overwhelm": "Feels it would be too much to take on right now",
    "avoiding_conflict": "Avoids conflict, and worries it would stir things up",
    "not_sure": "I am not sure",
}

KNOWN_REASONS: Final[frozenset[str]] = frozenset(REASONS)

# What a subscriber can report from the quiet links in emails (and the API, for a booked call): the
# events a sequence can exit on, and those an experiment can count as its conversion.
KNOWN_EXIT_EVENTS: Final[frozenset[str]] = frozenset({"consult_booked", "partner_said_yes",
                                                      "started_solo"})
