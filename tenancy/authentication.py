"""API keys: how they are made and how a request's `Authorization: Token <key>` is checked.

Only the SHA-256 of a key is stored (tenancy.models.ApiToken says why a fast
hash is enough), so a database dump, a backup or an admin page holds nothing a
client could send. Lookups go by that hash, which an attacker cannot steer,
so the index lookup leaks nothing about stored keys through its timing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from tenancy.models import ApiToken

# Longer than any key new_key() makes; anything longer is refused before hashing.
MAX_KEY_CHARS = 100
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def new_key() -> tuple[str, str]:
    """(prefix, key): a public 8-hex prefix to tell tokens apart, and the key with 256 random bits."""
    prefix = secrets.token_hex(4)
    return prefix, f"lk_{prefix}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's `Token <key>` header, checked against hashed, expiring, revocable ApiToken rows.

    The failure says why (unknown, revoked, expired): only someone holding the
    key can learn that, and it tells them what to do.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        if len(key) > MAX_KEY_CHARS:
            raise AuthenticationFailed("Invalid token.")
        token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        if token.revoked_at is not None:
            raise AuthenticationFailed("Token revoked: create a new one.")
        now = timezone.now()
        if token.expires_at <= now:
            raise AuthenticationFailed("Token expired: create a new one.")
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token
