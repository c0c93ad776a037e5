from django.contrib.auth import views as auth_views
from django.urls import path

from tenancy import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("tenant/choose/", views.choose_tenant, name="tenant-choose"),
    path("tenant/switch/", views.switch_tenant, name="switch-tenant"),
    path("members/", views.members, name="members"),
    path("members/<int:pk>/", views.member_detail, name="member-detail"),
    path("members/invitations/<int:pk>/", views.invitation_detail, name="invitation-detail"),
    # The token is a secret: the log filter redacts the segment after /invitations/.
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
    path("settings/", views.tenant_settings, name="tenant-settings"),
    path("account/", views.account, name="account"),
    path("account/password/", views.PasswordChangeView.as_view(), name="account-password"),
    path("account/tokens/<int:pk>/revoke/", views.revoke_token, name="account-token-revoke"),
]
