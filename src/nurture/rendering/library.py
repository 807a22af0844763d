"""Turns a sequence step and a recipient into a finished email (inlined HTML, plain text, headers).

Marketer templates run in Jinja's sandbox; CSS is inlined once per distinct structure (see DESIGN.md).
"""

from __future__ import annotations

import binascii
import dataclasses
import functools
import itertools
import logging
import re
import secrets
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from enum import Enum
from html.parser import HTMLParser
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Final

import jinja2
import premailer
import yaml
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from lxml import etree  # premailer's parser; no stubs
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup, escape

from nurture.domain.model import Profile, Sequence, Step
from nurture.domain.problems import ContentProblem, Severity
from nurture.domain.reasons import KNOWN_REASONS

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

BODY_VARIABLES: Final[frozenset[str]] = frozenset(
    {
        "first_name",
        "hesitations",
        "discreet",
        "locale",
        "sequence",
        "step",
        "crisis",
        "resources",
        "postal_address",
        "unsubscribe_url",
        "preferences_url",
        "action_url",
        "booked_url",
        "booking",
    }
)
LAYOUT_VARIABLES: Final[frozenset[str]] = BODY_VARIABLES | {
    "body",
    "subject",
    "preheader",
    "email",
    "base_url",
}
# Values that differ per recipient: printed only, never structural, so they can be placeholders.
# The order fixes each placeholder's digit.
PERSONAL_VARIABLES: Final[tuple[str, ...]] = (
    "first_name",
    "email",
    "unsubscribe_url",
    "preferences_url",
    "action_url",
    "booked_url",
)

HTML_LAYOUT: Final = "layouts/email.html"
TEXT_LAYOUT: Final = "layouts/email.txt"
TEXT_WIDTH: Final = 78
DEFAULT_CACHE_SIZE: Final = 4096

_LOCALE_FALLBACK: Final = "en"
_BODY_SUFFIXES: Final = (".md", ".html")

# Cc, line/paragraph separators (str.splitlines() splits on them, and so does the email package)
# and bidi overrides, which can make a name or subject display as something else.
_UNSAFE_CHARS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_WHITESPACE: Final = re.compile(r"\s+")
# Links are built by the web layer; anything outside this set means a bug upstream. Commas and
# angle brackets would also break the List-Unsubscribe header.
_URL: Final = re.compile(r"https?://[A-Za-z0-9\-._~%&+/:;=?@#]+\Z")
_MAILTO: Final = re.compile(r"mailto:[A-Za-z0-9\-._~%&+/:;=?@#]+\Z")
_MESSAGE_ID: Final = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>\Z")
_HEADER_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_RESERVED_HEADERS: Final = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})
_IMAGE_TAG: Final = re.compile(r"<(?:img|image)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>", re.IGNORECASE)
# The text part may quote a marker line ("- ", "1. ", "> ") that continuation lines indent under.
_LINE_PREFIX: Final = re.compile(r"[ ]*(?:> ?)*(?:[-*+] |\d{1,3}[.)] )?")
_MARKER: Final = re.compile(r"[-*+]|\d{1,3}[.)]")
# A personal value right after "<" would be an autolink in real life but plain text as a placeholder.
_AUTOLINK_VARIABLE: Final = re.compile(r"<\{\{-?\s*(" + "|".join(PERSONAL_VARIABLES) + r")\b")


# ---------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class Recipient:
    email: str
    first_name: str | None
    profile: Profile


@dataclass(frozen=True)
class Links:
    unsubscribe_url: str
    """https URL, one click (RFC 8058)."""
    preferences_url: str
    """Pause / change settings page."""
    unsubscribe_mailto: str | None = None
    action_url: str | None = None
    """The one link a transactional email is about, such as the confirmation link."""
    booked_url: str | None = None
    """"We booked a consult": one click that ends the sequence as a conversion."""


@dataclass(frozen=True)
class Brand:
    sender: str
    """For example "Nurture <hello@example.org>"."""
    discreet_sender_name: str
    """Neutral display name used in discreet mode, with the sender's address."""
    postal_address: str
    base_url: str
    booking_url: str | None = None
    """Where the consult invitation sends people to book; overrides the locale file's link."""


