"""What people submit, turned into validated values or one plain error message per field (in the
page's language); also the JSON API's request and response models."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import FormData

from nurture.domain.people import (
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    Person,
    PersonInvalid,
    check_hesitations,
    check_time_zone,
    clean_first_name,
    normalize_email,
)
from nurture.domain.reasons import REASONS
from nurture.web.locale import N_, _, locale_keys, speech

# The exact words shown next to the consent checkbox. Changing them means a new form version
# (WebOptions.form_version): each consent record stores the sha256 of the text the person saw.
# The text is marked for the catalog: a translation is a new text, and its own sha256 is recorded.
CONSENT_TEXT: Final = N_(
    "I am 18 or older. I would like to receive a short series of emails about couples therapy and "
    "a hesitant partner. I understand that my address, my answers and a record of this agreement "
    "(time, IP address and browser) are kept to send them, that I can pause or unsubscribe with "
    "one click in every email, and that I can download or erase my data at any time."
)
CONSENT_TEXT_SHA256: Final = hashlib.sha256(CONSENT_TEXT.encode("utf-8")).hexdigest()

SAFETY_QUESTION: Final = N_("Do you feel unsafe with your partner, or are you in crisis right now?")
# Only the admin's persona chooser still reads this list; the public pages offer every locale file.
LOCALES: Final[dict[str, str]] = {"en": "English", "en-IN": "English (India)"}
HONEYPOT_FIELD: Final = "website"
# Far above any real value; stops a huge paste before the slower checks run on it.
MAX_RAW_LENGTH: Final = 1000
MAX_PAUSE_DAYS: Final = 366
PAUSE_CHOICES: Final[dict[str, timedelta]] = {"2w": timedelta(weeks=2), "1m": timedelta(days=30)}

# The English texts are the msgids; message() shows them in the page's language.
MESSAGES: Final[dict[str, str]] = {
    "email_missing": N_("Please enter your email address."),
    "email_long": N_("This address is too long (%(count)s characters at most)."),
    "email_check": N_("Please check your email address."),
    "one_line": N_("Please use one line, without line breaks or special characters."),
    "name_long": N_("Please use %(count)s characters or fewer."),
    "reasons": N_("Please choose from the options shown."),
    "time_zone": N_("Please enter a time zone such as Europe/London or Asia/Kolkata, or leave UTC."),
    "locale": N_("Please choose a language from the list."),
    "consent": N_("To sign up, please confirm that you are 18 or older and agree to these emails."),
    "safety": N_("Please answer this question. It helps us check that these emails are right for "
                 "you."),
    "pause_choice": N_("Please choose how long to pause for."),
    "pause_date": N_("Please choose a date in the coming year, after today."),
}
_COUNTS: Final[dict[str, int]] = {"email_long": MAX_EMAIL_LENGTH, "name_long": MAX_NAME_LENGTH}

# The labels of nurture.domain.reasons, marked for the catalog (a test keeps the two the same).
REASON_LABELS: Final[dict[str, str]] = {
    "stigma": N_("Therapy feels like it is only for serious problems"),
    "fear_of_blame": N_("Worried they will be blamed"),
    "ganged_up_on": N_("Worried the therapist and I will gang up on them"),
    "unfamiliar": N_("Not sure what therapy actually involves"),
    "vulnerability": N_("Uncomfortable opening up in front of a stranger"),
    "not_that_bad": N_("Feels things are not that bad"),
    "bad_past_experience": N_("Had a bad experience with therapy before"),
    "cultural_messages": N_("Grew up with messages that you handle things yourself"),
    "shame": N_("Feels ashamed or embarrassed that we need help"),
    "overwhelm": N_("Feels it would be too much to take on right now"),
    "avoiding_conflict": N_("Avoids conflict, and worries it would stir things up"),
    "not_sure": N_("I am not sure"),
}


def message(name: str) -> str:
    """The error message `name` in the page's language, its numbers filled in."""
    text = _(MESSAGES[name])
    return text % {"count": _COUNTS[name]} if name in _COUNTS else text


def reason_labels() -> dict[str, str]:
    """Each reason's label in the page's language, in the order of nurture.domain.reasons."""
    return {key: _(REASON_LABELS.get(key, label)) for key, label in REASONS.items()}


