"""Which sequence a newly confirmed subscriber joins: rules read from sequences/selection.yaml."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nurture.content.sequences import CONDITION_FIELDS, KEY_PATTERN, NodeReader, read_condition
from nurture.domain.model import Condition, Profile
from nurture.domain.problems import ContentInvalid, ContentProblem

SELECTION_FILE: Final = "selection.yaml"
TOP_FIELDS: Final = {"rules", "default"}
RULE_FIELDS: Final = {"when", "sequence"}
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


def _sequence_key(reader: NodeReader, node: Node, what: str) -> str | None:
    value = str(node.value).strip() if isinstance(node, ScalarNode) else ""
    if not KEY_PATTERN.match(value):
        reader.problem(node, f"{what} must be a sequence key", "write the key of a sequence, "
                       "e.g. partner-hesitant (lowercase letters, digits and dashes)")
        return None
    return value


def _condition(reader: NodeReader, node: Node, what: str) -> Condition | None:
    if isinstance(node, MappingNode) and not any(
            str(key.value) in CONDITION_FIELDS for key, _ in node.value):
        reader.mapping(node, what, CONDITION_FIELDS)  # names any unknown field
        reader.problem(node, f"{what} has no condition",
                       "give at least one condition, or use `default` for everyone else")
        return None
    return read_condition(reader, node, what)


def load_selection_file(path: Path) -> tuple[Selection | None, list[ContentProblem]]:
    """Read the selection rules; returns them (None if unusable) and every problem found."""
    found: list[ContentProblem] = []
    reader = NodeReader(path, found)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        reader.problem(None, "the selection file does not exist",
                     "create it with `default: <sequence key>`; see the README")
        return None, found
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        found.append(ContentProblem(
            path, mark.line + 1 if mark is not None else 0,
            f"this is not valid YAML ({error.problem})",
            "check the indentation and quoting on this line"))
        return None, found
    except UnicodeDecodeError:
        reader.problem(None, "the file is not UTF-8 text", "save it as UTF-8")
        return None, found
    if root is None:
        found.append(ContentProblem(path, 1, "the file is empty",
                                             "add `default: <sequence key>`"))
        return None, found
    fields = reader.mapping(root, "the selection file", TOP_FIELDS)
    default: str | None = None
    default_line = 0
    if "default" not in fields:
        reader.problem(root, "there is no `default` sequence",
                     "add `default: <sequence key>` for people whom no rule matches")
    else:
        default = _sequence_key(reader, fields["default"][1], "`default`")
        default_line = fields["default"][1].start_mark.line + 1
    rules: list[SelectionRule] = []
    if "rules" in fields:
        rules_node = fields["rules"][1]
        if isinstance(rules_node, ScalarNode) and rules_node.value in ("", "null", "~"):
            pass
        elif not isinstance(rules_node, SequenceNode):
            reader.problem(rules_node, "`rules` must be a list", "start each rule with `- when:`")
        else:
            for index, rule_node in enumerate(rules_node.value):
                what = f"rule {index + 1}"
                rule_fields = reader.mapping(rule_node, what, RULE_FIELDS)
                if not rule_fields:
                    continue
                when = None
                if "when" not in rule_fields:
                    reader.problem(rule_node, f"{what} has no `when`", "add `when:` with a condition")
                else:
                    when = _condition(reader, rule_fields["when"][1], f"the `when` of {what}")
                sequence = None
                if "sequence" not in rule_fields:
                    reader.problem(rule_node, f"{what} has no `sequence`",
                                 "add `sequence: <sequence key>`")
                else:
                    sequence = _sequence_key(reader, rule_fields["sequence"][1],
                                                     f"the `sequence` of {what}")
                if when is not None and sequence is not None:
                    rules.append(SelectionRule(when=when, sequence=sequence,
                                               line=rule_node.start_mark.line + 1))
    if found or default is None:
        return None, found
    return Selection(rules=tuple(rules), default=default, source=path,
                     default_line=default_line), found


def load_selection(sequences_dir: Path) -> Selection:
    """The selection rules of a sequences folder; any problem raises ContentInvalid."""
    selection, problems = load_selection_file(sequences_dir / SELECTION_FILE)
    if selection is None:
        raise ContentInvalid(problems)
    return selection
