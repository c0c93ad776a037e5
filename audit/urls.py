from django.urls import path

from audit import views

urlpatterns = [
    path("", views.audit_log, name="audit-log"),
    path("verify/", views.audit_verify, name="audit-verify"),
    path("export.csv", views.audit_export_csv, name="audit-export-csv"),
    path("export.json", views.audit_export_json, name="audit-export-json"),
    path("<int:pk>/", views.audit_entry, name="audit-entry"),
]
