"""Builds the running parts from settings for the CLI and services."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from nurture.clock import utcnow
from nurture.config import Settings
from nurture.content.library import Content, ContentHolder, load_content
from nurture.engine.assignment import Assigner
from nurture.engine.destinations import DestinationPacer
from nurture.engine.dispatcher import Dispatcher
from nurture.engine.policy import DispatchPolicy
from nurture.engine.ports import Transport
from nurture.engine.relay_limits import Budget
from nurture.engine.shared_rate import Bucket, SharedRateLimiter
from nurture.engine.throttle import Throttle, ThrottleSettings
from nurture.engine.tokens import LinkMaker, TokenSigner
from nurture.rendering.types import Brand
from nurture.services.content_editing import ContentEditor
from nurture.services.content_mirror import ContentMirror, import_if_empty
from nurture.setting_values import RelayLimits
from nurture.smtp.factory import transport_from_settings
from nurture.store.content_snapshots import SqlContentStore
from nurture.store.database import ensure_migrated, make_engine
from nurture.store.experiments import declared_winners
from nurture.store.sql.store import SqlStore
from nurture.store.sql.tokens import SqlTokenStore


def brand_from(settings: Settings) -> Brand:
    return Brand(sender=settings.sender, discreet_sender_name=settings.discreet_sender_name,
                 postal_address=settings.postal_address, base_url=settings.base_url,
                 booking_url=settings.booking_url, reply_to=settings.reply_to)


def links_from(settings: Settings) -> LinkMaker:
    return LinkMaker(base_url=settings.base_url, signer=TokenSigner(settings.secret_key),
                     unsubscribe_mailto=settings.unsubscribe_mailto)


def policy_from(settings: Settings) -> DispatchPolicy:
    from datetime import timedelta

    return DispatchPolicy(
        batch_size=settings.batch_size,
        lease=timedelta(seconds=settings.lease_seconds),
        retry_base=timedelta(seconds=settings.retry_base_seconds),
        retry_max=timedelta(seconds=settings.retry_max_seconds),
        max_attempts=settings.max_attempts,
    )


def throttle_from(settings: Settings, engine: Engine) -> Throttle:
    """The breaker, and the sending limits kept for the whole deployment in the database: they
    mean the same whether one scheduler runs or five."""
    throttle = Throttle.from_settings(ThrottleSettings(
        breaker_failures=settings.breaker_failures,
        breaker_cooldown_seconds=settings.breaker_cooldown_seconds,
        breaker_max_cooldown_seconds=settings.breaker_max_cooldown_seconds,
    ))
    buckets = [Bucket.for_limit(name, total, seconds) for name, total, seconds in (
        ("per-second", settings.rate_per_second, 1.0),
        ("per-minute", settings.rate_per_minute, 60.0)) if total > 0]
    if buckets:
        throttle.limiter = SharedRateLimiter(buckets, SqlTokenStore(engine))
    return throttle


def configure_data_keys(settings: Settings) -> None:
    """Names and answers are encrypted with NURTURE_DATA_KEYS (in development: derived from the
    secret key when unset)."""
    from nurture.store.crypto import KeyRing, configure, derived_key

    keys = settings.data_keys.split(",") if settings.data_keys else [derived_key(settings.secret_key)]
    configure(KeyRing(keys))


def process_owner() -> str:
    """A lease owner name unique to this process, readable in the database for operators."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: SqlStore
    content: ContentHolder

    def content_editor(self) -> ContentEditor:
        """The editor of the content kept in this deployment's database."""
        return ContentEditor(SqlContentStore(self.engine), utcnow)

    def transport(self, *, separate_process: bool = False) -> Transport:
        """The relays' transport, with their limits kept in this deployment's database."""
        return transport_from_settings(self.settings, separate_process=separate_process,
                                       tokens=SqlTokenStore(self.engine))

    def pacer(self) -> DestinationPacer:
        """The destination groups of the relays file (or the defaults), their rates kept in
        this deployment's database."""
        groups = self.settings.relays.destinations
        tokens = SqlTokenStore(self.engine)
        return DestinationPacer(groups, {
            group.name: Budget(f"destination:{group.name}", RelayLimits(per_second=group.per_second),
                               tokens)
            for group in groups if group.per_second is not None})

    def dispatcher(self, transport: Transport | None = None, owner: str | None = None) -> Dispatcher:
        return Dispatcher(
            store=self.store,
            transport=transport or self.transport(),
            content=self.content,
            brand=brand_from(self.settings),
            links=links_from(self.settings),
            owner=owner or process_owner(),
            message_id_domain=self.settings.sender_domain,
            policy=policy_from(self.settings),
            throttle=throttle_from(self.settings, self.engine),
            assigner=Assigner(self.settings.secret_key),
            winners=lambda: declared_winners(self.engine),
            count_clicks=self.settings.click_counting,
            pacer=self.pacer(),
        )


def live_content(settings: Settings) -> Content:
    """The content the schedulers send: the files, or the database's newest version."""
    if settings.content_source == "files":
        return load_content(settings.sequences_dir, settings.templates_dir)
    return runtime_from(settings).content.current


def runtime_from(settings: Settings, *, require_migrated: bool = True,
                 content_rules: bool = False) -> Runtime:
    engine = make_engine(settings.database_url)
    if require_migrated:
        ensure_migrated(engine)
    sync = None
    if settings.content_source == "database":
        editor = ContentEditor(SqlContentStore(engine), utcnow)
        import_if_empty(editor, settings.sequences_dir, settings.templates_dir)
        sync = ContentMirror(editor, settings.content_cache_dir).sync
    content = ContentHolder(settings.sequences_dir, settings.templates_dir, rules=content_rules,
                            sync=sync)
    return Runtime(settings=settings, engine=engine, store=SqlStore(engine), content=content)
