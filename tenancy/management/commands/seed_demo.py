"""`manage.py seed_demo`: a demo tenant with one user per role, and the logins to try it.

Idempotent: run it again and it changes nothing, except printing the logins.
Passwords come from LIKENESS_DEMO_PASSWORD (default shown below) and are only
set when a demo user is first created. The demo tenant also gets a published
consent text and the default retention schedule, published by its admin, so a
first consent link can be sent at once instead of meeting an empty choice.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.anchoring import anchor_chains
from consent import actions as consent_actions
from consent.models import ConsentTemplate
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
DEFAULT_CONSENT_NAME = "Likeness consent (plain language)"
# Plain words, one idea per paragraph: what is asked, that each use is a separate choice, that saying no
# or withdrawing costs nothing, how to withdraw, and where the retention schedule is (shown beside it).
DEFAULT_CONSENT_TEXT = """\
What this is
We would like to use photos of you to make new images of you with artificial intelligence. This page asks
for your permission. You decide; nothing happens with your photos until you sign.

What you can agree to
Each use below is a separate choice. You may agree to all, some or none of them:
- Train an identity model: a computer model learns what your face looks like from the photos you give us.
- Generate new images: the model makes new pictures of you, for the uses described on this page.
- Edit existing photos: we change your expression or pose in photos of you (for example a smile).

What we will not do
We use your likeness only for the uses, channels, places and period written on this page. We do not sell
your photos, your face measurements or the model made from them, and we do not use them for anything else.

Saying no or changing your mind
Saying no has no consequence for you. You can withdraw your consent at any time, for any reason, with the
link we e-mailed you or by telling us in any other way. From that moment we stop every use of your
likeness, and we destroy your photos, your face measurements, the models made from them and the images
made with them, and record that in a deletion certificate you may ask us for.

How long we keep your data
The retention schedule shown with this text says exactly how long we keep each kind of data, at most.
"""


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
            self._consent_documents(demo, users["demo-admin"])
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

    def _consent_documents(self, tenant: Tenant, admin: Any) -> None:
        """The texts a first consent link needs, published (once) by the admin, as a real admin would."""
        if consent_actions.schedule_in_force(tenant) is None:
            consent_actions.publish_retention_schedule(
                actor=admin,
                tenant=tenant,
                title=consent_actions.BIPA_DEFAULT_TITLE,
                years_after_last_interaction=consent_actions.MAX_YEARS_AFTER_LAST_INTERACTION,
                days_after_purpose_satisfied=0,
            )
        if not ConsentTemplate.objects.for_tenant(tenant).filter(name=DEFAULT_CONSENT_NAME).exists():
            consent_actions.publish_consent_template(
                actor=admin, tenant=tenant, name=DEFAULT_CONSENT_NAME, body=DEFAULT_CONSENT_TEXT
            )

    def _member(self, tenant: Tenant, user: Any, role: Role) -> None:
        if not Membership.objects.filter(tenant=tenant, user=user).exists():
            actions.add_member(tenant=tenant, user=user, role=role)
