"""Turns a sequence step and a recipient into a finished email (inlined HTML, plain text, headers).

Marketer templates run in Jinja's sandbox; CSS is inlined once per distinct structure (see DESIGN.md).
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Final

import jinja2
import premailer
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.problems import ContentProblem, Severity
from nurture.domain.reasons import KNOWN_REASONS
from nurture.rendering.cache import Structure, StructureCache
from nurture.rendering.escaping import ESCAPERS, UNSAFE_CHARS, URL, Context, check_url, context_at, one_line
from nurture.rendering.locales import Locales
from nurture.rendering.mime import from_header
from nurture.rendering.text import html_to_text, markdown_to_text, tidy_text, wrap_line, wrap_text
from nurture.rendering.types import Brand, CacheStats, Links, LocaleData, Recipient, RenderedEmail
from nurture.rendering.vocabulary import (
    BODY_VARIABLES,
    HTML_LAYOUT,
    LAYOUT_VARIABLES,
    PERSONAL_VARIABLES,
    TEXT_LAYOUT,
)

# The same options for the fast and the naive path: the equivalence test depends on it.
PREMAILER_OPTIONS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "disable_validation": True,
        "allow_network": False,
        "allow_loading_external_files": False,
        "disable_link_rewrites": True,
        "cssutils_logging_level": logging.CRITICAL,
    }
)

DEFAULT_CACHE_SIZE: Final = 4096

_BODY_SUFFIXES: Final = (".md", ".html")
_IMAGE_TAG: Final = re.compile(r"<(?:img|image)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>", re.IGNORECASE)
# A personal value right after "<" would be an autolink in real life but plain text as a placeholder.
_AUTOLINK_VARIABLE: Final = re.compile(r"<\{\{-?\s*(" + "|".join(PERSONAL_VARIABLES) + r")\b")


_TRIAL_BRAND: Final = Brand(
    sender="Check <check@example.org>",
    discreet_sender_name="Notes",
    postal_address="1 Example Street",
    base_url="https://example.org",
)


# ---------------------------------------------------------------------------------------------
# Template analysis (used by the checks and by the cache key)


def _personal_misuse(ast: nodes.Template) -> list[tuple[str, int]]:
    """Personal variables used other than printed as is or tested for emptiness.

    A placeholder stands in for them until the very end, so `{{ first_name|upper }}` would upper-case
    the placeholder and `{% if first_name == "Bo" %}` would compare it.
    """
    found: list[tuple[str, int]] = []

    def visit(node: nodes.Node, role: str) -> None:
        if isinstance(node, nodes.Name):
            if node.ctx == "load" and node.name in PERSONAL_VARIABLES and role not in ("print", "test"):
                found.append((node.name, node.lineno))
            return
        passed = role if role in ("print", "test") else ""
        if isinstance(node, nodes.Output):
            for printed in node.nodes:
                visit(printed, "print")
        elif isinstance(node, nodes.If):
            visit(node.test, "test")
            for statement in (*node.body, *node.elif_, *node.else_):
                visit(statement, "")
        elif isinstance(node, nodes.CondExpr):
            visit(node.test, "test")
            visit(node.expr1, passed)
            if node.expr2 is not None:
                visit(node.expr2, passed)
        elif isinstance(node, (nodes.And, nodes.Or)):
            visit(node.left, passed)
            visit(node.right, passed)
        elif isinstance(node, nodes.Not) and role == "test":
            visit(node.node, "test")
        else:
            for child in node.iter_child_nodes():
                visit(child, "")

    visit(ast, "")
    return found


@dataclass(frozen=True)
class _HesitationUse:
    constants: tuple[tuple[str, int], ...]
    """Reason keys tested with `'key' in hesitations`, with their lines."""
    only_constants: bool
    """False when `hesitations` is used any other way (printed, looped, passed on)."""


def _hesitation_use(ast: nodes.Template) -> _HesitationUse:
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
    only_constants = names == accounted and not _pulls_in_templates(ast)
    return _HesitationUse(tuple(constants), only_constants=only_constants)


def _pulls_in_templates(ast: nodes.Template) -> bool:
    """Whether the template includes, imports or extends another, which this analysis cannot see."""
    kinds = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
    return next(iter(ast.find_all(kinds)), None) is not None


@dataclass(frozen=True)
class _StepFacts:
    """What the structure of one step's email can depend on, found once per step."""

    reasons: frozenset[str] | None
    """Reason keys the templates test; None when they use `hesitations` in other ways."""
    uses_first_name: bool


