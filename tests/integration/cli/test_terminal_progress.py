"""Long commands draw progress on a terminal and nothing at all when piped, on SQLite and
PostgreSQL: `enroll --from-csv`, `db rotate-keys`, `subscribers erase|export` for many,
`bounces ingest --maildir` and `db purge`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from nurture.clock import parse_instant
from nurture.store.database import make_engine
from nurture.store.models import Subscriber
from tests.support.cli import clean_env, nurture, write_csv
from tests.support.paths import ROOT
from tests.support.terminal import on_terminal

NOW = "2026-03-02T10:00:00Z"
# What a rich bar is drawn with; none of it may reach a pipe.
BAR = "━"
ANSI = "\x1b["


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The command's settings on a fresh migrated database (each backend); logs at WARNING so
    that what a pipe gets on stderr is the command's own words."""
    return clean_env({
        "NURTURE_DATABASE_URL": database_url,
        "NURTURE_SMTP_URL": "smtp://127.0.0.1:9",
        "NURTURE_SEQUENCES_DIR": str(ROOT / "sequences"),
        "NURTURE_TEMPLATES_DIR": str(ROOT / "templates"),
        "NURTURE_BASE_URL": "https://nurture.test",
        "NURTURE_SENDER": "Nurture <hello@nurture.test>",
        "NURTURE_LOG_LEVEL": "WARNING",
    })


