"""The HTTP edge as a real server process runs it: body limits and tokens kept out of the logs.

The server is the one `make run` starts (config.stack.web_command), on the
test database, with small upload limits so that the bodies stay small.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets
from django.utils import timezone
from websockets.typing import Origin

from config.stack import free_port, web_command
from consent.tokens import make_link_token

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db  # the server process uses the session's test database
MIB = 1024 * 1024
REQUEST_LIMIT = 1 * MIB  # LIKENESS_MAX_REQUEST_BYTES (its default)
UPLOAD_LIMIT = 2 * MIB + REQUEST_LIMIT  # 2 files of 1 MiB, plus the allowance
ANSWER_TIMEOUT = 60  # generous: the machine is shared; these waits bound failures, they measure nothing


@dataclass
class Server:
    port: int
    log: Path

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=ANSWER_TIMEOUT)

    def log_text_once(self, *expected: str) -> str:
        """The server's output, once every expected fragment is in it (a log line may lag its response)."""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            text = self.log.read_text(errors="replace")
            if all(fragment in text for fragment in expected) or time.monotonic() > deadline:
                return text
            time.sleep(0.2)


def _database_url(tmp: Path) -> str:
    """The session's test database when it is PostgreSQL; otherwise a migrated SQLite file."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.postgresql":
        return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    url = f"sqlite:///{tmp / 'db.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=600
    )
    return url


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("edge-server")
    with django_db_blocker.unblock():
        database_url = _database_url(tmp)
    port = free_port()
    log = tmp / "server.log"
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url,
        "LIKENESS_LOG_LEVEL": "INFO",
        "LIKENESS_MAX_UPLOAD_BYTES": str(MIB),
        "LIKENESS_MAX_UPLOAD_FILES": "2",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            web_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "server did not start:\n" + log.read_text()
            time.sleep(0.2)
        yield Server(port, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answer(server: Server, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    connection = server.connection()
    connection.request(
        method, path, body, {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    )
    response = connection.getresponse()
    response.read()
    return response


def _headers_only(server: Server, method: str, path: str, length: int) -> http.client.HTTPResponse:
    """Announce a body of `length` bytes, send none of it, and wait for the answer."""
    connection = server.connection()
    connection.putrequest(method, path)
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    return connection.getresponse()


def test_an_oversized_content_length_is_refused_before_the_body_is_sent(server):
    page = _headers_only(server, "POST", "/login/", 300 * MIB)
    assert page.status == 413
    assert page.getheader("Content-Type", "").startswith("text/html")
    assert f"at most {REQUEST_LIMIT} bytes" in page.read().decode()

    api = _headers_only(server, "POST", "/api/v1/auth/token/", REQUEST_LIMIT + 1)
    assert api.status == 413
    assert api.getheader("Content-Type") == "application/json"
    assert f"at most {REQUEST_LIMIT} bytes" in json.loads(api.read())["detail"]

    upload = _headers_only(server, "POST", "/api/v1/subjects/1/reference-photos/", UPLOAD_LIMIT + 1)
    assert upload.status == 413
    assert f"at most {UPLOAD_LIMIT} bytes" in json.loads(upload.read())["detail"]


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(server):
    connection = server.connection()
    connection.putrequest("POST", "/login/")
    connection.putheader("Content-Type", "application/x-www-form-urlencoded")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"x" * (64 * 1024)
    for _ in range(REQUEST_LIMIT // len(chunk) + 1):  # one chunk past the limit, never the last-chunk marker
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    response = connection.getresponse()
    assert response.status == 413
    assert f"at most {REQUEST_LIMIT} bytes" in response.read().decode()


def test_upload_routes_take_more_and_a_slow_upload_holds_up_no_one(server):
    """A body over the default limit reaches the upload route; while it trickles in, pages still answer."""
    body = b"y" * (2 * MIB)
    upload = server.connection()
    upload.putrequest("POST", "/subjects/1/photos/")
    upload.putheader("Content-Type", "application/octet-stream")
    upload.putheader("Content-Length", str(len(body)))
    upload.endheaders()
    upload.send(body[: 256 * 1024])

    assert _answer(server, "GET", "/login/").status == 200

    upload.send(body[256 * 1024 :])
    answer = upload.getresponse()
    assert answer.status != 413
    assert answer.status == 403  # the CSRF check: the body was accepted and Django handled the request


def test_consent_tokens_never_reach_the_server_log(server):
    token = make_link_token(uuid.uuid4(), timezone.now())
    assert _answer(server, "GET", f"/consent/{token}/").status == 404
    assert _answer(server, "GET", f"/login/?next=/consent/{token}/").status == 200
    assert _answer(server, "POST", f"/consent/{token}/", b"action=revoke").status == 403

    access_line = '"GET /consent/[redacted]/ HTTP/1.1" 404'
    request_line = "Not Found: /consent/[redacted]/"
    csrf_line = "Forbidden (CSRF cookie not set.): /consent/[redacted]/"
    log = server.log_text_once(access_line, request_line, csrf_line)
    assert token not in log
    assert token.split(":")[-1] not in log  # not even the signature on its own
    login_line = '"GET /login/?next=/consent/[redacted]/ HTTP/1.1" 200'
    for line in (access_line, request_line, csrf_line, login_line):
        assert line in log, log[-3000:]


def test_websocket_handshakes_reach_channels(server):
    """The server speaks WebSocket and hands the handshake to Channels, whose origin check answers."""

    async def handshake() -> int:
        url = f"ws://127.0.0.1:{server.port}/ws/anything/"
        elsewhere = Origin("https://elsewhere.example")
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, origin=elsewhere, open_timeout=ANSWER_TIMEOUT):
                pass
        return refused.value.response.status_code

    assert asyncio.run(handshake()) == 403
    assert "Unsupported upgrade request" not in server.log.read_text()