# ---------------------------------------------------------------------------------------------
# The library


def _is_html_template(name: str | None) -> bool:
    return name is not None and name.endswith(".html")


class TemplateLibrary:
    """One load of `templates/`: Jinja sandbox, locales, and the cache of inlined structures.

    Load a new library for each content version; nothing here re-reads files that changed.
    """

    def __init__(self, templates_dir: Path, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.templates_dir = templates_dir
        self._env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(templates_dir),
            autoescape=_is_html_template,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
            cache_size=1000,
        )
        # Raw HTML in Markdown is off: marketers who need HTML write an .html body.
        self._markdown = MarkdownIt("commonmark", {"html": False})
        nonce = secrets.token_hex(5)
        self._placeholders = {
            name: f"nurtureph{nonce}v{index}x" for index, name in enumerate(PERSONAL_VARIABLES)
        }
        self._placeholder_names = dict(enumerate(PERSONAL_VARIABLES))
        self._placeholder_prefix = f"nurtureph{nonce}"
        self._placeholder_re = re.compile(f"nurtureph{nonce}v([0-9])x")
        self._strings: dict[str, jinja2.Template] = {}
        self._facts: dict[tuple[str, ...], _StepFacts] = {}
        self._cache = StructureCache(cache_size)
        self._locales = Locales(templates_dir / "locales")

    def locale_data(self, locale: str) -> LocaleData:
        """The locale's data: exact match ("en-IN"), then its language ("en"), then "en"."""
        return self._locales.find(locale)

    # -- checks ----------------------------------------------------------------------------

    def _body_path(self, step: Step) -> Path:
        return self.templates_dir / "emails" / step.template

    def _step_strings(self, step: Step) -> list[tuple[str, str]]:
        strings = [("subject", step.subject), ("preheader", step.preheader)]
        if step.discreet_subject is not None:
            strings.append(("discreet_subject", step.discreet_subject))
        if step.discreet_preheader is not None:
            strings.append(("discreet_preheader", step.discreet_preheader))
        return strings

    def check_step(self, sequence: Sequence, step: Step) -> list[ContentProblem]:
        """Problems with a step's templates, as file:line with a fix; empty when it can render."""
        problems: list[ContentProblem] = []
        at_step = (sequence.source, step.line)
        known = ", ".join(sorted(BODY_VARIABLES))

        def problem(where: tuple[Path, int], message: str, fix: str, warn: bool = False) -> None:
            severity = Severity.WARNING if warn else Severity.ERROR
            problems.append(ContentProblem(where[0], where[1], message, fix, severity))

        def check_ast(ast: nodes.Template, place: Callable[[int], tuple[Path, int]], what: str) -> None:
            allowed = BODY_VARIABLES | set(self._env.globals)
            for name in sorted(meta.find_undeclared_variables(ast) - allowed):
                problem(
                    place(_first_line(ast, name)),
                    f"{what}: unknown variable '{name}'",
                    f"use one of: {known}",
                )
            for name, line in _personal_misuse(ast):
                problem(
                    place(line),
                    f"{what}: '{name}' is changed or compared; personal values may only be printed "
                    f"as {{{{ {name} }}}} or tested with {{% if {name} %}}",
                    f"print it plainly, e.g. {{{{ {name} }}}}, and choose wording with "
                    f"{{% if {name} %}}...{{% else %}}...{{% endif %}}",
                )
            for key, line in _hesitation_use(ast).constants:
                if key not in KNOWN_REASONS:
                    problem(
                        place(line),
                        f"{what}: unknown hesitation '{key}'",
                        f"use one of: {', '.join(sorted(KNOWN_REASONS))}",
                    )

        # Subjects and preheaders live in the sequence file, so their problems point at the step.
        for field, source in self._step_strings(step):
            try:
                ast = self._env.parse(source)
            except jinja2.TemplateSyntaxError as error:
                problem(at_step, f"{field}: {error.message}", "correct the Jinja syntax")
                continue
            check_ast(ast, lambda _line: at_step, field)
        if step.discreet_subject is None:
            problem(
                at_step,
                "no discreet_subject: discreet subscribers will see the regular subject",
                "add a neutral discreet_subject",
                warn=True,
            )

        if not step.template.endswith(_BODY_SUFFIXES):
            problem(at_step, f"template '{step.template}' is neither .md nor .html", "rename it")
            return problems
        name = f"emails/{step.template}"
        path = self._body_path(step)
        loader = self._env.loader
        assert loader is not None
        try:
            source, _, _ = loader.get_source(self._env, name)
        except jinja2.TemplateNotFound:
            problem(
                at_step,
                f"template '{step.template}' not found",
                f"create templates/emails/{step.template} or correct the name",
            )
            return problems
        try:
            ast = self._env.parse(source, name, str(path))
        except jinja2.TemplateSyntaxError as error:
            problem((path, error.lineno), error.message or "syntax error", "correct the Jinja syntax")
            return problems
        check_ast(ast, lambda line: (path, line), "body")
        if step.template.endswith(".md"):
            for match in _AUTOLINK_VARIABLE.finditer(source):
                line = source.count("\n", 0, match.start()) + 1
                problem(
                    (path, line),
                    f"'{match.group(1)}' is written as an autolink <...>",
                    f"write a link instead: [some words]({{{{ {match.group(1)} }}}})",
                )
        if not problems or all(p.severity is Severity.WARNING for p in problems):
            problems.extend(self._trial_render(sequence, step, path))
        return problems

    def _trial_render(self, sequence: Sequence, step: Step, path: Path) -> list[ContentProblem]:
        """Renders the step for a few personas, to catch what only shows at run time."""
        problems: dict[str, ContentProblem] = {}
        personas = itertools.product(
            self._locales.keys(),
            (frozenset(), KNOWN_REASONS),
            (False, True),
            ("", "Sam"),
        )
        for locale, hesitations, discreet, first_name in personas:
            profile = Profile(hesitations=hesitations, discreet=discreet, locale=locale)
            context = self._context(
                sequence,
                step,
                profile,
                self.locale_data(locale),
                brand=_TRIAL_BRAND,
                values=dict.fromkeys(PERSONAL_VARIABLES, "x") | {"first_name": first_name},
            )
            # Any exception is a content problem for the marketer, not a crash of the check.
            try:
                self._headers(step, context, _TRIAL_BRAND, discreet)
            except Exception as error:
                message = f"subject or preheader fails (locale {locale}): {type(error).__name__}: {error}"
                problems.setdefault(
                    message, ContentProblem(sequence.source, step.line, message, "correct the expression")
                )
            try:
                self._body_parts(step, context, discreet=discreet)
            except Exception as error:
                message = f"fails when rendered (locale {locale}): {type(error).__name__}: {error}"
                line = _template_line(error.__traceback__, str(path))
                problems.setdefault(
                    message, ContentProblem(path, line, message, "correct the expression on this line")
                )
        return list(problems.values())

    def check_layouts(self) -> list[ContentProblem]:
        """Problems with the layouts (and the locale files whose footer they show)."""
        problems = list(self._locales.problems)
        required = {
            "unsubscribe_url": "an unsubscribe link",
            "preferences_url": "a pause / preferences link",
            "postal_address": "the postal address",
            "crisis": "the crisis-resources block",
            "body": "the body",
        }
        for name, extra in ((HTML_LAYOUT, ("preheader",)), (TEXT_LAYOUT, ())):
            path = self.templates_dir / name
            try:
                source = path.read_text(encoding="utf-8")
            except OSError:
                problems.append(ContentProblem(path, 0, "layout missing", f"create templates/{name}"))
                continue
            try:
                ast = self._env.parse(source, name, str(path))
            except jinja2.TemplateSyntaxError as error:
                problems.append(
                    ContentProblem(path, error.lineno, error.message or "syntax error", "correct it")
                )
                continue
            used = meta.find_undeclared_variables(ast)
            for variable in sorted(used - LAYOUT_VARIABLES - set(self._env.globals)):
                problems.append(
                    ContentProblem(
                        path,
                        _first_line(ast, variable),
                        f"unknown variable '{variable}'",
                        f"use one of: {', '.join(sorted(LAYOUT_VARIABLES))}",
                    )
                )
            needs = {**required, **{e: "the hidden preheader" for e in extra}}
            for variable, what in needs.items():
                if variable not in used:
                    problems.append(
                        ContentProblem(path, 1, f"the layout lacks {what} ({{{{ {variable} }}}})", "add it")
                    )
            if name == HTML_LAYOUT:
                for variable in ("unsubscribe_url", "preferences_url"):
                    if variable in used and not _is_link_target(source, variable):
                        problems.append(
                            ContentProblem(
                                path,
                                _first_line(ast, variable),
                                f"{variable} is not the href of a visible link",
                                f'use <a href="{{{{ {variable} }}}}">...</a>',
                            )
                        )
            for variable, line in _personal_misuse(ast):
                problems.append(
                    ContentProblem(
                        path,
                        line,
                        f"'{variable}' is changed or compared; it may only be printed as is",
                        f"print it plainly: {{{{ {variable} }}}}",
                    )
                )
        return problems

    # -- rendering -------------------------------------------------------------------------

    def _string_template(self, source: str) -> jinja2.Template:
        template = self._strings.get(source)
        if template is None:
            template = self._env.from_string(source)
            self._strings[source] = template
        return template

    def _subject_sources(self, step: Step, discreet: bool) -> tuple[str, str]:
        if discreet:
            subject = step.discreet_subject if step.discreet_subject is not None else step.subject
            preheader = step.discreet_preheader if step.discreet_preheader is not None else step.preheader
            return subject, preheader
        return step.subject, step.preheader

    def _context(
        self,
        sequence: Sequence,
        step: Step,
        profile: Profile,
        locale: LocaleData,
        *,
        brand: Brand,
        values: Mapping[str, str],
    ) -> dict[str, Any]:
        booking = {"url": brand.booking_url or locale.booking.get("url", ""),
                   "label": locale.booking.get("label", "")}
        return {
            "booking": booking,
            "booked_url": values["booked_url"],
            "first_name": values["first_name"],
            "hesitations": profile.hesitations,
            "discreet": profile.discreet,
            "locale": profile.locale,
            "sequence": sequence.key,
            "step": step.key,
            "crisis": locale.crisis,
            "resources": locale.resources,
            "postal_address": brand.postal_address,
            "unsubscribe_url": values["unsubscribe_url"],
            "preferences_url": values["preferences_url"],
            "action_url": values["action_url"],
        }

    def _body_parts(self, step: Step, context: Mapping[str, Any], *, discreet: bool) -> tuple[str, str]:
        """The body as an HTML fragment and as plain text."""
        template = self._env.get_template(f"emails/{step.template}")
        source = template.render(context)
        if step.template.endswith(".md"):
            tokens = self._markdown.parse(source)
            html = self._markdown.renderer.render(tokens, self._markdown.options, {})
            return html, markdown_to_text(tokens, discreet=discreet)
        return source, html_to_text(source, discreet=discreet)

    def _documents(
        self,
        context: Mapping[str, Any],
        *,
        body_html: str,
        body_text: str,
        subject: str,
        preheader: str,
        email: str,
        base_url: str,
        discreet: bool,
    ) -> tuple[str, str]:
        """The HTML layout around the HTML body (not yet inlined) and the text layout around the
        text body, with the same values."""
        values = {"subject": subject, "preheader": preheader, "email": email, "base_url": base_url}
        html = self._env.get_template(HTML_LAYOUT).render(context, body=Markup(body_html), **values)
        if discreet:
            # Images would be fetched from a server when opened: nothing of the kind in discreet mode.
            html = _IMAGE_TAG.sub("", html)
        text = self._env.get_template(TEXT_LAYOUT).render(context, body=body_text, **values)
        return html, tidy_text(text)

    def _step_facts(self, step: Step) -> _StepFacts:
        key = (
            step.template,
            step.subject,
            step.preheader,
            step.discreet_subject or "",
            step.discreet_preheader or "",
        )
        facts = self._facts.get(key)
        if facts is not None:
            return facts
        asts = [self._env.parse(source) for _, source in self._step_strings(step)]
        loader = self._env.loader
        assert loader is not None
        for name in (f"emails/{step.template}", HTML_LAYOUT, TEXT_LAYOUT):
            asts.append(self._env.parse(loader.get_source(self._env, name)[0]))
        uses = [_hesitation_use(ast) for ast in asts]
        reasons: frozenset[str] | None = None
        if all(use.only_constants for use in uses):
            reasons = frozenset(key for use in uses for key, _ in use.constants)
        uses_first_name = any(
            _pulls_in_templates(ast) or any(name.name == "first_name" for name in ast.find_all(nodes.Name))
            for ast in asts
        )
        facts = _StepFacts(reasons=reasons, uses_first_name=uses_first_name)
        self._facts[key] = facts
        return facts

    def _personal_values(self, recipient: Recipient, links: Links) -> dict[str, str]:
        if UNSAFE_CHARS.search(recipient.email) or not recipient.email.strip():
            raise ValueError(f"recipient email is empty or has control characters: {recipient.email!r}")
        return {
            "first_name": one_line(recipient.first_name or ""),
            "email": recipient.email.strip(),
            "unsubscribe_url": check_url("unsubscribe_url", links.unsubscribe_url, URL),
            "preferences_url": check_url("preferences_url", links.preferences_url, URL),
            "action_url": check_url("action_url", links.action_url, URL) if links.action_url else "",
            "booked_url": check_url("booked_url", links.booked_url, URL) if links.booked_url else "",
        }

    def _headers(
        self,
        step: Step,
        context: Mapping[str, Any],
        brand: Brand,
        discreet: bool,
    ) -> tuple[str, str, str]:
        subject_source, preheader_source = self._subject_sources(step, discreet)
        subject = one_line(self._string_template(subject_source).render(context))
        preheader = one_line(self._string_template(preheader_source).render(context))
        sender = from_header(brand.sender, brand.discreet_sender_name if discreet else None)
        return sender, subject, preheader

    def render(
        self, sequence: Sequence, step: Step, recipient: Recipient, links: Links, brand: Brand
    ) -> RenderedEmail:
        """The email for one recipient, from the cached inlined structure when there is one."""
        profile = recipient.profile
        values = self._personal_values(recipient, links)
        locale = self.locale_data(profile.locale)
        context = self._context(
            sequence, step, profile, locale, brand=brand, values=values
        )
        from_header, subject, preheader = self._headers(step, context, brand, profile.discreet)
        structure = self._structure(sequence, step, profile, locale, brand, values)

        escaped: dict[tuple[str, Context], str] = {}
        parts = [structure.html_literals[0]]
        for (name, where), literal in zip(structure.html_slots, structure.html_literals[1:], strict=True):
            value = escaped.get((name, where))
            if value is None:
                value = escaped[(name, where)] = ESCAPERS[where](values[name])
            parts.append(value)
            parts.append(literal)
        html = "".join(parts)

        text = "\n".join(
            wrap_line(self._fill(line, values, str)) if dynamic else line
            for dynamic, line in structure.text_lines
        )
        return RenderedEmail(from_header, subject, preheader, html, text)

    def _structure(
        self,
        sequence: Sequence,
        step: Step,
        profile: Profile,
        locale: LocaleData,
        brand: Brand,
        values: Mapping[str, str],
    ) -> Structure:
        facts = self._step_facts(step)
        hesitations = profile.hesitations if facts.reasons is None else profile.hesitations & facts.reasons
        has_first_name = bool(values["first_name"]) or not facts.uses_first_name
        subject_source, preheader_source = self._subject_sources(step, profile.discreet)
        key = (
            sequence.key,
            step.key,
            step.template,
            subject_source,
            preheader_source,
            profile.locale,
            locale.key,
            hesitations,
            profile.discreet,
            has_first_name,
            brand.postal_address,
            brand.base_url,
            brand.booking_url,
        )
        structure = self._cache.get(key)
        if structure is None:
            structural = Profile(
                time_zone="UTC",
                hesitations=hesitations,
                discreet=profile.discreet,
                locale=profile.locale,
            )
            structure = self._build_structure(sequence, step, structural, locale, brand, has_first_name)
            self._cache.put(key, structure)
        return structure

    def _placeholder_values(self, *, has_first_name: bool) -> dict[str, str]:
        placeholders = dict(self._placeholders)
        if not has_first_name:
            # Emptiness is structure ({% if first_name %}), so an empty name stays empty.
            placeholders["first_name"] = ""
        return placeholders

    def _fill(self, text: str, values: Mapping[str, str], escaper: Callable[[str], str]) -> str:
        return self._placeholder_re.sub(
            lambda match: escaper(values[self._placeholder_names[int(match.group(1))]]), text
        )

    def _check_placeholders_intact(self, text: str, step: Step) -> None:
        # A filter that slipped past check_step (say `|title`) would leave a mangled placeholder
        # that no longer matches; refuse rather than send it.
        if text.lower().count(self._placeholder_prefix) != len(self._placeholder_re.findall(text)):
            raise ValueError(
                f"template {step.template!r} changes a personal value; run check_step for details"
            )

    def _build_structure(
        self,
        sequence: Sequence,
        step: Step,
        profile: Profile,
        locale: LocaleData,
        brand: Brand,
        has_first_name: bool,
    ) -> Structure:
        placeholders = self._placeholder_values(has_first_name=has_first_name)
        context = self._context(
            sequence,
            step,
            profile,
            locale,
            brand=brand,
            values=placeholders,
        )
        _, subject, preheader = self._headers(step, context, brand, profile.discreet)
        body_html, body_text = self._body_parts(step, context, discreet=profile.discreet)
        document, text = self._documents(
            context,
            body_html=body_html,
            body_text=body_text,
            subject=subject,
            preheader=preheader,
            email=placeholders["email"],
            base_url=brand.base_url,
            discreet=profile.discreet,
        )
        inlined: str = premailer.transform(document, **PREMAILER_OPTIONS)
        self._check_placeholders_intact(inlined, step)
        literals: list[str] = []
        slots: list[tuple[str, Context]] = []
        position = 0
        for match in self._placeholder_re.finditer(inlined):
            literals.append(inlined[position : match.start()])
            slots.append((self._placeholder_names[int(match.group(1))], context_at(inlined, match.start())))
            position = match.end()
        literals.append(inlined[position:])

        self._check_placeholders_intact(text, step)
        lines = tuple(
            (True, line) if self._placeholder_re.search(line) else (False, wrap_line(line))
            for line in text.split("\n")
        )
        return Structure(tuple(literals), tuple(slots), lines)

    def render_naive(
        self, sequence: Sequence, step: Step, recipient: Recipient, links: Links, brand: Brand
    ) -> RenderedEmail:
        """The reference path: render with the real values and inline every time (no cache).

        Markdown never sees personal values (a name like "*Sam*" or "[x](y)" must stay text), so a
        Markdown body is converted with placeholders and the escaped values are put in before the
        layout; the layout, subject and HTML bodies get the real values directly.
        """
        profile = recipient.profile
        values = self._personal_values(recipient, links)
        locale = self.locale_data(profile.locale)
        context = self._context(
            sequence, step, profile, locale, brand=brand, values=values
        )
        from_header, subject, preheader = self._headers(step, context, brand, profile.discreet)
        if step.template.endswith(".md"):
            placeholders = self._placeholder_values(has_first_name=bool(values["first_name"]))
            placeholder_context = {**context, **{k: placeholders[k] for k in context if k in placeholders}}
            body_html, body_text = self._body_parts(step, placeholder_context, discreet=profile.discreet)
            body_html = self._fill(body_html, values, lambda value: str(escape(value)))
            body_text = self._fill(body_text, values, str)
        else:
            body_html, body_text = self._body_parts(step, context, discreet=profile.discreet)
        document, text = self._documents(
            context,
            body_html=body_html,
            body_text=body_text,
            subject=subject,
            preheader=preheader,
            email=values["email"],
            base_url=brand.base_url,
            discreet=profile.discreet,
        )
        html: str = premailer.transform(document, **PREMAILER_OPTIONS)
        return RenderedEmail(from_header, subject, preheader, html, wrap_text(text))

    def cache_stats(self) -> CacheStats:
        return CacheStats(self._cache.hits, self._cache.misses, len(self._cache))


def _first_line(ast: nodes.Template, variable: str) -> int:
    return next((n.lineno for n in ast.find_all(nodes.Name) if n.name == variable), 1)


def _is_link_target(source: str, variable: str) -> bool:
    pattern = r"<a\b[^>]*\bhref\s*=\s*[\"']\{\{-?\s*" + re.escape(variable) + r"\s*-?\}\}"
    return re.search(pattern, source, re.IGNORECASE) is not None


def _template_line(tb: TracebackType | None, filename: str) -> int:
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line

