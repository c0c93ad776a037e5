"""The ASGI server: uvicorn in `--workers` processes, each listening on a socket of its own.

uvicorn's own `--workers` shares one listening socket among its processes, and asyncio accepts
every connection waiting on a socket when its process wakes. A burst of keep-alive connections (a
reverse proxy's upstream pool, a load test's clients) then lands on one process, measured 7 of 8
with two processes, which serves them all for as long as they live while the other idles: a
second process added nothing to throughput (issue 14). Here each process binds the port with
SO_REUSEPORT, so the kernel hands every new connection to one of the listening sockets, spread by
the connection's addresses. The parent only starts the processes, starts again one that died, and
stops them all on SIGTERM or SIGINT.

    python -m config.webserver --host 127.0.0.1 --port 8000 --workers 2

No proxy headers: the client address is the TCP peer's; behind a reverse proxy, Django reads
X-Forwarded-For itself (LIKENESS_TRUSTED_PROXIES). No lifespan: neither Django nor Channels
implements it. No Server header.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

APPLICATION = "config.asgi:application"
BACKLOG = 2048  # uvicorn's default
STOP_SECONDS = 30  # a process still running this long after SIGTERM is killed
RESTART_PAUSE_SECONDS = 1.0

logger = logging.getLogger("uvicorn.error")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket on (host, port) that other processes of this user may also listen on (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def refuse_a_port_in_use(host: str, port: int) -> None:
    """Exit with the reason when something already listens on (host, port).

    SO_REUSEPORT would otherwise let a second server (a stale `make run`) quietly take a share of
    the connections: a plain bind fails wherever any socket listens, reuse or not.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise SystemExit(f"cannot listen on {host}:{port}: {error.strerror}") from None


def serve(host: str, port: int) -> None:
    """One server process: uvicorn on its own listening socket, until SIGTERM or SIGINT."""
    import uvicorn

    config = uvicorn.Config(
        APPLICATION, host=host, port=port, proxy_headers=False, lifespan="off", server_header=False
    )
    uvicorn.Server(config).run(sockets=[listening_socket(host, port)])


def supervise(host: str, port: int, workers: int) -> int:
    """Start `workers` server processes, start again any that dies, stop them all on a signal."""
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> BaseProcess:
        process = context.Process(target=serve, args=(host, port), name="likeness-web")
        process.start()
        return process

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = [start() for _ in range(workers)]
    logger.info("Serving on %s:%s with %s processes (one socket each)", host, port, workers)
    while not stopping.wait(0.5):
        for n, process in enumerate(processes):
            if not process.is_alive() and not stopping.is_set():
                logger.warning(
                    "Server process %s exited with status %s; starting another", process.pid, process.exitcode
                )
                time.sleep(RESTART_PAUSE_SECONDS)
                processes[n] = start()
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, choices=range(1, 65), metavar="1-64")
    args = parser.parse_args(argv)
    refuse_a_port_in_use(args.host, args.port)
    if args.workers == 1:
        serve(args.host, args.port)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    return supervise(args.host, args.port, args.workers)


if __name__ == "__main__":
    sys.exit(main())
