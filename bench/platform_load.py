"""Platform load: the product's busiest routes at 1x and 10x the data, through the real server.

    python bench/platform_load.py [--subjects 10000] [--duration 30] [--workers N] [--database-url URL]
    python bench/platform_load.py --subjects 1000 --duration 3 --no-docs       # a quick look

In a fresh PostgreSQL database of its own (bench/platform_common.py):
1. seeds a tenant of `--subjects` consented subjects and a second of a tenth as many, each
   through the real actions, as staff and the subject would: the subject created, a consent link
   e-mailed (the token read from that e-mail), the subject's signature; every step audited;
2. starts the real server (config.stack's web_command, `--workers` processes, production settings);
3. runs a bounded load, keep-alive HTTP, `--duration` seconds per point at concurrency 1, 8 and 32,
   against each route below in both tenants; then the subject detail and audit list at
   concurrency 8 in turns against the N-process server and a one-process server running beside
   it (N, 1, N, 1, N, 1: the machine's drift falls on both), for the multi-process ratio;
4. counts each route's database queries in this process (Django's test client under
   CaptureQueriesContext: no header or hook in the product);
5. prints the table and the goals of issue 14 as met / not met, and writes them into
   docs/benchmarks.md between the platform_load markers (unless --no-docs).

The retention sweep at 100,000 subjects is bench/retention_sweep.py.
Not a test: nothing here is asserted, and even a 10-subject run takes minutes (a fresh database,
servers started twice), too slow for the suite: run it by hand after changing what it drives.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.platform_common import (
    DEFAULT_DATABASE_URL,
    REPO_ROOT,
    bench_tenant,
    fresh_database,
    machine,
    setup_django,
    signed_subject,
    table,
)

DOCS = REPO_ROOT / "docs" / "benchmarks.md"
START_MARK, END_MARK = "<!-- platform_load:start -->", "<!-- platform_load:end -->"
CONCURRENCY = (1, 8, 32)
REQUEST_TIMEOUT_S = 60.0
# Goals of issue 14: p50 at 10x the data within 1.5x; c=8 throughput with N processes >= 1.8x one.
SCALE_GOAL, PROCESS_GOAL, HTML_P50_GOAL_MS = 1.5, 1.8, 150.0
PROCESS_TURNS = 3  # turns of N processes then one, for the throughput ratio


@dataclass(frozen=True)
class Route:
    label: str
    path: str  # {id}: a subject of the tenant, a different one each request
    api: bool


ROUTES = (
    Route("GET /api/v1/subjects/", "/api/v1/subjects/", api=True),
    Route("GET /api/v1/subjects/{id}/", "/api/v1/subjects/{id}/", api=True),
    Route("GET /api/v1/audit-entries/", "/api/v1/audit-entries/", api=True),
    Route("GET /api/v1/subjects/{id}/consent-check/", "/api/v1/subjects/{id}/consent-check/", api=True),
    Route("HTML /subjects/", "/subjects/", api=False),
)
DETAIL, AUDIT = ROUTES[1], ROUTES[2]


@dataclass
class Seeded:
    """A tenant as the load sees it: its slug, subject ids, and how its staff member signs in."""

    slug: str
    subjects: int
    entries: int
    subject_ids: list[int]
    api_key: str
    session_cookie: str

    def headers(self, route: Route) -> dict[str, str]:
        from tenancy.api import TENANT_HEADER

        if route.api:
            return {"Authorization": f"Token {self.api_key}", TENANT_HEADER: self.slug}
        return {"Cookie": self.session_cookie}


@dataclass
class Point:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def quantile(self, q: float) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q * 100) - 1]

    server_cpu_s: float = 0.0  # CPU of the server's processes during the point (ratio turns only)
    machine_cpu_s: float = 0.0  # CPU of the whole machine during the point (ratio turns only)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def ceiling(self, cores: int) -> float:
        """The throughput ratio N processes could reach at most on `cores` cores, from this one-process
        point: everything else on the machine (PostgreSQL, Redis, this load generator) needs its CPU
        share for every request too, so the servers can use at most cores x (their share)."""
        share = self.server_cpu_s / self.machine_cpu_s if self.machine_cpu_s else float("nan")
        return cores * share


_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # ended
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and its children (the server's supervisor and its processes)."""
    pids = [root]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == root:
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return sum(_process_cpu_s(pid) for pid in pids)


