import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
# Django first, so apps are loaded before the consumers import models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.connection_cap import WebSocketConnectionCap  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.security import allowed_hosts_origin_validator  # noqa: E402
from realtime.wire import CaptureServerSend, preframed_problem  # noqa: E402
from scoreboard import gcpauses  # noqa: E402
from scoreboard.metrics import StreamMetricsMiddleware, WebSocketMetricsMiddleware  # noqa: E402
from scoreboard.ratelimit import WebSocketHandshakeRateLimit  # noqa: E402
from scoreboard.request_id import RequestIdASGIMiddleware  # noqa: E402

# The requests that stay open (realtime/urls.py's SSE stream).
STREAM_PATHS = frozenset({"/v1/leaderboard/stream"})

application = ProtocolTypeRouter(
    {
        # The request id is bound for the whole exchange (SSE streams log after the middleware returns).
        # An SSE stream stays open like a socket: it counts under the same per-address cap.
        "http": RequestIdASGIMiddleware(
            WebSocketConnectionCap(StreamMetricsMiddleware(django_asgi_app), stream_paths=STREAM_PATHS)
        ),
        # Browsers must come from an allowed host; clients without an Origin header are not browsers.
        # A request id on every line of the connection, and the open-socket gauge. Outermost of all,
        # CaptureServerSend keeps the server's own send for the board's pre-framed writes (realtime/wire.py).
        # Handshakes count against their address's per-minute budget before anything else is done,
        # then against its open sockets in every process (realtime/connection_cap.py).
        "websocket": CaptureServerSend(
            RequestIdASGIMiddleware(
                WebSocketHandshakeRateLimit(
                    WebSocketConnectionCap(
                        WebSocketMetricsMiddleware(allowed_hosts_origin_validator(URLRouter(websocket_urlpatterns)))
                    )
                )
            )
        ),
    }
)

# Once per process, at start: can pushed frames be written pre-framed? (logs and counts a fall-back)
preframed_problem()

# Every collection's pause, by generation (scoreboard_gc_pause_seconds).
gcpauses.install()

# Everything start-up made (Django, the apps, URL patterns: most of the heap) lives as long as the
# process: kept out of every later collection. Without this, each uvicorn process ran full collections
# of 157-377 ms over it during a 2,000-socket delivery step, all four within a second, and every frame
# queued behind them (docs/benchmarks.md, run C).
gc.collect()
gc.freeze()
