"""gunicorn settings for the REST/page (WSGI) processes; every value can come from the environment.

Sync workers: on a 2-core box Django serves a plain DRF view several times faster this way than
under an ASGI server (DESIGN.md). nginx in front buffers slow clients, so a sync worker is never
held by one. WebSocket and SSE traffic goes to the ASGI servers instead (see deploy/nginx/).
"""

import os
import sys
from pathlib import Path

from prometheus_client import multiprocess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scoreboard import logging as sb_logging

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8001")
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# GUNICORN_THREADS > 1: threaded workers (gthread), which also keep nginx's upstream connections
# alive between requests; sync workers answer one request per connection.
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
# PostgreSQL connections (scoreboard/settings.py): a sync worker serves one request at a time, so
# one persistent connection per worker is safe and the cheapest; threaded workers share a pool of
# one connection per thread instead. The workers inherit this environment (read before they fork).
if worker_class == "sync":
    os.environ.setdefault("DB_POOL", "0")
else:
    os.environ.setdefault("DB_POOL_MAX_SIZE", str(threads))
# Longer than nginx's upstream keepalive_timeout (60 s): nginx, not gunicorn, closes an idle
# connection, so a request never races a close (a score update is not retried on another worker).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
# A request that takes longer than this is a bug or a dead database: kill the worker, answer 502.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
# Recycle workers now and then so a slow leak cannot grow without bound (jitter avoids a herd).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "2000"))
# nginx writes the access log (with the same request id); gunicorn logs errors through Django's
# JSON LOGGING once the app is loaded.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
proc_name = "scoreboard-wsgi"
# gunicorn's control socket defaults to one path per user: two topologies on one machine would clash.
control_socket_disable = True
# The master logs in the same JSON lines as the workers (scoreboard/logging.py is standard-library only).
logconfig_dict = sb_logging.logging_config(level=loglevel.upper(), fmt=os.environ.get("LOG_FORMAT", "json"))


def child_exit(server: object, worker: object) -> None:
    """A dead worker's live gauges must not keep counting in the multi-process metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
