"""Several SMTP relays, named in a small YAML file (NURTURE_RELAYS_FILE): each relay's name, URL
and weight, and the strategy between them. Every mistake names the file, the relay and the fix.
No environment is read here: config.py reads the file's path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from nurture.setting_values import SmtpEndpoint, parse_smtp_url

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
DEFAULT_RELAY = "default"
"""The name of the one relay NURTURE_SMTP_URL gives when there is no relays file."""


class Strategy(StrEnum):
    FAILOVER = "failover"
    """In order: the first healthy relay takes everything."""
    WEIGHTED = "weighted"
    """Shares by weight among the healthy relays."""


class RelaysFileError(ValueError):
    """The relays file cannot be used; the message names the file, the relay and the fix."""


@dataclass(frozen=True)
class RelaySetting:
    name: str
    endpoint: SmtpEndpoint
    weight: float = 1.0


@dataclass(frozen=True)
class RelayPlan:
    strategy: Strategy
    relays: tuple[RelaySetting, ...]

    def describe(self) -> str:
        """The relays without their passwords, safe to print and log."""
        return f"{self.strategy.value}: " + ", ".join(
            f"{relay.name}={relay.endpoint.describe()}"
            + (f" (weight {relay.weight:g})" if self.strategy is Strategy.WEIGHTED else "")
            for relay in self.relays)


def single_relay(endpoint: SmtpEndpoint) -> RelayPlan:
    return RelayPlan(Strategy.FAILOVER, (RelaySetting(DEFAULT_RELAY, endpoint),))


def _relay(path: Path, index: int, item: Any, seen: set[str]) -> RelaySetting:
    where = f"{path}: relay {index + 1}"
    if not isinstance(item, dict) or set(item) - {"name", "url", "weight"}:
        raise RelaysFileError(f"{where}: give `name`, `url` and optionally `weight`, nothing else")
    name = str(item.get("name", ""))
    if not _NAME.match(name) or name in seen:
        raise RelaysFileError(f"{where}: the name '{name}' is {'taken' if name in seen else 'not valid'};"
                              " give each relay its own short name of lowercase letters, digits "
                              "and dashes, e.g. ses or backup")
    where = f"{path}: relay '{name}'"
    try:
        endpoint = parse_smtp_url(str(item.get("url", "")))
    except ValueError as error:
        raise RelaysFileError(f"{where}: its url is not usable: {error}") from None
    weight = item.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
        raise RelaysFileError(f"{where}: `weight` must be a number above 0, e.g. 1 or 3")
    seen.add(name)
    return RelaySetting(name, endpoint, float(weight))


def load_relays(path: Path) -> RelayPlan:
    """The relays the file names, in its order (the failover order)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RelaysFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise RelaysFileError(f"{path}: this is not valid YAML ({error})") from None
    if not isinstance(data, dict) or set(data) - {"strategy", "relays"}:
        raise RelaysFileError(f"{path}: give `strategy:` (failover or weighted) and `relays:`, "
                              "a list of `- name: ... url: ...`")
    try:
        strategy = Strategy(str(data.get("strategy", Strategy.FAILOVER.value)))
    except ValueError:
        raise RelaysFileError(f"{path}: `strategy` must be failover or weighted") from None
    items = data.get("relays")
    if not isinstance(items, list) or not items:
        raise RelaysFileError(f"{path}: `relays` must list at least one relay")
    seen: set[str] = set()
    return RelayPlan(strategy, tuple(_relay(path, index, item, seen)
                                     for index, item in enumerate(items)))