_TRIAL_BRAND: Final = Brand(
    sender="Check <check@example.org>",
    discreet_sender_name="Notes",
    postal_address="1 Example Street",
    base_url="https://example.org",
)


@dataclass(frozen=True)
class RenderedEmail:
    from_header: str
    subject: str
    preheader: str
    html: str
    """Inlined, final."""
    text: str


@dataclass(frozen=True)
class CrisisLine:
    name: str
    contact: str
    note: str = ""


@dataclass(frozen=True)
class CrisisInfo:
    heading: str
    text: str
    lines: tuple[CrisisLine, ...]


@dataclass(frozen=True)
class LocaleData:
    key: str
    """The locale file's name without ".yaml", e.g. "en-IN"."""
    crisis: CrisisInfo
    resources: tuple[Mapping[str, str], ...]
    path: Path
    booking: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """The consult booking link and its label (`booking: {url, label}` in the locale file)."""


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int


# ---------------------------------------------------------------------------------------------
# Small pure helpers


def one_line(value: str) -> str:
    """A header-safe single line: control characters become spaces, whitespace collapses."""
    return _WHITESPACE.sub(" ", _UNSAFE_CHARS.sub(" ", value)).strip()


def _check_url(name: str, value: str, pattern: re.Pattern[str]) -> str:
    if len(value) > 900 or not pattern.match(value):
        raise ValueError(f"{name} is not an acceptable URL: {value!r}")
    return value


def _escape_text(value: str) -> str:
    # Exactly what lxml's HTML serializer (used by premailer) writes for text.
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attribute(value: str) -> str:
    return _escape_text(value).replace('"', "&quot;")


_URI_UNCHANGED: Final = re.compile(r"[A-Za-z0-9._~:/?#@!$()*+,;=%-]*")
"""Characters libxml2 writes as they are in a URI attribute; a test holds it to that."""


def _escape_uri_attribute(value: str) -> str:
    # Links carry per-subscriber tokens, so a cache of libxml2's answers never hits for them;
    # the common all-safe URL needs no asking.
    if _URI_UNCHANGED.fullmatch(value):
        return value
    return _escape_uri_attribute_by_libxml2(value)


@functools.lru_cache(maxsize=4096)
def _escape_uri_attribute_by_libxml2(value: str) -> str:
    # libxml2 percent-encodes some characters in href/src/action/a@name, and which ones depends
    # on its version, so ask it rather than imitate it.
    element = etree.Element("a")
    element.set("href", value)
    serialized: str = etree.tostring(element, method="html", encoding="utf-8").decode("utf-8")
    return serialized[len('<a href="') : -len('"></a>')]


class _Context(Enum):
    TEXT = "text"
    ATTRIBUTE = "attribute"
    URI_ATTRIBUTE = "uri"


_ESCAPERS: Final[dict[_Context, Callable[[str], str]]] = {
    _Context.TEXT: _escape_text,
    _Context.ATTRIBUTE: _escape_attribute,
    _Context.URI_ATTRIBUTE: _escape_uri_attribute,
}
_TAG_NAME: Final = re.compile(r"<([A-Za-z][A-Za-z0-9:-]*)")
_OPEN_ATTRIBUTE: Final = re.compile(r"([^\s\"'=<>/]+)\s*=\s*\"[^\"]*\Z")


def _context_at(html: str, position: int) -> _Context:
    """Where a placeholder sits in serialized HTML, which decides how its value is escaped."""
    tag_start = html.rfind("<", 0, position)
    if tag_start <= html.rfind(">", 0, position):
        return _Context.TEXT
    tag = _TAG_NAME.match(html, tag_start)
    attribute = _OPEN_ATTRIBUTE.search(html, tag_start, position)
    if tag is None or attribute is None:
        raise ValueError(f"personal value in an unexpected place in the HTML: {html[tag_start:]!r}")
    name = attribute.group(1).lower()
    if name in ("href", "src", "action") or (name == "name" and tag.group(1).lower() == "a"):
        return _Context.URI_ATTRIBUTE
    return _Context.ATTRIBUTE


