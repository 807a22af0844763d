"""`nurture sequences validate`: every problem in sequences/ and templates/, with file:line and a fix."""

from __future__ import annotations

import argparse

from nurture.cli.arguments import EXIT_FAILED, EXIT_OK, Commands, say
from nurture.config import Settings
from nurture.domain.problems import Severity


def cmd_sequences_validate(settings: Settings, args: argparse.Namespace) -> int:
    from nurture.content.library import check_content

    sequences, library, problems = check_content(settings.sequences_dir, settings.templates_dir)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    warnings = [p for p in problems if p.severity is Severity.WARNING]
    for problem in problems:
        say(str(problem))
    if library is not None and not errors:
        from nurture.content.readability import readability_report

        say("readability of each step's text (English: Flesch reading ease, higher is easier; "
            "other languages: words per sentence and share of long words, lower is easier):")
        for item in readability_report(sequences, library):
            where = "" if item.locale == "en" else f" [{item.locale}]"
            mark = "" if item.passes else "  (hard to read)"
            say(f"  {item.sequence}/{item.step}{where}: {item.describe()}{mark}")
    if library is not None:
        from nurture.content.translations import coverage_table

        files = library.locales.keys()
        for line in coverage_table(sequences, library.translations, files,
                                   {key: library.locales.chain(key) for key in files}):
            say(line)
    from nurture.cli.experiments import validate_line

    for key in sorted(sequences):
        for step in sequences[key].steps:
            if step.experiment is not None:
                own = [] if library is None else sorted(
                    locale for locale in library.translations.locales
                    if library.translations.get(key, step.key, locale) is not None)
                say(validate_line(key, step, own))
    steps = sum(len(s.steps) for s in sequences.values())
    say(f"{len(sequences)} sequence(s), {steps} step(s): {len(errors)} error(s), "
           f"{len(warnings)} warning(s)")
    return EXIT_FAILED if errors else EXIT_OK


def register(commands: Commands) -> None:
    sequences = commands.add_parser("sequences", help="check the content in sequences/ and "
                                    "templates/")
    seq_commands = sequences.add_subparsers(dest="sequences_command", required=True,
                                            metavar="ACTION")
    seq_commands.add_parser("validate", help="report every problem with file:line and a fix; "
                            "exit 1 on an error").set_defaults(handler=cmd_sequences_validate)
