"""`manage.py verify_audit [--tenant SLUG]`: exit 0 when every chain holds, 1 naming the first bad seq."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.verification import verify_all
from tenancy.models import Tenant


class Command(BaseCommand):
    help = "Verify the hash chain of every tenant's audit log (or of one tenant)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="verify only this tenant's chain")
        parser.add_argument("--verbose-tenants", action="store_true", help="print one line per tenant")

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = list(Tenant.objects.order_by("slug"))
        if options["tenant"]:
            tenants = [tenant for tenant in tenants if tenant.slug == options["tenant"]]
            if not tenants:
                raise CommandError(f"No tenant with slug {options['tenant']!r}.", returncode=2)
        reports = verify_all(tenants)
        broken = [report for report in reports if not report.intact]
        if options["verbose_tenants"]:
            for report in reports:
                self.stdout.write(report.describe())
        if broken:
            raise CommandError(
                "audit chain verification FAILED: " + "; ".join(report.describe() for report in broken),
                returncode=1,
            )
        total = sum(report.entries for report in reports)
        self.stdout.write(f"audit chains intact: {len(reports)} tenant(s), {total} entries")
