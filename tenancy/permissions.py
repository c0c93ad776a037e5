"""Who may do what inside a tenant: role defaults plus per-object grants.

One central table maps each role to "app_label.codename" permissions; apps add
their rows here when they add models, so the whole policy reads in one place.
On top of the role, django-guardian object permissions (direct foreign-key
permission models, e.g. `SubjectUserObjectPermission`) grant a single object to
a single user, e.g. one staff member on one subject.

Fail-closed: no membership in the tenant means no permission at all, whatever
the user's global flags (superusers operate through the Django admin instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from tenancy.models import Membership, Role, Tenant
from tenancy.request_facts import remember, remembered

if TYPE_CHECKING:
    from django.db.models import QuerySet

UserLike = AbstractBaseUser | AnonymousUser

_TENANCY_ADMIN = frozenset(
    {
        "tenancy.view_tenant",
        "tenancy.change_tenant",
        "tenancy.view_membership",
        "tenancy.change_membership",
        "tenancy.delete_membership",
        # Nobody adds an existing account directly (no tenancy.add_membership): admins invite.
        "tenancy.view_invitation",
        "tenancy.add_invitation",
        "tenancy.revoke_invitation",
    }
)
_AUDIT_READ = frozenset({"audit.view_auditentry", "audit.export_auditentry"})
# Consent (issue 3). Legal reviewers read consent evidence and certificates but never
# the photos themselves; only admins erase on request, publish schedules and templates.
_CONSENT_READ = frozenset(
    {
        "consent.view_subject",
        "consent.view_consentrecord",
        "consent.view_consentlink",
        "consent.view_consentrevocation",
        "consent.view_consenttemplate",
        "consent.view_retentionschedule",
        "consent.view_erasurerequest",
    }
)
_CONSENT_STAFF = _CONSENT_READ | frozenset(
    {
        "consent.add_subject",
        "consent.change_subject",
        "consent.upload_photos_subject",
        "consent.close_purpose_subject",
        "consent.view_asset",
        "consent.add_consentlink",
        "consent.add_consentrevocation",
    }
)
_CONSENT_LEGAL = _CONSENT_READ | frozenset(
    {
        "consent.view_deletioncertificate",
        "consent.export_deletioncertificate",
        "consent.export_consentrecord",
        "consent.export_subject",
    }
)
# An erasure that staff start (a revocation they record, "purpose satisfied") waits for an
# admin's confirmation: the two-person rule (consent.models.ErasureRequest).
_CONSENT_ADMIN = (
    _CONSENT_STAFF
    | _CONSENT_LEGAL
    | frozenset(
        {
            "consent.add_consenttemplate",
            "consent.add_retentionschedule",
            "consent.erase_subject",
            "consent.confirm_erasurerequest",
        }
    )
)

# Jobs of every kind (training.models.Job): staff follow and cancel them, legal reviewers read who ran
# what on whom (their previews need consent.view_asset, which reviewers do not have); admins also read
# the usage meter. Each kind adds its own create permission with its app.
_JOBS_READ = frozenset({"training.view_job"})
_JOBS_STAFF = _JOBS_READ | frozenset({"training.cancel_job"})
_JOBS_ADMIN = _JOBS_STAFF | frozenset({"training.view_usage"})

# Training (the training app): staff build reference sets, edit their captions, upload style sets, train
# and choose the active model version; legal reviewers read every training run and model version
# (docs/compliance.md), never the photos, crops, previews or artifacts (those need consent.view_asset).
_TRAINING_READ = frozenset({"training.view_trainingjob", "training.view_identitymodel"})
_TRAINING_STAFF = _TRAINING_READ | frozenset(
    {
        "training.add_trainingjob",
        "training.activate_identitymodel",
        "training.add_referenceset",
        "training.view_referenceset",
        "training.view_referenceitem",
        "training.change_referenceitem",
        "training.add_styleset",
        "training.view_styleset",
    }
)

# Generation and edit jobs and their outputs (editing): staff queue them, see the images (through
# consent.view_asset) and decide the review (approve, reject: editing.review); legal reviewers read what
# was made of whom, with its prompt, scores and review decisions, never the image.
# Releases (editing.releases): staff create and download them (the gate runs at each download); legal
# reviewers read the registry and its clearances, never the released file.
_EDITING_READ = frozenset(
    {"editing.view_generationjob", "editing.view_editjob", "editing.view_output", "editing.view_release"}
)
_EDITING_STAFF = _EDITING_READ | frozenset(
    {
        "editing.add_generationjob",
        "editing.add_editjob",
        "editing.review_output",
        "editing.add_release",
        "editing.download_release",
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    # Members (by invitation), settings, retention schedule; reads the audit log of its tenant.
    Role.ADMIN: _TENANCY_ADMIN
    | _AUDIT_READ
    | _CONSENT_ADMIN
    | _JOBS_ADMIN
    | _TRAINING_STAFF
    | _EDITING_STAFF,
    # Subjects, uploads, training, studio, approvals (rows added by those apps).
    Role.STAFF: frozenset({"tenancy.view_tenant"})
    | _CONSENT_STAFF
    | _JOBS_STAFF
    | _TRAINING_STAFF
    | _EDITING_STAFF,
    # Read-only: consent records, audit log, deletion certificates; exports.
    Role.LEGAL_REVIEWER: frozenset({"tenancy.view_tenant", "tenancy.view_membership"})
    | _AUDIT_READ
    | _CONSENT_LEGAL
    | _JOBS_READ
    | _TRAINING_READ
    | _EDITING_READ,
}


def _membership_key(user_id: Any, tenant_id: Any) -> tuple[str, Any, Any]:
    return ("membership", user_id, tenant_id)


def get_membership(user: UserLike | None, tenant: Tenant | None) -> Membership | None:
    """The user's membership in `tenant`, or None (anonymous, inactive, or not a member).

    Read once per request (tenancy.request_facts): every permission check of a page asks for it.
    """
    if user is None or tenant is None or not user.is_authenticated or not user.is_active:
        return None
    return remembered(
        _membership_key(user.pk, tenant.pk),
        lambda: Membership.objects.filter(user_id=user.pk, tenant_id=tenant.pk).first(),
    )


def remember_membership(membership: Membership) -> None:
    """The request's own membership, as the middleware or the API resolved it: no second read."""
    remember(_membership_key(membership.user_id, membership.tenant_id), membership)


