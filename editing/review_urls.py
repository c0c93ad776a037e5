from django.urls import path

from editing import review_views

urlpatterns = [
    path("approvals/", review_views.approvals, name="approvals"),
]
