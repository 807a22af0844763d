"""Placeholder links left in templates/locales/: a booking link or a resource that still points at an
example host (example.org). Production refuses them (config.py); `config check` warns about them in
development. Read here, below the settings, because the settings check needs them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

# Hosts reserved for examples (RFC 2606): a link to one is a placeholder left in place.
_EXAMPLE_HOSTS = ("example.org", "example.com", "example.net")


def is_placeholder_url(url: str) -> bool:
    """A link to a host kept for examples (example.org and the like): nobody's real page."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return (any(host == name or host.endswith("." + name) for name in _EXAMPLE_HOSTS)
            or host == "example" or host.endswith(".example"))


@dataclass(frozen=True)
class PlaceholderLink:
    """A link in a locale file that still points at an example host."""

    path: Path
    line: int
    what: str
    """"booking.url" or "resources[0].url"."""
    url: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.what} is the placeholder {self.url}"


def _line_of(text: str, url: str) -> int:
    return next((number for number, line in enumerate(text.splitlines(), 1) if url in line), 1)


def placeholder_links(templates_dir: Path) -> list[PlaceholderLink]:
    """The booking and resource links of templates/locales/*.yaml that point at an example host.
    Files that cannot be read are left to `nurture sequences validate`, which names the problem."""
    found = []
    for path in sorted((templates_dir / "locales").glob("*.yaml")):
        try:
            text = path.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not isinstance(data, dict):
            continue
        links = []
        booking = data.get("booking")
        if isinstance(booking, dict):
            links.append(("booking.url", booking.get("url")))
        resources = data.get("resources")
        for index, item in enumerate(resources if isinstance(resources, list) else []):
            if isinstance(item, dict):
                links.append((f"resources[{index}].url", item.get("url")))
        found += [PlaceholderLink(path, _line_of(text, url), what, url) for what, url in links
                  if isinstance(url, str) and is_placeholder_url(url)]
    return found


def placeholder_problems(links: list[PlaceholderLink], *, booking_url_set: bool) -> list[str]:
    """What production refuses among `links`, as "field: why" (the form load_settings reports).
    NURTURE_BOOKING_URL replaces every locale's booking link, so it excuses those."""
    booking = [str(link) for link in links if link.what == "booking.url"]
    others = [str(link) for link in links if link.what != "booking.url"]
    problems = []
    if booking and not booking_url_set:
        problems.append("booking_url: people would be sent to a page that does not exist to book "
                        "the free call (" + ", ".join(booking) + "). Set NURTURE_BOOKING_URL to "
                        "your page for choosing a time, or put that page in booking.url of each "
                        "locale file")
    if others:
        problems.append("templates_dir: the share-resources email would link to a page that does "
                        "not exist (" + ", ".join(others) + "). Put your practice's own page there, "
                        "or remove the entry")
    return problems
