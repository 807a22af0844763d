"""The checks of templates before anything is sent: unknown variables, personal values changed or
compared, unknown hesitation keys, missing files and footer parts, and a trial render of each step.
Each problem names a file and line and says how to fix it."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final

import jinja2
from jinja2 import meta, nodes

from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.problems import ContentProblem, Severity
from nurture.domain.reasons import KNOWN_REASONS
from nurture.rendering.analysis import first_line, hesitation_use, personal_misuse
from nurture.rendering.compose import Composer, step_strings, template_context
from nurture.rendering.locales import Locales
from nurture.rendering.types import Brand
from nurture.rendering.vocabulary import (
    BODY_VARIABLES,
    HTML_LAYOUT,
    LAYOUT_VARIABLES,
    PERSONAL_VARIABLES,
    TEXT_LAYOUT,
)

_BODY_SUFFIXES: Final = (".md", ".html")
# A personal value right after "<" would be an autolink in real life but plain text as a placeholder.
_AUTOLINK_VARIABLE: Final = re.compile(r"<\{\{-?\s*(" + "|".join(PERSONAL_VARIABLES) + r")\b")
_TRIAL_BRAND: Final = Brand(
    sender="Check <check@example.org>",
    discreet_sender_name="Notes",
    postal_address="1 Example Street",
    base_url="https://example.org",
)
_LAYOUT_NEEDS: Final = {
    "unsubscribe_url": "an unsubscribe link",
    "preferences_url": "a pause / preferences link",
    "postal_address": "the postal address",
    "crisis": "the crisis-resources block",
    "body": "the body",
}

Where = tuple[Path, int]


class _Problems:
    """The problems of one step, in the order found."""

    def __init__(self) -> None:
        self.found: list[ContentProblem] = []

    def add(self, where: Where, message: str, fix: str, warn: bool = False) -> None:
        severity = Severity.WARNING if warn else Severity.ERROR
        self.found.append(ContentProblem(where[0], where[1], message, fix, severity))

    def only_warnings(self) -> bool:
        return all(p.severity is Severity.WARNING for p in self.found)


def _check_tree(
    composer: Composer, ast: nodes.Template, place: Callable[[int], Where], what: str, out: _Problems
) -> None:
    """Unknown variables, personal values changed or compared, and unknown hesitation keys."""
    allowed = BODY_VARIABLES | set(composer.env.globals)
    known = ", ".join(sorted(BODY_VARIABLES))
    try:
        undeclared = meta.find_undeclared_variables(ast)
    except jinja2.TemplateSyntaxError as error:
        # Found only when compiling, such as a filter that does not exist.
        message = (error.message or "it cannot be compiled").rstrip(".")
        out.add(place(error.lineno), f"{what}: {message}",
                "correct the name, or use one of Jinja's own filters (such as upper, title, "
                "default)")
        return
    for name in sorted(undeclared - allowed):
        out.add(place(first_line(ast, name)), f"{what}: unknown variable '{name}'", f"use one of: {known}")
    for name, line in personal_misuse(ast):
        out.add(
            place(line),
            f"{what}: '{name}' is changed or compared; personal values may only be printed "
            f"as {{{{ {name} }}}} or tested with {{% if {name} %}}",
            f"print it plainly, e.g. {{{{ {name} }}}}, and choose wording with "
            f"{{% if {name} %}}...{{% else %}}...{{% endif %}}",
        )
    for key, line in hesitation_use(ast).constants:
        if key not in KNOWN_REASONS:
            out.add(
                place(line),
                f"{what}: unknown hesitation '{key}'",
                f"use one of: {', '.join(sorted(KNOWN_REASONS))}",
            )


def _check_step_strings(composer: Composer, step: Step, at_step: Where, out: _Problems) -> None:
    # Subjects and preheaders live in the sequence file, so their problems point at the step.
    for field, source in step_strings(step):
        try:
            ast = composer.env.parse(source)
        except jinja2.TemplateSyntaxError as error:
            out.add(at_step, f"{field}: {error.message}", "correct the Jinja syntax")
            continue
        _check_tree(composer, ast, lambda _line: at_step, field, out)
    if step.discreet_subject is None:
        out.add(
            at_step,
            "no discreet_subject: discreet subscribers will see the regular subject",
            "add a neutral discreet_subject",
            warn=True,
        )


def _parse_body(
    composer: Composer, step: Step, at_step: Where, out: _Problems
) -> tuple[str, nodes.Template] | None:
    """The body template's source and tree; None (with the problem) when it cannot be had."""
    if not step.template.endswith(_BODY_SUFFIXES):
        out.add(at_step, f"template '{step.template}' is neither .md nor .html", "rename it")
        return None
    name = f"emails/{step.template}"
    try:
        source = composer.source(name)
    except jinja2.TemplateNotFound:
        out.add(
            at_step,
            f"template '{step.template}' not found",
            f"create templates/emails/{step.template} or correct the name",
        )
        return None
    path = _body_path(composer, step)
    try:
        return source, composer.env.parse(source, name, str(path))
    except jinja2.TemplateSyntaxError as error:
        out.add((path, error.lineno), error.message or "syntax error", "correct the Jinja syntax")
        return None


def _body_path(composer: Composer, step: Step) -> Path:
    return composer.templates_dir / "emails" / step.template


def _check_autolinks(source: str, path: Path, out: _Problems) -> None:
    for match in _AUTOLINK_VARIABLE.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        out.add(
            (path, line),
            f"'{match.group(1)}' is written as an autolink <...>",
            f"write a link instead: [some words]({{{{ {match.group(1)} }}}})",
        )