def role_has_perm(role: str, perm: str) -> bool:
    return perm in ROLE_PERMISSIONS.get(Role(role), frozenset())


def _split(perm: str) -> tuple[str, str]:
    app_label, _, codename = perm.partition(".")
    if not app_label or not codename:
        raise ValueError(f"Permission must read 'app_label.codename', got {perm!r}.")
    return app_label, codename


def _grants(user: UserLike, perm: str, model: type[models.Model]) -> list[tuple[QuerySet[Any], str]]:
    """Guardian rows granting `perm` on `model` rows to the user, directly or through a group.

    Each entry pairs a queryset with the name of its column holding the object's pk.
    """
    from django.contrib.contenttypes.models import ContentType

    app_label, codename = _split(perm)
    result = []
    for perms_model, who in (
        (get_user_obj_perms_model(model), {"user_id": user.pk}),  # type: ignore[arg-type]
        (get_group_obj_perms_model(model), {"group__user__id": user.pk}),  # type: ignore[arg-type]
    ):
        grants = perms_model._default_manager.filter(
            **who, permission__codename=codename, permission__content_type__app_label=app_label
        )
        if perms_model._default_manager.is_generic():  # type: ignore[attr-defined]
            result.append((grants.filter(content_type=ContentType.objects.get_for_model(model)), "object_pk"))
        else:
            result.append((grants, "content_object_id"))
    return result


def _granted_pks(user: UserLike, perm: str, model: type[models.Model]) -> frozenset[str]:
    """The pks (as strings) of the `model` rows guardian grants `perm` on to the user; once per request."""

    def read() -> frozenset[str]:
        granted: set[str] = set()
        for grants, column in _grants(user, perm, model):
            granted.update(str(pk) for pk in grants.values_list(column, flat=True))
        return frozenset(granted)

    return remembered(("grants", user.pk, perm, model._meta.label), read)


def has_perm(
    user: UserLike | None, tenant: Tenant | None, perm: str, obj: models.Model | None = None
) -> bool:
    """Role default OR a guardian object permission, always within the tenant the object lives in."""
    membership = get_membership(user, tenant)
    if membership is None or user is None or tenant is None:
        return False
    if obj is not None and getattr(obj, "tenant_id", tenant.pk) != tenant.pk:
        return False
    if role_has_perm(membership.role, perm):
        return True
    if obj is None:
        return False
    return str(obj.pk) in _granted_pks(user, perm, type(obj))


def restrict_to_perm(
    queryset: QuerySet[Any], user: UserLike | None, tenant: Tenant | None, perm: str
) -> QuerySet[Any]:
    """Narrow an already tenant-scoped queryset to the rows the user may `perm`.

    The whole tenant when the role grants it, only the granted objects otherwise,
    nothing for non-members.
    """
    membership = get_membership(user, tenant)
    if membership is None or user is None:
        return queryset.none()
    if role_has_perm(membership.role, perm):
        return queryset
    granted = _granted_pks(user, perm, queryset.model)
    return queryset.filter(pk__in=sorted(granted)) if granted else queryset.none()


def require_perm(actor: UserLike | None, tenant: Tenant, perm: str, obj: models.Model | None = None) -> None:
    """Raise PermissionDenied unless `actor` may `perm`; actor None is the system (commands, tasks)."""
    from django.core.exceptions import PermissionDenied

    if actor is None:
        return
    if not has_perm(actor, tenant, perm, obj):
        raise PermissionDenied(f"{perm} is not granted to this user in tenant {tenant.slug}.")
