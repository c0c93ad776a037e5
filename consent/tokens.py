"""Signed consent-link tokens and consent-text fingerprints.

A consent link is the only way a consent is ever signed: staff create it, the
subject opens it. The token names the link's random public id and is signed with
the deployment's SECRET_KEY (HMAC via django.core.signing), so it can be neither
guessed nor forged; whether the link may still be used to sign is decided by the
link row (its expiry), so staff can never extend a link by re-signing it.
"""

from __future__ import annotations

import hashlib
import uuid

from django.core import signing

_SALT = "likeness.consent.link"


class InvalidLinkTokenError(Exception):
    """The token was not issued by this deployment, or was altered."""


def make_link_token(public_id: uuid.UUID) -> str:
    return signing.dumps(public_id.hex, salt=_SALT)


def read_link_token(token: str) -> uuid.UUID:
    try:
        value = signing.loads(token, salt=_SALT)
        return uuid.UUID(hex=str(value))
    except (signing.BadSignature, ValueError) as exc:
        raise InvalidLinkTokenError("this consent link is not valid") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def token_fingerprint(token: str) -> str:
    """Stored as signature evidence instead of the token itself: proves which link was used, opens nothing."""
    return sha256_hex(token.encode())


def consent_text_sha256(text: str) -> str:
    """The fingerprint of the exact consent text shown (UTF-8 bytes, as stored and rendered)."""
    return sha256_hex(text.encode("utf-8"))
