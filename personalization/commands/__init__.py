"""Subcommands of `python -m personalization`: each module defines `COMMAND` (see personalization.cli)."""
