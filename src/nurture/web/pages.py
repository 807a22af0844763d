"""Server-rendered pages from templates/pages/, in a Jinja sandbox because marketers may edit them.
Every page speaks for one locale (`lang`, by default the request's): its texts through gettext
({% trans %} and _() with the English text as the msgid), its lang and dir attributes, its numbers
and dates, the language switch, and that locale's framing in its footer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nurture.web.languages import DEFAULT_SPEECH, Languages, Speech
from nurture.web.locale import request_path, speech


def _no_framing(locale: str) -> str:
    return ""


def _speech_of(context: Context) -> Speech:
    found = context.get("speech")
    return found if isinstance(found, Speech) else DEFAULT_SPEECH


@jinja2.pass_context
def _gettext(context: Context, message: str) -> str:
    return _speech_of(context).gettext(message)


@jinja2.pass_context
def _ngettext(context: Context, singular: str, plural: str, count: int) -> str:
    return _speech_of(context).ngettext(singular, plural, count)


@jinja2.pass_context
def _number(context: Context, value: float) -> str:
    return _speech_of(context).number(value)


class Pages:
    def __init__(self, directory: Path, common: Mapping[str, Any], *, prefix: str = "",
                 framing: Callable[[str], str] = _no_framing,
                 languages: Languages | None = None) -> None:
        self._env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=["jinja2.ext.i18n"],
        )
        # Whitespace inside {% trans %} is folded, so a paragraph's msgid is one line of text.
        self._env.policies["ext.i18n.trimmed"] = True
        self._env.install_gettext_callables(  # type: ignore[attr-defined]
            _gettext, _ngettext, newstyle=True)
        self._env.filters["number"] = _number
        self._common = dict(common)
        self._prefix = prefix
        self._framing = framing
        self._languages = languages

    def render(self, template: str, /, *, status: int = 200, **context: Any) -> HTMLResponse:
        """The page in the request's locale, or in `lang` when given (the crisis help of a signup
        speaks the locale the person chose)."""
        current = speech()
        if context.get("lang") and self._languages is not None:
            current = self._languages.speech(context["lang"])
        language = current.language
        values = {
            **self._common, "framing": self._framing(current.locale),
            "languages": self._languages.names() if self._languages is not None else {},
            "language_tags": self._languages.tags() if self._languages is not None else {},
            "switch_path": request_path(),
            **context,
            "lang": current.locale, "lang_tag": language.tag, "direction": language.direction,
            "speech": current,
        }
        html = self._env.get_template(self._prefix + template).render(values)
        return HTMLResponse(html, status_code=status, headers={"Content-Language": language.tag})
