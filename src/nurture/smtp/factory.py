"""Chooses the SMTP transport for the settings: in this process, or in a child process for batches."""

from __future__ import annotations

from nurture.config import Settings
from nurture.engine.ports import Transport
from nurture.smtp.relay_process import ProcessTransport
from nurture.smtp.transports import SmtpTransport


def transport_from_settings(settings: Settings, *, separate_process: bool = False) -> Transport:
    """The transport for `NURTURE_SMTP_URL` with `NURTURE_SMTP_TIMEOUT_SECONDS`; with
    `separate_process`, the SMTP conversation runs in a child process, pipelined (for sending
    batches: see nurture.smtp.relay_process)."""
    if separate_process:
        return ProcessTransport(settings.smtp, timeout=settings.smtp_timeout_seconds)
    return SmtpTransport(settings.smtp, timeout=settings.smtp_timeout_seconds)