def _machine_cpu_s() -> float:
    """CPU seconds every core spent busy (not idle or waiting for I/O), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / _TICK


# --- seeding, through the actions -------------------------------------------------------------


SEED_CHUNK = 25  # subjects per task handed to a seeding process


def seed_tenant(name: str, slug: str, subjects: int, processes: int, url: str) -> Seeded:
    """A tenant with an admin and a staff member, its consent texts, and `subjects` signed subjects.

    The subjects are seeded by `processes` processes at once, each through the actions: most of
    an action's time is waiting for the database and its commits, which several writers share.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from django.conf import settings
    from django.test import Client
    from tqdm import tqdm

    from audit.models import AuditEntry
    from tenancy import actions
    from tenancy.context import SESSION_KEY

    tenant, _, staff, template = bench_tenant(name, slug)
    ids: list[int] = []
    chunks = [(n, min(subjects, n + SEED_CHUNK)) for n in range(0, subjects, SEED_CHUNK)]
    with (
        ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool,
        tqdm(total=subjects, desc=f"subjects of {slug}", unit="subject") as bar,
    ):
        futures = [
            pool.submit(seed_subjects, url, tenant.pk, staff.pk, template.pk, first, last)
            for first, last in chunks
        ]
        for future in as_completed(futures):
            done = future.result()
            ids += done
            bar.update(len(done))
    _, api_key = actions.issue_api_token(staff, name="platform load", via="bench")
    client = Client()
    client.force_login(staff)
    session = client.session
    session[SESSION_KEY] = tenant.pk
    session.save()
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
    entries = AuditEntry.objects.for_tenant(tenant).count()
    return Seeded(slug, subjects, entries, sorted(ids), api_key, cookie)


def seed_subjects(
    url: str, tenant_id: int, staff_id: int, template_id: int, first: int, last: int
) -> list[int]:
    """Subjects first..last-1, in a seeding process: created by staff, e-mailed a link, signed."""
    from django.apps import apps

    if not apps.ready:
        setup_django(url, migrate=False)
    from django.contrib.auth import get_user_model

    from consent.models import ConsentTemplate
    from tenancy.models import Tenant

    tenant = Tenant.objects.get(pk=tenant_id)
    staff = get_user_model()._default_manager.get(pk=staff_id)
    template = ConsentTemplate.objects.for_tenant(tenant).get(pk=template_id)
    ids = []
    for n in range(first, last):
        subject, _, _ = signed_subject(tenant, staff, template, n)
        ids.append(subject.pk)
    return ids


# --- queries per request, in this process -----------------------------------------------------