def check_step(composer: Composer, locales: Locales, sequence: Sequence, step: Step, *,
               where: Where | None = None, locales_to_try: tuple[str, ...] | None = None
               ) -> list[ContentProblem]:
    """Problems with a step's templates, as file:line with a fix; empty when it can render.

    `where` is where the subject lines are written (by default the step in its sequence file);
    the trial render uses `locales_to_try` (by default every locale file)."""
    out = _Problems()
    at_step = where or (sequence.source, step.line)
    _check_step_strings(composer, step, at_step, out)
    body = _parse_body(composer, step, at_step, out)
    if body is None:
        return out.found
    source, ast = body
    path = _body_path(composer, step)
    _check_tree(composer, ast, lambda line: (path, line), "body", out)
    if step.template.endswith(".md"):
        _check_autolinks(source, path, out)
    if out.only_warnings():
        tried = locales_to_try if locales_to_try is not None else tuple(locales.keys())
        out.found.extend(_trial_render(composer, locales, sequence, step, path, at_step, tried))
    return out.found


def _trial_render(
    composer: Composer, locales: Locales, sequence: Sequence, step: Step, path: Path,
    at_step: Where, tried: tuple[str, ...],
) -> list[ContentProblem]:
    """Renders the step for a few personas, to catch what only shows at run time."""
    problems: dict[str, ContentProblem] = {}
    personas = itertools.product(
        tried,
        (frozenset(), KNOWN_REASONS),
        (False, True),
        ("", "Sam"),
    )
    for locale, hesitations, discreet, first_name in personas:
        profile = Profile(hesitations=hesitations, discreet=discreet, locale=locale)
        context = template_context(
            sequence,
            step,
            profile,
            locales.find(locale),
            brand=_TRIAL_BRAND,
            values=dict.fromkeys(PERSONAL_VARIABLES, "x") | {"first_name": first_name},
        )
        # Any exception is a content problem for the marketer, not a crash of the check.
        try:
            composer.headers(step, context, _TRIAL_BRAND, discreet)
        except Exception as error:
            message = f"subject or preheader fails (locale {locale}): {type(error).__name__}: {error}"
            problems.setdefault(
                message, ContentProblem(at_step[0], at_step[1], message, "correct the expression")
            )
        try:
            composer.body_parts(step, context, discreet=discreet)
        except Exception as error:
            message = f"fails when rendered (locale {locale}): {type(error).__name__}: {error}"
            line = _template_line(error.__traceback__, str(path))
            problems.setdefault(
                message, ContentProblem(path, line, message, "correct the expression on this line")
            )
    return list(problems.values())


def _template_line(tb: TracebackType | None, filename: str) -> int:
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# ---------------------------------------------------------------------------------------------
# Layouts


def check_layouts(composer: Composer, locales: Locales) -> list[ContentProblem]:
    """Problems with the layouts (and the locale files whose footer they show: those that cannot
    be read, and those that leave a reader without help or resources in the wrong format)."""
    problems = list(locales.problems) + list(locales.rule_problems)
    for name, extra in ((HTML_LAYOUT, ("preheader",)), (TEXT_LAYOUT, ())):
        problems.extend(_check_layout(composer, name, extra))
    return problems


def _check_layout(composer: Composer, name: str, extra: tuple[str, ...]) -> list[ContentProblem]:
    path = composer.templates_dir / name
    try:
        source = path.read_text(encoding="utf-8")
    except OSError:
        return [ContentProblem(path, 0, "layout missing", f"create templates/{name}")]
    try:
        ast = composer.env.parse(source, name, str(path))
    except jinja2.TemplateSyntaxError as error:
        return [ContentProblem(path, error.lineno, error.message or "syntax error", "correct it")]
    used = meta.find_undeclared_variables(ast)
    problems = [
        ContentProblem(
            path,
            first_line(ast, variable),
            f"unknown variable '{variable}'",
            f"use one of: {', '.join(sorted(LAYOUT_VARIABLES))}",
        )
        for variable in sorted(used - LAYOUT_VARIABLES - set(composer.env.globals))
    ]
    needs = {**_LAYOUT_NEEDS, **{e: "the hidden preheader" for e in extra}}
    problems += [
        ContentProblem(path, 1, f"the layout lacks {what} ({{{{ {variable} }}}})", "add it")
        for variable, what in needs.items()
        if variable not in used
    ]
    if name == HTML_LAYOUT:
        problems += _unlinked(ast, source, used, path)
    problems += [
        ContentProblem(
            path,
            line,
            f"'{variable}' is changed or compared; it may only be printed as is",
            f"print it plainly: {{{{ {variable} }}}}",
        )
        for variable, line in personal_misuse(ast)
    ]
    return problems


def _unlinked(ast: nodes.Template, source: str, used: set[str], path: Path) -> list[ContentProblem]:
    """The unsubscribe and preferences links, when the HTML layout prints them but not as a link."""
    return [
        ContentProblem(
            path,
            first_line(ast, variable),
            f"{variable} is not the href of a visible link",
            f'use <a href="{{{{ {variable} }}}}">...</a>',
        )
        for variable in ("unsubscribe_url", "preferences_url")
        if variable in used and not _is_link_target(source, variable)
    ]


def _is_link_target(source: str, variable: str) -> bool:
    pattern = r"<a\b[^>]*\bhref\s*=\s*[\"']\{\{-?\s*" + re.escape(variable) + r"\s*-?\}\}"
    return re.search(pattern, source, re.IGNORECASE) is not None
