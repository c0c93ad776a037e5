"""Tenant name and settings changes: every size the documentation allows saves, bad input is a clear 400."""

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest
from django.core.exceptions import ValidationError

from audit.chain import canonical_json
from audit.models import AuditEntry
from tenancy import actions
from tenancy.models import Role, Tenant

pytestmark = pytest.mark.django_db


def _last(tenant: Tenant) -> AuditEntry:
    return AuditEntry.objects.for_tenant(tenant).latest("seq")


def _sha256(value: object) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _settings_of_about(size: int, prefix: str) -> dict[str, str]:
    """Ten keys whose values add up to about `size` bytes of canonical JSON."""
    return {f"{prefix}{i}": "x" * (size // 10 - 20) for i in range(10)}


def test_settings_change_records_old_and_new_values(tenant_factory, member):
    tenant = tenant_factory("Original", retention_days=1095, channels=["web"])
    admin = member(tenant, Role.ADMIN)
    actions.update_tenant(
        actor=admin, tenant=tenant, name="Renamed", settings={"retention_days": 365, "territory": "EU"}
    )
    tenant.refresh_from_db()
    assert tenant.name == "Renamed" and tenant.settings == {"retention_days": 365, "territory": "EU"}
    entry = _last(tenant)
    assert entry.action == "tenant.settings_changed"
    assert entry.payload == {
        "name": {"from": "Original", "to": "Renamed"},
        "settings": {
            "from_sha256": _sha256({"retention_days": 1095, "channels": ["web"]}),
            "to_sha256": _sha256({"retention_days": 365, "territory": "EU"}),
            "keys": {
                "channels": {"from": ["web"], "to": None},
                "retention_days": {"from": 1095, "to": 365},
                "territory": {"from": None, "to": "EU"},
            },
        },
    }
    # Saving the same values again is not a change and adds nothing.
    count = AuditEntry.objects.for_tenant(tenant).count()
    actions.update_tenant(actor=admin, tenant=tenant, name="Renamed", settings=dict(tenant.settings))
    assert AuditEntry.objects.for_tenant(tenant).count() == count


def test_settings_of_30_kb_save_through_the_api_and_are_audited(tenant_factory, member, api_client_for):
    old = _settings_of_about(30_000, "old")
    tenant = tenant_factory(**old)
    admin = member(tenant, Role.ADMIN)
    new = _settings_of_about(30_000, "new")
    assert 29_000 < len(canonical_json(new).encode()) <= actions.MAX_SETTINGS_BYTES

    response = api_client_for(admin, tenant).patch("/api/v1/tenant/", {"settings": new}, format="json")

    assert response.status_code == 200, response.content[:300]
    tenant.refresh_from_db()
    assert tenant.settings == new
    entry = _last(tenant)
    assert entry.action == "tenant.settings_changed"
    changes = entry.payload["settings"]
    assert (changes["from_sha256"], changes["to_sha256"]) == (_sha256(old), _sha256(new))
    # Every changed key is named; large values are recorded by their digest, never in full.
    assert set(changes["keys"]) == set(old) | set(new)
    assert changes["keys"]["new0"] == {"from_sha256": None, "to_sha256": _sha256(new["new0"])}
    assert changes["keys"]["old0"] == {"from_sha256": _sha256(old["old0"]), "to_sha256": None}
    assert "unlisted_keys" not in changes


def test_thousands_of_changed_keys_stay_within_the_audit_payload(tenant_factory, member):
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN)
    many = {f"k{i:04d}": i for i in range(2500)}
    assert len(canonical_json(many).encode()) <= actions.MAX_SETTINGS_BYTES

    actions.update_tenant(actor=admin, tenant=tenant, settings=many)

    changes = _last(tenant).payload["settings"]
    assert changes["to_sha256"] == _sha256(many)
    listed = changes["keys"]
    assert listed["k0000"] == {"from": None, "to": 0}
    assert len(listed) + changes["unlisted_keys"] == 2500
    assert listed and changes["unlisted_keys"] > 0


def test_values_the_audit_log_refuses_are_recorded_by_digest(tenant_factory, member):
    """A list of many floats is refused by the audit log as a possible feature vector: never a 500."""
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN)
    weights = [0.5] * 20

    actions.update_tenant(actor=admin, tenant=tenant, settings={"weights": weights})

    tenant.refresh_from_db()
    assert tenant.settings == {"weights": weights}
    assert _last(tenant).payload["settings"]["keys"] == {
        "weights": {"from_sha256": None, "to_sha256": _sha256(weights)}
    }


