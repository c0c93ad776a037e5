"""`manage.py revoke_api_tokens USERNAME`: the operator ends every API token of one user at once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenancy import actions


class Command(BaseCommand):
    help = "Revoke every active API token of a user (audited as auth.token_revoked in each of their tenants)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: options["username"]}).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        revoked = actions.revoke_all_api_tokens(user)
        self.stdout.write(f"Revoked {len(revoked)} API token(s) of {user.get_username()}.")
