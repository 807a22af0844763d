"""The crisis resources page (/help, and the answer to a signup from someone unsafe), in the locale the
link names or the browser asks for, read from the locale files as the emails read them, with a
built-in text when none can be read."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import yaml
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from nurture.rendering.locales import LocaleError, parse_crisis
from nurture.rendering.types import CrisisInfo
from nurture.web.context import WebContext
from nurture.web.dependencies import Web
from nurture.web.locale import request_locale, valid_locale

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

# Shown when no locale file can be read: a safety page must never fail to say something useful.
FALLBACK_CRISIS: Final = CrisisInfo(
    heading="If you are in danger right now",
    text="Please call your local emergency number. A local helpline for domestic abuse or for "
         "emotional crisis can also listen, in confidence, and help you think about next steps.",
    lines=(),
)


def load_crisis(templates_dir: Path, locale: str) -> CrisisInfo:
    """Crisis resources from templates/locales/<locale>.yaml: the exact locale, then its language,
    then "en", then a built-in text."""
    # Only names of files that exist: a locale from a form or a link never becomes a path.
    known = {path.stem for path in (templates_dir / "locales").glob("*.yaml")}
    candidates = [key for key in (locale, locale.lower(), locale.split("-", 1)[0], "en")
                  if key in known]
    for key in dict.fromkeys(candidates):
        path = templates_dir / "locales" / f"{key}.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        try:
            # Read as the emails read it, so the page and the footer never disagree.
            return parse_crisis(data.get("crisis") if isinstance(data, dict) else None)
        except LocaleError:
            log.error("locale file has no usable crisis section", extra={"file": str(path)})
    return FALLBACK_CRISIS


def crisis_page(web: WebContext, locale: str, *, after_signup: bool) -> HTMLResponse:
    crisis = load_crisis(web.runtime.content.templates_dir, locale)
    # The language switch of a signup's answer leads to /help: the form's page would be the wrong one.
    return web.pages.render("crisis.html", crisis=crisis, after_signup=after_signup, lang=locale,
                            switch_path="/help")


@router.api_route("/help", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def help_page(web: Web, locale: str | None = None) -> Response:
    """The locale a link names (?locale=en-IN), else the one the browser asks for."""
    return crisis_page(web, valid_locale(locale) or request_locale(), after_signup=False)
