"""Tenants: creating one (the operator), renaming it and replacing its settings (its admins)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.actions import record
from audit.chain import AuditPayloadError, canonical_json, normalize_payload
from tenancy.models import Tenant
from tenancy.permissions import UserLike, require_perm
from tenancy.tenant_settings import setting_problems

MAX_SETTINGS_BYTES = 32 * 1024
MAX_SETTINGS_DEPTH = 16
MAX_NAME_LENGTH = Tenant._meta.get_field("name").max_length or 200
# A settings change is audited key by key within this many bytes (the audit payload allows 16 KB);
# values up to SMALL_VALUE_BYTES appear as they are, larger ones by their SHA-256.
SETTINGS_AUDIT_BUDGET = 8 * 1024
SMALL_VALUE_BYTES = 256


def locked_tenant(tenant: Tenant) -> Tenant:
    """The tenant row under lock: memberships, invitations and settings of one tenant change one at a time."""
    return Tenant.objects.select_for_update().get(pk=tenant.pk)


@transaction.atomic
def create_tenant(*, name: str, slug: str, actor: UserLike | None = None) -> Tenant:
    """A new brand; its chain starts with `tenant.created`. Only the system or a superuser may do this."""
    if actor is not None and not getattr(actor, "is_superuser", False):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("Only the operator (superuser or a management command) creates tenants.")
    tenant = Tenant(name=_clean_name(name), slug=slug.strip())
    tenant.full_clean()
    tenant.save()
    record(tenant=tenant, action="tenant.created", actor=actor, target=tenant, payload={"slug": tenant.slug})
    return tenant


def _clean_name(name: str) -> str:
    """One line of printable text: the name goes into e-mail subjects, where a line break injects headers."""
    cleaned = name.strip()
    if not cleaned:
        raise ValidationError({"name": "A tenant name cannot be empty."})
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValidationError({"name": f"A tenant name has at most {MAX_NAME_LENGTH} characters."})
    if len(cleaned.splitlines()) > 1:
        raise ValidationError({"name": "A tenant name must be one line."})
    for character in cleaned:
        if not character.isprintable():
            raise ValidationError(
                {"name": f"A tenant name must be printable text; U+{ord(character):04X} is not."}
            )
    return cleaned


def _too_deep(value: Any) -> bool:
    """Whether JSON containers nest deeper than MAX_SETTINGS_DEPTH (walked level by level, no recursion)."""
    level = [value]
    for _ in range(MAX_SETTINGS_DEPTH + 1):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return True


def _validate_settings(settings: Any) -> dict[str, Any]:
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        raise ValidationError({"settings": "Tenant settings must be a JSON object with string keys."})
    if _too_deep(settings):
        raise ValidationError(
            {"settings": f"Tenant settings are nested more than {MAX_SETTINGS_DEPTH} levels."}
        )
    try:
        size = len(canonical_json(settings).encode())
    except (TypeError, ValueError) as error:
        raise ValidationError({"settings": f"Tenant settings must be plain JSON: {error}"}) from None
    if size > MAX_SETTINGS_BYTES:
        raise ValidationError({"settings": f"Tenant settings are limited to {MAX_SETTINGS_BYTES} bytes."})
    if problems := setting_problems(settings):
        raise ValidationError({"settings": [f"{name}: {reason}" for name, reason in problems.items()]})
    return settings


def _sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _fits_the_audit_log(value: Any) -> bool:
    """Small, and a plain fact: the audit log refuses e.g. float lists as possible feature vectors."""
    if len(canonical_json(value).encode()) > SMALL_VALUE_BYTES:
        return False
    try:
        normalize_payload({"value": value})
    except AuditPayloadError:
        return False
    return True


def _key_change(old: dict[str, Any], new: dict[str, Any], key: str) -> dict[str, Any]:
    before, after = old.get(key), new.get(key)
    if _fits_the_audit_log(before) and _fits_the_audit_log(after):
        return {"from": before, "to": after}
    return {
        "from_sha256": _sha256(before) if key in old else None,
        "to_sha256": _sha256(after) if key in new else None,
    }


def _settings_change(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """What a settings change records: digests of the whole old and new settings, then key by key.

    Settings may hold 32 KB and an audit payload 16 KB, so whole values never go in:
    each changed key is listed (small values as they are, others by SHA-256) until
    SETTINGS_AUDIT_BUDGET is used, and the rest are counted in `unlisted_keys`.
    The whole-settings digests still pin exactly which settings were replaced by which.
    """
    changed = [
        key
        for key in sorted(set(old) | set(new))
        if (key in old) != (key in new) or canonical_json(old.get(key)) != canonical_json(new.get(key))
    ]
    if not changed:
        return None
    keys: dict[str, Any] = {}
    used = unlisted = 0
    for key in changed:
        detail = _key_change(old, new, key)
        size = len(canonical_json({key: detail}).encode())
        if used + size > SETTINGS_AUDIT_BUDGET:
            unlisted += 1
            continue
        keys[key] = detail
        used += size
    change: dict[str, Any] = {"from_sha256": _sha256(old), "to_sha256": _sha256(new), "keys": keys}
    if unlisted:
        change["unlisted_keys"] = unlisted
    return change


@transaction.atomic
def update_tenant(
    *, actor: UserLike | None, tenant: Tenant, name: str | None = None, settings: dict[str, Any] | None = None
) -> Tenant:
    """Rename the tenant and/or replace its settings; the audit entry says what changed (_settings_change)."""
    require_perm(actor, tenant, "tenancy.change_tenant")
    locked = locked_tenant(tenant)
    changes: dict[str, Any] = {}
    if name is not None:
        cleaned = _clean_name(name)
        if cleaned != locked.name:
            changes["name"] = {"from": locked.name, "to": cleaned}
            locked.name = cleaned
    if settings is not None:
        new = _validate_settings(settings)
        settings_change = _settings_change(locked.settings, new)
        if settings_change is not None:
            changes["settings"] = settings_change
        locked.settings = new
    if not changes:
        return locked
    locked.full_clean()
    locked.save(update_fields=["name", "settings"])
    record(tenant=locked, action="tenant.settings_changed", actor=actor, target=locked, payload=changes)
    tenant.name, tenant.settings = locked.name, locked.settings
    return locked
