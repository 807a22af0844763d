"""The mail catcher's web pages: the outbox list, and one message with its headers, its text part,
and its HTML part shown twice side by side, at phone width (375 px) and at desktop width."""

from __future__ import annotations

import html
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import cast

LISTED_AT_MOST = 500
LEADING_DOCTYPE = re.compile(r"\A\s*(<!doctype[^>]*>)?", re.IGNORECASE)
SHOWN_HEADERS = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
# Scripts are blocked twice: by this policy (which srcdoc frames inherit) and by the frame's sandbox.
# Images may load so that a preview looks like the real thing. The policy keeps other sites out of
# the frame, so links in a preview open in a new tab (the sandbox allows that popup, nothing else).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: http: https:; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"
PHONE_WIDTH_PX = 375
"""The width of an iPhone's screen in CSS pixels (SE, 12 mini, 13 mini): the email's own
`@media (max-width: 620px)` styles apply there, as in the Mail app."""
# The phone frame's content box is exactly PHONE_WIDTH_PX wide (its border lies outside), so the
# email inside it sees a 375 px viewport. The two frames sit side by side on a wide window, and
# stack, phone first, once the desktop one would get narrower than 30rem.
STYLE = f"""
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 90rem; padding: 1rem;
       color: #1d1d1f; background: #fafafa; }}
h1 {{ font-size: 1.3rem; }} a {{ color: #0a58ca; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; }}
th, td {{ text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e3e3e3;
         vertical-align: top; overflow-wrap: anywhere; }}
th {{ font-weight: 600; white-space: nowrap; }}
iframe {{ display: block; box-sizing: border-box; width: 100%; height: 75vh; border: 1px solid #ccc;
          background: #fff; }}
pre {{ white-space: pre-wrap; overflow-wrap: anywhere; background: #fff; border: 1px solid #e3e3e3;
       padding: .8rem; }}
.muted {{ color: #6e6e73; }}
.previews {{ display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }}
.previews figure {{ margin: 0; }}
.previews figcaption {{ font-weight: 600; margin-bottom: .3rem; }}
.preview-phone {{ flex: 0 0 auto; max-width: 100%; }}
.preview-phone iframe {{ box-sizing: content-box; width: {PHONE_WIDTH_PX}px; max-width: 100%;
                        border-radius: 12px; }}
.preview-desktop {{ flex: 1 1 30rem; min-width: 0; }}
"""


def read_message(path: Path, *, headers_only: bool = False) -> EmailMessage:
    with path.open("rb") as file:
        return BytesParser(policy=policy.default).parse(file, headersonly=headers_only)


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message[name]
    except Exception:  # a header too malformed to parse must not take the page down: show it raw
        raw = [v for k, v in message.raw_items() if k.lower() == name.lower()]
        return str(raw[0]) if raw else ""
    return "" if value is None else str(value)


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return cast(str, cast(EmailMessage, part).get_content())
    except (LookupError, ValueError) as error:  # unknown charset, bad encoding
        return f"(cannot decode the {subtype} part: {error})"


def page(title: str, body: str) -> bytes:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    ).encode()


def list_page(folder: Path, names: list[str]) -> bytes:
    """The outbox: the newest LISTED_AT_MOST of `names` (files in `folder`, newest first)."""
    rows = []
    for name in names[:LISTED_AT_MOST]:
        try:
            message = read_message(folder / name, headers_only=True)
        except FileNotFoundError:
            continue  # deleted since the listing
        link = f"/m/{name}"
        subject = _header(message, "Subject") or "(no subject)"
        rows.append(
            f"<tr><td class=muted>{html.escape(_header(message, 'Date'))}</td>"
            f"<td>{html.escape(_header(message, 'To'))}</td>"
            f'<td><a href="{html.escape(link)}">{html.escape(subject)}</a></td></tr>'
        )
    count = (
        f"{len(names)} message(s)"
        if len(names) <= LISTED_AT_MOST
        else f"newest {LISTED_AT_MOST} of {len(names)} messages"
    )
    table = (
        "<table><thead><tr><th>Date</th><th>To</th><th>Subject</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No messages yet.</p>"
    )
    return page(
        "Outbox",
        f"<h1>Outbox</h1><p class=muted>{count} in {html.escape(str(folder))}</p>{table}",
    )


def _previews(html_body: str) -> str:
    """The HTML part in two labelled frames, at phone width and at desktop width."""
    # srcdoc is an attribute: html.escape(quote=True) keeps the email's markup from closing it,
    # and the sandbox (no allow-scripts, no allow-same-origin) keeps its scripts inert.
    # After any doctype, so that the email's own rendering mode is kept.
    preview = LEADING_DOCTYPE.sub(lambda m: f"{m[0]}<base target=_blank>", html_body, count=1)
    srcdoc = html.escape(preview, quote=True)
    frames = "".join(
        f'<figure class="preview-{kind}"><figcaption>{label}</figcaption>'
        f'<iframe sandbox="{FRAME_SANDBOX}" title="HTML part, {label.lower()}" '
        f'srcdoc="{srcdoc}"></iframe></figure>'
        for kind, label in (("phone", f"Phone ({PHONE_WIDTH_PX} px)"), ("desktop", "Desktop"))
    )
    return f'<h2>HTML</h2><div class="previews">{frames}</div>'


def message_page(name: str, message: EmailMessage) -> bytes:
    """One message: its main headers, its HTML part at both widths and its text part."""
    header_rows = "".join(
        f"<tr><th>{html.escape(header)}</th><td>{html.escape(_header(message, header))}</td></tr>"
        for header in SHOWN_HEADERS
        if header in message
    )
    parts = [
        f'<p><a href="/">&larr; Outbox</a> · <a href="/raw/{html.escape(name)}">raw message</a></p>',
        f"<h1>{html.escape(_header(message, 'Subject') or '(no subject)')}</h1>",
        f"<table>{header_rows}</table>",
    ]
    html_body = _body(message, "html")
    if html_body is not None:
        parts.append(_previews(html_body))
    text_body = _body(message, "plain")
    if text_body is not None:
        parts.append(f"<h2>Text</h2><pre>{html.escape(text_body)}</pre>")
    if html_body is None and text_body is None:
        parts.append("<p class=muted>No text or HTML part.</p>")
    return page(_header(message, "Subject") or name, "".join(parts))