def _wrap_line(line: str) -> str:
    if len(line) <= TEXT_WIDTH:
        return line
    match = _LINE_PREFIX.match(line)
    prefix = match.group(0) if match else ""
    continuation = _MARKER.sub(lambda m: " " * len(m.group(0)), prefix)
    body = line[len(prefix) :]
    if _SINGLE_SPACED.fullmatch(body):
        return _fill_single_spaced(body, prefix, continuation)
    wrapped = textwrap.fill(
        body,
        width=TEXT_WIDTH,
        initial_indent=prefix,
        subsequent_indent=continuation,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return wrapped or line


_SINGLE_SPACED: Final = re.compile(r"\S+(?: \S+)*")


def _fill_single_spaced(body: str, indent: str, continuation: str) -> str:
    """textwrap.fill's lines for words separated by single spaces, found with str.rfind instead
    of a chunk at a time (this ran for every paragraph of every email); a test compares the two."""
    lines = []
    position, end = 0, len(body)
    while position < end:
        width = TEXT_WIDTH - len(indent)
        if end - position <= width:
            cut = end
        else:
            cut = body.rfind(" ", position, position + width + 1)
            if cut < 0:  # a word longer than the line (a URL) stands alone, unbroken
                cut = body.find(" ", position)
                cut = end if cut < 0 else cut
        lines.append(indent + body[position:cut])
        position, indent = cut + 1, continuation
    return "\n".join(lines)


def wrap_text(text: str) -> str:
    """Wraps each line at 78 characters where there is a space; URLs are never broken."""
    return "\n".join(_wrap_line(line) for line in text.split("\n"))


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n"


# ---------------------------------------------------------------------------------------------
# Markdown and HTML to plain text


def _inline_text(children: Iterable[Token], *, discreet: bool, newline: str) -> str:
    parts: list[str] = []
    links: list[tuple[str, int]] = []
    for token in children:
        kind = token.type
        if kind in ("text", "code_inline"):
            parts.append(token.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append(newline)
        elif kind == "link_open":
            links.append((str(token.attrGet("href") or ""), len(parts)))
        elif kind == "link_close" and links:
            href, start = links.pop()
            label = "".join(parts[start:])
            if href and href not in (label, f"mailto:{label}"):
                parts.append(f" ({href})")
        elif kind == "image" and not discreet:
            parts.append(token.content)
    return "".join(parts)


def markdown_to_text(tokens: Iterable[Token], *, discreet: bool) -> str:
    """Plain text from markdown-it tokens: links as "label (url)", no emphasis markers or HTML."""
    blocks: list[tuple[str, bool]] = []
    indents: list[str] = []
    lists: list[list[int | None]] = []
    pending_marker: str | None = None
    tight = False

    def add(text: str) -> None:
        nonlocal pending_marker
        if pending_marker is not None:
            first = "".join(indents[:-1]) + pending_marker
            pending_marker = None
        else:
            first = "".join(indents)
        rest = "".join(indents)
        lines = text.split("\n")
        blocks.append(("\n".join([first + lines[0], *(rest + line for line in lines[1:])]), tight))

    for token in tokens:
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            start = token.attrGet("start")
            lists.append([int(start or 1) if kind == "ordered_list_open" else None])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            counter = lists[-1] if lists else [None]
            if counter[0] is None:
                pending_marker = "- "
            else:
                pending_marker = f"{counter[0]}. "
                counter[0] += 1
            indents.append(" " * len(pending_marker))
        elif kind == "list_item_close":
            indents.pop()
            pending_marker = None
        elif kind == "blockquote_open":
            indents.append("> ")
        elif kind == "blockquote_close":
            indents.pop()
        elif kind == "paragraph_open":
            tight = token.hidden
        elif kind == "heading_open":
            tight = False
        elif kind == "inline":
            text = _inline_text(token.children or (), discreet=discreet, newline="\n")
            if text.strip():
                add(text)
        elif kind in ("code_block", "fence"):
            tight = False
            add("\n".join("    " + line for line in token.content.rstrip("\n").split("\n")))
        elif kind == "hr":
            tight = False
            add("---")
    out: list[str] = []
    previous_tight = False
    for text, is_tight in blocks:
        if out:
            out.append("\n" if (is_tight and previous_tight) else "\n\n")
        out.append(text)
        previous_tight = is_tight
    return "".join(out)


class _HtmlToText(HTMLParser):
    _BLOCKS: Final = frozenset(
        {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "tr", "blockquote"}
        | {"section", "article", "header", "footer", "pre", "hr"}
    )
    _SKIPPED: Final = frozenset({"style", "script", "head", "title"})
    _PARAGRAPH: Final = "\x00P"
    _LINE: Final = "\x00L"

    def __init__(self, *, discreet: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.discreet = discreet
        self.parts: list[str] = []
        self.links: list[tuple[str, int]] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self.parts.append(self._LINE)
        elif tag == "li":
            self.parts.append(self._LINE + "- ")
        elif tag in self._BLOCKS:
            self.parts.append(self._PARAGRAPH)
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.parts)))
        elif tag == "img" and not self.discreet:
            self.parts.append(dict(attrs).get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append(self._PARAGRAPH)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = _WHITESPACE.sub(" ", "".join(self.parts[start:])).strip()
            if href and href not in (label, f"mailto:{label}"):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)

    def text(self) -> str:
        joined = _WHITESPACE.sub(" ", "".join(self.parts))
        paragraphs = []
        for paragraph in joined.split(self._PARAGRAPH):
            lines = [line.strip() for line in paragraph.split(self._LINE)]
            text = "\n".join(line for line in lines if line)
            if text:
                paragraphs.append(text)
        return "\n\n".join(paragraphs)


