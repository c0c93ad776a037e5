from django.urls import path

from consent import views

urlpatterns = [
    path("subjects/", views.subject_list, name="consent-subjects"),
    path("subjects/<int:pk>/", views.subject_detail, name="consent-subject"),
    path("subjects/<int:pk>/contact/", views.subject_contact, name="consent-subject-contact"),
    path("subjects/<int:pk>/send-link/", views.subject_send_link, name="consent-subject-send-link"),
    path("subjects/<int:pk>/photos/", views.subject_photos, name="consent-subject-photos"),
    path(
        "subjects/<int:pk>/purpose-satisfied/",
        views.subject_purpose_satisfied,
        name="consent-subject-purpose",
    ),
    path("subjects/<int:pk>/erase/", views.subject_erase, name="consent-subject-erase"),
    path("subjects/<int:pk>/history/", views.subject_history, name="consent-subject-history"),
    path("subjects/<int:pk>/history.json", views.subject_history_json, name="consent-subject-history-json"),
    path("subjects/<int:pk>/history.csv", views.subject_history_csv, name="consent-subject-history-csv"),
    path("consent-links/<int:pk>/", views.link_detail, name="consent-link"),
    path("consent-links/<int:pk>/resend/", views.link_resend, name="consent-link-resend"),
    path("consent-links/<int:pk>/in-person/", views.link_in_person, name="consent-link-in-person"),
    path("consent-records/<int:pk>/revoke/", views.record_revoke, name="consent-record-revoke"),
    path("erasure-requests/", views.erasure_request_list, name="consent-erasure-requests"),
    path(
        "erasure-requests/<int:pk>/confirm/",
        views.erasure_request_confirm,
        name="consent-erasure-request-confirm",
    ),
    path(
        "erasure-requests/<int:pk>/decline/",
        views.erasure_request_decline,
        name="consent-erasure-request-decline",
    ),
    path("assets/<int:pk>/", views.asset_file, name="consent-asset-file"),
    path("assets/<int:pk>/delete/", views.photo_delete, name="consent-photo-delete"),
    path("deletion-certificates/", views.certificate_list, name="consent-certificates"),
    path("deletion-certificates/export.json", views.certificates_json, name="consent-certificates-json"),
    path("deletion-certificates/export.csv", views.certificates_csv, name="consent-certificates-csv"),
    path("deletion-certificates/<int:pk>/", views.certificate_detail, name="consent-certificate"),
    path("deletion-certificates/<int:pk>.json", views.certificate_json, name="consent-certificate-json"),
    path("consent-templates/", views.template_list, name="consent-templates"),
    path("consent-templates/<int:pk>/", views.template_detail, name="consent-template"),
    path("retention/", views.schedule_list, name="consent-schedules"),
    path("retention/<int:pk>/", views.schedule_detail, name="consent-schedule"),
    path("consent/in-person/<str:token>/", views.handover_page, name="consent-handover"),
    path("consent/<str:token>/", views.sign_page, name="consent-sign"),
]
