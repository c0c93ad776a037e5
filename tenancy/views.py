"""Dashboard pages for tenants, memberships and invitations, and the invitation link's public page
(thin: writes go through tenancy.actions)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.models import AuditEntry
from tenancy import actions
from tenancy.access import get_for_tenant_or_404, tenant_object_view
from tenancy.context import TenantRequest, activate_tenant, memberships_of, require_tenant
from tenancy.decorators import check_perm, tenant_member_required, tenant_permission_required, token_in_url
from tenancy.forms import ApiTokenForm, InviteForm, NewAccountForm, RoleForm, TenantSettingsForm
from tenancy.invitations import send_invitation
from tenancy.models import ApiToken, Invitation, InvitationStatus, Membership
from tenancy.pagination import page_without_count
from tenancy.permissions import has_perm
from tenancy.tenant_settings import SETTING_KEYS, tenant_setting


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


@tenant_member_required
def dashboard(request: TenantRequest) -> HttpResponse:
    tenant = require_tenant(request)
    roles = dict(
        Membership.objects.filter(tenant=tenant).values_list("role").annotate(n=Count("id")).order_by("role")
    )
    recent = (
        AuditEntry.objects.for_tenant(tenant).filter(actor_id=request.user.pk).select_related("actor")
    ).order_by("-seq")[:5]
    return render(
        request, "tenancy/dashboard.html", {"role_counts": roles, "my_recent_entries": list(recent)}
    )


@require_GET
@login_required
def choose_tenant(request: TenantRequest) -> HttpResponse:
    """Where a user of several tenants picks one: after login, or whenever no choice is known."""
    memberships = memberships_of(request.user)
    if not memberships:
        return render(request, "tenancy/no_tenant.html", status=403)
    return render(
        request,
        "tenancy/choose_tenant.html",
        {"choices": memberships, "next": request.GET.get("next", "")},
    )


@require_POST
@login_required
def switch_tenant(request: TenantRequest) -> HttpResponse:
    """Open another of the user's tenants (from the chooser or the switcher); it opens first from now on."""
    membership = activate_tenant(request, request.POST.get("tenant_id", ""))
    messages.info(request, f"Now working in {membership.tenant.name}.")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        target = "dashboard"
    return redirect(target)


def _delivery_message(request: TenantRequest, issued: actions.IssuedInvitation) -> None:
    """E-mail the invitation and say so; the words depend on the mail server only, never on the address."""
    address = issued.invitation.email
    if send_invitation(request, issued):
        messages.success(request, f"Invitation sent to {address}.")
    else:
        messages.error(
            request,
            f"The invitation to {address} is saved, but the e-mail could not be sent: "
            "re-send it when mail works.",
        )


MEMBERS_PER_PAGE = 50