def html_to_text(html: str, *, discreet: bool) -> str:
    parser = _HtmlToText(discreet=discreet)
    parser.feed(html)
    parser.close()
    return parser.text()


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
# Cached structure


@dataclass(frozen=True)
class _Structure:
    html_literals: tuple[str, ...]
    html_slots: tuple[tuple[str, _Context], ...]
    text_lines: tuple[tuple[bool, str], ...]
    """(has a placeholder, line); lines without one are already wrapped."""


class _LruCache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[tuple[Any, ...], _Structure] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> _Structure | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: _Structure) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


# ---------------------------------------------------------------------------------------------
# Locales


class LocaleError(Exception):
    """A locale file that cannot be used, with the line to look at."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


def _string(data: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key, None if required else "")
    if not isinstance(value, str):
        raise LocaleError(f"{where}.{key} must be text")
    return value


def parse_crisis(crisis: object) -> CrisisInfo:
    """The `crisis` section of a locale file (heading, text, lines of name, contact, note)."""
    if not isinstance(crisis, dict):
        raise LocaleError("'crisis' must be a mapping with heading, text and lines")
    lines_raw = crisis.get("lines", [])
    if not isinstance(lines_raw, list):
        raise LocaleError("crisis.lines must be a list")
    lines: list[CrisisLine] = []
    for index, entry in enumerate(lines_raw):
        where = f"crisis.lines[{index}]"
        if not isinstance(entry, dict):
            raise LocaleError(f"{where} must be a mapping with name, contact and note")
        lines.append(
            CrisisLine(
                name=_string(entry, "name", where),
                contact=_string(entry, "contact", where),
                note=_string(entry, "note", where, required=False),
            )
        )
    return CrisisInfo(
        heading=_string(crisis, "heading", "crisis"),
        text=_string(crisis, "text", "crisis"),
        lines=tuple(lines),
    )


def _parse_locale(key: str, path: Path) -> LocaleData:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        raise LocaleError(f"not valid YAML: {error.problem}", (mark.line + 1) if mark else 1) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise LocaleError(f"cannot read the file: {error}") from None
    if not isinstance(raw, dict):
        raise LocaleError("the file must be a mapping with 'crisis' and 'resources'")
    info = parse_crisis(raw.get("crisis"))
    resources_raw = raw.get("resources", [])
    if not isinstance(resources_raw, list):
        raise LocaleError("'resources' must be a list")
    resources: list[Mapping[str, str]] = []
    for index, entry in enumerate(resources_raw):
        if not isinstance(entry, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
        ):
            raise LocaleError(f"resources[{index}] must be a mapping of text values")
        resources.append(MappingProxyType(dict(entry)))
    booking_raw = raw.get("booking", {})
    if not isinstance(booking_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in booking_raw.items()
    ):
        raise LocaleError("'booking' must be a mapping with url and label")
    return LocaleData(key=key, crisis=info, resources=tuple(resources), path=path,
                      booking=MappingProxyType(dict(booking_raw)))


def _normalize_locale(locale: str) -> str:
    return locale.strip().replace("_", "-").lower()


# ---------------------------------------------------------------------------------------------
# Mail policy


def _fold_ascii(name: str, value: str, linesep: str) -> str:
    """Folds before spaces to keep lines within 78 characters where it can (RFC 5322 2.2.3)."""
    if len(name) + 2 + len(value) <= TEXT_WIDTH:
        return f"{name}: {value}{linesep}"
    lines: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) > TEXT_WIDTH and current.strip() != f"{name}:":
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return linesep.join(lines) + linesep


class _HeaderRegistry(HeaderRegistry):
    """The standard registry creates a new class for every header it parses; create each once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


