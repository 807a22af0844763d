"""Which sequence a newly confirmed subscriber joins: rules read from sequences/selection.yaml."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nurture.content.nodes import KEY_PATTERN, NodeReader
from nurture.content.sequences import CONDITION_FIELDS, read_condition
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

    @property
    def sequences(self) -> frozenset[str]:
        """Every sequence a confirmation can start: those the rules name, and the default."""
        return frozenset(rule.sequence for rule in self.rules) | {self.default}

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


def _compose(reader: NodeReader) -> Node | None:
    """The file's YAML node tree; None, with the problem, when it is missing, not YAML, not UTF-8
    or empty."""
    path = reader.path
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        reader.problem(None, "the selection file does not exist",
                       "create it with `default: <sequence key>`; see the README")
        return None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        reader.problems.append(ContentProblem(
            path, mark.line + 1 if mark is not None else 0,
            f"this is not valid YAML ({error.problem})",
            "check the indentation and quoting on this line"))
        return None
    except UnicodeDecodeError:
        reader.problem(None, "the file is not UTF-8 text", "save it as UTF-8")
        return None
    if root is None:
        reader.problems.append(ContentProblem(path, 1, "the file is empty", "add `default: <sequence key>`"))
    return root


def _read_default(
    reader: NodeReader, fields: dict[str, tuple[Node, Node]], root: Node
) -> tuple[str | None, int]:
    """The default sequence key (None when unusable) and its line."""
    if "default" not in fields:
        reader.problem(root, "there is no `default` sequence",
                       "add `default: <sequence key>` for people whom no rule matches")
        return None, 0
    node = fields["default"][1]
    return _sequence_key(reader, node, "`default`"), node.start_mark.line + 1


def _read_rule(reader: NodeReader, node: Node, index: int) -> SelectionRule | None:
    what = f"rule {index + 1}"
    fields = reader.mapping(node, what, RULE_FIELDS)
    if not fields:
        return None
    when = None
    if "when" not in fields:
        reader.problem(node, f"{what} has no `when`", "add `when:` with a condition")
    else:
        when = _condition(reader, fields["when"][1], f"the `when` of {what}")
    sequence = None
    if "sequence" not in fields:
        reader.problem(node, f"{what} has no `sequence`", "add `sequence: <sequence key>`")
    else:
        sequence = _sequence_key(reader, fields["sequence"][1], f"the `sequence` of {what}")
    if when is None or sequence is None:
        return None
    return SelectionRule(when=when, sequence=sequence, line=node.start_mark.line + 1)


def _read_rules(reader: NodeReader, node: Node) -> list[SelectionRule]:
    if isinstance(node, ScalarNode) and node.value in ("", "null", "~"):
        return []
    if not isinstance(node, SequenceNode):
        reader.problem(node, "`rules` must be a list", "start each rule with `- when:`")
        return []
    rules = (_read_rule(reader, rule_node, index) for index, rule_node in enumerate(node.value))
    return [rule for rule in rules if rule is not None]


def load_selection_file(path: Path) -> tuple[Selection | None, list[ContentProblem]]:
    """Read the selection rules; returns them (None if unusable) and every problem found."""
    found: list[ContentProblem] = []
    reader = NodeReader(path, found)
    root = _compose(reader)
    if root is None:
        return None, found
    fields = reader.mapping(root, "the selection file", TOP_FIELDS)
    default, default_line = _read_default(reader, fields, root)
    rules = _read_rules(reader, fields["rules"][1]) if "rules" in fields else []
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


def confirmation_sequences(sequences_dir: Path) -> frozenset[str]:
    """The sequences a confirmation can start; none when the selection file is missing or broken
    (the web app then refuses to start, and says why)."""
    selection, _ = load_selection_file(sequences_dir / SELECTION_FILE)
    return selection.sequences if selection is not None else frozenset()
