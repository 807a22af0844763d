"""Several SMTP relays, named in a small YAML file (NURTURE_RELAYS_FILE): each relay's name, URL,
weight, connections and limits (with a warm-up schedule), the strategy between them, and the
pacing per destination domain group. Every mistake names the file, the relay and the fix. No
environment is read here: config.py reads the file's path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from nurture.setting_values import (
    DEFAULT_GROUPS,
    DomainGroup,
    RelayLimits,
    SmtpEndpoint,
    Warmup,
    parse_smtp_url,
    with_defaults,
)

MAX_CONNECTIONS = 16
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_RELAY_KEYS = {"name", "url", "weight", "connections", "limits", "warmup"}
_LIMIT_KEYS = ("per_second", "per_minute", "per_hour", "per_day")

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
    connections: int = 1
    """SMTP connections this relay gets in each scheduler process."""
    limits: RelayLimits = field(default_factory=RelayLimits)


@dataclass(frozen=True)
class RelayPlan:
    strategy: Strategy
    relays: tuple[RelaySetting, ...]
    destinations: tuple[DomainGroup, ...] = DEFAULT_GROUPS

    def describe(self) -> str:
        """The relays without their passwords, safe to print and log."""
        return f"{self.strategy.value}: " + ", ".join(
            f"{relay.name}={relay.endpoint.describe()}"
            + (f" (weight {relay.weight:g})" if self.strategy is Strategy.WEIGHTED else "")
            + (f" x{relay.connections}" if relay.connections > 1 else "")
            + (f" [{relay.limits.describe()}]" if relay.limits.any else "")
            for relay in self.relays)


def single_relay(endpoint: SmtpEndpoint, connections: int = 1) -> RelayPlan:
    return RelayPlan(Strategy.FAILOVER, (RelaySetting(DEFAULT_RELAY, endpoint,
                                                      connections=connections),))


def _number(where: str, key: str, value: Any, *, whole: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0 or (
            whole and not isinstance(value, int)):
        kind = "a whole number" if whole else "a number"
        raise RelaysFileError(f"{where}: `{key}` must be {kind} above 0, e.g. 10")
    return float(value)


def _limits(where: str, item: dict[str, Any]) -> RelayLimits:
    limits = item.get("limits") or {}
    if not isinstance(limits, dict) or set(limits) - set(_LIMIT_KEYS):
        raise RelaysFileError(f"{where}: `limits` takes " + ", ".join(_LIMIT_KEYS)
                              + " (sends in each), e.g. `limits: {per_second: 14, per_day: 50000}`")
    values = {key: _number(where, f"limits.{key}", limits[key], whole=key == "per_day")
              for key in _LIMIT_KEYS if key in limits}
    warmup = item.get("warmup")
    schedule = None
    if warmup is not None:
        example = "e.g. `warmup: {start: 2026-12-01, daily: [50, 100, 200, 400]}`"
        if not isinstance(warmup, dict) or set(warmup) != {"start", "daily"}:
            raise RelaysFileError(f"{where}: `warmup` needs `start` (a date) and `daily` (the "
                                  f"cap of each day from it), {example}")
        start, daily = warmup["start"], warmup["daily"]
        if not isinstance(start, date):
            raise RelaysFileError(f"{where}: `warmup.start` must be a date like 2026-12-01")
        if not isinstance(daily, list) or not daily:
            raise RelaysFileError(f"{where}: `warmup.daily` must list each day's cap, {example}")
        caps = tuple(int(_number(where, "warmup.daily", cap, whole=True)) for cap in daily)
        schedule = Warmup(start, caps)
    per_day = values.pop("per_day", None)
    return RelayLimits(**values, per_day=int(per_day) if per_day is not None else None,
                       warmup=schedule)


def _relay(path: Path, index: int, item: Any, seen: set[str]) -> RelaySetting:
    where = f"{path}: relay {index + 1}"
    if not isinstance(item, dict) or set(item) - _RELAY_KEYS:
        raise RelaysFileError(f"{where}: give `name`, `url` and optionally `weight`, "
                              "`connections`, `limits` and `warmup`, nothing else")
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
    weight = _number(where, "weight", item.get("weight", 1))
    connections = int(_number(where, "connections", item.get("connections", 1), whole=True))
    if connections > MAX_CONNECTIONS:
        raise RelaysFileError(f"{where}: `connections` is at most {MAX_CONNECTIONS}; a few "
                              "connections per process are enough to hide a relay's latency")
    seen.add(name)
    return RelaySetting(name, endpoint, weight, connections, _limits(where, item))


def _destination(path: Path, index: int, item: Any, seen: set[str]) -> DomainGroup:
    where = f"{path}: destination {index + 1}"
    if not isinstance(item, dict) or not {"name", "domains"} <= set(item) or set(item) - {
            "name", "domains", "per_second", "concurrency"}:
        raise RelaysFileError(f"{where}: give `name`, `domains` and optionally `per_second` and "
                              "`concurrency`, e.g. `- {name: gmail, domains: [gmail.com, "
                              "googlemail.com], per_second: 20, concurrency: 5}`")
    name = str(item["name"])
    if not _NAME.match(name) or name in seen:
        raise RelaysFileError(f"{where}: the name '{name}' is {'taken' if name in seen else 'not valid'};"
                              " give each group its own short name of lowercase letters, digits "
                              "and dashes")
    where = f"{path}: destination '{name}'"
    domains = item["domains"]
    if not isinstance(domains, list) or not domains or not all(
            isinstance(domain, str) and _DOMAIN.match(domain.lower()) for domain in domains):
        raise RelaysFileError(f"{where}: `domains` must list domain names, e.g. [gmail.com]")
    seen.add(name)
    per_second, concurrency = item.get("per_second"), item.get("concurrency")
    return DomainGroup(name, frozenset(domain.lower() for domain in domains),
                       _number(where, "per_second", per_second) if per_second is not None else None,
                       int(_number(where, "concurrency", concurrency, whole=True))
                       if concurrency is not None else None)


def load_relays(path: Path) -> RelayPlan:
    """The relays the file names, in its order (the failover order)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RelaysFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise RelaysFileError(f"{path}: this is not valid YAML ({error})") from None
    if not isinstance(data, dict) or set(data) - {"strategy", "relays", "destinations"}:
        raise RelaysFileError(f"{path}: give `strategy:` (failover or weighted), `relays:`, "
                              "a list of `- name: ... url: ...`, and optionally `destinations:`")
    try:
        strategy = Strategy(str(data.get("strategy", Strategy.FAILOVER.value)))
    except ValueError:
        raise RelaysFileError(f"{path}: `strategy` must be failover or weighted") from None
    items = data.get("relays")
    if not isinstance(items, list) or not items:
        raise RelaysFileError(f"{path}: `relays` must list at least one relay")
    seen: set[str] = set()
    relays = tuple(_relay(path, index, item, seen) for index, item in enumerate(items))
    groups = data.get("destinations") or []
    if not isinstance(groups, list):
        raise RelaysFileError(f"{path}: `destinations` must be a list of domain groups")
    named: set[str] = set()
    own = tuple(_destination(path, index, item, named) for index, item in enumerate(groups))
    return RelayPlan(strategy, relays, with_defaults(own))
