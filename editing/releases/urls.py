from django.urls import path

from editing.releases import views

urlpatterns = [
    path("outputs/<int:pk>/release/", views.release_create, name="release-create"),
    path("releases/", views.release_list, name="releases"),
    path("releases/<int:pk>/", views.release_detail, name="release-detail"),
    path("releases/<int:pk>/download/", views.release_download, name="release-download-file"),
    path("verify/", views.verify_page, name="release-verify"),
]
