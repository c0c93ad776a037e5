from django.urls import path

from editing import views

urlpatterns = [
    path("studio/", views.studio, name="studio"),
    path("studio/edit/", views.studio_edit, name="studio-edit"),
]
