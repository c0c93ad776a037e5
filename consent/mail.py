"""The e-mails a subject receives (their signing link, an in-person code), composed and sent without leaks.

Sending never raises: any failure of the mail path (a header Django refuses,
an SMTP refusal, an unreachable server, a backend bug) comes back as the
error's class name, which consent.actions.delivery records on the delivery
row. The error's text is neither logged nor stored: SMTP errors quote the
recipient, and a backend may quote the message, which holds the link or code.
"""

from __future__ import annotations

import logging

from django.core.mail import EmailMessage
from django.http import HttpRequest
from django.template.loader import render_to_string
from rest_framework.request import Request

logger = logging.getLogger(__name__)

SUBJECT_LIMIT = 150


def site_url(request: HttpRequest | Request) -> str:
    """Scheme and host the request came to (checked against ALLOWED_HOSTS): the origin e-mailed links use."""
    return f"{request.scheme}://{request.get_host()}"


def header_text(value: str) -> str:
    """One line of at most SUBJECT_LIMIT characters: a tenant name with a newline injects no header."""
    return " ".join(value.split())[:SUBJECT_LIMIT]


def send(*, to: str, subject: str, template: str, context: dict[str, object]) -> str:
    """Send one plain-text message; "" when the mail server accepted it, else the error's class name."""
    try:
        body = render_to_string(template, context)
        EmailMessage(subject=header_text(subject), body=body, to=[to]).send()
    except Exception as error:  # every failure must leave the link pending and re-sendable, never a 500
        name = type(error).__name__
        logger.warning("a consent e-mail (%s) was not sent: %s", template.rsplit("/", 1)[-1], name)
        return name[:100]
    return ""
