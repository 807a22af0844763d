"""Application services shared by the CLI, the web app and the scheduler: the runtime built from settings,
events, previews and metrics."""
