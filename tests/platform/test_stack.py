"""`python -m config.stack` (what `make run` starts): everything comes up, one Ctrl-C stops all of it.

Runs against a fresh SQLite file and the stack's own embedded Redis, exactly as
on a fresh machine (where CI's Redis answers on the default port: the stack
must not use it); also checks the queue routing the worker depends on.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from config.stack import free_port
from tests.support import requires_redis

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.worker


def _sessions_alive(session_ids: list[int]) -> list[int]:
    """Processes still in the sessions the stack's children started (celery's pool included)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) in session_ids:  # field 6 of stat: session id
            alive.append(int(stat.parent.name))
    return alive


def test_stack_starts_everything_and_one_ctrl_c_stops_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(DJANGO_DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PYTHONUNBUFFERED="1")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300
    )
    web_port = free_port()
    stack = subprocess.Popen(
        [sys.executable, "-m", "config.stack", "--port", str(web_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    output = stack.stdout
    assert output is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(output.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any("likeness@" in line and "ready." in line for line in lines):
            assert stack.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "stack not ready in time:\n" + "".join(lines[-40:])
            time.sleep(0.5)
        started = {
            m[1]: int(m[2])
            for line in lines
            if (m := re.search(r"\[stack\] (\w+) started \(pid (\d+)\)", line))
        }
        assert set(started) == {"redis", "web", "worker", "beat"}
        # The worker consumes from the stack's own Redis, never from one that happened to answer.
        redis_port = int(next(m[1] for line in lines if (m := re.search(r"--port (\d+) --dir", line))))
        broker = re.compile(r"\.> (?:transport|results):\s+redis://(?:\S*@)?127\.0\.0\.1:(\d+)/")
        used = [int(m[1]) for line in lines if (m := broker.search(line))]
        assert used == [redis_port, redis_port] and redis_port != 6379, "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/login/", timeout=10) as response:
            assert response.status == 200
        assert any("beat: Starting" in line for line in lines)

        stack.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert stack.wait(timeout=60) == 0, "".join(lines[-40:])
        reader.join(timeout=5)
        assert "[stack] all stopped\n" in lines
        assert _sessions_alive(list(started.values())) == []
        for port in (web_port, redis_port):
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if stack.poll() is None:
            stack.kill()


def test_stack_refuses_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "DJANGO_DEBUG": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "config.stack", "--port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "already in use" in result.stdout


def test_stack_refuses_a_busy_redis_port_instead_of_sharing_it():
    """Whatever answers there (another checkout's Redis, say) is not this checkout's queue."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        redis_port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "config.stack",
                "--port",
                str(free_port()),
                "--redis-port",
                str(redis_port),
            ],
            cwd=ROOT,
            env={**env, "DJANGO_DEBUG": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {redis_port} is already in use: the embedded Redis needs a port of its own" in result.stdout


@requires_redis
def test_gpu_and_default_queues_receive_only_their_own_messages():
    import redis
    from django.conf import settings

    from config.celery import app

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("gpu", "default")
    try:
        app.send_task("likeness.probe", queue="gpu")
        app.send_task("likeness.probe")
        assert (client.llen("gpu"), client.llen("default")) == (1, 1)
    finally:
        client.delete("gpu", "default")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_running_product_serves_its_pages_and_their_static_files(stack):
    """What `make run` serves: the dashboard's stylesheet and script come from the app itself in DEBUG."""
    import urllib.request

    product = stack()
    for path, kind in (("/static/likeness/app.css", "text/css"), ("/static/likeness/app.js", "javascript")):
        with urllib.request.urlopen(product.url + path, timeout=30) as response:  # noqa: S310 (loopback)
            assert response.status == 200 and kind in response.headers["Content-Type"]
    with urllib.request.urlopen(product.url + "/login/", timeout=30) as response:  # noqa: S310
        assert response.status == 200
        assert "/static/likeness/app.css" in response.read().decode()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_server_runs_the_configured_number_of_processes(stack):
    import urllib.request

    single, several = stack(), stack(LIKENESS_WEB_WORKERS="2")
    assert (single.server_processes(), several.server_processes()) == (1, 2)
    for _ in range(4):
        with urllib.request.urlopen(several.url + "/login/", timeout=30) as response:  # noqa: S310 (loopback)
            assert response.status == 200


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_keep_alive_connections_is_spread_over_the_server_processes(stack):
    """Issue 14: on one shared socket the process that woke first accepted a whole burst (7 of 8
    measured) and kept every connection; now each process listens on its own socket (SO_REUSEPORT)
    and the kernel spreads the connections, so a second process adds throughput."""
    several = stack(LIKENESS_WEB_WORKERS="2")
    deadline = time.monotonic() + 120
    while list(several.sockets_by_process("0A").values()) != [1, 1]:  # both processes listen
        assert time.monotonic() < deadline, several.log.read_text()
        time.sleep(0.2)
    port = int(several.url.rsplit(":", 1)[1])
    burst = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(32)]
    try:
        for connection in burst:
            connection.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for connection in burst:  # each answered, so each was accepted by a process
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += connection.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        held = several.sockets_by_process("01")
    finally:
        for connection in burst:
            connection.close()
    assert sum(held.values()) == 32, held
    # Spread by the connections' addresses: 26 or more of 32 on one of two sockets has odds of 1 in 2,000.
    assert max(held.values()) <= 25, held


def test_the_server_refuses_a_port_something_already_listens_on():
    """Each server process listens with SO_REUSEPORT, which would let a second server (a stale
    `make run`) quietly take a share of the connections: it stops at once with the reason."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # even one that would share
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        second = subprocess.run(
            [sys.executable, "-m", "config.webserver", "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in second.stderr