def consent_sha256(text: str) -> str:
    """What a consent record stores: the sha256 of the consent text as the person saw it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SignupValues:
    """The raw submission, kept so the form can show it again next to any error."""

    email: str = ""
    first_name: str = ""
    hesitations: tuple[str, ...] = ()
    time_zone: str = "UTC"
    locale: str = "en"
    discreet: bool = False
    consent: bool = False
    safety: str = ""
    honeypot: str = ""


@dataclass(frozen=True)
class SignupCheck:
    values: SignupValues
    person: Person | None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def unsafe(self) -> bool:
        return self.values.safety == "yes"


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _texts(form: FormData, name: str) -> tuple[str, ...]:
    return tuple(value for value in form.getlist(name) if isinstance(value, str))


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def signup_values(form: FormData) -> SignupValues:
    return SignupValues(
        email=_text(form, "email"),
        first_name=_text(form, "first_name"),
        hesitations=_texts(form, "hesitations"),
        time_zone=_text(form, "time_zone") or "UTC",
        locale=_text(form, "locale") or "en",
        discreet=_text(form, "discreet") == "yes",
        consent=_text(form, "consent") == "yes",
        safety=_text(form, "safety"),
        honeypot=_text(form, HONEYPOT_FIELD),
    )


def check_signup(values: SignupValues) -> SignupCheck:
    """Every field checked independently, so the person sees all problems at once."""
    errors: dict[str, str] = {}
    email = _check_email(values.email, errors)
    first_name = _check_first_name(values.first_name, errors)
    hesitations = check_answers(values.hesitations, errors)
    time_zone = values.time_zone.strip() or "UTC"
    if len(time_zone) > 64 or _has_control(time_zone):
        errors["time_zone"] = message("time_zone")
    else:
        try:
            time_zone = check_time_zone(time_zone)
        except PersonInvalid:
            errors["time_zone"] = message("time_zone")
    if values.locale not in locale_keys():
        errors["locale"] = message("locale")
    if not values.consent:
        errors["consent"] = message("consent")
    if values.safety not in ("yes", "no"):
        errors["safety"] = message("safety")
    if errors or email is None:
        return SignupCheck(values=values, person=None, errors=errors)
    person = Person(email=email, first_name=first_name, time_zone=time_zone,
                    hesitations=hesitations, discreet=values.discreet, locale=values.locale)
    return SignupCheck(values=values, person=person)


def _check_email(raw: str, errors: dict[str, str]) -> str | None:
    if not raw.strip():
        errors["email"] = message("email_missing")
        return None
    if len(raw) > MAX_RAW_LENGTH:
        errors["email"] = message("email_long")
        return None
    # Checked before any trimming: a line break anywhere means the value was made, not typed.
    if _has_control(raw):
        errors["email"] = message("one_line")
        return None
    try:
        return normalize_email(raw)
    except PersonInvalid as error:
        detail = str(error).removeprefix("email: ")
        # The validator's detail is English: other languages show the plain request alone.
        english = speech().babel.language == "en"
        errors["email"] = (message("email_long") if "longer than" in detail
                           else f"{message('email_check')} {detail}" if english
                           else message("email_check"))
        return None


def _check_first_name(raw: str, errors: dict[str, str]) -> str | None:
    if len(raw) > MAX_RAW_LENGTH:
        errors["first_name"] = message("name_long")
        return None
    if _has_control(raw):
        errors["first_name"] = message("one_line")
        return None
    try:
        return clean_first_name(raw)
    except PersonInvalid as error:
        errors["first_name"] = (message("name_long") if "longer than" in str(error)
                                else message("one_line"))
        return None


def check_answers(raw: tuple[str, ...] | list[str], errors: dict[str, str]) -> frozenset[str]:
    if len(raw) > len(REASONS):
        errors["hesitations"] = message("reasons")
        return frozenset()
    try:
        return check_hesitations(value[:100] for value in raw)
    except PersonInvalid:
        errors["hesitations"] = message("reasons")
        return frozenset()


def pause_until(form: FormData, *, now: datetime, time_zone: str) -> tuple[datetime | None, str]:
    """The end of the pause chosen on the preferences page, or None and the error message.

    A date means "until that morning": midnight at its start in the subscriber's own time zone."""
    choice = _text(form, "pause")
    if choice in PAUSE_CHOICES:
        return now + PAUSE_CHOICES[choice], ""
    if choice != "date":
        return None, message("pause_choice")
    try:
        day = date.fromisoformat(_text(form, "until")[:10])
    except ValueError:
        return None, message("pause_date")
    zone = ZoneInfo(time_zone)
    today = now.astimezone(zone).date()
    if not today < day <= today + timedelta(days=MAX_PAUSE_DAYS):
        return None, message("pause_date")
    return datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC), ""


# -- the JSON API -------------------------------------------------------------------------------


class SignupRequest(BaseModel):
    """A signup from a form embedded on another site: the same rules and double opt-in as the page."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=MAX_RAW_LENGTH, examples=["sam@example.org"])
    first_name: str | None = Field(default=None, max_length=MAX_RAW_LENGTH)
    hesitations: list[str] = Field(
        default_factory=list, max_length=len(REASONS),
        description="What seems to hold the partner back; keys: " + ", ".join(REASONS))
    time_zone: str = Field(default="UTC", max_length=64, description="An IANA time zone name.",
                           examples=["Europe/London"])
    locale: str = Field(default="en", max_length=35, examples=["en-IN"],
                        description="A locale with a file in templates/locales: en, en-IN, hi-IN...")
    discreet: bool = Field(default=False, description="Neutral subjects and sender name.")
    consent: bool = Field(description="Must be true: the person is 18 or older and agreed to "
                          f"this text, shown to them word for word: \"{CONSENT_TEXT}\"")
    unsafe: bool = Field(description=f"The answer to \"{SAFETY_QUESTION}\" When true nothing is "
                         "stored and the response carries crisis resources to show instead.")
    website: str = Field(default="", max_length=MAX_RAW_LENGTH,
                         description="Leave empty (a field hidden from people, filled by bots).")

    def values(self) -> SignupValues:
        return SignupValues(
            email=self.email, first_name=self.first_name or "",
            hesitations=tuple(self.hesitations), time_zone=self.time_zone or "UTC",
            locale=self.locale, discreet=self.discreet, consent=self.consent,
            safety="yes" if self.unsafe else "no", honeypot=self.website,
        )


class SignupAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str = ("If this address can receive our emails, a link to confirm it is on its way. "
                    "Nothing is sent until it is clicked.")


class CrisisLineModel(BaseModel):
    name: str
    contact: str
    note: str = ""


class CrisisDirectoryModel(BaseModel):
    name: str
    url: str


class CrisisModel(BaseModel):
    heading: str
    text: str
    lines: list[CrisisLineModel]
    directory: CrisisDirectoryModel | None = Field(
        default=None, description="A directory of helplines by country, for locales that list "
        "no numbers of their own.")
    framing: str = ""


class SignupNotTaken(BaseModel):
    status: Literal["not_signed_up"] = "not_signed_up"
    message: str = "Nothing was stored. Please show these resources instead."
    crisis: CrisisModel
