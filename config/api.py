"""The API under /api/v1/: one router, to which each app adds its viewsets."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from audit.api import AuditEntryViewSet
from config.api_docs import api_docs
from consent.api import (
    AssetViewSet,
    ConsentLinkViewSet,
    ConsentRecordViewSet,
    ConsentTemplateViewSet,
    DeletionCertificateViewSet,
    ErasureRequestViewSet,
    RetentionScheduleViewSet,
    SubjectViewSet,
)
from editing.api import EditJobViewSet, GenerationJobViewSet, OutputViewSet
from editing.releases.api import ReleaseViewSet, VerifyView
from tenancy.api import TenantRouter
from tenancy.api_views import (
    ApiTokenDetailView,
    ApiTokenListView,
    CurrentTenantView,
    InvitationViewSet,
    MembershipViewSet,
    MeView,
    TokenView,
)
from training.api import (
    AnyJobViewSet,
    IdentityModelViewSet,
    ReferenceItemViewSet,
    ReferenceSetViewSet,
    StyleSetViewSet,
    TrainingJobViewSet,
    UsageView,
)

router = TenantRouter()
router.register("memberships", MembershipViewSet)
router.register("invitations", InvitationViewSet)
router.register("audit-entries", AuditEntryViewSet)
router.register("subjects", SubjectViewSet)
router.register("consent-records", ConsentRecordViewSet)
router.register("consent-links", ConsentLinkViewSet)
router.register("consent-templates", ConsentTemplateViewSet)
router.register("retention-schedules", RetentionScheduleViewSet)
router.register("deletion-certificates", DeletionCertificateViewSet)
router.register("erasure-requests", ErasureRequestViewSet)
router.register("assets", AssetViewSet)
router.register("jobs", AnyJobViewSet)
router.register("training-jobs", TrainingJobViewSet)
router.register("identity-models", IdentityModelViewSet)
router.register("reference-sets", ReferenceSetViewSet)
router.register("reference-items", ReferenceItemViewSet)
router.register("style-sets", StyleSetViewSet)
router.register("generation-jobs", GenerationJobViewSet)
router.register("edit-jobs", EditJobViewSet)
router.register("outputs", OutputViewSet)
router.register("releases", ReleaseViewSet)

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("auth/tokens/", ApiTokenListView.as_view(), name="api-tokens"),
    path("auth/tokens/<int:pk>/", ApiTokenDetailView.as_view(), name="api-token-detail"),
    path("me/", MeView.as_view(), name="api-me"),
    path("tenant/", CurrentTenantView.as_view(), name="api-tenant"),
    path("usage/", UsageView.as_view(), name="api-usage"),
    path("verify/", VerifyView.as_view(), name="api-verify"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", api_docs, name="api-docs"),
    path("", include(router.urls)),
]
