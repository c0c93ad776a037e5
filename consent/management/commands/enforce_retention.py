"""`manage.py enforce_retention [--now ISO-8601] [--dry-run]`: the retention and expiry sweep."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from consent import actions


def _parse_now(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--now must be an ISO-8601 date or time, got {value!r}.") from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


class Command(BaseCommand):
    help = "Erase what is due: expired or revoked consents, data past retain_until, interrupted erasures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--now", type=_parse_now, help="Act as if it were this moment (ISO-8601; UTC if naive)."
        )
        parser.add_argument("--dry-run", action="store_true", help="Only print what would be erased.")

    def handle(self, *args: Any, **options: Any) -> None:
        def echo(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        actions.enforce_retention(now=options["now"], dry_run=options["dry_run"], echo=echo)