class _MailPolicy(EmailPolicy):
    """SMTP line endings, with a plain path for the ASCII header values build_message checked.

    The generic header machinery parses and refolds every value, which costs milliseconds per
    message, and folds a URL longer than a line into RFC 2047 encoded words, which providers do
    not decode in List-Unsubscribe, so one-click unsubscribe would silently break. Values that are
    not plain ASCII (a name with accents in the subject) still take the generic path.
    """

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        # Content-* headers are read back many times while the message is built: parse them once.
        if (
            type(value) is str
            and not name.lower().startswith("content-")
            and value.isascii()
            and _UNSAFE_CHARS.search(value) is None
            and len(value) < 990
        ):
            return name, value
        return super().header_store_parse(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        # A parsed header's str() is its unfolded value, so ASCII ones fold the same simple way.
        text = str(value)
        if text.isascii() and _UNSAFE_CHARS.search(text) is None:
            if name.lower() == "list-unsubscribe":
                folded = text.replace(", ", "," + self.linesep + " ")
                return f"{name}: {folded}{self.linesep}".encode("ascii")
            return _fold_ascii(name, text, self.linesep).encode("ascii")
        return super().fold_binary(name, value)


_POLICY: Final = _MailPolicy(linesep="\r\n", header_factory=_HeaderRegistry())


@functools.lru_cache(maxsize=64)
def _from_header(sender: str, display_name: str | None) -> str:
    name, address = parseaddr(one_line(sender))
    if "@" not in address:
        raise ValueError(f"brand sender has no address: {sender!r}")
    chosen = one_line(display_name if display_name is not None else name)
    return str(Address(display_name=chosen, addr_spec=address))


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
        self._cache = _LruCache(cache_size)
        self._locales: dict[str, LocaleData] = {}
        self._locale_problems: list[ContentProblem] = []
        self._load_locales()

    # -- locales ---------------------------------------------------------------------------

    def _load_locales(self) -> None:
        directory = self.templates_dir / "locales"
        for path in sorted(directory.glob("*.yaml")):
            try:
                data = _parse_locale(path.stem, path)
            except LocaleError as error:
                self._locale_problems.append(
                    ContentProblem(path, error.line, str(error), "follow the format of locales/en.yaml")
                )
                continue
            self._locales[_normalize_locale(path.stem)] = data
        if _LOCALE_FALLBACK not in self._locales:
            self._locale_problems.append(
                ContentProblem(
                    directory / "en.yaml",
                    0,
                    "the fallback locale file is missing or invalid",
                    "create locales/en.yaml with the generic crisis footer",
                )
            )

    def locale_data(self, locale: str) -> LocaleData:
        """The locale's data: exact match ("en-IN"), then its language ("en"), then "en"."""
        wanted = _normalize_locale(locale)
        for key in (wanted, wanted.split("-", 1)[0], _LOCALE_FALLBACK):
            data = self._locales.get(key)
            if data is not None:
                return data
        raise LookupError(f"no locale data for {locale!r} and no {_LOCALE_FALLBACK}.yaml")

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
            sorted({data.key for data in self._locales.values()}),
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
        problems = list(self._locale_problems)
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
        return html, _tidy_text(text)

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
        if _UNSAFE_CHARS.search(recipient.email) or not recipient.email.strip():
            raise ValueError(f"recipient email is empty or has control characters: {recipient.email!r}")
        return {
            "first_name": one_line(recipient.first_name or ""),
            "email": recipient.email.strip(),
            "unsubscribe_url": _check_url("unsubscribe_url", links.unsubscribe_url, _URL),
            "preferences_url": _check_url("preferences_url", links.preferences_url, _URL),
            "action_url": _check_url("action_url", links.action_url, _URL) if links.action_url else "",
            "booked_url": _check_url("booked_url", links.booked_url, _URL) if links.booked_url else "",
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
        from_header = _from_header(brand.sender, brand.discreet_sender_name if discreet else None)
        return from_header, subject, preheader

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

        escaped: dict[tuple[str, _Context], str] = {}
        parts = [structure.html_literals[0]]
        for (name, where), literal in zip(structure.html_slots, structure.html_literals[1:], strict=True):
            value = escaped.get((name, where))
            if value is None:
                value = escaped[(name, where)] = _ESCAPERS[where](values[name])
            parts.append(value)
            parts.append(literal)
        html = "".join(parts)

        text = "\n".join(
            _wrap_line(self._fill(line, values, str)) if dynamic else line
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
    ) -> _Structure:
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
    ) -> _Structure:
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
        slots: list[tuple[str, _Context]] = []
        position = 0
        for match in self._placeholder_re.finditer(inlined):
            literals.append(inlined[position : match.start()])
            slots.append((self._placeholder_names[int(match.group(1))], _context_at(inlined, match.start())))
            position = match.end()
        literals.append(inlined[position:])

        self._check_placeholders_intact(text, step)
        lines = tuple(
            (True, line) if self._placeholder_re.search(line) else (False, _wrap_line(line))
            for line in text.split("\n")
        )
        return _Structure(tuple(literals), tuple(slots), lines)

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


# ---------------------------------------------------------------------------------------------
# MIME


def _checked_headers(
    to: str, message_id: str, date: datetime, extra_headers: Mapping[str, str],
) -> tuple[str, str, list[tuple[str, str]]]:
    """Validated (to, message_id, extra headers) shared by both builders."""
    if _UNSAFE_CHARS.search(to):
        raise ValueError(f"recipient address contains control characters: {to!r}")
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("date must be timezone-aware")
    message_id = one_line(message_id)
    if not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(f"not a valid Message-ID: {message_id!r}")
    extra: list[tuple[str, str]] = []
    for name, value in extra_headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"header name not allowed: {name!r}")
        extra.append((name, one_line(value)))
    return to.strip(), message_id, extra