def _enroll(env: dict[str, str], tmp_path: Path, count: int) -> None:
    result = nurture("enroll", "--from-csv", str(write_csv(tmp_path / "people.csv", count)),
                     "--sequence", "sample", "--now", NOW, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "piped: no progress"


def test_csv_import(env: dict[str, str], tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "people.csv", 5000)
    shown = on_terminal("enroll", "--from-csv", str(csv), "--sequence", "sample", "--now", NOW,
                        env=env)
    assert shown.returncode == 0, shown.terminal
    assert "reading rows" in shown.terminal and "enrolling" in shown.terminal
    assert "5000/5000" in shown.terminal and BAR in shown.terminal
    assert "enrolled 5000, not enrolled 0" in shown.terminal

    piped = nurture("enroll", "--from-csv", str(csv), "--sequence", "sample", "--now", NOW,
                    env=env)
    assert piped.stderr == ""
    assert "enrolled 0, not enrolled 5000" in piped.stdout
    assert ANSI not in piped.stdout


def test_rotate_keys(env: dict[str, str], tmp_path: Path) -> None:
    _enroll(env, tmp_path, 2000)
    shown = on_terminal("db", "rotate-keys", env=env, stdout_too=False)
    assert shown.returncode == 0, shown.terminal
    assert "re-encrypting" in shown.terminal and "2000/2000" in shown.terminal
    assert "re-encrypted the names and answers of 2000 subscriber(s)" in shown.stdout

    piped = nurture("db", "rotate-keys", env=env)
    assert (piped.returncode, piped.stderr) == (0, "")
    assert "of 2000 subscriber(s)" in piped.stdout


def test_erase_many_from_a_file(env: dict[str, str], tmp_path: Path) -> None:
    _enroll(env, tmp_path, 300)
    first = tmp_path / "first.txt"
    first.write_text("# erasure requests of the week\n"
                     + "".join(f"PERSON{i}@example.org\n" for i in range(0, 150, 3))
                     + "\nnobody@example.org\nnot an address\nperson0@example.org\n")
    refused = nurture("subscribers", "erase", "--from-file", str(first), env=env)
    assert refused.returncode == 1 and "--yes" in refused.stderr

    shown = on_terminal("subscribers", "erase", "--from-file", str(first), "--yes", env=env)
    assert shown.returncode == 1, "one address was not found, one was not an address"
    assert "erasing" in shown.terminal and "51/51" in shown.terminal and BAR in shown.terminal
    assert "erased 50 subscriber(s)" in shown.terminal
    assert "1 address(es) not found, 1 not an address" in shown.terminal
    assert "nobody@example.org" not in shown.terminal, "not listed unless asked"

    second = tmp_path / "second.txt"
    second.write_text("".join(f"person{i}@example.org\n" for i in range(150, 300, 3)))
    piped = nurture("subscribers", "erase", "person1@example.org", "gone@example.org",
                    "--from-file", str(second), "--yes", "--list-unknown", env=env)
    assert piped.returncode == 1
    assert "erased 51 subscriber(s)" in piped.stdout
    assert piped.stderr.splitlines() == ["1 address(es) not found, 0 not an address",
                                         "  gone@example.org"]

    everyone = tmp_path / "everyone.txt"
    everyone.write_text("".join(f"person{i}@example.org\n" for i in range(300)))
    remaining = nurture("subscribers", "export", "--from-file", str(everyone),
                        "--out", str(tmp_path / "left.jsonl"), env=env)
    exported = [json.loads(line) for line in (tmp_path / "left.jsonl").read_text().splitlines()]
    assert len(exported) == 300 - 50 - 51, "everyone else is still there"
    assert "exported 199 subscriber(s)" in remaining.stderr


def test_export_many(env: dict[str, str], tmp_path: Path) -> None:
    _enroll(env, tmp_path, 200)
    wanted = tmp_path / "wanted.txt"
    wanted.write_text("".join(f"person{i}@example.org\n" for i in range(120)) + "who@example.org\n")
    out = tmp_path / "export.json"
    shown = on_terminal("subscribers", "export", "--from-file", str(wanted), "--array",
                        "--out", str(out), env=env)
    assert shown.returncode == 1, "who@example.org is unknown"
    assert "exporting" in shown.terminal and "121/121" in shown.terminal
    people = json.loads(out.read_text())
    assert sorted(p["subscriber"]["email"] for p in people) == sorted(
        f"person{i}@example.org" for i in range(120))

    piped = nurture("subscribers", "export", "person1@example.org", "person2@example.org",
                    env=env)
    assert piped.returncode == 0
    assert piped.stderr == "exported 2 subscriber(s)\n"
    lines = [json.loads(line) for line in piped.stdout.splitlines()]
    assert [p["subscriber"]["first_name"] for p in lines] == ["P1", "P2"]
    one = nurture("subscribers", "export", "person1@example.org", env=env)
    assert json.loads(one.stdout)["subscriber"]["email"] == "person1@example.org", (
        "one address: one object, as before")


def test_bounces_ingest(env: dict[str, str], tmp_path: Path) -> None:
    maildir = tmp_path / "bounces"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    fixtures = ROOT / "tests" / "fixtures" / "bounces"
    for index in range(40):
        shutil.copy(fixtures / "dsn-soft-delayed.eml", maildir / "new" / f"{index:03}.eml")
    shutil.copy(fixtures / "arf-abuse-by-recipient.eml", maildir / "cur" / "arf.eml")
    shown = on_terminal("bounces", "ingest", "--maildir", str(maildir), "--now", NOW, env=env)
    assert shown.returncode == 0, shown.terminal
    assert "reading reports" in shown.terminal and "41/41" in shown.terminal
    assert "messages=41" in shown.terminal

    piped = nurture("bounces", "ingest", "--maildir", str(maildir), "--now", NOW, env=env)
    assert (piped.returncode, piped.stderr) == (0, "")
    assert piped.stdout.startswith("messages=41 ")


def test_purge_by_hand(env: dict[str, str], tmp_path: Path) -> None:
    _enroll(env, tmp_path, 30)
    left_at = parse_instant(NOW) + timedelta(days=1)
    engine = make_engine(env["NURTURE_DATABASE_URL"])
    with engine.begin() as conn:
        # 20 left a day after enrolling, 10 more a month later: by left_at + 31 days only the
        # first 20 are past the 30 days of retention.
        for emails, at in ((range(20), left_at), (range(20, 30), left_at + timedelta(days=30))):
            conn.execute(update(Subscriber).where(
                Subscriber.email.in_([f"person{i}@example.org" for i in emails])
            ).values(status="unsubscribed", updated_at=at))
    later = (left_at + timedelta(days=31)).isoformat()

    early = nurture("db", "purge", "--now", (left_at + timedelta(days=29)).isoformat(), env=env)
    assert early.stdout.startswith("purged 0 who left"), early.stdout + early.stderr

    shown = on_terminal("db", "purge", "--now", later, env=env)
    assert shown.returncode == 0, shown.terminal
    assert "people who left" in shown.terminal and "20/20" in shown.terminal
    assert "unconfirmed signups" in shown.terminal and "0/0" in shown.terminal
    assert "purged 20 who left" in shown.terminal

    piped = nurture("db", "purge", "--now", later, "--json", env=env)
    assert (piped.returncode, piped.stderr) == (0, "")
    assert json.loads(piped.stdout) == {"departed": 0, "unconfirmed": 0, "clicks": 0,
                                        "cutoff": (left_at + timedelta(days=1)).isoformat()}
    with engine.connect() as conn:
        erased = conn.scalar(select(func.count()).where(Subscriber.status == "erased"))
    engine.dispose()
    assert erased == 20


def test_nothing_of_rich_is_loaded_off_a_terminal(env: dict[str, str]) -> None:
    probe = ("import sys\nfrom nurture.cli.main import main\ncode = main(['db', 'purge'])\n"
             "loaded = sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.'))\n"
             "sys.stderr.write(repr(loaded))\nsys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "[]"
    assert re.match(r"purged 0 who left", result.stdout)
