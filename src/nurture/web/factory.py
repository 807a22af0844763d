"""An app factory that reads its settings from the environment, for uvicorn's worker processes."""

from __future__ import annotations

from fastapi import FastAPI

from nurture.config import load_settings
from nurture.services.runtime import configure_data_keys
from nurture.web.app import create_app


def app_from_environment() -> FastAPI:
    settings = load_settings()
    configure_data_keys(settings)
    return create_app(settings)
