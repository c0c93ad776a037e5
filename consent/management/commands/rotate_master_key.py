"""`manage.py rotate_master_key [--dry-run]`: rewrap subject keys under the current master key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from consent import actions


class Command(BaseCommand):
    help = (
        "Rewrap every subject key still wrapped by a key in LIKENESS_PREVIOUS_MASTER_KEYS under "
        "LIKENESS_MASTER_KEY. Exits non-zero while any key opens with no configured master key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be rewrapped.")

    def handle(self, *args: Any, **options: Any) -> None:
        def echo(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        report = actions.rotate_master_key(dry_run=options["dry_run"], echo=echo)
        if report.unopenable:
            raise CommandError(
                f"{len(report.unopenable)} subject keys open with no configured master key; keep every "
                "previous key configured until they are accounted for."
            )
        if not options["dry_run"] and settings.LIKENESS_PREVIOUS_MASTER_KEYS:
            echo(
                "every subject key is under the current master key: retire LIKENESS_PREVIOUS_MASTER_KEYS now"
            )
