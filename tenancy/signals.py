"""Audit and token hooks on Django's authentication and user signals (thin callers of tenancy.actions)."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.apps import apps
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from tenancy import actions
from tenancy.models import Membership
from tenancy.request_facts import forget_all

_PASSWORD_CHANGED = "_likeness_password_changed"  # noqa: S105 (an attribute name)


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


@receiver(user_locked_out, dispatch_uid="tenancy.audit_lockout")
def audit_lockout(sender: Any, request: Any, username: Any, **kwargs: Any) -> None:
    if isinstance(username, str) and username:
        actions.record_lockout(username, getattr(request, "axes_failures_since_start", None))


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="tenancy.note_password_change")
def note_password_change(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """Compare the stored password hash with the one about to be saved, whatever path changed it.

    set_password() in a shell, `manage.py changepassword`, the dashboard's form:
    all end in a save with a new hash, so this catches every one. Django's own
    rehash on login (when the hasher's work factor rises in an upgrade) changes
    the hash too and ends tokens and other sessions alike; that errs on the safe side.
    """
    update_fields = kwargs.get("update_fields")
    if raw or instance._state.adding or (update_fields is not None and "password" not in update_fields):
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    setattr(instance, _PASSWORD_CHANGED, stored is not None and stored != instance.password)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="tenancy.revoke_tokens_on_password_change")
def revoke_tokens_on_password_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    if getattr(instance, _PASSWORD_CHANGED, False):
        setattr(instance, _PASSWORD_CHANGED, False)
        actions.record_password_change(instance)


def forget_request_facts(sender: Any, **kwargs: Any) -> None:
    """A membership or an object permission changed: this request's remembered answers are stale."""
    forget_all()


# Guardian's permission models are one pair per protected model, so each is connected by name
# (a receiver for every sender would also cost every other model its fast bulk delete).
for _model in apps.get_models():
    if issubclass(_model, Membership | UserObjectPermissionBase | GroupObjectPermissionBase):
        for _signal in (post_save, post_delete):
            _signal.connect(
                forget_request_facts, sender=_model, dispatch_uid=f"tenancy.forget_facts.{_model._meta.label}"
            )