def count_queries(seeded: Seeded, route: Route) -> int:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    path = route.path.format(id=seeded.subject_ids[len(seeded.subject_ids) // 2])
    client.get(path, headers=seeded.headers(route))  # warm: first-use caches are not per request
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, headers=seeded.headers(route))
    if response.status_code != 200:
        raise SystemExit(
            f"{path} in {seeded.slug} answered {response.status_code}: {response.content[:300]!r}"
        )
    return len(captured.captured_queries)


# --- the server and the load ------------------------------------------------------------------


def free_port() -> int:
    from config.stack import free_port as stack_free_port

    return stack_free_port()


class Server:
    """The ASGI server exactly as `make run` starts it, with `workers` processes."""

    def __init__(self, workers: int, log: Path) -> None:
        from config.stack import web_command

        self.port, self.workers = free_port(), workers
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            web_command("127.0.0.1", self.port, workers),
            cwd=REPO_ROOT,
            env=dict(os.environ),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not start; its log: {log}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_point(port: int, seeded: Seeded, route: Route, concurrency: int, duration: float) -> Point:
    """`concurrency` keep-alive clients, each sending its next request when the last answered."""
    point = Point()
    lock = threading.Lock()
    headers = seeded.headers(route)
    deadline = time.monotonic() + duration

    def client(seed: int) -> None:
        pick = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        mine: list[float] = []
        errors = 0
        while time.monotonic() < deadline:
            path = route.path.format(id=pick.choice(seeded.subject_ids))
            start = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
            if ok:
                mine.append((time.perf_counter() - start) * 1000)
            else:
                errors += 1
        connection.close()
        with lock:
            point.latencies_ms.extend(mine)
            point.errors += errors

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    point.seconds = time.monotonic() - started
    return point


def compare_processes(
    several: Server, single: Server, seeded: Seeded, processes: dict[tuple[str, int], Point], duration: float
) -> None:
    """Throughput at c=8 with N processes and with one, in turns (N, 1, N, 1, N, 1) while both servers
    run, so that the machine's minute-to-minute changes (a third on this one) fall on both alike; the
    best turn of each counts (other load only ever takes throughput away)."""
    workers = several.workers
    try:
        for route in (DETAIL, AUDIT):
            run_point(single.port, seeded, route, 1, min(2.0, duration))  # warm the single process
            for _ in range(PROCESS_TURNS):
                for server, count in ((several, workers), (single, 1)):
                    server_cpu, machine_cpu = _tree_cpu_s(server.process.pid), _machine_cpu_s()
                    point = run_point(server.port, seeded, route, 8, duration)
                    point.server_cpu_s = _tree_cpu_s(server.process.pid) - server_cpu
                    point.machine_cpu_s = _machine_cpu_s() - machine_cpu
                    best = processes.get((route.label, count))
                    if best is None or point.rate > best.rate:
                        processes[(route.label, count)] = point
                    print(f"{route.label} c=8 with {count} process(es): {point.rate:.1f} req/s", flush=True)
    finally:
        single.stop()


# --- the report --------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _cell(point: Point) -> str:
    text = f"{_ms(point.quantile(0.5))} / {_ms(point.quantile(0.95))} / {_ms(point.quantile(0.99))}"
    return text + (f" ({point.errors} failed)" if point.errors else "")


def report(
    tenants: list[Seeded],
    points: dict[tuple[str, str, int], Point],
    queries: dict[tuple[str, str], int],
    processes: dict[tuple[str, int], Point],
    workers: int,
) -> tuple[str, list[str]]:
    rows = []
    for route in ROUTES:
        for seeded in tenants:
            cells = [route.label, f"{seeded.subjects:,}"]
            cells += [_cell(points[(route.label, seeded.slug, c)]) for c in CONCURRENCY]
            cells.append(
                " / ".join(f"{points[(route.label, seeded.slug, c)].rate:,.1f}" for c in CONCURRENCY)
            )
            cells.append(str(queries[(route.label, seeded.slug)]))
            rows.append(cells)
    header = ["route", "subjects"] + [f"c={c} p50 / p95 / p99 ms" for c in CONCURRENCY]
    header += ["req/s at c=" + "/".join(map(str, CONCURRENCY)), "queries"]
    goals = []
    big, small = tenants
    for route in ROUTES:
        ratio = points[(route.label, big.slug, 1)].quantile(0.5) / points[
            (route.label, small.slug, 1)
        ].quantile(0.5)
        goals.append(
            f"{route.label}: p50 at c=1 with {big.subjects:,} subjects is {ratio:.2f}x that with "
            f"{small.subjects:,} (goal <= {SCALE_GOAL}x): {'met' if ratio <= SCALE_GOAL else 'NOT met'}"
        )
    html_p50 = points[(ROUTES[-1].label, big.slug, 1)].quantile(0.5)
    goals.append(
        f"HTML /subjects/ p50 at c=1 with {big.subjects:,} subjects: {html_p50:.0f} ms "
        f"(goal < {HTML_P50_GOAL_MS:.0f} ms): {'met' if html_p50 < HTML_P50_GOAL_MS else 'NOT met'}"
    )
    cores = os.cpu_count() or 1
    for route in (DETAIL, AUDIT):
        single = processes[(route.label, 1)]
        one, many = single.rate, processes[(route.label, workers)].rate
        ratio = many / one if one else float("nan")
        ceiling = ""
        if single.machine_cpu_s:
            ceiling = (
                f"; with one process the server used {single.server_cpu_s / single.machine_cpu_s:.0%} of the "
                f"machine's CPU, so {min(workers, cores)} processes could reach at most "
                f"{min(workers, single.ceiling(cores)):.2f}x on {cores} cores"
            )
        met = "met" if ratio >= PROCESS_GOAL else "NOT met"
        goals.append(
            f"{route.label} at c=8: {many:,.1f} req/s with {workers} processes, {one:,.1f} with one: "
            f"{ratio:.2f}x (goal >= {PROCESS_GOAL}x): {met}{ceiling}"
        )
    return table(header, rows), goals


def write_docs(docs: Path, text: str) -> None:
    """Replace the last run's figures (between the markers) with this run's; the rest stays."""
    content = docs.read_text()
    if START_MARK not in content or END_MARK not in content:
        raise SystemExit(f"{docs} has no {START_MARK} ... {END_MARK} section to fill in")
    before, rest = content.split(START_MARK, 1)
    after = rest.split(END_MARK, 1)[1]
    docs.write_text(f"{before}{START_MARK}\n{text}\n{END_MARK}{after}")


def load(args: argparse.Namespace) -> int:
    fresh_database(args.database_url)
    setup_django(args.database_url, migrate=True)
    from config.stack import web_workers

    workers = args.workers or web_workers()
    where = machine()
    timings = []
    tenants = []
    for name, slug, count in (
        ("Bench Large", "bench-large", args.subjects),
        ("Bench Small", "bench-small", max(1, args.subjects // 10)),
    ):
        start = time.perf_counter()
        tenants.append(seed_tenant(name, slug, count, args.seed_processes, args.database_url))
        seconds = time.perf_counter() - start
        timings.append(f"{count:,} subjects in {seconds:,.0f} s ({count / seconds:,.1f}/s)")
    print("seeded through the actions: " + "; ".join(timings), flush=True)
    queries = {
        (route.label, seeded.slug): count_queries(seeded, route) for route in ROUTES for seeded in tenants
    }
    from django.db import connections

    connections.close_all()  # the servers need the connections more than this waiting process does

    log = REPO_ROOT / "var" / "bench" / "platform_load-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    points: dict[tuple[str, str, int], Point] = {}
    processes: dict[tuple[str, int], Point] = {}
    server = Server(workers, log)
    try:
        for seeded in tenants:
            for route in ROUTES:
                run_point(server.port, seeded, route, 1, min(2.0, args.duration))  # warm every process
                for concurrency in CONCURRENCY:
                    point = run_point(server.port, seeded, route, concurrency, args.duration)
                    points[(route.label, seeded.slug, concurrency)] = point
                    label = f"{seeded.slug} {route.label} c={concurrency}"
                    print(f"{label}: {_cell(point)}, {point.rate:.1f} req/s", flush=True)
        if workers == 1:
            for route in (DETAIL, AUDIT):
                processes[(route.label, 1)] = points[(route.label, tenants[0].slug, 8)]
        else:
            compare_processes(server, Server(1, log), tenants[0], processes, args.duration)
    finally:
        server.stop()

    results, goals = report(tenants, points, queries, processes, workers)
    command = "python bench/platform_load.py " + " ".join(sys.argv[1:] if sys.argv[1:] else [])
    text = "\n".join(
        [
            f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.subjects:,} subjects, "
            f"{args.duration:g} s per point, {workers} server processes",
            f"Machine: {where}. Command: `{command.strip()}`. Seeded through the actions: "
            + "; ".join(timings)
            + f" ({tenants[0].entries:,} and {tenants[1].entries:,} audit entries).",
            "",
            results,
            "",
            *[f"- {goal}" for goal in goals],
        ]
    )
    print("\n" + text)
    if not args.no_docs:
        write_docs(args.docs, text)
        print(f"\nwritten to {args.docs}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--subjects", type=int, default=10_000, help="subjects of the large tenant")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per measured point")
    parser.add_argument("--workers", type=int, default=0, help="server processes (default: one per core)")
    parser.add_argument(
        "--seed-processes", type=int, default=4, help="processes seeding subjects through the actions"
    )
    parser.add_argument(
        "--docs", type=Path, default=DOCS, help="the page whose platform_load section is replaced"
    )
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.subjects < 10:
        parser.error("--subjects must be at least 10 (the small tenant has a tenth)")
    return load(args)


if __name__ == "__main__":
    sys.exit(main())