def test_settings_over_the_limit_are_a_400_with_the_reason(
    tenant_factory, member, api_client_for, client_for
):
    tenant = tenant_factory(keep="me")
    admin = member(tenant, Role.ADMIN)
    too_big = {"big": "x" * (actions.MAX_SETTINGS_BYTES + 1)}

    api = api_client_for(admin, tenant).patch("/api/v1/tenant/", {"settings": too_big}, format="json")
    page = client_for(admin, tenant).post(
        "/settings/", {"name": tenant.name, "settings": json.dumps(too_big)}
    )

    assert api.status_code == 400
    assert f"limited to {actions.MAX_SETTINGS_BYTES} bytes" in api.json()["settings"][0]
    assert page.status_code == 400
    assert f"limited to {actions.MAX_SETTINGS_BYTES} bytes" in page.content.decode()
    tenant.refresh_from_db()
    assert tenant.settings == {"keep": "me"}


@pytest.mark.parametrize("depth", [40, 5000])
def test_deeply_nested_settings_are_a_400_with_the_reason(tenant_factory, member, client_for, depth):
    tenant = tenant_factory(keep="me")
    admin = member(tenant, Role.ADMIN)
    nested = '{"a": ' + "[" * depth + "]" * depth + "}"

    page = client_for(admin, tenant).post("/settings/", {"name": tenant.name, "settings": nested})

    assert page.status_code == 400
    assert "nested" in page.content.decode()
    tenant.refresh_from_db()
    assert tenant.settings == {"keep": "me"}


BAD_NAMES = [
    ("Acme\nBcc: victim@example.com", "one line"),
    ("Acme\rStudios", "one line"),
    ("Acme\u2028Studios", "one line"),
    ("Acme\tStudios", "printable"),
    ("Acme\u202eseidutS", "printable"),
    ("A" * 201, "200 characters"),
]


@pytest.mark.parametrize(("name", "reason"), BAD_NAMES, ids=[repr(n[:12]) for n, _ in BAD_NAMES])
def test_a_tenant_name_must_be_one_printable_line(
    tenant_factory, member, api_client_for, client_for, name, reason
):
    tenant = tenant_factory("Original")
    admin = member(tenant, Role.ADMIN)

    api = api_client_for(admin, tenant).patch("/api/v1/tenant/", {"name": name}, format="json")
    page = client_for(admin, tenant).post("/settings/", {"name": name, "settings": "{}"})

    assert api.status_code == 400, api.content[:300]
    assert reason in api.json()["name"][0]
    assert page.status_code == 400
    assert reason in page.content.decode()
    tenant.refresh_from_db()
    assert tenant.name == "Original"
    assert not AuditEntry.objects.for_tenant(tenant).filter(action="tenant.settings_changed").exists()


@pytest.mark.parametrize(
    ("name", "reason"), [*BAD_NAMES, ("   ", "cannot be empty"), ("Acme\x00", "printable")]
)
def test_the_action_itself_refuses_bad_names(tenant_factory, member, name, reason):
    """The management commands call the action without any form in front of it."""
    tenant = tenant_factory("Original")
    with pytest.raises(ValidationError, match=reason):
        actions.update_tenant(actor=member(tenant, Role.ADMIN), tenant=tenant, name=name)
    tenant.refresh_from_db()
    assert tenant.name == "Original"


def test_the_operator_cannot_create_a_tenant_with_a_multi_line_name():
    with pytest.raises(ValidationError, match="one line"):
        actions.create_tenant(name="Acme\nStudios", slug="acme")
    assert not Tenant.objects.filter(slug="acme").exists()


def test_a_good_name_with_unicode_letters_and_punctuation_saves(tenant_factory, member, api_client_for):
    tenant = tenant_factory("Original")
    admin = member(tenant, Role.ADMIN)
    response = api_client_for(admin, tenant).patch(
        "/api/v1/tenant/", {"name": "  Ærø & Søn — Studios (Köln)  "}, format="json"
    )
    assert response.status_code == 200
    tenant.refresh_from_db()
    assert tenant.name == "Ærø & Søn — Studios (Köln)"


