"""Reading YAML nodes of the content files into values, each problem kept with its file:line and a fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nurture.domain.problems import ContentProblem

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass
class NodeReader:
    """Turns YAML nodes into values while collecting problems against one file (the sequence
    files and sequences/selection.yaml)."""

    path: Path
    problems: list[ContentProblem]

    def problem(self, node: Node | None, message: str, fix: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.problems.append(ContentProblem(self.path, line, message, fix))

    def mapping(self, node: Node, what: str, allowed: set[str]) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping of `name: value` lines", f"write {what} as "
                         "indented `name: value` lines")
            return {}
        result: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value)
            if name in result:
                self.problem(key_node, f"'{name}' is given twice in {what}", "keep one of them")
            elif name not in allowed:
                self.problem(key_node, f"unknown field '{name}' in {what}",
                             f"use one of: {', '.join(sorted(allowed))}")
            result[name] = (key_node, value_node)
        return result

    def text(self, fields: dict[str, tuple[Node, Node]], name: str, what: str, *,
             required: bool, parent: Node) -> str | None:
        if name not in fields:
            if required:
                self.problem(parent, f"{what} has no '{name}'", f"add `{name}: ...` to {what}")
            return None
        node = fields[name][1]
        if not isinstance(node, ScalarNode) or not str(node.value).strip():
            self.problem(node, f"'{name}' in {what} must be a non-empty text", f"give `{name}` a value")
            return None
        return str(node.value)

    def string_list(self, node: Node, what: str) -> list[tuple[str, Node]]:
        if isinstance(node, ScalarNode):
            return [(str(node.value), node)]
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{what} must be a list", f"write {what} as [a, b]")
            return []
        items: list[tuple[str, Node]] = []
        for item in node.value:
            if not isinstance(item, ScalarNode):
                self.problem(item, f"{what} must hold plain words", "remove the nested value")
                continue
            items.append((str(item.value), item))
        return items


def read_flag(reader: NodeReader, fields: dict[str, tuple[Node, Node]], name: str, what: str) -> bool:
    """A true/false field of a step; false when absent, and a problem when it is anything else."""
    if name not in fields:
        return False
    node = fields[name][1]
    raw = str(getattr(node, "value", "")).strip().lower() if isinstance(node, ScalarNode) else ""
    if raw not in ("true", "false"):
        reader.problem(node, f"`{name}` in {what} must be true or false",
                       f"write `{name}: true` or `{name}: false`, or remove the line")
        return False
    return raw == "true"