_PLAIN_ADDRESS: Final = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")


def _encoded_header(name: str, value: str) -> str:
    """One header line (folded, CRLF-terminated): plain ASCII as is, anything else as RFC 2047."""
    if value.isascii():
        return _fold_ascii(name, value, "\r\n")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n"


def _encoded_from(from_header: str) -> str:
    if from_header.isascii():
        return _fold_ascii("From", from_header, "\r\n")
    # Only the display name may be encoded; the address itself must stay as it is.
    name, address = parseaddr(from_header)
    return f"From: {Header(name, 'utf-8').encode()} <{address}>\r\n"


_BASE64_LINE: Final = 76


def build_message(
    rendered: RenderedEmail,
    *,
    to: str,
    message_id: str,
    links: Links,
    date: datetime,
    extra_headers: Mapping[str, str] = _NO_HEADERS,
) -> bytes:
    """The wire form (CRLF) of a multipart/alternative email with one-click unsubscribe headers.

    Assembled directly: EmailMessage costs milliseconds per email, most of the send path's time.
    A test parses this and build_message_reference's output for every persona and compares them.
    """
    to, message_id, extra = _checked_headers(to, message_id, date, extra_headers)
    if not _PLAIN_ADDRESS.match(to):
        # Internationalized, quoted or otherwise unusual addresses (and mistakes such as two
        # addresses) go through the library, which handles or refuses them: rare, so no cost.
        return build_message_reference(rendered, to=to, message_id=message_id, links=links,
                                       date=date, extra_headers=extra_headers)
    unsubscribe = f"<{_check_url('unsubscribe_url', links.unsubscribe_url, _URL)}>"
    if links.unsubscribe_mailto:
        unsubscribe += f",\r\n <{_check_url('unsubscribe_mailto', links.unsubscribe_mailto, _MAILTO)}>"
    boundary = f"=_{secrets.token_hex(16)}"
    lines = [
        _encoded_from(one_line(rendered.from_header)),
        f"To: {to}\r\n",
        _encoded_header("Subject", one_line(rendered.subject)),
        f"Date: {format_datetime(date)}\r\n",
        f"Message-ID: {message_id}\r\n",
        "MIME-Version: 1.0\r\n",
        f"List-Unsubscribe: {unsubscribe}\r\n",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
    ]
    lines += [_encoded_header(name, value) for name, value in extra]
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
    # Lines are split as bytes: str.splitlines() would also break at form feeds, U+2028 and
    # other separators, which are content to the standard library and to mail readers.
    text = rendered.text
    text_lines = text.encode("utf-8").splitlines()
    if text.isascii() and max(map(len, text_lines), default=0) <= 998:
        text_cte, text_body = "7bit", b"\r\n".join(text_lines).decode("ascii") + "\r\n"
    else:
        text_cte = "quoted-printable"
        text_body = binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii")
        text_body = text_body.replace("\r\n", "\n").replace("\n", "\r\n")
        if not text_body.endswith("\r\n"):
            text_body += "\r\n"
    html = b"\r\n".join(rendered.html.encode("utf-8").splitlines()) + b"\r\n"
    encoded = binascii.b2a_base64(html, newline=False).decode("ascii")
    html_body = "\r\n".join(
        [encoded[start : start + _BASE64_LINE] for start in range(0, len(encoded), _BASE64_LINE)]
    ) + "\r\n"
    lines += [
        f"--{boundary}\r\n",
        'Content-Type: text/plain; charset="utf-8"\r\n',
        f"Content-Transfer-Encoding: {text_cte}\r\n\r\n",
        text_body,
        # The line break before a boundary belongs to the boundary, not to the part (RFC 2046).
        f"\r\n--{boundary}\r\n",
        'Content-Type: text/html; charset="utf-8"\r\n',
        "Content-Transfer-Encoding: base64\r\n\r\n",
        html_body,
        f"\r\n--{boundary}--\r\n",
    ]
    return "".join(lines).encode("ascii")


