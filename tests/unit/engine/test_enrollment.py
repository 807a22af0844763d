"""Validation of one person's fields, as the CLI, the CSV import and the web form use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.domain.people import (
    PersonInvalid,
    check_time_zone,
    clean_first_name,
    make_person,
    normalize_email,
)
from nurture.engine.enrollment import read_people_csv


def test_addresses_are_normalized_to_one_form() -> None:
    assert normalize_email("  Asha@Example.ORG ") == "asha@example.org"


@pytest.mark.parametrize("raw", ["asha", "asha@", "a b@example.org", "x@evil\r\nBcc: y@z.org",
                                 "a" * 250 + "@example.org"])
def test_bad_addresses_name_the_field(raw: str) -> None:
    with pytest.raises(PersonInvalid) as caught:
        normalize_email(raw)
    assert caught.value.field == "email"


def test_names_with_line_breaks_are_refused() -> None:
    with pytest.raises(PersonInvalid, match="first_name: contains line breaks"):
        clean_first_name("Bob\r\nBcc: x@evil.example")
    assert clean_first_name("  Zoë ") == "Zoë"
    assert clean_first_name("   ") is None


def test_time_zones_are_iana_names_and_old_names_are_renamed() -> None:
    assert check_time_zone("Asia/Calcutta") == "Asia/Kolkata"
    assert check_time_zone("") == "UTC"
    with pytest.raises(PersonInvalid, match="not an IANA time zone"):
        check_time_zone("Mars/Olympus")


def test_unknown_reasons_are_refused() -> None:
    with pytest.raises(PersonInvalid, match="unknown reason astrology"):
        make_person("a@example.org", hesitations=["stigma", "astrology"])


def test_csv_rows_are_checked_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email,first_name,time_zone,hesitations\n"
                    "a@example.org,A,Europe/London,stigma;not_sure\n"
                    "broken,B,UTC,\n"
                    "A@example.org,A again,UTC,\n")
    people, errors = read_people_csv(path)
    assert [p.email for p in people] == ["a@example.org"]
    assert people[0].hesitations == frozenset({"stigma", "not_sure"})
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [(3, "email"), (4, "email")]
    assert "appears earlier in the file" in errors[1].message


def test_csv_without_an_email_column_is_rejected_at_line_one(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("mail,name\nx@example.org,X\n")
    people, errors = read_people_csv(path)
    assert people == [] and errors[0].line == 1 and "no 'email' column" in errors[0].message
