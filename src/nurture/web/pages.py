"""Server-rendered pages from templates/pages/, in a Jinja sandbox because marketers may edit them.
Every page speaks for one locale (`lang`, by default the request's) and shows that locale's framing
in its footer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nurture.web.locale import request_locale


def _no_framing(locale: str) -> str:
    return ""


class Pages:
    def __init__(self, directory: Path, common: Mapping[str, Any], *, prefix: str = "",
                 framing: Callable[[str], str] = _no_framing) -> None:
        self._env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._common = dict(common)
        self._prefix = prefix
        self._framing = framing

    def render(self, template: str, /, *, status: int = 200, **context: Any) -> HTMLResponse:
        lang = context.get("lang") or request_locale()
        values = {**self._common, "framing": self._framing(lang), **context, "lang": lang}
        html = self._env.get_template(self._prefix + template).render(values)
        return HTMLResponse(html, status_code=status)
