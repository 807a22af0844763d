"""`nurture content import|export|versions` on a database, and what `config check` says of where
content lives: an import is validated like `sequences validate` and refused whole with file:line,
an export writes the version's bytes, and a command that sends or previews reads the database's
version when content lives there."""

from __future__ import annotations

from pathlib import Path

from nurture.content.snapshots import read_files
from tests.support.cli import clean_env, nurture
from tests.support.schedulers import copy_content


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return clean_env({"NURTURE_DATABASE_URL": database_url, "NURTURE_BASE_URL": "https://n.test",
                      "NURTURE_SENDER": "Nurture <hello@n.test>", **extra})


def test_import_export_and_versions(database_url: str, tmp_path: Path) -> None:
    content = tmp_path / "content"
    copy_content(content, all_day=False)
    env = _env(database_url)
    welcome = content / "templates" / "emails" / "sample" / "welcome.md"
    good = welcome.read_text()
    welcome.write_text(good + "\n{{ first_name | no_such_filter }}\n")
    refused = nurture("content", "import", str(content), env=env)
    assert refused.returncode == 1, refused.stderr
    assert "templates/emails/sample/welcome.md" in refused.stdout
    assert "nothing was imported" in refused.stdout

    welcome.write_text(good)
    done = nurture("content", "import", str(content), env=env)
    assert done.returncode == 0, done.stderr
    assert "imported as version 1" in done.stdout
    again = nurture("content", "import", str(content), env=env)
    assert "nothing to import" in again.stdout

    out = tmp_path / "out"
    exported = nurture("content", "export", str(out), env=env)
    assert exported.returncode == 0 and "version 1 (import by cli:" in exported.stdout
    assert read_files(out) == read_files(content)
    listed = nurture("content", "versions", env=env)
    assert "1  " in listed.stdout and "import" in listed.stdout
    missing = nurture("content", "export", str(out), "--version", "9", env=env)
    assert missing.returncode == 1 and "there is no content version 9" in missing.stderr


def test_commands_read_the_databases_version_when_content_lives_there(
    database_url: str, tmp_path: Path,
) -> None:
    content = tmp_path / "content"
    copy_content(content, all_day=False)
    sequence = content / "sequences" / "sample.yaml"
    sequence.write_text(sequence.read_text().replace("are not alone in this",
                                                     "have company in this"))
    env = _env(database_url, NURTURE_CONTENT_SOURCE="database",
               NURTURE_CONTENT_CACHE_DIR=str(tmp_path / "cache"),
               NURTURE_SEQUENCES_DIR=str(tmp_path / "nowhere" / "sequences"),
               NURTURE_TEMPLATES_DIR=str(tmp_path / "nowhere" / "templates"))
    assert nurture("content", "import", str(content), env=env).returncode == 0
    check = nurture("config", "check", env=env)
    assert "content: the database's newest version" in check.stdout
    preview = nurture("preview", "sample", "welcome", "--persona", "name=Asha",
                      "--out", str(tmp_path / "preview"), env=env)
    assert preview.returncode == 0, preview.stderr
    assert "have company in this" in preview.stdout
