"""The HTTP edge inside the process: JSON nesting, and request bodies kept off the disk."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from tenancy.models import Role


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
    assert response.status_code == 200
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
