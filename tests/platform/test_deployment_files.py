"""Dockerfile, compose.yaml and deploy/nginx.conf cannot be run here (no Docker engine); these checks
keep them consistent with the settings, the server command and the Celery queues by reading them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from django.conf import settings
from django.urls import NoReverseMatch, reverse

from config.bodylimit import UPLOAD_ROUTE_NAMES
from config.celery import app as celery_app
from config.stack import web_command

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_VARIABLES = {
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "LIKENESS_STORAGE_ROOT",
    "LIKENESS_MASTER_KEY",
    "LIKENESS_PREVIOUS_MASTER_KEYS",
    "LIKENESS_BASE_MODEL",
    "LIKENESS_AUDIT_ANCHOR_SINKS",
    "LIKENESS_AUDIT_ANCHOR_KEY",
    "LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS",
}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_every_settings_variable_is_read_by_the_settings_module():
    source = (ROOT / "config" / "settings.py").read_text()
    for name in SETTINGS_VARIABLES:
        assert f'"{name}"' in source, name


def _nginx() -> str:
    return (ROOT / "deploy" / "nginx.conf").read_text()


def _locations() -> dict[str, str]:
    """Each location's pattern (with its modifier) -> its body; the file nests no block inside one."""
    found = re.findall(r"location\s+((?:[=~^*]+\s+)?\S+)\s*\{([^{}]*)\}", _nginx())
    return {pattern: body for pattern, body in found}


