"""The Celery app. GPU work (training, generation, editing) goes to the `gpu`
queue, served by one worker process per GPU; everything else to `default`."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger
from kombu import Queue

from config.logredact import RedactSecretsFilter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("likeness")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.autodiscover_tasks()


@after_setup_logger.connect
@after_setup_task_logger.connect
def redact_secrets_in_worker_logs(logger: logging.Logger, **kwargs: Any) -> None:
    """Celery replaces the settings' logging handlers with its own: give those the same filter."""
    for handler in logger.handlers:
        if not any(isinstance(existing, RedactSecretsFilter) for existing in handler.filters):
            handler.addFilter(RedactSecretsFilter())
