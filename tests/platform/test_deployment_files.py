"""Dockerfile and compose.yaml cannot be run here (no Docker engine); these checks keep them
consistent with the settings and the Celery queues by reading them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from config.celery import app as celery_app

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


def test_compose_declares_the_services_and_configures_every_app_container():
    services = _compose()["services"]
    assert set(services) == {"web", "worker-gpu", "worker", "beat", "postgres", "redis"}
    for name in ("web", "worker-gpu", "worker", "beat"):
        environment = services[name]["environment"]
        assert set(environment) >= SETTINGS_VARIABLES, (name, SETTINGS_VARIABLES - set(environment))
        assert environment["DJANGO_DEBUG"] == "0"
        assert environment["REDIS_URL"].startswith("redis://redis:")
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert {"postgres", "redis"} <= set(services[name]["depends_on"])


def test_the_web_container_spools_uploads_to_memory_only():
    """Plaintext photo bodies Django spools before encryption must not reach a disk (docs/compliance.md)."""
    assert "/tmp" in _compose()["services"]["web"]["tmpfs"]


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