@require_http_methods(["GET", "POST"])
@tenant_permission_required("tenancy.view_membership")
def members(request: TenantRequest) -> HttpResponse:
    tenant = require_tenant(request)
    form = InviteForm(request.POST or None)
    if request.method == "POST":
        check_perm(request, "tenancy.add_invitation")
        if form.is_valid():
            try:
                issued = actions.invite_member(
                    actor=request.user,
                    tenant=tenant,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                _delivery_message(request, issued)
                return redirect("members")
    listing = Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username", "id")
    page = page_without_count(listing, request.GET.get("page"), MEMBERS_PER_PAGE)
    can_invite = has_perm(request.user, tenant, "tenancy.add_invitation")
    open_invitations = (
        Invitation.objects.for_tenant(tenant).filter(accepted_at__isnull=True, revoked_at__isnull=True)[:100]
        if has_perm(request.user, tenant, "tenancy.view_invitation")
        else []
    )
    return render(
        request,
        "tenancy/members.html",
        {
            "memberships": page,
            "page_obj": page,
            "form": form,
            "can_invite": can_invite,
            "invitations": open_invitations,
        },
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Invitation)
def invitation_detail(request: TenantRequest, pk: int) -> HttpResponse:
    """One invitation: its state, and re-send or revoke for admins."""
    tenant = require_tenant(request)
    invitation = get_for_tenant_or_404(
        Invitation.objects.select_related("tenant", "invited_by"), tenant, pk=pk
    )
    check_perm(request, "tenancy.view_invitation", invitation)
    if request.method == "POST":
        operation = request.POST.get("operation")
        try:
            if operation == "revoke":
                actions.revoke_invitation(actor=request.user, invitation=invitation)
                messages.success(request, f"The invitation to {invitation.email} is revoked.")
            elif operation == "resend":
                _delivery_message(
                    request, actions.resend_invitation(actor=request.user, invitation=invitation)
                )
        except ValidationError as error:
            messages.error(request, _error_text(error))
        return redirect("invitation-detail", pk=invitation.pk)
    status = invitation.status()
    return render(
        request,
        "tenancy/invitation_detail.html",
        {
            "invitation": invitation,
            "status": status,
            "can_resend": status == InvitationStatus.PENDING
            and has_perm(request.user, tenant, "tenancy.add_invitation", invitation),
            "can_revoke": status in (InvitationStatus.PENDING, InvitationStatus.EXPIRED)
            and has_perm(request.user, tenant, "tenancy.revoke_invitation", invitation),
        },
    )


@require_http_methods(["GET", "POST"])
@token_in_url
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Where the invitee lands from the e-mail: accept with the logged-in account, or create one.

    Public: the token, not a session, says which invitation this is.
    """
    try:
        invitation = actions.resolve_invitation(token)
    except actions.InvitationRefusedError as error:
        return render(
            request, "tenancy/invitation_invalid.html", {"message": error.message}, status=error.status
        )
    form = NewAccountForm(
        request.POST if request.method == "POST" and not request.user.is_authenticated else None
    )
    failure, status = "", 200
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                membership = actions.accept_invitation(token=token, user=request.user)
                return _joined(request, membership)
            if form.is_valid():
                membership = actions.accept_invitation_with_new_account(
                    token=token,
                    username=form.cleaned_data["username"],
                    password=form.cleaned_data["password"],
                )
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
                return _joined(request, membership)
            status = 400
        except actions.InvitationRefusedError as error:
            failure, status = error.message, error.status
        except ValidationError as error:
            form.add_error(None, error)
            status = 400
    return render(
        request,
        "tenancy/invitation.html",
        {
            "invitation": invitation,
            "form": form,
            "failure": failure,
            "address_matches": actions.is_invited_address(request.user, invitation),
        },
        status=status,
    )


invitation_accept.tenant_isolation_exempt = "the invitation link: the token, not a session, is the capability"  # type: ignore[attr-defined]


def _joined(request: HttpRequest, membership: Membership) -> HttpResponse:
    activate_tenant(request, membership.tenant_id)
    messages.success(
        request,
        f"You joined {membership.tenant.name} as {membership.get_role_display()}; you work in it now.",
    )
    return redirect("dashboard")


@require_http_methods(["GET", "POST"])
@tenant_member_required
@tenant_object_view(Membership)
def member_detail(request: TenantRequest, pk: int) -> HttpResponse:
    membership = get_for_tenant_or_404(
        Membership.objects.select_related("user", "tenant"),
        require_tenant(request),
        pk=pk,
    )
    check_perm(request, "tenancy.view_membership", membership)
    form = RoleForm(request.POST or None, initial={"role": membership.role})
    if request.method == "POST":
        try:
            if request.POST.get("operation") == "remove":
                actions.remove_member(actor=request.user, membership=membership)
                messages.success(request, f"Removed {membership.user}.")
                return redirect("members")
            if form.is_valid():
                actions.change_member_role(
                    actor=request.user, membership=membership, role=form.cleaned_data["role"]
                )
                messages.success(request, f"{membership.user} is now {form.cleaned_data['role']}.")
                return redirect("member-detail", pk=membership.pk)
        except ValidationError as error:
            messages.error(request, _error_text(error))
    can_change = has_perm(request.user, require_tenant(request), "tenancy.change_membership", membership)
    return render(
        request,
        "tenancy/member_detail.html",
        {"membership": membership, "form": form, "can_change": can_change},
    )


@require_http_methods(["GET", "POST"])
@tenant_permission_required("tenancy.change_tenant")
def tenant_settings(request: TenantRequest) -> HttpResponse:
    tenant = require_tenant(request)
    documented = {key.name: tenant_setting(tenant, key.name) for key in SETTING_KEYS}
    other = {name: value for name, value in tenant.settings.items() if name not in documented}
    initial = {"name": tenant.name, "settings": json.dumps(other, indent=2, sort_keys=True) if other else ""}
    form = TenantSettingsForm(request.POST or None, initial=initial, current=documented)
    if request.method == "POST" and form.is_valid():
        try:
            actions.update_tenant(
                actor=request.user,
                tenant=tenant,
                name=form.cleaned_data["name"],
                settings=form.settings_to_save(),
            )
        except ValidationError as error:
            # A settings refusal names its key; shown above the form, not under "Other keys".
            for field, reasons in error.message_dict.items():
                form.add_error("name" if field == "name" else None, reasons)
        else:
            messages.success(request, "Settings saved.")
            return redirect("tenant-settings")
    return render(request, "tenancy/settings.html", {"form": form}, status=400 if form.errors else 200)


@never_cache  # the answer that creates a token carries its key
@require_http_methods(["GET", "POST"])
@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The user's own API tokens: create one (its key is shown in this answer only), see and revoke them.

    Not tied to a tenant: a token acts as its user in every tenant the user
    belongs to, naming one with the X-Likeness-Tenant header.
    """
    form = ApiTokenForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            _, new_key = actions.issue_api_token(
                request.user, name=form.cleaned_data["name"], days=form.cleaned_data["days"], via="dashboard"
            )
        except ValidationError as error:
            form.add_error(None, _error_text(error))
        else:
            form = ApiTokenForm()
    tokens = ApiToken.owned_by(request.user)
    return render(
        request,
        "tenancy/account.html",
        {"form": form, "tokens": tokens, "new_key": new_key, "now": timezone.now()},
    )


@require_POST
@login_required
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken.owned_by(request.user), pk=pk)
    actions.revoke_api_token(actor=request.user, token=token)
    messages.success(request, f"Revoked the token {token.name}.")
    return redirect("account")


revoke_token.tenant_isolation_exempt = (  # type: ignore[attr-defined]
    "a user's own API token, not tenant data: another user's token is a 404 "
    "(tests/platform/test_api_tokens.py)"
)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's form (old password, validators); this session continues, every other one ends.

    Changing the stored password also revokes every API token of the user
    (tenancy.signals), whichever path changes it.
    """

    template_name = "tenancy/password_change.html"
    success_url = reverse_lazy("account")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        messages.success(
            self.request, "Password changed: your other sessions ended and your API tokens were revoked."
        )
        return response
