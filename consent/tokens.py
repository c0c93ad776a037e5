"""Signed consent-link and handover tokens, in-person codes, and consent-text fingerprints.

A consent link is the only way a consent is ever signed: staff create it, the
subject receives it by e-mail and opens it. The token names the link's random
public id and is signed with the deployment's SECRET_KEY (HMAC via
django.core.signing), so it can be neither guessed nor forged; whether the link
may still be used to sign is decided by the link row (its expiry), so staff can
never extend a link by re-signing it. The signature's timestamp is the link's
creation time, not the clock at signing, so the token is a function of the row:
a re-send e-mails the very same token without it being stored anywhere.

A handover token names an in-person signing under another salt, so it can
never stand in for a link token: it opens a page that asks for the code first.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from django.core import signing
from django.utils.crypto import salted_hmac

_SALT = "likeness.consent.link"
_HANDOVER_SALT = "likeness.consent.handover"
_CODE_SALT = "likeness.consent.handover-code"
CODE_DIGITS = 8


class InvalidLinkTokenError(Exception):
    """The token was not issued by this deployment, or was altered."""


def _read(token: str, salt: str) -> uuid.UUID:
    try:
        value = signing.loads(token, salt=salt)
        return uuid.UUID(hex=str(value))
    except (signing.BadSignature, ValueError) as exc:
        raise InvalidLinkTokenError("this consent link is not valid") from exc


class _IssuedAtSigner(signing.TimestampSigner):
    """signing.dumps' format and key, with the issue time instead of now: the same row, the same token."""

    def __init__(self, *, salt: str, issued_at: datetime) -> None:
        super().__init__(salt=salt)
        self.issued_at = issued_at

    def timestamp(self) -> str:
        return signing.b62_encode(int(self.issued_at.timestamp()))


def make_link_token(public_id: uuid.UUID, issued_at: datetime) -> str:
    return _IssuedAtSigner(salt=_SALT, issued_at=issued_at).sign_object(public_id.hex)


def read_link_token(token: str) -> uuid.UUID:
    return _read(token, _SALT)


def make_handover_token(public_id: uuid.UUID, issued_at: datetime) -> str:
    return _IssuedAtSigner(salt=_HANDOVER_SALT, issued_at=issued_at).sign_object(public_id.hex)


def read_handover_token(token: str) -> uuid.UUID:
    return _read(token, _HANDOVER_SALT)


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digest(handover_id: uuid.UUID, code: str) -> str:
    """Keyed with SECRET_KEY: with only 10^8 codes, a plain hash in a leaked database would give one away."""
    return salted_hmac(_CODE_SALT, f"{handover_id.hex}:{code}", algorithm="sha256").hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def token_fingerprint(token: str) -> str:
    """Stored as signature evidence instead of the token itself: proves which link was used, opens nothing."""
    return sha256_hex(token.encode())


def consent_text_sha256(text: str) -> str:
    """The fingerprint of the exact consent text shown (UTF-8 bytes, as stored and rendered)."""
    return sha256_hex(text.encode("utf-8"))
