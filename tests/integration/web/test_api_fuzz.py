"""schemathesis against the app's own OpenAPI schema: no generated request may cause a 5xx."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from nurture.config import Settings
from nurture.content.library import ContentHolder
from nurture.services.runtime import Runtime
from nurture.store.database import make_engine, upgrade
from nurture.store.sql.store import SqlStore
from nurture.web.app import create_app
from nurture.web.options import WebOptions
from tests.support.paths import ROOT


def _app() -> FastAPI:
    # Built at import: schemathesis parametrizes from a schema object, before fixtures exist.
    workdir = Path(tempfile.mkdtemp(prefix="nurture-fuzz-"))
    sequences = workdir / "sequences"
    shutil.copytree(ROOT / "sequences", sequences)
    url = f"sqlite:///{workdir / 'fuzz.db'}"
    upgrade(url)
    engine = make_engine(url)
    config = Settings(database_url=url, sequences_dir=sequences, templates_dir=ROOT / "templates",
                      api_key="fuzz-api-key-0123456789abcdef", base_url="http://testserver")
    runtime = Runtime(settings=config, engine=engine, store=SqlStore(engine),
                      content=ContentHolder(sequences, ROOT / "templates"))
    # Generous limits: the fuzzer is one client sending many requests, not an abuser.
    options = WebOptions(signup_per_ip_per_hour=100_000, signup_per_address_per_hour=100_000)
    return create_app(config, runtime=runtime, options=options)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())
EXAMPLES = int(os.environ.get("NURTURE_FUZZ_EXAMPLES", "40"))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_fail(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
