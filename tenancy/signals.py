"""Audit hooks on Django's authentication signals (thin callers of tenancy.actions)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from tenancy import actions


@receiver(user_logged_in, dispatch_uid="tenancy.audit_login")
def audit_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    actions.record_login(user)


@receiver(user_logged_out, dispatch_uid="tenancy.audit_logout")
def audit_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        actions.record_logout(user)


@receiver(user_login_failed, dispatch_uid="tenancy.audit_login_failed")
def audit_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    username = credentials.get("username")
    if isinstance(username, str) and username:
        actions.record_login_failure(username)
