"""The plain-text part: Markdown and HTML bodies to text, and wrapping at 78 columns, a grapheme
cluster (a Devanagari conjunct with its vowel signs) counting as one column."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from html.parser import HTMLParser
from typing import Final

import regex
from markdown_it.token import Token

from nurture.rendering.escaping import WHITESPACE

TEXT_WIDTH: Final = 78

# The text part may quote a marker line ("- ", "1. ", "> ") that continuation lines indent under.
_LINE_PREFIX: Final = re.compile(r"[ ]*(?:> ?)*(?:[-*+] |\d{1,3}[.)] )?")
_MARKER: Final = re.compile(r"[-*+]|\d{1,3}[.)]")
_SINGLE_SPACED: Final = re.compile(r"\S+(?: \S+)*")
_GRAPHEME: Final = regex.compile(r"\X")


def columns(text: str) -> int:
    """The width of a text in columns: one per grapheme cluster, so that a conjunct such as
    "क्ष" (three code points) counts as the one letter a reader sees."""
    return len(text) if text.isascii() else len(_GRAPHEME.findall(text))


def wrap_line(line: str) -> str:
    """One line wrapped at 78 columns, continuation lines indented under its list or quote marker.
    Lines break only at spaces, so no word, and no grapheme cluster, is ever split."""
    if len(line) <= TEXT_WIDTH or columns(line) <= TEXT_WIDTH:
        return line
    match = _LINE_PREFIX.match(line)
    prefix = match.group(0) if match else ""
    continuation = _MARKER.sub(lambda m: " " * len(m.group(0)), prefix)
    body = line[len(prefix) :]
    if not body.isascii():
        return _fill_columns(body.split(), prefix, continuation)
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


def _fill_columns(words: list[str], indent: str, continuation: str) -> str:
    """Greedy filling by columns (grapheme clusters) rather than code points, for text that is
    not ASCII; a word longer than a line stands alone, unbroken."""
    lines: list[str] = []
    current, width = indent, len(indent)
    started = False
    for word in words:
        size = columns(word)
        if started and width + 1 + size > TEXT_WIDTH:
            lines.append(current)
            current, width, started = continuation, len(continuation), False
        if started:
            current, width = current + " ", width + 1
        current, width, started = current + word, width + size, True
    lines.append(current)
    return "\n".join(lines)


def wrap_text(text: str) -> str:
    """Wraps each line at 78 columns where there is a space; URLs are never broken."""
    return "\n".join(wrap_line(line) for line in text.split("\n"))


def tidy_text(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n"


# ---------------------------------------------------------------------------------------------
# Markdown to plain text


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


class _MarkdownText:
    """One pass over a document's block tokens: the text blocks so far, and the lists and quotes
    they sit in. A block is tight when it follows another tight one without a blank line."""

    def __init__(self, *, discreet: bool) -> None:
        self.discreet = discreet
        self.blocks: list[tuple[str, bool]] = []
        self.indents: list[str] = []
        self.lists: list[list[int | None]] = []
        self.pending_marker: str | None = None
        self.tight = False

    def add(self, text: str) -> None:
        if self.pending_marker is not None:
            first = "".join(self.indents[:-1]) + self.pending_marker
            self.pending_marker = None
        else:
            first = "".join(self.indents)
        rest = "".join(self.indents)
        lines = text.split("\n")
        self.blocks.append(("\n".join([first + lines[0], *(rest + line for line in lines[1:])]), self.tight))

    def open_list(self, token: Token) -> None:
        start = token.attrGet("start")
        self.lists.append([int(start or 1) if token.type == "ordered_list_open" else None])

    def close_list(self, token: Token) -> None:
        self.lists.pop()

    def open_item(self, token: Token) -> None:
        counter = self.lists[-1] if self.lists else [None]
        if counter[0] is None:
            self.pending_marker = "- "
        else:
            self.pending_marker = f"{counter[0]}. "
            counter[0] += 1
        self.indents.append(" " * len(self.pending_marker))

    def close_item(self, token: Token) -> None:
        self.indents.pop()
        self.pending_marker = None

    def open_quote(self, token: Token) -> None:
        self.indents.append("> ")

    def close_quote(self, token: Token) -> None:
        self.indents.pop()

    def open_paragraph(self, token: Token) -> None:
        self.tight = token.hidden

    def open_heading(self, token: Token) -> None:
        self.tight = False

    def inline(self, token: Token) -> None:
        text = _inline_text(token.children or (), discreet=self.discreet, newline="\n")
        if text.strip():
            self.add(text)

    def code(self, token: Token) -> None:
        self.tight = False
        self.add("\n".join("    " + line for line in token.content.rstrip("\n").split("\n")))

    def rule(self, token: Token) -> None:
        self.tight = False
        self.add("---")

    def text(self) -> str:
        out: list[str] = []
        previous_tight = False
        for text, is_tight in self.blocks:
            if out:
                out.append("\n" if (is_tight and previous_tight) else "\n\n")
            out.append(text)
            previous_tight = is_tight
        return "".join(out)


# Token types not named here (closing paragraphs and headings, for one) change nothing.
_BLOCK_HANDLERS: Final[Mapping[str, Callable[[_MarkdownText, Token], None]]] = {
    "bullet_list_open": _MarkdownText.open_list,
    "ordered_list_open": _MarkdownText.open_list,
    "bullet_list_close": _MarkdownText.close_list,
    "ordered_list_close": _MarkdownText.close_list,
    "list_item_open": _MarkdownText.open_item,
    "list_item_close": _MarkdownText.close_item,
    "blockquote_open": _MarkdownText.open_quote,
    "blockquote_close": _MarkdownText.close_quote,
    "paragraph_open": _MarkdownText.open_paragraph,
    "heading_open": _MarkdownText.open_heading,
    "inline": _MarkdownText.inline,
    "code_block": _MarkdownText.code,
    "fence": _MarkdownText.code,
    "hr": _MarkdownText.rule,
}


def markdown_to_text(tokens: Iterable[Token], *, discreet: bool) -> str:
    """Plain text from markdown-it tokens: links as "label (url)", no emphasis markers or HTML."""
    document = _MarkdownText(discreet=discreet)
    for token in tokens:
        handler = _BLOCK_HANDLERS.get(token.type)
        if handler is not None:
            handler(document, token)
    return document.text()


# ---------------------------------------------------------------------------------------------
# HTML to plain text


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
            label = WHITESPACE.sub(" ", "".join(self.parts[start:])).strip()
            if href and href not in (label, f"mailto:{label}"):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)

    def text(self) -> str:
        joined = WHITESPACE.sub(" ", "".join(self.parts))
        paragraphs = []
        for paragraph in joined.split(self._PARAGRAPH):
            lines = [line.strip() for line in paragraph.split(self._LINE)]
            text = "\n".join(line for line in lines if line)
            if text:
                paragraphs.append(text)
        return "\n\n".join(paragraphs)


def html_to_text(html: str, *, discreet: bool) -> str:
    """Plain text from an HTML body: blocks as paragraphs, links as "label (url)"."""
    parser = _HtmlToText(discreet=discreet)
    parser.feed(html)
    parser.close()
    return parser.text()
