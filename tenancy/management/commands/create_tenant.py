"""`manage.py create_tenant NAME SLUG --admin USERNAME`: the operator's way to open a new brand."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from tenancy import actions
from tenancy.models import Role


class Command(BaseCommand):
    help = "Create a tenant (audited as tenant.created) and make an existing user its first admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("slug")
        parser.add_argument("--admin", required=True, metavar="USERNAME", help="existing user to make admin")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model()._default_manager.filter(username=options["admin"]).first()
        if user is None:
            raise CommandError(
                f"No user {options['admin']!r}; create it first (manage.py createsuperuser or the API)."
            )
        try:
            with transaction.atomic():
                tenant = actions.create_tenant(name=options["name"], slug=options["slug"])
                actions.add_member(tenant=tenant, user=user, role=Role.ADMIN)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(f"Created tenant {tenant.slug} with admin {user.get_username()}.")
