"""Shared fixtures: each support module owns one kind of real component."""

pytest_plugins = [
    "tests.support.databases",
    "tests.support.stores",
    "tests.support.smtp",
    "tests.support.cli",
    "tests.support.schedulers",
    "tests.support.web",
    "tests.support.admin",
    "tests.support.browser",
    "tests.support.spamassassin",
]
