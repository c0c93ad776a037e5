"""Fixtures of the consent tests: a private storage root per test, roles, and subjects under consent."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from consent import actions
from consent.models import ConsentRecord, Purpose, Subject
from tenancy.models import Role

from . import photos
from .mailbox import IssuedLink, issued

ALL_PURPOSES = [purpose.value for purpose in Purpose]
SITE_URL = "http://testserver"  # what Django's test client sends as the host, so e-mailed URLs open there
CONSENT_TEXT = (
    "I agree that Brand may use photos of me for the purposes I tick below. I can withdraw at any time on "
    "this page; withdrawing has no consequence for me."
)


@pytest.fixture(autouse=True)
def storage_root(settings: Any, tmp_path: Path) -> Path:
    """Each test gets its own private storage folder, so a scan of it sees only that test's files."""
    root = tmp_path / "private-storage"
    settings.STORAGES = {
        **settings.STORAGES,
        "likeness_private": {
            "BACKEND": "consent.storage.PrivateFileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    return root


@pytest.fixture
def tenant(tenant_factory: Callable[..., Any]) -> Any:
    return tenant_factory(name="Acme Portraits")


@pytest.fixture
def staff(tenant: Any, member: Callable[..., Any]) -> Any:
    return member(tenant, Role.STAFF)


@pytest.fixture
def admin(tenant: Any, member: Callable[..., Any]) -> Any:
    return member(tenant, Role.ADMIN)


@pytest.fixture
def legal(tenant: Any, member: Callable[..., Any]) -> Any:
    return member(tenant, Role.LEGAL_REVIEWER)


@pytest.fixture
def template(tenant: Any, admin: Any) -> Any:
    return actions.publish_consent_template(
        actor=admin, tenant=tenant, name="Likeness consent", body=CONSENT_TEXT
    )


@pytest.fixture
def make_subject(tenant: Any, staff: Any) -> Callable[..., Subject]:
    def create(name: str = "Barack Example", **kwargs: Any) -> Subject:
        kwargs.setdefault("contact_email", "subject@example.test")
        return actions.create_subject(actor=staff, tenant=tenant, display_name=name, **kwargs)

    return create


@pytest.fixture
def issue_link(staff: Any, template: Any) -> Callable[..., IssuedLink]:
    """`issue_link(subject, purposes)`: staff send a link; `.token` is read from the subject's e-mail."""

    def issue(
        subject: Subject,
        purposes: list[str] | None = None,
        *,
        valid_from: datetime | None = None,
        expires_at: datetime | None = None,
        actor: Any = None,
    ) -> IssuedLink:
        link = actions.send_consent_link(
            actor=actor or staff,
            subject=subject,
            template=template,
            purposes=ALL_PURPOSES if purposes is None else purposes,
            intended_uses="Portraits for the spring 2027 campaign on the brand website and social media.",
            identity_verification="Passport checked in person by the casting team",
            channels=["web", "social"],
            territories=["US", "EU"],
            valid_from=valid_from,
            expires_at=expires_at if expires_at is not None else timezone.now() + timedelta(days=365),
            site_url=SITE_URL,
        )
        return issued(link)

    return issue


@pytest.fixture
def link_tokens() -> dict[int, str]:
    """Consent record id -> the token of the link it was signed with (what the subject keeps)."""
    return {}


@pytest.fixture
def sign(issue_link: Callable[..., IssuedLink], link_tokens: dict[int, str]) -> Callable[..., ConsentRecord]:
    """`sign(subject, purposes, ...)`: staff send a link, the subject signs it on the link page."""

    def signed(
        subject: Subject,
        purposes: list[str] | None = None,
        *,
        valid_from: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> ConsentRecord:
        wanted = ALL_PURPOSES if purposes is None else purposes
        issued = issue_link(subject, wanted, valid_from=valid_from, expires_at=expires_at)
        record = actions.sign_consent(
            token=issued.token,
            purposes=wanted,
            full_name=subject.display_name,
            representation="none",
            ip="203.0.113.7",
            user_agent="pytest-browser/1.0",
        )
        link_tokens[record.pk] = issued.token
        return record

    return signed


class NamedBytes(io.BytesIO):
    """An upload as the actions see it: a name and a read()."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


@pytest.fixture
def enrolled_subject(
    make_subject: Callable[..., Subject], sign: Callable[..., ConsentRecord], staff: Any
) -> Subject:
    """A subject (person A of ../shared/data/faces) with consent to every purpose and an enrollment photo."""
    subject = make_subject()
    sign(subject)
    actions.set_enrollment_photo(
        actor=staff, subject=subject, upload=NamedBytes(photos.photo_bytes("obama.jpg"), "a.jpg")
    )
    subject.refresh_from_db()
    return subject
