"""The HTTP edge inside the process: caching and content-security headers, private API docs,
JSON nesting, request bodies kept off the disk, and the log filter's reach."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from config.logredact import redact
from consent.tokens import make_link_token
from tenancy.models import Role

ROOT = Path(__file__).resolve().parents[2]
NONCE_SOURCE = re.compile(r"'nonce-([^']+)'")


def _no_store(response) -> bool:
    return {"no-store", "private"} <= {part.strip() for part in response["Cache-Control"].split(",")}


@pytest.mark.django_db
def test_every_page_and_answer_says_no_store(client, tenant_factory, member, client_for, api_client_for):
    tenant = tenant_factory()
    admin = member(tenant, Role.ADMIN)
    responses = {
        "login page": client.get("/login/"),
        "public consent page": client.get(f"/consent/{make_link_token(uuid.uuid4(), timezone.now())}/"),
        "dashboard": client_for(admin, tenant).get("/"),
        "members": client_for(admin, tenant).get("/members/"),
        "API": api_client_for(admin, tenant).get("/api/v1/me/"),
        "not found": client_for(admin, tenant).get("/no-such-page/"),
    }
    assert responses["dashboard"].status_code == responses["API"].status_code == 200
    for name, response in responses.items():
        assert response.has_header("Cache-Control"), name
        assert _no_store(response), (name, response["Cache-Control"])


@pytest.mark.django_db
def test_html_pages_carry_a_policy_whose_nonce_their_inline_blocks_use(tenant_factory, member, client_for):
    tenant = tenant_factory()
    page = client_for(member(tenant, Role.ADMIN), tenant).get("/members/")
    policy = dict(
        (directive.split()[0], directive.split()[1:])
        for directive in page["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in page["Content-Security-Policy"]
    assert policy["script-src"][0] == policy["style-src"][0] == "'self'"
    # A nonce is in the policy when the page has inline blocks (django-csp adds it once a template uses it).
    nonces = NONCE_SOURCE.findall(" ".join(policy["script-src"][1:]))
    assert policy["style-src"][1:] == policy["script-src"][1:]
    html = page.content.decode()
    # The stylesheet and the behaviour script are this origin's static files; an inline block
    # (a page's own data or script) carries the response's nonce.
    assert re.search(r'<link rel="stylesheet" href="/static/likeness/app\.css">', html)
    assert re.search(r'<script src="/static/likeness/app\.js" defer>', html)
    for kind, attributes in re.findall(r"<(script|style)\b([^>]*)>", html):
        if "src=" not in attributes and 'type="application/json"' not in attributes:
            assert nonces and f'nonce="{nonces[0]}"' in attributes, (kind, attributes)


def test_templates_need_nothing_the_policy_forbids():
    """No inline style attribute, event handler or javascript: URL; every inline block carries the nonce."""
    offences = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        text = template.read_text()
        name = template.relative_to(ROOT)
        for pattern, what in (
            (r"\sstyle\s*=", "style attribute"),
            (r"\son[a-z]+\s*=", "inline event handler"),
            (r"javascript:", "javascript: URL"),
        ):
            offences += [f"{name}: {what}" for _ in re.finditer(pattern, text, re.IGNORECASE)]
        for tag in re.findall(r"<(?:script|style)\b[^>]*>", text, re.IGNORECASE):
            if 'nonce="{{ request.csp_nonce }}"' not in tag and " src=" not in tag:
                offences.append(f"{name}: inline block without the nonce: {tag}")
    assert offences == []


@pytest.mark.django_db
def test_the_api_schema_and_docs_are_for_signed_in_users(client, user_factory):
    assert client.get("/api/v1/schema/?format=json").status_code in (401, 403)
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 302 and docs["Location"].startswith("/login/")
    client.force_login(user_factory())
    assert client.get("/api/v1/schema/?format=json").status_code == 200
    assert client.get("/api/v1/docs/").status_code == 200


@pytest.mark.django_db
def test_deeply_nested_json_gets_a_400_with_its_reason(client):
    for document in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50 + "1" + "}" * 50):
        response = client.post("/api/v1/auth/token/", document, content_type="application/json")
        assert response.status_code == 400
        assert "nested more than 32 levels deep" in response.json()["detail"]
    # Brackets inside strings are text, not nesting.
    flat = json.dumps({"username": "[" * 1000, "password": "{" * 1000})
    response = client.post("/api/v1/auth/token/", flat, content_type="application/json")
    assert response.status_code == 400
    assert "nested" not in json.dumps(response.json())


@pytest.mark.django_db
def test_tenant_settings_refuse_deeply_nested_json_with_a_reason(tenant_factory, member, client_for):
    tenant = tenant_factory()
    client = client_for(member(tenant, Role.ADMIN), tenant)
    response = client.post(
        "/settings/", {"name": "Brand", "settings": '{"a": ' + "[" * 5000 + "]" * 5000 + "}"}
    )
    assert response.status_code == 400  # the settings page answers a refusal with 400 and its reason
    assert "nested more than 32 levels deep" in response.content.decode()
    tenant.refresh_from_db()
    assert tenant.settings == {}


def _open_files_under(folder: str) -> list[str]:
    """What this process holds open under `folder`, deleted temporary files included."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(folder):
            found.append(target)
    return found