# --- the documented keys (tenancy/tenant_settings.py, docs/operations.md) ---------------------------


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("require_visible_ai_label", "yes", "must be true or false"),
        ("default_training_preset", "fast", "must be one of quick, standard, max"),
        ("studio_default_count", 9, "must be an integer from 1 to 8"),
        ("studio_default_count", 2.5, "must be an integer from 1 to 8"),
    ],
)
def test_the_action_refuses_a_documented_key_out_of_bounds(tenant_factory, member, key, value, reason):
    tenant = tenant_factory(integration_id="crm-7")
    admin = member(tenant, Role.ADMIN)
    with pytest.raises(ValidationError) as refused:
        actions.update_tenant(actor=admin, tenant=tenant, settings={key: value})
    assert any(message.startswith(f"{key}: {reason}") for message in refused.value.message_dict["settings"])
    tenant.refresh_from_db()
    assert tenant.settings == {"integration_id": "crm-7"}


def test_a_tenant_that_never_saved_reads_the_documented_defaults(tenant_factory, member):
    from tenancy.tenant_settings import tenant_setting

    tenant = tenant_factory()
    assert [
        tenant_setting(tenant, name)
        for name in ("require_visible_ai_label", "default_training_preset", "studio_default_count")
    ] == [True, "quick", 1]
    actions.update_tenant(
        actor=member(tenant, Role.ADMIN), tenant=tenant, settings={"default_training_preset": "max"}
    )
    assert tenant_setting(tenant, "default_training_preset") == "max"


def test_the_studio_count_bound_is_the_studios_own():
    from editing.parameters import COUNT
    from tenancy.tenant_settings import SETTINGS_BY_NAME

    bound = SETTINGS_BY_NAME["studio_default_count"].bound
    assert (bound.low, bound.high) == (COUNT.low, COUNT.high)


def test_the_settings_page_is_a_form_of_labelled_keys_plus_other_keys(tenant_factory, member, client_for):
    tenant = tenant_factory("Brand", integration_id="crm-7")
    client = client_for(member(tenant, Role.ADMIN), tenant)
    page = client.get("/settings/").content.decode()
    assert '<option value="true" selected>Yes</option>' in page  # the label is required by default
    assert '<option value="quick" selected>quick</option>' in page
    other_keys = re.search(r'<textarea name="settings"[^>]*>(.*?)</textarea>', page, re.S)
    assert other_keys and json.loads(html.unescape(other_keys.group(1))) == {"integration_id": "crm-7"}
    saved = client.post(
        "/settings/",
        {
            "name": "Brand",
            "require_visible_ai_label": "false",
            "default_training_preset": "standard",
            "studio_default_count": "4",
            "settings": '{"integration_id": "crm-8"}',
        },
    )
    assert saved.status_code == 302
    tenant.refresh_from_db()
    assert tenant.settings == {
        "require_visible_ai_label": False,
        "default_training_preset": "standard",
        "studio_default_count": 4,
        "integration_id": "crm-8",
    }
    # Fields left out keep their value: the older form, which sent only the JSON, loses nothing.
    assert client.post("/settings/", {"name": "Brand", "settings": "{}"}).status_code == 302
    tenant.refresh_from_db()
    assert tenant.settings == {
        "require_visible_ai_label": False,
        "default_training_preset": "standard",
        "studio_default_count": 4,
    }


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"studio_default_count": "12"}, "studio_default_count: must be an integer from 1 to 8, got 12"),
        ({"settings": '{"studio_default_count": 2}'}, "Set studio_default_count with the fields above"),
    ],
)
def test_a_bad_setting_on_the_page_is_a_400_naming_the_key(tenant_factory, member, client_for, data, reason):
    tenant = tenant_factory("Brand")
    client = client_for(member(tenant, Role.ADMIN), tenant)
    page = client.post("/settings/", {"name": "Brand", "settings": "", **data})
    assert page.status_code == 400
    assert reason in page.content.decode()
    tenant.refresh_from_db()
    assert tenant.settings == {}
