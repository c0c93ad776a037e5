"""The API base classes' rules, the schema and the offline docs page."""

from __future__ import annotations

import re

import pytest
from rest_framework import serializers

from audit.models import AuditEntry
from tenancy.api import TenantRouter, TenantScopedReadOnlyViewSet, TenantScopedViewSet


class _EntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id"]


def test_overriding_get_queryset_is_refused_at_class_creation():
    with pytest.raises(TypeError, match="must not define get_queryset"):

        class Leaky(TenantScopedReadOnlyViewSet):
            queryset_model = AuditEntry
            serializer_class = _EntrySerializer

            def get_queryset(self):
                return AuditEntry.dangerously_unscoped.all()


def test_a_writable_viewset_must_route_writes_through_actions():
    with pytest.raises(TypeError, match="perform_create"):

        class Careless(TenantScopedViewSet):
            queryset_model = AuditEntry
            serializer_class = _EntrySerializer


def test_read_only_viewsets_need_no_write_hooks_and_get_a_basename():
    class Reader(TenantScopedReadOnlyViewSet):
        queryset_model = AuditEntry
        serializer_class = _EntrySerializer

    router = TenantRouter()
    router.register("entries", Reader)
    assert {getattr(url, "name", None) for url in router.urls} >= {"auditentry-list", "auditentry-detail"}


def test_undeclared_extra_actions_are_denied():
    class WithAction(TenantScopedReadOnlyViewSet):
        queryset_model = AuditEntry
        serializer_class = _EntrySerializer

    view = WithAction()
    view.action = "frobnicate"
    assert view.required_permission() is None
    view.action = "retrieve"
    assert view.required_permission() == "audit.view_auditentry"


@pytest.mark.django_db
def test_openapi_schema_is_served(client, user_factory):
    client.force_login(user_factory())
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/audit-entries/", "/api/v1/memberships/{id}/", "/api/v1/tenant/"} <= set(paths)


@pytest.mark.django_db
def test_docs_page_is_self_contained_and_lists_every_path(client, user_factory):
    client.force_login(user_factory())
    schema = client.get("/api/v1/schema/?format=json").json()
    page = client.get("/api/v1/docs/").content.decode()
    for route in schema["paths"]:
        assert f"<code>{route}</code>" in page
    external = re.findall(r'(?:src|href)="(https?:)?//', page)
    assert not external, "the docs page must not load anything from another host"
    # Scripts only from this origin's own static files (the dashboard's behaviour script).
    assert all(src.startswith("/static/") for src in re.findall(r'<script src="([^"]*)"', page))


def test_schema_generates_without_warnings_and_validates(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/audit-entries/{id}/" in (tmp_path / "schema.yaml").read_text()


def test_related_field_is_typed_as_its_models_key_in_the_schema():
    """The field builds its queryset per request, so drf-spectacular cannot take the type from it."""
    from django.urls import path
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from rest_framework.generics import CreateAPIView

    from tenancy.api import TenantPrimaryKeyRelatedField

    class Reference(serializers.Serializer):
        entry = TenantPrimaryKeyRelatedField(AuditEntry, help_text="an entry of the active tenant")

    class ReferenceView(CreateAPIView):
        serializer_class = Reference

    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=[path("references/", ReferenceView.as_view())])
    schema = generator.get_schema(request=None, public=True)
    assert not GENERATOR_STATS, dict(GENERATOR_STATS._warn_cache)
    component = schema["components"]["schemas"]["Reference"]
    assert component["properties"]["entry"] == {
        "type": "integer",
        "description": "an entry of the active tenant",
    }
    assert component["required"] == ["entry"]


@pytest.mark.django_db
def test_related_field_accepts_only_objects_of_the_active_tenant(tenant_factory):
    from audit.actions import record
    from tenancy.api import TenantPrimaryKeyRelatedField

    class Reference(serializers.Serializer):
        entry = TenantPrimaryKeyRelatedField(AuditEntry)

    mine, theirs = tenant_factory(), tenant_factory()
    own, foreign = record(tenant=mine, action="test.event"), record(tenant=theirs, action="test.event")

    class FakeRequest:
        tenant = mine

    context = {"request": FakeRequest()}
    accepted = Reference(data={"entry": own.pk}, context=context)
    assert accepted.is_valid(), accepted.errors
    assert accepted.validated_data["entry"] == own
    refused, missing = (Reference(data={"entry": pk}, context=context) for pk in (foreign.pk, 10**9))
    assert not refused.is_valid() and not missing.is_valid()
    assert refused.errors["entry"][0].replace(str(foreign.pk), "N") == missing.errors["entry"][0].replace(
        str(10**9), "N"
    )


@pytest.mark.django_db
def test_docs_page_has_a_table_of_contents_collapsible_sections_and_rendered_code(client, user_factory):
    client.force_login(user_factory())
    page = client.get("/api/v1/docs/").content.decode()
    toc = re.search(r'<nav class="card toc" id="api-toc".*?</nav>', page, re.S)
    assert toc
    tags = re.findall(r'href="#(tag-[^"]+)"', toc.group(0))
    assert len(tags) >= 5 and 'href="#schemas"' in toc.group(0)
    for anchor in tags:
        assert f'<details class="card section" id="{anchor}">' in page
    # The schema's descriptions write names in backticks; the page shows them as code.
    assert "`" not in page and "<code>auth.token_issued</code>" in page


def test_descriptions_are_escaped_before_backticks_become_code():
    from config.api_docs import prose

    assert prose("Send `<b>` & `a`\nthen") == "Send <code>&lt;b&gt;</code> &amp; <code>a</code><br>then"
    assert prose("an odd ` backtick") == "an odd ` backtick"
