"""`manage.py verify_audit [--tenant SLUG]`: every chain, against every signed checkpoint in the sink.

Exit 0 when every chain holds and matches its checkpoints, 1 when something is broken (naming
the first bad seq where there is one), 2 for an unknown tenant, 3 when nothing is broken but some
tenant's entries are covered by no checkpoint yet (run `anchor_audit`, check that beat runs).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.anchoring import read_evidence
from audit.verification import ChainStatus, orphaned_checkpoints, verify_all
from tenancy.models import Tenant

EXIT_BROKEN, EXIT_UNANCHORED = 1, 3


class Command(BaseCommand):
    help = "Verify every tenant's audit chain (or one tenant's) against the signed checkpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="verify only this tenant's chain")
        parser.add_argument("--verbose-tenants", action="store_true", help="print one line per tenant")

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = list(Tenant.objects.order_by("slug"))
        if options["tenant"]:
            tenants = [tenant for tenant in tenants if tenant.slug == options["tenant"]]
            if not tenants:
                raise CommandError(f"No tenant with slug {options['tenant']!r}.", returncode=2)
        evidence = read_evidence(tenants[0].pk if options["tenant"] else None, complete=True)
        reports = verify_all(tenants, evidence)
        broken = [report.describe() for report in reports if report.status == ChainStatus.BROKEN]
        if not options["tenant"]:
            broken += orphaned_checkpoints(evidence)
        unanchored = [
            report.describe()
            for report in reports
            if report.status == ChainStatus.UNANCHORED and report.entries
        ]
        if options["verbose_tenants"]:
            for report in reports:
                self.stdout.write(report.describe())
        if broken:
            raise CommandError(
                "audit chain verification FAILED: " + "; ".join(broken), returncode=EXIT_BROKEN
            )
        if unanchored:
            raise CommandError(
                "audit chains hold but are NOT ANCHORED outside the database: "
                + "; ".join(unanchored)
                + ". Run manage.py anchor_audit, and check that its beat task runs.",
                returncode=EXIT_UNANCHORED,
            )
        total = sum(report.entries for report in reports)
        newer = sum(report.entries - (report.anchored_seq or 0) for report in reports)
        self.stdout.write(
            f"audit chains intact: {len(reports)} tenant(s), {total} entries, checked against "
            f"{sum(report.checkpoints for report in reports)} signed checkpoint(s) from {evidence.source}; "
            f"{newer} entries are newer than their tenant's latest checkpoint"
        )
