"""ASGI entry point: HTTP through Django, WebSocket through Channels.

Every HTTP request passes the body limit (config.bodylimit) before Django reads
its body. WebSocket connections are checked against ALLOWED_HOSTS and
authenticated from the session before any consumer sees them.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (Django must be set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from config.bodylimit import BodyLimitMiddleware  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

# In DEBUG (`make run`, the browser tests' server) the app serves the static files itself; in production
# the reverse proxy does (deploy/nginx.conf, from collectstatic's folder).
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(
            http_app,
            default_limit=settings.LIKENESS_MAX_REQUEST_BYTES,
            upload_limit=settings.LIKENESS_MAX_UPLOAD_REQUEST_BYTES,
        ),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
