"""`manage.py anchor_audit [--tenant SLUG] [--public-key]`: sign and deliver checkpoints now.

What the beat task `audit.anchor_chains` does every LIKENESS_AUDIT_ANCHOR_MINUTES; safe to run at
any time (a run with nothing new writes nothing). Exit 1 when a tenant could not be anchored or
a sink refused: what was not delivered is retried by the next run. `--public-key` prints the
key legal reviewers use to check checkpoints themselves.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.anchoring import anchor_chains, current_public_key_text
from tenancy.models import Tenant


class Command(BaseCommand):
    help = "Sign a checkpoint of every audit chain that grew, and deliver checkpoints to every sink."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="anchor only this tenant's chain")
        parser.add_argument(
            "--public-key",
            action="store_true",
            help="print the public key that verifies checkpoints, and stop",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["public_key"]:
            self.stdout.write(current_public_key_text())
            return
        tenants = None
        if options["tenant"]:
            tenants = list(Tenant.objects.filter(slug=options["tenant"]))
            if not tenants:
                raise CommandError(f"No tenant with slug {options['tenant']!r}.", returncode=2)
        run = anchor_chains(tenants)
        for line in run.lines:
            self.stdout.write(line)
        if run.failures:
            raise CommandError("audit anchoring incomplete: " + "; ".join(run.failures), returncode=1)
