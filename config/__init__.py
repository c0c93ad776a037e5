"""Project configuration: settings, URL routing, ASGI entry point and the Celery app.

The design card's `platform/` package would shadow Python's stdlib `platform`
module (and break `uuid`, torch and celery with it), so its contents live here,
in tenancy/ and in audit/.
"""

from config.celery import app as celery_app

__all__ = ["celery_app"]
