"""E-mailing an invitation: the only way its token leaves the server.

The mail goes out after the invitation is committed, outside its transaction
(an SMTP wait must not hold the tenant's row lock). A failed send keeps the
invitation: the admin is told and can re-send it, which issues a new token.
No log line carries the token or the link.
"""

from __future__ import annotations

import logging

from django.core.mail import BadHeaderError, send_mail
from django.http import HttpRequest
from django.urls import reverse

from tenancy import actions

logger = logging.getLogger(__name__)


def send_invitation(request: HttpRequest, issued: actions.IssuedInvitation) -> bool:
    """E-mail the invitation link to the invited address; whether the mail server took it."""
    invitation = issued.invitation
    tenant = invitation.tenant
    url = request.build_absolute_uri(reverse("invitation-accept", kwargs={"token": issued.token}))
    try:
        send_mail(
            subject=f"Invitation to join {tenant.name} on Likeness",
            message=(
                f"You are invited to join {tenant.name} on Likeness as {invitation.get_role_display()}.\n\n"
                f"Open this link to accept, with your account or a new one for this address:\n\n{url}\n\n"
                f"It works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC. If you did not expect "
                "it, ignore this message: nothing happens unless you accept."
            ),
            from_email=None,
            recipient_list=[invitation.email],
        )
    except (OSError, BadHeaderError) as error:  # smtplib's errors are OSErrors
        logger.warning("invitation %s could not be e-mailed: %s", invitation.pk, type(error).__name__)
        return False
    actions.mark_invitation_emailed(invitation)
    return True
