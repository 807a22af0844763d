"""Which sequence a newly confirmed subscriber joins: rules read from sequences/selection.yaml."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nurture.model import Condition, Profile
from nurture.problems import ContentInvalid, ContentProblem
from nurture.reasons import KNOWN_REASONS
from nurture.sequences import KEY_PATTERN

SELECTION_FILE: Final = "selection.yaml"
TOP_FIELDS: Final = frozenset({"rules", "default"})
RULE_FIELDS: Final = frozenset({"when", "sequence"})
REASON_FIELDS: Final = ("hesitations_any", "hesitations_all", "hesitations_none")
CONDITION_FIELDS: Final = frozenset({*REASON_FIELDS, "discreet", "locale_in"})
# Holds the product's own emails (the confirmation); nobody is ever enrolled in it.
RESERVED_SEQUENCES: Final = frozenset({"system"})


@dataclass(frozen=True)
class SelectionRule:
    when: Condition
    sequence: str
    line: int = 0


@dataclass(frozen=True)
class Selection:
    """Rules tried in order; the first whose condition holds names the sequence, else `default`."""

    rules: tuple[SelectionRule, ...]
    default: str
    source: Path = Path()
    default_line: int = 0

    def choose(self, profile: Profile) -> str:
        for rule in self.rules:
            if rule.when.matches(profile):
                return rule.sequence
        return self.default

    def check_sequences(self, known: Iterable[str]) -> list[ContentProblem]:
        """A problem for every sequence key named here that the content does not define or that
        nobody may join."""
        keys = frozenset(known) - RESERVED_SEQUENCES
        hint = ", ".join(sorted(keys)) or "none"
        named = [(rule.sequence, rule.line) for rule in self.rules]
        named.append((self.default, self.default_line))
        problems = []
        for key, line in named:
            if key in RESERVED_SEQUENCES:
                problems.append(ContentProblem(
                    self.source, line, f"nobody can join the '{key}' sequence (it holds the "
                    "product's own emails)", f"choose one of: {hint}"))
            elif key not in keys:
                problems.append(ContentProblem(
                    self.source, line, f"there is no sequence '{key}'",
                    f"use one of the sequences in this folder ({hint}) or add {key}.yaml"))
        return problems


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[ContentProblem] = []

    def add(self, node: Node | None, message: str, fix: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.found.append(ContentProblem(self.path, line, message, fix))

    def mapping(self, node: Node, what: str, allowed: frozenset[str]) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            self.add(node, f"{what} must be a mapping of `name: value` lines",
                     f"write {what} as indented `name: value` lines")
            return {}
        fields: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value)
            if name in fields:
                self.add(key_node, f"'{name}' is given twice in {what}", "keep one of them")
            elif name not in allowed:
                self.add(key_node, f"unknown field '{name}' in {what}",
                         f"use one of: {', '.join(sorted(allowed))}")
            else:
                fields[name] = (key_node, value_node)
        return fields

    def sequence_key(self, node: Node, what: str) -> str | None:
        value = str(node.value).strip() if isinstance(node, ScalarNode) else ""
        if not KEY_PATTERN.match(value):
            self.add(node, f"{what} must be a sequence key", "write the key of a sequence, "
                     "e.g. partner-hesitant (lowercase letters, digits and dashes)")
            return None
        return value

    def words(self, node: Node, what: str) -> list[tuple[str, Node]]:
        if isinstance(node, ScalarNode):
            return [(str(node.value), node)]
        if not isinstance(node, SequenceNode):
            self.add(node, f"{what} must be a list", f"write {what} as [a, b]")
            return []
        words: list[tuple[str, Node]] = []
        for item in node.value:
            if isinstance(item, ScalarNode):
                words.append((str(item.value), item))
            else:
                self.add(item, f"{what} must hold plain words", "remove the nested value")
        return words


def _condition(problems: _Problems, node: Node, what: str) -> Condition | None:
    fields = problems.mapping(node, what, CONDITION_FIELDS)
    if not fields:
        if isinstance(node, MappingNode):
            problems.add(node, f"{what} has no condition",
                         "give at least one condition, or use `default` for everyone else")
        return None
    values: dict[str, Any] = {}
    for name in REASON_FIELDS:
        if name in fields:
            reasons = set()
            for reason, item in problems.words(fields[name][1], name):
                if reason not in KNOWN_REASONS:
                    problems.add(item, f"unknown hesitation reason '{reason}'",
                                 f"use one of: {', '.join(sorted(KNOWN_REASONS))}")
                reasons.add(reason)
            values[name] = frozenset(reasons)
    if "discreet" in fields:
        raw = str(getattr(fields["discreet"][1], "value", "")).lower()
        if raw in ("true", "false"):
            values["discreet"] = raw == "true"
        else:
            problems.add(fields["discreet"][1], "`discreet` must be true or false",
                         "write true or false")
    if "locale_in" in fields:
        values["locale_in"] = frozenset(word for word, _ in problems.words(fields["locale_in"][1],
                                                                          "locale_in"))
    return Condition(**values)


def load_selection_file(path: Path) -> tuple[Selection | None, list[ContentProblem]]:
    """Read the selection rules; returns them (None if unusable) and every problem found."""
    problems = _Problems(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.add(None, "the selection file does not exist",
                     "create it with `default: <sequence key>`; see the README")
        return None, problems.found
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        problems.found.append(ContentProblem(
            path, mark.line + 1 if mark is not None else 0,
            f"this is not valid YAML ({error.problem})",
            "check the indentation and quoting on this line"))
        return None, problems.found
    except UnicodeDecodeError:
        problems.add(None, "the file is not UTF-8 text", "save it as UTF-8")
        return None, problems.found
    if root is None:
        problems.found.append(ContentProblem(path, 1, "the file is empty",
                                             "add `default: <sequence key>`"))
        return None, problems.found
    fields = problems.mapping(root, "the selection file", TOP_FIELDS)
    default: str | None = None
    default_line = 0
    if "default" not in fields:
        problems.add(root, "there is no `default` sequence",
                     "add `default: <sequence key>` for people whom no rule matches")
    else:
        default = problems.sequence_key(fields["default"][1], "`default`")
        default_line = fields["default"][1].start_mark.line + 1
    rules: list[SelectionRule] = []
    if "rules" in fields:
        rules_node = fields["rules"][1]
        if isinstance(rules_node, ScalarNode) and rules_node.value in ("", "null", "~"):
            pass
        elif not isinstance(rules_node, SequenceNode):
            problems.add(rules_node, "`rules` must be a list", "start each rule with `- when:`")
        else:
            for index, rule_node in enumerate(rules_node.value):
                what = f"rule {index + 1}"
                rule_fields = problems.mapping(rule_node, what, RULE_FIELDS)
                if not rule_fields:
                    continue
                when = None
                if "when" not in rule_fields:
                    problems.add(rule_node, f"{what} has no `when`", "add `when:` with a condition")
                else:
                    when = _condition(problems, rule_fields["when"][1], f"the `when` of {what}")
                sequence = None
                if "sequence" not in rule_fields:
                    problems.add(rule_node, f"{what} has no `sequence`",
                                 "add `sequence: <sequence key>`")
                else:
                    sequence = problems.sequence_key(rule_fields["sequence"][1],
                                                     f"the `sequence` of {what}")
                if when is not None and sequence is not None:
                    rules.append(SelectionRule(when=when, sequence=sequence,
                                               line=rule_node.start_mark.line + 1))
    if problems.found or default is None:
        return None, problems.found
    return Selection(rules=tuple(rules), default=default, source=path,
                     default_line=default_line), problems.found


def load_selection(sequences_dir: Path) -> Selection:
    """The selection rules of a sequences folder; any problem raises ContentInvalid."""
    selection, problems = load_selection_file(sequences_dir / SELECTION_FILE)
    if selection is None:
        raise ContentInvalid(problems)
    return selection
