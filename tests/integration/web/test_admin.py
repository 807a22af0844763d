"""The admin pages over HTTP on SQLite and PostgreSQL: sign-in, CSRF, sequences, previews, test sends,
results and deliveries with masked addresses."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, update
from starlette.requests import Request
from starlette.responses import Response

from nurture.store.models import Delivery, Subscriber
from nurture.web.admin.auth import SESSION_COOKIE, AdminAuth, AdminOptions, hash_password
from nurture.web.admin.formatting import mask_address, redact_addresses
from nurture.web.admin.previews import PREVIEW_CSP
from nurture.web.charts import FunnelStage, funnel_svg
from nurture.web.security import CONTENT_SECURITY_POLICY
from tests.support.admin import (
    ADMIN,
    BLAME_SECTION,
    ENV_ADMIN_USERS,
    FAST_HASHER,
    PASSWORD,
    PEOPLE,
    STIGMA_SECTION,
    AdminWeb,
    build_admin_web,
    deliver_to_people,
    session_cookie,
    sign_in,
)
from tests.support.clock import Clock
from tests.support.paths import ROOT
from tests.support.smtp import RecordingSmtpServer
from tests.support.web import csrf_of, rows

# -- signing in ---------------------------------------------------------------------------------


def test_every_page_needs_a_session(admin: AdminWeb) -> None:
    browser = admin.browser()
    for url in ("/admin", "/admin/sequences/sample?reasons=stigma", "/admin/results",
                "/admin/deliveries"):
        response = browser.get(url)
        assert response.status_code == 303, url
        location = urlsplit(response.headers["location"])
        assert location.path == "/admin/login"
        assert parse_qs(location.query)["next"] == [url]
    preview = browser.get("/admin/preview/sample/welcome")
    assert preview.status_code == 401 and "sign in" in preview.text
    token = browser.csrf("/admin/login")
    sent = browser.post("/admin/sequences/sample/steps/welcome/test-send",
                        data={"csrf_token": token, "to": "someone@example.org"})
    assert sent.status_code == 303 and sent.headers["location"].startswith("/admin/login")


def test_a_wrong_password_or_name_gives_one_error_and_no_session(admin: AdminWeb) -> None:
    browser = admin.browser()
    wrong_password = sign_in(browser, password="not the password at all")
    unknown_name = sign_in(browser, name="mallory")
    for response in (wrong_password, unknown_name):
        assert response.status_code == 401
        assert "do not match an admin account" in response.text
        assert session_cookie(response) is None
    assert browser.cookies.get(SESSION_COOKIE) is None
    assert browser.get("/admin").status_code == 303


def test_sign_in_attempts_are_limited_per_client_address(admin: AdminWeb) -> None:
    browser = admin.browser("192.0.2.7")
    for _ in range(10):
        assert sign_in(browser, password="a wrong password").status_code == 401
    limited = sign_in(browser)
    assert limited.status_code == 429, "even the right password waits"
    assert int(limited.headers["retry-after"]) > 0
    assert session_cookie(limited) is None
    assert sign_in(admin.browser("192.0.2.8")).status_code == 303, "another address still can"
    admin.clock.advance(minutes=16)
    assert sign_in(browser).status_code == 303


def test_sign_in_sets_a_strict_cookie_and_sign_out_ends_it(admin: AdminWeb) -> None:
    browser = admin.browser()
    response = sign_in(browser, target="/admin/results?since=2026-03-01")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/results?since=2026-03-01"
    cookie = session_cookie(response)
    assert cookie is not None
    morsel = cookie[SESSION_COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "strict"
    assert morsel["path"] == "/admin" and morsel["max-age"] == str(8 * 3600)
    assert not morsel["secure"], "plain http in tests; https turns Secure on"

    page = browser.get("/admin")
    assert page.status_code == 200
    assert "Sample: three short notes" in page.text and f"Signed in as {ADMIN}" in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert browser.get("/admin/login").status_code == 303, "already signed in"

    signed_out = browser.post("/admin/logout", data={"csrf_token": csrf_of(page)})
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/admin/login?signed_out=1"
    assert browser.cookies.get(SESSION_COOKIE) is None
    assert browser.get("/admin").status_code == 303


def test_sign_in_never_redirects_to_another_site(admin: AdminWeb) -> None:
    for target in ("https://evil.example/admin", "//evil.example/admin", "/\\evil.example",
                   "/signup"):
        response = sign_in(admin.browser(), target=target)
        assert response.status_code == 303
        assert response.headers["location"] == "/admin", target


def test_sessions_end_after_eight_hours(admin: AdminWeb) -> None:
    browser = admin.signed_in()
    admin.clock.advance(hours=7, minutes=59)
    assert browser.get("/admin").status_code == 200
    admin.clock.advance(minutes=2)
    assert browser.get("/admin").status_code == 303


def test_forged_and_outdated_sessions_are_refused(admin: AdminWeb, admin_hash: str) -> None:
    browser = admin.signed_in()
    value = browser.cookies.get(SESSION_COOKIE)
    assert value
    forged = admin.browser()
    forged.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"),
                       domain="testserver", path="/admin")
    assert forged.get("/admin").status_code == 303

    # The same secret but a new password for the user: sessions made before it no longer count.
    other = AdminAuth(AdminOptions(users=((ADMIN, FAST_HASHER.hash("a different password")),)),
                      admin.settings.secret_key, secure=False, clock=admin.clock)
    request = Request({"type": "http", "headers": [(b"cookie", f"{SESSION_COOKIE}={value}".encode())]})
    assert other.user(request) is None
    same = AdminAuth(AdminOptions(users=((ADMIN, admin_hash),)), admin.settings.secret_key,
                     secure=False, clock=admin.clock)
    assert same.user(request) == ADMIN


def test_session_cookie_is_secure_on_https(admin_hash: str) -> None:
    auth = AdminAuth(AdminOptions(users=((ADMIN, admin_hash),)), "x" * 32, secure=True,
                     clock=Clock())
    response = Response()
    auth.start_session(response, ADMIN)
    header = response.headers["set-cookie"]
    assert "Secure" in header and "HttpOnly" in header and "SameSite=strict" in header


def test_every_post_needs_the_csrf_field(admin: AdminWeb) -> None:
    browser = admin.signed_in()
    for url, data in (
        ("/admin/logout", {}),
        ("/admin/sequences/sample/steps/welcome/test-send", {"to": "marketer@example.org"}),
        ("/admin/login", {"name": ADMIN, "password": PASSWORD}),
    ):
        refused = browser.post(url, data=data)
        assert refused.status_code == 403, url
        assert "Please try again" in refused.text
        wrong = browser.post(url, data={**data, "csrf_token": "0" * 64})
        assert wrong.status_code == 403, url
    assert browser.get("/admin").status_code == 200, "still signed in: the logout was refused"


def test_without_admin_users_the_pages_say_so_and_nothing_is_reachable(
        database_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ADMIN_USERS, raising=False)
    harness = build_admin_web(database_url, engine, tmp_path, "smtp://127.0.0.1:1")
    browser = harness.browser()
    try:
        for url in ("/admin", "/admin/login", "/admin/sequences/sample", "/admin/deliveries",
                    "/admin/preview/sample/welcome"):
            response = browser.get(url)
            assert response.status_code == 503, url
            assert "No admin users are configured" in response.text
        posted = browser.post("/admin/login", data={"name": ADMIN, "password": PASSWORD})
        assert posted.status_code == 503
        assert session_cookie(posted) is None
    finally:
        harness.close()


def test_a_short_admin_password_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 12"):
        hash_password("short")


# -- sequences, previews and test sends ---------------------------------------------------------


def test_the_sequence_page_shows_steps_delays_conditions_and_the_timeline(admin: AdminWeb) -> None:
    browser = admin.signed_in()
    listing = browser.get("/admin")
    assert 'href="/admin/sequences/sample"' in listing.text

    page = browser.get("/admin/sequences/sample?reasons=vulnerability&zone=Europe/London"
                       "&start=2026-03-02T10:00")
    assert page.status_code == 200, page.text
    text = page.text
    positions = [text.index(f'id="step-{key}"') for key in ("welcome", "understanding",
                                                           "next-steps")]
    assert positions == sorted(positions), "steps in sequence order"
    assert "after 2d, only when hesitations_any fear_of_blame,stigma" in text
    assert "Mon 02 Mar 2026 10:00 GMT" in text, "the welcome is due at once, inside the window"
    assert "Condition not met: hesitations_any fear_of_blame,stigma" in text
    assert "doesn't get this step" in text
    assert "Sat 07 Mar 2026 10:00 GMT" in text, "next-steps: 2d + 3d after the start"
    assert "Sam, you are not alone in this" in text
    frames = re.findall(r"<iframe [^>]*>", text)
    assert len(frames) == 2, "welcome and next-steps, at desktop width"
    assert all(" sandbox " in frame and "srcdoc" not in frame for frame in frames)

    both = browser.get("/admin/sequences/sample?reasons=stigma&view=both&discreet=yes&name=")
    assert len(re.findall(r"<iframe ", both.text)) == 6
    assert "Your notes have started" in both.text, "the discreet subject"
    assert browser.get("/admin/sequences/nope").status_code == 404
    bad = browser.get("/admin/sequences/sample?zone=Mars/Olympus&start=yesterday")
    assert bad.status_code == 422 and "IANA time zone" in bad.text


def test_the_timeline_shows_the_first_email_at_once_after_confirming(admin: AdminWeb) -> None:
    # The harness's selection sends everyone who confirms to the sample sequence.
    page = admin.signed_in().get("/admin/sequences/sample?reasons=stigma&zone=Asia/Kolkata"
                                 "&start=2026-03-03T03:00")
    assert page.status_code == 200, page.text
    assert "confirming their address Tue 03 Mar 2026 03:00 IST" in page.text
    welcome = page.text[page.text.index('class="timeline-item'):]
    welcome = welcome[:welcome.index("</li>")]
    assert "Tue 03 Mar 2026 03:00 IST" in welcome
    assert "at once after confirming, whatever the send window" in welcome
    assert "Thu 05 Mar 2026 09:00 IST" in page.text, "the second step keeps its window"


def test_previews_differ_by_persona_and_cannot_run_scripts(admin: AdminWeb) -> None:
    browser = admin.signed_in()
    stigma = browser.get("/admin/preview/sample/understanding?reasons=stigma&name=Asha")
    blame = browser.get("/admin/preview/sample/understanding?reasons=fear_of_blame")
    assert stigma.status_code == blame.status_code == 200
    assert STIGMA_SECTION in stigma.text and BLAME_SECTION not in stigma.text
    assert BLAME_SECTION in blame.text and STIGMA_SECTION not in blame.text
    assert "Asha" in stigma.text
    for response in (stigma, blame):
        assert response.headers["content-security-policy"] == PREVIEW_CSP
        assert response.headers["x-frame-options"] == "SAMEORIGIN"
        assert "script-src" not in PREVIEW_CSP and "default-src 'none'" in PREVIEW_CSP
    page = browser.get("/admin/sequences/sample?reasons=stigma")
    assert "/admin/preview/sample/understanding?reasons=stigma" in page.text.replace("&amp;", "&")
    assert browser.get("/admin/preview/sample/nope").status_code == 404


HINDI_SAMPLE_LOCALE = """
language: {name: हिन्दी (भारत), tag: hi-IN, direction: ltr, fallback: [hi, en-IN, en]}
crisis:
  heading: अगर आपको अभी मदद चाहिए
  text: अगर आप ख़तरे में हैं, तो 112 पर कॉल करें।
  lines: [{name: इमरजेंसी, contact: "112"}]