def _directive(body: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", body, re.MULTILINE)


def test_compose_declares_the_services_and_configures_every_app_container():
    services = _compose()["services"]
    assert set(services) == {"proxy", "web", "worker-gpu", "worker", "beat", "postgres", "redis"}
    for name in ("web", "worker-gpu", "worker", "beat"):
        environment = services[name]["environment"]
        assert set(environment) >= SETTINGS_VARIABLES, (name, SETTINGS_VARIABLES - set(environment))
        assert environment["DJANGO_DEBUG"] == "0"
        assert environment["REDIS_URL"].startswith("redis://redis:")
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert {"postgres", "redis"} <= set(services[name]["depends_on"])


def test_only_the_proxy_is_published_and_the_web_service_trusts_exactly_it():
    services = _compose()["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert set(services["proxy"]["ports"]) == {"443:443", "80:80"}
    assert services["proxy"]["image"].startswith("nginx:")
    mounts = services["proxy"]["volumes"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in mounts
    assert any(mount.endswith(":/etc/nginx/tls:ro") for mount in mounts)
    assert services["web"]["environment"]["LIKENESS_TRUSTED_PROXIES"] == "1"
    text = _nginx()
    assert "ssl_certificate /etc/nginx/tls/fullchain.pem;" in text
    assert "return 301 https://$host$request_uri;" in text
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text


def test_the_web_service_runs_the_server_make_run_runs():
    """compose.yaml and the Dockerfile's default command start config.stack.web_command's server and flags."""
    # From `-m config.webserver` on (the interpreter's path differs); the container listens on its own
    # interface.
    # The process count (`--workers N`, last) is the deployment's own choice.
    expected = " ".join(web_command("0.0.0.0", 8000, workers=2)[1:-2])  # noqa: S104
    compose = " ".join(_compose()["services"]["web"]["command"].split())
    assert f"exec python {expected} --workers " in compose
    cmd = re.search(r"^CMD (\[.*?\])$", (ROOT / "Dockerfile").read_text().replace("\\\n", ""), re.M | re.S)
    assert cmd is not None
    assert shlex.join(yaml.safe_load(cmd.group(1))).startswith(f"python {expected} --workers ")


def test_proxy_body_limits_equal_the_apps():
    locations = _locations()
    assert _directive(_nginx(), "client_max_body_size")[0] == str(settings.LIKENESS_MAX_REQUEST_BYTES)
    assert _directive(_nginx(), "client_body_buffer_size")[0] == str(settings.LIKENESS_MAX_REQUEST_BYTES)
    upload_locations = {
        pattern: body for pattern, body in locations.items() if "client_max_body_size" in body
    }
    assert upload_locations, "no location raises the limit for uploads"
    for body in upload_locations.values():
        assert _directive(body, "client_max_body_size") == [str(settings.LIKENESS_MAX_UPLOAD_REQUEST_BYTES)]
        assert _directive(body, "proxy_request_buffering") == ["off"]  # streamed, never spooled to a file
        assert _directive(body, "limit_conn") == ["uploads 2"]

    # The upload locations take exactly the upload routes, whatever the object id.
    patterns = [re.compile(pattern.split()[1]) for pattern in upload_locations]
    for name in UPLOAD_ROUTE_NAMES:
        try:  # a route without an id: a list (edit jobs, style sets), a page (the studio's edit, verify)
            paths = [reverse(name)]
        except NoReverseMatch:
            paths = [reverse(name, args=[pk]) for pk in (1, 4821)]
        for path in paths:
            assert sum(bool(p.match(path)) for p in patterns) == 1, name
    others = ("/subjects/1/", "/subjects/1/history/", "/api/v1/subjects/1/send-link/", "/login/", "/studio/")
    for other in (*others, "/api/v1/edit-jobs/1/", "/api/v1/edit-jobs/1/cancel/", "/api/v1/style-sets/1/"):
        assert not any(p.match(other) for p in patterns), other


def test_proxy_keeps_bodies_and_responses_in_memory_and_the_app_writes_none_to_disk():
    """Photos pass proxy and app in plaintext: neither may write them to a file (docs/compliance.md)."""
    assert _directive(_nginx(), "proxy_max_temp_file_size") == ["0"]
    assert settings.FILE_UPLOAD_HANDLERS == ["django.core.files.uploadhandler.MemoryFileUploadHandler"]
    assert settings.FILE_UPLOAD_MAX_MEMORY_SIZE >= settings.LIKENESS_MAX_UPLOAD_REQUEST_BYTES
    services = _compose()["services"]
    assert "/var/cache/nginx:size=64m" in services["proxy"]["tmpfs"]
    assert "/tmp:size=64m" in services["web"]["tmpfs"]


def test_proxy_rate_limits_password_guesses_and_token_pages():
    locations = _locations()
    for pattern in ("= /login/", "= /api/v1/auth/token/"):
        assert _directive(locations[pattern], "limit_req") == ["zone=passwords burst=5 nodelay"], pattern
    for pattern in ("/consent/", "/invitations/"):
        assert _directive(locations[pattern], "limit_req") == ["zone=tokens burst=20 nodelay"], pattern
    assert "limit_req_zone $password_post zone=passwords:10m rate=10r/m;" in _nginx()


def test_proxy_logs_carry_no_token():
    text = _nginx()
    [log_format] = re.findall(r"log_format redacted ([^;]+);", text)
    variables = set(re.findall(r"\$\w+", log_format))
    assert "$loggable_path" in variables
    assert not variables & {"$request", "$request_uri", "$uri", "$args", "$query_string", "$http_referer"}
    assert re.search(r"access_log /dev/stdout redacted;", text)
    assert '~^/(consent|invitations)/ "/$1/[redacted]";' in text
    for pattern in ("/consent/", "/invitations/"):  # error lines quote the request line
        assert _directive(_locations()[pattern], "error_log") == ["/dev/stderr crit"]


def test_workers_consume_exactly_the_declared_queues():
    services = _compose()["services"]
    declared = {queue.name for queue in celery_app.conf.task_queues}
    consumed = {}
    for name in ("worker-gpu", "worker"):
        match = re.search(r"-Q (\S+)", services[name]["command"])
        assert match, name
        consumed[name] = set(match.group(1).split(","))
    assert consumed == {"worker-gpu": {"gpu"}, "worker": {"default"}}
    assert set().union(*consumed.values()) == declared
    assert "--concurrency 1" in services["worker-gpu"]["command"]
    assert services["worker-gpu"]["build"]["args"]["BASE_IMAGE"].startswith("nvidia/cuda:")


def test_dockerfile_is_multi_stage_non_root_with_a_base_image_argument():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("\nFROM ") >= 3
    assert re.search(r"^ARG BASE_IMAGE=", text, re.MULTILINE)
    assert "FROM ${BASE_IMAGE} AS runtime-base" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    # LIKENESS_STORAGE_BACKEND=s3 works in the image: the s3 extra (boto3) is installed.
    extras = re.search(r'^ARG EXTRAS="([^"]*)"', text, re.MULTILINE)
    assert extras and "s3" in extras.group(1).split()
    # Every top-level package the product imports at run time is copied into the image.
    for package in (
        "config",
        "tenancy",
        "audit",
        "consent",
        "training",
        "editing",
        "personalization",
        "templates",
    ):
        assert f"COPY --chown=likeness:likeness {package} ./{package}" in text, package