@pytest.mark.django_db
def test_a_photo_upload_body_is_held_in_memory_while_it_arrives(settings, tmp_path, monkeypatch):
    """Django spools a body past FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file, in plaintext."""
    from config.asgi import application

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    chunk = b"\xff" * (64 * 1024)
    chunks = 48  # 3 MiB: more than Django's default 2.5 MB, less than the upload limit
    assert chunks * len(chunk) < settings.LIKENESS_MAX_UPLOAD_REQUEST_BYTES
    seen_before_last_chunk: list[str] | None = None
    answered = asyncio.Event()
    status: list[int] = []
    sent = 0

    async def receive():
        nonlocal sent, seen_before_last_chunk
        if sent == chunks:
            await answered.wait()
            return {"type": "http.disconnect"}
        if sent == chunks - 1:
            seen_before_last_chunk = _open_files_under(str(tmp_path))
        sent += 1
        return {"type": "http.request", "body": chunk, "more_body": sent < chunks}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/subjects/1/photos/",
        "raw_path": b"/subjects/1/photos/",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(chunks * len(chunk)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    async_to_sync(application)(scope, receive, send)
    assert sent == chunks and status == [403]  # the whole body was read; the CSRF check answered
    assert seen_before_last_chunk == []


def test_redaction_keeps_the_line_useful():
    token = make_link_token(uuid.uuid4(), timezone.now())
    encoded = token.replace(":", "%3A")
    random = "Zq3v_Kx9-pL2mN8rT4yW"
    cases = {
        f'"GET /consent/{token}/ HTTP/1.1" 404': '"GET /consent/[redacted]/ HTTP/1.1" 404',
        f"/login/?next=%2Fconsent%2F{encoded}%2F": "/login/?next=%2Fconsent%2F[redacted]%2F",
        f"POST /consent/in-person/{random}/ 200": "POST /consent/in-person/[redacted]/ 200",
        f"GET /invitations/{random}/accept/": "GET /invitations/[redacted]/accept/",
        f"mailed link {token} to subject 7": "mailed link [redacted] to subject 7",
    }
    unchanged = [
        'File "/srv/app/consent/actions/signing.py", line 3',
        "GET /api/v1/consent-records/5/ 200 at 12:30:45",
    ]
    for line, expected in cases.items():
        assert redact(line) == expected
    for line in unchanged:
        assert redact(line) == line


CELERY_LOGGING = """
import logging, sys
from config.celery import app
app.log.setup(loglevel="INFO", redirect_stdouts=False)
logging.getLogger("celery.app.trace").info("Task send_link[%s] link /consent/%s/", "id-1", sys.argv[1])
"""


def test_celery_workers_log_through_the_same_filter():
    """A worker replaces the settings' handlers with Celery's own; those must redact too."""
    token = make_link_token(uuid.uuid4(), timezone.now())
    env = {**os.environ, "DJANGO_DEBUG": "1", "LIKENESS_LOG_LEVEL": "INFO"}
    result = subprocess.run(
        [sys.executable, "-c", CELERY_LOGGING, token],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "Task send_link[id-1] link /consent/[redacted]/" in output
    assert token not in output


@pytest.mark.django_db
def test_other_refusals_keep_a_generic_reason(client):
    """A refused Host header is the sender's own mistake or probe: the answer names nothing of it."""
    page = client.get("/", HTTP_HOST="probe.example")
    api = client.get("/api/v1/me/", HTTP_HOST="probe.example")
    assert page.status_code == api.status_code == 400
    assert "The request could not be understood." in page.content.decode()
    assert api.json() == {"detail": "The request could not be understood."}
    assert "probe.example" not in page.content.decode() + api.content.decode()