def build_message_reference(
    rendered: RenderedEmail,
    *,
    to: str,
    message_id: str,
    links: Links,
    date: datetime,
    extra_headers: Mapping[str, str] = _NO_HEADERS,
) -> bytes:
    """build_message through the standard library's EmailMessage: the reference the fast path must
    match (a test parses both), and the baseline of the benchmark."""
    to, message_id, extra = _checked_headers(to, message_id, date, extra_headers)
    unsubscribe = f"<{_check_url('unsubscribe_url', links.unsubscribe_url, _URL)}>"
    if links.unsubscribe_mailto:
        unsubscribe += f", <{_check_url('unsubscribe_mailto', links.unsubscribe_mailto, _MAILTO)}>"

    message = EmailMessage(policy=_POLICY)
    message["From"] = one_line(rendered.from_header)
    message["To"] = Address(addr_spec=to)
    message["Subject"] = one_line(rendered.subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["MIME-Version"] = "1.0"
    message["List-Unsubscribe"] = unsubscribe
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in extra:
        message[name] = value
    # Choosing the transfer encodings here skips the library's trial encodings: 7bit when the text
    # allows it (RFC 5322 lines up to 998), and base64 for HTML because it is encoded in C, while
    # quoted-printable is pure Python and costs milliseconds on long inlined HTML lines.
    text = rendered.text
    plain_ascii = text.isascii() and max(map(len, text.splitlines()), default=0) <= 998
    message.set_content(text, charset="utf-8", cte="7bit" if plain_ascii else "quoted-printable")
    # A boundary given here spares the generator compiling a fresh regular expression to pick one.
    message.make_alternative(boundary=f"=_{secrets.token_hex(16)}")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="base64")
    for part in message.iter_parts():
        del part["MIME-Version"]
    return message.as_bytes(policy=_POLICY)
