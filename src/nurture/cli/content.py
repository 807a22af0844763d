"""`nurture content import|export|versions`: content kept in the database, moved to and from
folders of files (sequences/ and templates/), so that a team can still review it in git."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nurture.cli.arguments import EXIT_FAILED, EXIT_OK, CommandError, Commands, say
from nurture.config import Settings
from nurture.domain.problems import Severity

if TYPE_CHECKING:
    from nurture.services.content_editing import ContentEditor


def _editor(settings: Settings) -> ContentEditor:
    from nurture.clock import utcnow
    from nurture.services.content_editing import ContentEditor
    from nurture.store.content_snapshots import SqlContentStore
    from nurture.store.database import ensure_migrated, make_engine

    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    return ContentEditor(SqlContentStore(engine), utcnow)


def cmd_content_import(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.content.snapshots import ContentFileError
    from nurture.services.content_editing import ContentConflict, EditRefused

    root: Path = args.folder
    if not (root / "sequences").is_dir() or not (root / "templates").is_dir():
        raise CommandError(f"{root} must hold sequences/ and templates/ (as `nurture content "
                           "export` writes them)")
    try:
        saved = _editor(settings).import_folder(root, author=f"cli:{args.by}"[:64])
    except EditRefused as refused:
        for problem in refused.problems:
            if problem.severity is Severity.ERROR:
                say(str(problem))
        say("nothing was imported: fix the errors above (`nurture sequences validate` checks "
            "the same) and import again")
        return EXIT_FAILED
    except (ContentConflict, ContentFileError) as error:
        raise CommandError(str(error)) from None
    if saved is None:
        say("the files equal the live version: nothing to import")
    else:
        say(f"imported as version {saved.number}: the schedulers take it up at their next reload")
    return EXIT_OK


def cmd_content_export(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.services.content_editing import NoContentYet
    from nurture.store.content_snapshots import UnknownVersion

    try:
        version = _editor(settings).export_folder(args.folder, args.version)
    except (NoContentYet, UnknownVersion) as error:
        raise CommandError(str(error)) from None
    say(f"version {version.number} ({version.action} by {version.author}, "
        f"{version.saved_at:%Y-%m-%d %H:%M} UTC) written to {args.folder}")
    return EXIT_OK


def cmd_content_versions(settings: Settings, args: argparse.Namespace) -> int:
    versions = _editor(settings).store.versions(limit=args.limit)
    if not versions:
        say("no content in the database yet: `nurture content import DIR` saves the first version")
    for version in versions:
        note = f"  {version.note}" if version.note else ""
        say(f"{version.number:>5}  {version.saved_at:%Y-%m-%d %H:%M}  {version.action:<8}"
            f"{version.author}{note}")
    return EXIT_OK


def register(commands: Commands) -> None:
    content = commands.add_parser("content", help="content kept in the database "
                                  "(NURTURE_CONTENT_SOURCE=database): import, export, versions")
    actions = content.add_subparsers(dest="content_command", required=True, metavar="ACTION")
    imported = actions.add_parser("import", help="save the files of DIR (sequences/ and "
                                  "templates/) as the next version, after validating them")
    imported.add_argument("folder", type=Path, metavar="DIR")
    imported.add_argument("--by", default="import", metavar="NAME",
                          help="who imports, for the version's record and the audit log")
    imported.set_defaults(handler=cmd_content_import)
    exported = actions.add_parser("export", help="write a version (the live one by default) "
                                  "to DIR as sequences/ and templates/")
    exported.add_argument("folder", type=Path, metavar="DIR")
    exported.add_argument("--version", type=int, default=None, metavar="N")
    exported.set_defaults(handler=cmd_content_export)
    listed = actions.add_parser("versions", help="the saved versions, newest first")
    listed.add_argument("--limit", type=int, default=50)
    listed.set_defaults(handler=cmd_content_versions)
