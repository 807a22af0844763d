"""Turning a step and a recipient into a finished email: templates, text part, CSS inlining and MIME."""
