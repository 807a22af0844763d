"""An app factory that reads its settings from the environment, for uvicorn's worker processes."""

from __future__ import annotations

from fastapi import FastAPI

from nurture.config import load_settings
from nurture.web.app import create_app


def app_from_environment() -> FastAPI:
    return create_app(load_settings())
