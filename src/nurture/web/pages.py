"""Server-rendered pages from templates/pages/, in a Jinja sandbox because marketers may edit them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Pages:
    def __init__(self, directory: Path, common: Mapping[str, Any], *, prefix: str = "") -> None:
        self._env = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._common = dict(common)
        self._prefix = prefix

    def render(self, template: str, /, *, status: int = 200, **context: Any) -> HTMLResponse:
        html = self._env.get_template(self._prefix + template).render({**self._common, **context})
        return HTMLResponse(html, status_code=status)
