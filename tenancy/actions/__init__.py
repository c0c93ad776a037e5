"""Every write to tenants, memberships, invitations, sessions and API tokens, with its permission check
and audit entry.

Views, API viewsets and commands call these and nothing else. `actor=None`
means the system (management commands such as seed_demo); every other caller
passes the acting user, whose permission is checked here. One module per
sub-domain (tenants, members, invitations, auth); this package re-exports the
public names, so callers write `tenancy.actions.update_tenant(...)`.
"""

from tenancy.actions.auth import (
    MAX_ACTIVE_API_TOKENS,
    MAX_ENDED_API_TOKENS,
    MAX_TOKEN_NAME_CHARS,
    issue_api_token,
    record_lockout,
    record_login,
    record_login_failure,
    record_logout,
    record_password_change,
    revoke_all_api_tokens,
    revoke_api_token,
)
from tenancy.actions.invitations import (
    MAX_INVITATION_SENDS,
    MAX_INVITATIONS_PER_DAY,
    MAX_PENDING_INVITATIONS,
    InvitationRefusedError,
    IssuedInvitation,
    accept_invitation,
    accept_invitation_with_new_account,
    invite_member,
    is_invited_address,
    mark_invitation_emailed,
    resend_invitation,
    resolve_invitation,
    revoke_invitation,
)
from tenancy.actions.members import add_member, change_member_role, remember_tenant_choice, remove_member
from tenancy.actions.tenants import (
    MAX_NAME_LENGTH,
    MAX_SETTINGS_BYTES,
    MAX_SETTINGS_DEPTH,
    create_tenant,
    update_tenant,
)

__all__ = [
    "MAX_ACTIVE_API_TOKENS",
    "MAX_ENDED_API_TOKENS",
    "MAX_INVITATIONS_PER_DAY",
    "MAX_INVITATION_SENDS",
    "MAX_NAME_LENGTH",
    "MAX_PENDING_INVITATIONS",
    "MAX_SETTINGS_BYTES",
    "MAX_SETTINGS_DEPTH",
    "MAX_TOKEN_NAME_CHARS",
    "InvitationRefusedError",
    "IssuedInvitation",
    "accept_invitation",
    "accept_invitation_with_new_account",
    "add_member",
    "change_member_role",
    "create_tenant",
    "invite_member",
    "is_invited_address",
    "issue_api_token",
    "mark_invitation_emailed",
    "record_lockout",
    "record_login",
    "record_login_failure",
    "record_logout",
    "record_password_change",
    "remember_tenant_choice",
    "remove_member",
    "resend_invitation",
    "resolve_invitation",
    "revoke_all_api_tokens",
    "revoke_api_token",
    "revoke_invitation",
    "update_tenant",
]
