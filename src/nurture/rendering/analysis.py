"""What a template's syntax tree shows: personal values used other than printed, the hesitation keys
it tests, and so what one step's email can depend on (for the checks and the structure cache)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from jinja2 import nodes

from nurture.rendering.vocabulary import PERSONAL_VARIABLES

# Where a personal value may appear: printed as is, or tested for emptiness.
_PRINTED: Final = "print"
_TESTED: Final = "test"
_HARMLESS: Final = (_PRINTED, _TESTED)


def _children_and_roles(node: nodes.Node, role: str) -> list[tuple[nodes.Node, str]]:
    """The node's children, each with the role a personal value there would play."""
    passed = role if role in _HARMLESS else ""
    if isinstance(node, nodes.Output):
        return [(printed, _PRINTED) for printed in node.nodes]
    if isinstance(node, nodes.If):
        statements = (*node.body, *node.elif_, *node.else_)
        return [(node.test, _TESTED), *((statement, "") for statement in statements)]
    if isinstance(node, nodes.CondExpr):
        branches = [node.expr1] if node.expr2 is None else [node.expr1, node.expr2]
        return [(node.test, _TESTED), *((branch, passed) for branch in branches)]
    if isinstance(node, (nodes.And, nodes.Or)):
        return [(node.left, passed), (node.right, passed)]
    if isinstance(node, nodes.Not) and role == _TESTED:
        return [(node.node, _TESTED)]
    return [(child, "") for child in node.iter_child_nodes()]


def personal_misuse(ast: nodes.Template) -> list[tuple[str, int]]:
    """Personal variables used other than printed as is or tested for emptiness.

    A placeholder stands in for them until the very end, so `{{ first_name|upper }}` would upper-case
    the placeholder and `{% if first_name == "Bo" %}` would compare it.
    """
    found: list[tuple[str, int]] = []

    def visit(node: nodes.Node, role: str) -> None:
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name in PERSONAL_VARIABLES and role not in _HARMLESS:
                found.append((node.name, node.lineno))
            return
        for child, child_role in _children_and_roles(node, role):
            visit(child, child_role)

    visit(ast, "")
    return found


@dataclass(frozen=True)
class HesitationUse:
    constants: tuple[tuple[str, int], ...]
    """Reason keys tested with `'key' in hesitations`, with their lines."""
    only_constants: bool
    """False when `hesitations` is used any other way (printed, looped, passed on)."""


def hesitation_use(ast: nodes.Template) -> HesitationUse:
    constants: list[tuple[str, int]] = []
    accounted = 0
    for compare in ast.find_all(nodes.Compare):
        left = compare.expr
        for operand in compare.ops:
            right = operand.expr
            if (
                operand.op in ("in", "notin")
                and isinstance(right, nodes.Name)
                and right.name == "hesitations"
                and isinstance(left, nodes.Const)
                and isinstance(left.value, str)
            ):
                constants.append((left.value, compare.lineno))
                accounted += 1
            left = right
    names = sum(1 for name in ast.find_all(nodes.Name) if name.name == "hesitations" and name.ctx == "load")
    only_constants = names == accounted and not pulls_in_templates(ast)
    return HesitationUse(tuple(constants), only_constants=only_constants)


def _named_include(node: nodes.Include) -> str | None:
    template = node.template
    if isinstance(template, nodes.Const) and isinstance(template.value, str):
        return template.value
    return None


def included_names(ast: nodes.Template) -> tuple[str, ...]:
    """The templates (partials) the tree includes by a constant name, such as
    `{% include "emails/partials/talk-safety.md" %}`."""
    return tuple(name for node in ast.find_all(nodes.Include) if (name := _named_include(node)))


def pulls_in_templates(ast: nodes.Template) -> bool:
    """Whether the template pulls in another in a way this analysis cannot see: an import, an
    extends, or an include whose name is an expression. Partials included by a constant name are
    not counted: whoever asks for `step_facts` passes their trees along with the rest."""
    if next(iter(ast.find_all((nodes.Import, nodes.FromImport, nodes.Extends))), None) is not None:
        return True
    return any(_named_include(node) is None for node in ast.find_all(nodes.Include))


def first_line(ast: nodes.Template, variable: str) -> int:
    """The line where the template first names the variable (1 when it does not)."""
    return next((n.lineno for n in ast.find_all(nodes.Name) if n.name == variable), 1)


@dataclass(frozen=True)
class StepFacts:
    """What the structure of one step's email can depend on, found once per step."""

    reasons: frozenset[str] | None
    """Reason keys the templates test; None when they use `hesitations` in other ways."""
    uses_first_name: bool


def step_facts(asts: Sequence[nodes.Template]) -> StepFacts:
    """The facts of a step from the trees of its subject, preheader, body and layouts, and of every
    partial they include by name (see `included_names`)."""
    uses = [hesitation_use(ast) for ast in asts]
    reasons: frozenset[str] | None = None
    if all(use.only_constants for use in uses):
        reasons = frozenset(key for use in uses for key, _ in use.constants)
    uses_first_name = any(
        pulls_in_templates(ast) or any(name.name == "first_name" for name in ast.find_all(nodes.Name))
        for ast in asts
    )
    return StepFacts(reasons=reasons, uses_first_name=uses_first_name)
