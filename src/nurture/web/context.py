"""The public app's shared state in one typed object, built once by create_app and kept on app.state:
settings, runtime, account store, enroller, token signer, CSRF guard, client address, limits, pages
and the languages they speak; and the locale data the pages read (footer framing, crisis help, the
free call)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr

from nurture.config import Settings
from nurture.engine.tokens import TokenSigner
from nurture.rendering.types import LocaleData
from nurture.services.runtime import Runtime
from nurture.store.accounts.store import AccountStore
from nurture.web.enroller import Enroller
from nurture.web.languages import Languages
from nurture.web.options import WebOptions
from nurture.web.pages import Pages
from nurture.web.security import ClientAddress, CsrfGuard, SignupLimits


@dataclass(frozen=True)
class WebContext:
    """Everything the public routes share; they get it through the `Web` dependency."""

    settings: Settings
    options: WebOptions
    runtime: Runtime
    accounts: AccountStore
    enroller: Enroller
    signer: TokenSigner
    csrf: CsrfGuard
    client_ip: ClientAddress
    limits: SignupLimits
    pages: Pages
    languages: Languages
    clock: Callable[[], datetime]

    @property
    def web_source(self) -> str:
        """The consent records' source for the pages: which version of the form was seen."""
        return f"web-form {self.options.form_version}"

    @property
    def api_source(self) -> str:
        return f"api {self.options.form_version}"

    @property
    def resend_interval(self) -> timedelta:
        return timedelta(seconds=self.options.resend_interval_seconds)


def confirm_days(options: WebOptions) -> int:
    """How long a confirmation link works, in whole days, as the pages say it."""
    return max(1, options.confirm_max_age_seconds // 86400)


def locale_data(runtime: Runtime, locale: str) -> LocaleData | None:
    """The locale file serving `locale` in the content now loaded (the emails read the same), or
    None when there is none to read."""
    try:
        return runtime.content.current.library.locale_data(locale)
    except LookupError:
        return None


def build_context(settings: Settings, runtime: Runtime, options: WebOptions,
                  clock: Callable[[], datetime]) -> WebContext:
    def framing(locale: str) -> str:
        data = locale_data(runtime, locale)
        return data.crisis.framing if data is not None else ""

    languages = Languages(settings.templates_dir)
    pages = Pages(settings.templates_dir / "pages", {
        "site_name": parseaddr(settings.sender)[0] or "Nurture",
        "postal_address": settings.postal_address,
        "confirm_days": confirm_days(options),
        "resend_minutes": max(1, options.resend_interval_seconds // 60),
    }, framing=framing, languages=languages)
    return WebContext(
        settings=settings,
        options=options,
        runtime=runtime,
        accounts=AccountStore(runtime.engine),
        enroller=Enroller(runtime.content),
        signer=TokenSigner(settings.secret_key),
        csrf=CsrfGuard(settings.secret_key, secure=settings.base_url.startswith("https://")),
        client_ip=ClientAddress(options.trusted_proxies),
        limits=SignupLimits.per_hour(options.signup_per_ip_per_hour,
                                     options.signup_per_address_per_hour),
        pages=pages,
        languages=languages,
        clock=clock,
    )
