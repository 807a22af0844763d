"""Personas for previews and test sends: a made-up subscriber described on the command line."""

from __future__ import annotations

from dataclasses import dataclass

from nurture.domain.model import Profile
from nurture.domain.people import PersonInvalid, check_hesitations, check_time_zone, clean_first_name

PERSONA_KEYS = ("reasons", "name", "locale", "discreet", "zone")


class PersonaInvalid(ValueError):
    """A --persona value that cannot be understood; the message says the accepted form."""


@dataclass(frozen=True)
class Persona:
    profile: Profile
    first_name: str | None = "Sam"
    email: str = "preview@example.org"

    def label(self) -> str:
        reasons = ",".join(sorted(self.profile.hesitations)) or "none"
        return (f"reasons={reasons} locale={self.profile.locale} "
                f"discreet={str(self.profile.discreet).lower()}")


def parse_persona(specs: list[str] | None, *, discreet: bool = False, locale: str | None = None,
                  time_zone: str | None = None) -> Persona:
    """`reasons=stigma,fear_of_blame name=Asha locale=en-IN discreet=true zone=Asia/Kolkata`.

    Several --persona options, or several pairs in one separated by spaces or semicolons, combine;
    the --discreet, --locale and --time-zone flags win over pairs.
    """
    values: dict[str, str] = {}
    for spec in specs or []:
        for pair in spec.replace(";", " ").split():
            key, sep, value = pair.partition("=")
            if not sep or key not in PERSONA_KEYS:
                raise PersonaInvalid(
                    f"'{pair}' is not a persona setting; write key=value with keys "
                    f"{', '.join(PERSONA_KEYS)}, e.g. reasons=stigma,fear_of_blame")
            values[key] = value
    try:
        reasons = check_hesitations(values.get("reasons", "").split(","))
        name = clean_first_name(values.get("name", "Sam"))
        zone = check_time_zone(time_zone or values.get("zone", "UTC"))
    except PersonInvalid as error:
        raise PersonaInvalid(str(error)) from None
    is_discreet = discreet or values.get("discreet", "false").lower() in ("1", "true", "yes")
    profile = Profile(time_zone=zone, hesitations=reasons, discreet=is_discreet,
                      locale=locale or values.get("locale", "en"))
    return Persona(profile=profile, first_name=name)
