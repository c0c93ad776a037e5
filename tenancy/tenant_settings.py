"""The tenant settings that the product reads, documented: name, meaning, type, bounds and default.

`Tenant.settings` is a JSON object (at most 32 KB). The keys below have a meaning and are validated
by tenancy.actions.update_tenant (dashboard form and API alike); any other key is kept as it is, for
integrations of the tenant's own (the form's "Other keys" field). Code reads a value with
`tenant_setting(tenant, name)`, which falls back to the default, so a tenant that never saved its
settings behaves as documented. docs/operations.md lists the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personalization.presets import PRESET_NAMES, Bound
from tenancy.models import Tenant


@dataclass(frozen=True)
class SettingKey:
    name: str
    label: str
    help: str
    bound: Bound
    default: Any


SETTING_KEYS: tuple[SettingKey, ...] = (
    SettingKey(
        "require_visible_ai_label",
        "Released images carry a visible “AI-generated” label",
        "Applied when an approved image is released or downloaded for use (the release step). "
        "Turn off only where the channel labels AI content itself.",
        Bound(bool),
        True,
    ),
    SettingKey(
        "default_training_preset",
        "Default training preset",
        "What “Train” offers first: quick (minutes, to try the loop), standard (the methods' defaults) "
        "or max (final quality, longest).",
        Bound(str, choices=PRESET_NAMES),
        "quick",
    ),
    SettingKey(
        "studio_default_count",
        "Images per generation in the studio, by default",
        "1 to 8; each generation can still ask for another number within the same range.",
        Bound(int, 1, 8),
        1,
    ),
)
SETTINGS_BY_NAME = {key.name: key for key in SETTING_KEYS}


def setting_problems(settings: dict[str, Any]) -> dict[str, str]:
    """Each documented key whose value is out of bounds, with the reason a person can act on."""
    return {
        name: reason
        for name, value in settings.items()
        if name in SETTINGS_BY_NAME and (reason := SETTINGS_BY_NAME[name].bound.check(value)) is not None
    }


def tenant_setting(tenant: Tenant, name: str) -> Any:
    """The tenant's value for a documented key, or its default."""
    key = SETTINGS_BY_NAME[name]
    return tenant.settings.get(name, key.default) if isinstance(tenant.settings, dict) else key.default
