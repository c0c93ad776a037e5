"""WebSocket routes: consumers built on tenancy.realtime.TenantObjectConsumer, one per live object."""

from django.urls import URLPattern, URLResolver, path

from training.consumers import JobConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    # Every kind of job (training, generation, edit) shares one id space and one socket.
    path("ws/jobs/<int:pk>/", JobConsumer.as_asgi()),
]
