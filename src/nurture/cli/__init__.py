"""The `nurture` command line: one module per command group."""
