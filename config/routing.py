"""WebSocket routes. Apps append their consumers here, e.g.
`path("ws/training-jobs/<int:pk>/", TrainingJobProgressConsumer.as_asgi())`,
with consumers built on tenancy.realtime.TenantObjectConsumer."""

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