"""


def test_a_preview_in_a_locale_with_texts_of_its_own(
        database_url: str, engine: Engine, tmp_path: Path, admin_hash: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates,
                    ignore=shutil.ignore_patterns("hi-IN", "hi-IN.yaml"))
    (templates / "locales" / "hi-IN.yaml").write_text(HINDI_SAMPLE_LOCALE, encoding="utf-8")
    folder = templates / "emails" / "sample" / "hi-IN"
    folder.mkdir()
    for step in ("welcome", "understanding", "next-steps"):
        (folder / f"{step}.md").write_text(
            f'---\nsubject: "नोट {step}"\npreheader: "पढ़ें"\ndiscreet_subject: "आपके नोट्स"\n'
            f'discreet_preheader: "इस हफ़्ते"\n---\nनमस्ते{{% if first_name %}} {{{{ first_name }}}}'
            f"{{% endif %}},\n\nयह {step} का हिन्दी नोट है।\n\n"
            '{% include "emails/partials/talk-safety.md" %}\n', encoding="utf-8")
    monkeypatch.setenv(ENV_ADMIN_USERS, f"{ADMIN}:{admin_hash}")
    harness = build_admin_web(database_url, engine, tmp_path, "smtp://127.0.0.1:1",
                              templates_dir=templates)
    try:
        browser = harness.signed_in()
        page = browser.get("/admin/sequences/sample?locale=hi-IN&name=मीरा")
        assert page.status_code == 200, page.text
        assert '<option value="hi-IN" selected>हिन्दी (भारत) (hi-IN)</option>' in page.text
        assert "नोट welcome" in page.text, "the step's subject in the locale"
        preview = browser.get("/admin/preview/sample/welcome?locale=hi-IN&name=मीरा")
        assert preview.status_code == 200
        assert "यह welcome का हिन्दी नोट है।" in preview.text
        assert '<html lang="hi-IN" dir="ltr">' in preview.text
        english = browser.get("/admin/preview/sample/welcome?locale=en-IN")
        assert "हिन्दी नोट" not in english.text
        unknown = browser.get("/admin/sequences/sample?locale=xx-YY")
        assert unknown.status_code == 422 and "Choose a language from the list." in unknown.text
    finally:
        harness.close()


def test_a_test_send_arrives_marked_and_is_not_recorded(admin: AdminWeb,
                                                        smtp_server: RecordingSmtpServer) -> None:
    browser = admin.signed_in()
    page = browser.get("/admin/sequences/sample?reasons=stigma&name=Asha")
    sent = browser.post("/admin/sequences/sample/steps/understanding/test-send", data={
        "csrf_token": csrf_of(page), "to": "Marketer@Example.org", "reasons": "stigma",
        "name": "Asha", "locale": "en", "zone": "UTC"})
    assert sent.status_code == 200, sent.text
    assert "Sent “[TEST] Why asking for help can feel risky to them” to marketer@example.org" \
        in sent.text
    (received,) = smtp_server.wait_for(1)
    assert received.recipients == ("marketer@example.org",)
    assert received.message["Subject"] == "[TEST] Why asking for help can feel risky to them"
    assert received.message["X-Nurture-Test"] == "yes"
    plain = received.message.get_body(("plain",))
    assert plain is not None and STIGMA_SECTION in plain.get_content()
    assert rows(admin.engine, Delivery) == [], "a test never enters the delivery table"

    bad = browser.post("/admin/sequences/sample/steps/welcome/test-send",
                       data={"csrf_token": csrf_of(page), "to": "not an address"})
    assert bad.status_code == 422 and "The address" in bad.text
    smtp_server.faults.reject_recipient("blocked@example.org")
    refused = browser.post("/admin/sequences/sample/steps/welcome/test-send",
                           data={"csrf_token": csrf_of(page), "to": "blocked@example.org"})
    assert refused.status_code == 502 and "refused the test: 550" in refused.text
    assert len(smtp_server.messages) == 1


# -- results and deliveries ---------------------------------------------------------------------


def stats_row(html: str, sequence: str, step: str) -> dict[str, str]:
    table = html[html.index(f'id="stats-{sequence}"'):]
    table = table[:table.index("</table>")]
    row = table[table.index(f'data-step="{step}"'):]
    row = row[:row.index("</tr>")]
    return dict(re.findall(r'data-column="([a-z_]+)">([^<]*)<', row))


def test_results_count_deliveries_per_step_with_a_funnel(admin: AdminWeb,
                                                         smtp_server: RecordingSmtpServer) -> None:
    deliver_to_people(admin, smtp_server)
    browser = admin.signed_in()
    page = browser.get("/admin/results")
    assert page.status_code == 200, page.text
    assert stats_row(page.text, "sample", "welcome") == {
        "queued": "0", "sent": "3", "failed": "0", "bounced": "0", "skipped": "0", "share": "100%",
        "unsubscribed_after": "0", "paused_after": "0", "converted_after": "0"}
    understanding = stats_row(page.text, "sample", "understanding")
    assert (understanding["sent"], understanding["skipped"], understanding["share"]) == \
        ("2", "1", "67%")
    next_steps = stats_row(page.text, "sample", "next-steps")
    assert (next_steps["queued"], next_steps["sent"]) == ("3", "0")

    svg = page.text[page.text.index('<svg'):page.text.index('</svg>')]
    assert 'role="img"' in svg and "<title" in svg
    assert "welcome: 3 sent (100%); understanding: 2 sent (67%); next-steps: 0 sent (0%)." in svg
    assert ">welcome: 3 sent (100%)</text>" in svg, "visible text labels"

    # Deliveries count on the day they were queued: all on 2 March but the next-steps of the two
    # who got `understanding` on 4 March.
    later = browser.get("/admin/results?since=2026-03-03")
    assert stats_row(later.text, "sample", "welcome")["sent"] == "0"
    assert stats_row(later.text, "sample", "next-steps")["queued"] == "2"
    same_day = browser.get("/admin/results?since=2026-03-02&until=2026-03-02&sequence=sample")
    assert stats_row(same_day.text, "sample", "welcome")["sent"] == "3"
    assert stats_row(same_day.text, "sample", "understanding")["sent"] == "2"
    assert stats_row(same_day.text, "sample", "next-steps")["queued"] == "1"
    before = browser.get("/admin/results?until=2026-03-01")
    assert stats_row(before.text, "sample", "welcome")["sent"] == "0"
    bad = browser.get("/admin/results?since=March&until=2026-01-01")
    assert bad.status_code == 422 and "YYYY-MM-DD" in bad.text


def test_results_for_one_locale_and_totals_by_locale(admin: AdminWeb,
                                                     smtp_server: RecordingSmtpServer) -> None:
    deliver_to_people(admin, smtp_server)
    with admin.engine.begin() as conn:
        conn.execute(update(Subscriber.__table__)  # type: ignore[arg-type]
                     .where(Subscriber.email == "bilal.r@example.org").values(locale="hi-IN"))
    browser = admin.signed_in()
    page = browser.get("/admin/results?locale=hi-IN")
    assert page.status_code == 200, page.text
    assert stats_row(page.text, "sample", "welcome")["sent"] == "1"
    assert stats_row(page.text, "sample", "understanding")["sent"] == "1"
    assert '<option value="hi-IN" selected>' in page.text
    everyone = browser.get("/admin/results")
    assert stats_row(everyone.text, "sample", "welcome")["sent"] == "3"
    table = everyone.text[everyone.text.index('id="stats-by-locale"'):]
    table = table[:table.index("</table>")]
    totals = {locale: dict(re.findall(r'data-column="([a-z_]+)">([^<]*)<', row))
              for locale, row in re.findall(r'data-locale="([^"]+)">(.*?)</tr>', table, re.S)}
    assert totals["hi-IN"]["sent"] == "2" and totals["en"]["sent"] == "3"
    assert "locale=hi-IN" in table, "each locale links to its own results"


def test_deliveries_by_status_with_masked_addresses(admin: AdminWeb,
                                                    smtp_server: RecordingSmtpServer) -> None:
    deliver_to_people(admin, smtp_server)
    with admin.engine.begin() as conn:
        conn.execute(update(Delivery.__table__)  # type: ignore[arg-type]
                     .where(Delivery.status == "queued")
                     .values(status="failed", smtp_code=550,
                             last_error="550 5.1.1 <chen.w@example.org>: Recipient address rejected"))
    browser = admin.signed_in()
    page = browser.get("/admin/deliveries")
    assert page.status_code == 200
    counts = dict(re.findall(r'data-status="([a-z]+)"[^>]*>\s*<th[^>]*><a[^>]*>[a-z]+</a></th>\s*'
                             r'<td class="number">(\d+)</td>', page.text))
    assert counts["sent"] == "8" and counts["failed"] == "3" and counts["skipped"] == "1"
    assert counts["queued"] == "0"
    for masked in ("a***@e***.org", "b***@e***.org", "c***@e***.org"):
        assert masked in page.text
    for email in PEOPLE:
        assert email not in page.text
        assert email.split("@")[0] not in page.text
    assert "example.org" not in page.text
    assert "550" in page.text and "Recipient address rejected" in page.text

    failed = browser.get("/admin/deliveries?status=failed")
    assert failed.text.count("Recipient address rejected") == 3
    assert "<td>sent</td>" not in failed.text


def test_masking_and_the_funnel_markup() -> None:
    assert mask_address("asha.k@example.org") == "a***@e***.org"
    assert mask_address("x@localhost") == "x***@l***"
    assert mask_address("broken") == "***"
    assert redact_addresses("550 <asha.k@example.org> unknown") == "550 <a***@e***.org> unknown"
    svg = str(funnel_svg("A <b> title", [FunnelStage("<script>", 4), FunnelStage("b", 1, "x")],
                         chart_id="f 1"))
    assert "<script>" not in svg and "&lt;script&gt;: 4 sent (100%)" in svg
    assert 'aria-labelledby="f-1-title f-1-desc"' in svg
    assert "b: 1 sent (25%), x" in svg
    empty = str(funnel_svg("Nothing", [], chart_id="e"))
    assert "Nothing in this period." in empty

