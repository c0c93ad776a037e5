"""What the subject received, read from django.core.mail.outbox as the subject would read their mailbox.

The signing link reaches nobody but the subject, so tests that sign take the
token from the e-mail too, never from an action's return value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core import mail

from consent.models import ConsentLink, InPersonHandover
from consent.tokens import CODE_DIGITS, InvalidLinkTokenError, read_link_token

URL = re.compile(r"https?://[^\s/]+/consent/([^/\s]+)/")
CODE = re.compile(rf"^\s*(\d{{{CODE_DIGITS}}})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class IssuedLink:
    """A link as the tests use it: the row staff created, and the token the subject found in the e-mail."""

    link: ConsentLink
    token: str


def delivered_url(link: ConsentLink) -> str:
    """The newest e-mailed URL that opens `link`, from a message to the link's address."""
    for message in reversed(mail.outbox):
        if message.to != [link.sent_to]:
            continue
        for found in URL.finditer(str(message.body)):
            try:
                if read_link_token(found.group(1)) == link.public_id:
                    return found.group(0)
            except InvalidLinkTokenError:
                continue
    raise AssertionError(f"no e-mail to {link.sent_to} carries consent link {link.pk}")


def delivered_token(link: ConsentLink) -> str:
    match = URL.match(delivered_url(link))
    assert match is not None
    return match.group(1)


def issued(link: ConsentLink) -> IssuedLink:
    return IssuedLink(link=link, token=delivered_token(link))


def delivered_code(handover: InPersonHandover) -> str:
    """The code of the newest code e-mail to the handover's address (one handover at a time per address)."""
    for message in reversed(mail.outbox):
        found = CODE.search(str(message.body))
        if message.to == [handover.link.sent_to] and found:
            return found.group(1)
    raise AssertionError(f"no code e-mail to {handover.link.sent_to}")
