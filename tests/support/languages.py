"""Template folders for the language tests: a copy of templates/ with a Hindi locale file (the real
one when the repository has it, else a small one here), and one with a pseudo right-to-left locale
and its own tiny catalog, to show that a new locale, even an RTL one, needs no code."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from tests.support.paths import ROOT

# Only what the pages read: the language block, crisis help and the free call. Numbers as en-IN's.
HINDI_LOCALE: Final = """\
language: {name: हिन्दी, tag: hi, direction: ltr, fallback: [hi, en-IN, en]}
crisis:
  heading: अगर आपको अभी मदद चाहिए
  text: अगर आप या कोई और अभी ख़तरे में है, तो 112 पर कॉल करें।
  lines:
    - {name: इमरजेंसी, contact: "112", note: "पुलिस, एम्बुलेंस और फ़ायर ब्रिगेड"}
    - {name: टेली-मानस, contact: 14416 या 1-800-891-4416, note: "मुफ़्त, 24 घंटे"}
  framing: ये नोट्स थेरेपी नहीं हैं। अगर आप ख़तरे में हैं, तो कृपया 112 पर कॉल करें।
resources: []
booking:
  url: https://example.org/consult
  label: मुफ़्त कॉल के लिए समय चुनें
  duration: लगभग 20 मिनट
  with_whom: हमारे कपल थेरेपिस्ट में से कोई एक
  format: फ़ोन या वीडियो पर
  languages: हिंदी या अंग्रेज़ी
  cost: मुफ़्त
"""

# A made-up right-to-left locale ("xr"), written in Latin letters so that a test can read it.
RTL_LOCALE: Final = """\
language: {name: Mirrorish, tag: ar-XR, direction: rtl, fallback: [en]}
crisis:
  heading: Help, mirrored
  text: Call your local emergency number.
  lines: [{name: Emergency, contact: "999"}]
"""
RTL_TRANSLATIONS: Final = {"Check your inbox": "xobni ruoy kcehC",
                           "Skip to the main content": "Tnetnoc niam eht ot piks"}


def copy_templates(tmp_path: Path) -> Path:
    """A copy of templates/ (without compiled catalogs, which the app then compiles itself)."""
    target = tmp_path / "templates"
    if not target.exists():
        shutil.copytree(ROOT / "templates", target, ignore=shutil.ignore_patterns("*.mo"))
    return target


def templates_with_hindi(tmp_path: Path) -> Path:
    """templates/ with a hi-IN locale file: the repository's own once it has one."""
    target = copy_templates(tmp_path)
    locale = target / "locales" / "hi-IN.yaml"
    if not locale.exists():
        locale.write_text(HINDI_LOCALE, encoding="utf-8")
    return target


def templates_with_rtl(tmp_path: Path) -> Path:
    """templates/ with the pseudo right-to-left locale "xr" and a catalog of two messages."""
    target = copy_templates(tmp_path)
    (target / "locales" / "xr.yaml").write_text(RTL_LOCALE, encoding="utf-8")
    catalog = Catalog(locale="ar", project="nurture")
    for english, mirrored in RTL_TRANSLATIONS.items():
        catalog.add(english, mirrored)
    folder = target / "translations" / "xr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / "messages.po").open("wb") as po:
        write_po(po, catalog)
    return target
