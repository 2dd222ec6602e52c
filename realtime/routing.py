from django.urls import URLPattern, path

from realtime.consumers import LiveBoardConsumer

websocket_urlpatterns: list[URLPattern] = [
    path("v1/realtime", LiveBoardConsumer.as_asgi()),
]
