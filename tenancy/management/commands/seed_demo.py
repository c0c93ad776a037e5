"""`manage.py seed_demo`: a demo tenant with one user per role, and the logins to try it.

Idempotent: run it again and it changes nothing, except printing the logins.
Passwords come from LIKENESS_DEMO_PASSWORD (default shown below) and are only
set when a demo user is first created.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.anchoring import anchor_chains
from tenancy import actions
from tenancy.models import Membership, Role, Tenant

DEMO_TENANT = ("Demo Brand", "demo")
SECOND_TENANT = ("Second Brand", "second")
DEFAULT_PASSWORD = "likeness-demo"  # noqa: S105 (a published demo login, refused outside DEBUG)
DEMO_USERS = [
    ("demo-admin", Role.ADMIN),
    ("demo-staff", Role.STAFF),
    ("demo-legal", Role.LEGAL_REVIEWER),
]


class Command(BaseCommand):
    help = "Create (once) a demo tenant with one user per role and print their logins."

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("LIKENESS_DEMO_PASSWORD", DEFAULT_PASSWORD)
        if password == DEFAULT_PASSWORD and not settings.DEBUG:
            raise CommandError(
                "Refusing the published demo password outside DEBUG; set LIKENESS_DEMO_PASSWORD."
            )
        with transaction.atomic():
            demo = self._tenant(*DEMO_TENANT)
            second = self._tenant(*SECOND_TENANT)
            users = {}
            for username, role in DEMO_USERS:
                users[username] = self._user(username, password)
                self._member(demo, users[username], role)
            # The admin also belongs to a second brand, to show the tenant switcher.
            self._member(second, users["demo-admin"], Role.ADMIN)
        # Sign the demo chains' first checkpoints now: beat's first anchoring run comes only after
        # LIKENESS_AUDIT_ANCHOR_MINUTES, and until then the verify page would say "not anchored".
        anchor_chains([demo, second])
        self.stdout.write("Demo tenant 'Demo Brand' (slug demo) is ready. Log in at /login/ with:")
        for username, role in DEMO_USERS:
            self.stdout.write(f"  {role.label:<15} {username:<12} password: {password}")
        self.stdout.write("  (demo-admin is also admin of 'Second Brand': use the tenant switcher)")

    def _tenant(self, name: str, slug: str) -> Tenant:
        existing = Tenant.objects.filter(slug=slug).first()
        return existing or actions.create_tenant(name=name, slug=slug)

    def _user(self, username: str, password: str) -> Any:
        user_model = get_user_model()
        user = user_model._default_manager.filter(username=username).first()
        if user is None:
            user = user_model._default_manager.create_user(
                username=username, email=f"{username}@demo.invalid", password=password
            )
        return user

    def _member(self, tenant: Tenant, user: Any, role: Role) -> None:
        if not Membership.objects.filter(tenant=tenant, user=user).exists():
            actions.add_member(tenant=tenant, user=user, role=role)
