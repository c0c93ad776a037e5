from django.urls import path

from training import views

urlpatterns = [
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("subjects/<int:pk>/train/", views.subject_train, name="subject-train"),
    path("subjects/<int:pk>/reference-set/", views.reference_set_build, name="reference-set-build"),
    path("reference-items/<int:pk>/caption/", views.reference_item_caption, name="reference-item-caption"),
    path("models/", views.model_list, name="models"),
    path("models/<int:pk>/activate/", views.model_activate, name="model-activate"),
]
