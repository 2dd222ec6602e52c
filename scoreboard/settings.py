"""Scoreboard settings: one module, every value from the environment, a working default for each.

With nothing set this is the *embedded default*: SQLite, in-memory channel layer, local-memory
cache, Celery tasks run eagerly, development secrets. With ``DATABASE_URL`` and ``REDIS_URL`` set
it is the production topology: PostgreSQL is the source of truth and Redis holds the ranking
index, rate-limit counters, fraud windows, the channel layer and the Celery broker.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from scoreboard import logging as sb_logging
from scoreboard.version import __version__

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

logger = logging.getLogger("scoreboard.settings")

# --------------------------------------------------------------------------------------------
# Core Django
# --------------------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=True)

_DEV_SECRET_PREFIX = "dev-insecure-"
_DEV_SECRETS = {
    "DJANGO_SECRET_KEY": _DEV_SECRET_PREFIX + "django-secret-key-change-me-0123456789abcdef",
    "JWT_SECRET": _DEV_SECRET_PREFIX + "jwt-secret-change-me-0123456789abcdef0123456789",
    "ACTION_TOKEN_SECRET": _DEV_SECRET_PREFIX + "action-token-secret-change-me-0123456789abcdef",
}
MIN_SECRET_LENGTH = 32
# Django's own deploy check (security.W009) wants 50 characters for SECRET_KEY.
MIN_SECRET_LENGTHS = {"DJANGO_SECRET_KEY": 50}


def _secret(name: str) -> str:
    """Read a secret; in DEBUG fall back to a labelled development value, otherwise refuse."""
    value = env.str(name, default="")
    if value and not value.startswith(_DEV_SECRET_PREFIX):
        minimum = MIN_SECRET_LENGTHS.get(name, MIN_SECRET_LENGTH)
        if len(value) < minimum and not DEBUG:
            raise ImproperlyConfigured(f"{name} must be at least {minimum} characters.")
        return value
    if not DEBUG:
        raise ImproperlyConfigured(
            f"{name} is missing or a development default; set it in the environment "
            "(DJANGO_DEBUG is off, so development secrets are refused)."
        )
    _USING_DEV_SECRETS.append(name)
    return value or _DEV_SECRETS[name]


_USING_DEV_SECRETS: list[str] = []
SECRET_KEY = _secret("DJANGO_SECRET_KEY")
JWT_SECRET = _secret("JWT_SECRET")
ACTION_TOKEN_SECRET = _secret("ACTION_TOKEN_SECRET")
# During a rotation the previous action-token secret is still accepted (never used to sign).
ACTION_TOKEN_SECRET_PREVIOUS = env.str("ACTION_TOKEN_SECRET_PREVIOUS", default="")
# Same for JWTs: tokens signed with the previous JWT_SECRET still verify (scoreboard/jwt_rotation.py).
JWT_SECRET_PREVIOUS = env.str("JWT_SECRET_PREVIOUS", default="")
USING_DEV_SECRETS = tuple(_USING_DEV_SECRETS)

# --------------------------------------------------------------------------------------------
# HTTPS. Behind a proxy that terminates TLS (the k8s ingress; DJANGO_TLS_PROXY=1) the proxy's
# X-Forwarded-Proto says whether the client used HTTPS, plain HTTP is redirected, cookies are
# secure and browsers are told to use HTTPS only (HSTS). `manage.py check --deploy` is clean with
# DJANGO_DEBUG=0 DJANGO_TLS_PROXY=1 (CI runs it). Off by default: `make serve` and compose speak
# plain HTTP on their own ports, where a redirect to https:// would lock everybody out.
# --------------------------------------------------------------------------------------------
TLS_PROXY = env.bool("DJANGO_TLS_PROXY", default=False)
if TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=TLS_PROXY)
# Probes and the Prometheus scrape talk to the pod directly, without TLS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if TLS_PROXY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=TLS_PROXY)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=TLS_PROXY)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = TLS_PROXY
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served by us: /v1/docs/ works without internet access
    "channels",
    "accounts",
    "scores",
    "fraud",
    "realtime",
    "scoreboard.apps.ScoreboardConfig",
]

MIDDLEWARE = [
    # First: every later line (and the 413 below) carries the request id; every request is timed.
    "scoreboard.request_id.RequestIdMiddleware",
    "scoreboard.metrics.MetricsMiddleware",
    # Per-IP limit on the whole API, before anything can reject a request: rejected requests count too.
    "scoreboard.ratelimit.IpRateLimitMiddleware",
    "scoreboard.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Django's session, auth and messages middleware, except on the lean paths (score
    # update, leaderboard), which use none of them (scoreboard/lean.py).
    "scoreboard.lean.LeanSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "scoreboard.lean.LeanAuthenticationMiddleware",
    "scoreboard.lean.LeanMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "scoreboard.middleware.ApiExceptionMiddleware",
]

ROOT_URLCONF = "scoreboard.urls"
WSGI_APPLICATION = "scoreboard.wsgi.application"
ASGI_APPLICATION = "scoreboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --------------------------------------------------------------------------------------------
# Data stores
# --------------------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
# PostgreSQL connections. A server that runs requests in threads (the ASGI servers: every request
# in a thread of its own) must not keep a connection per thread: 40 concurrent requests were 40
# connections and "too many clients". So by default each process has a connection *pool*
# (Django's OPTIONS["pool"], psycopg_pool) of at most DB_POOL_MAX_SIZE connections that requests
# borrow and give back; a request that finds it empty waits up to DB_POOL_TIMEOUT seconds (then a
# JSON 503, nothing applied). Persistent connections (DB_POOL=0, CONN_MAX_AGE) are only for
# processes that serve one request at a time: gunicorn's sync workers (deploy/gunicorn.conf.py sets
# DB_POOL=0 there). Budget: processes x DB_POOL_MAX_SIZE + sync workers < max_connections (README).
DB_POOL = env.bool("DB_POOL", default=True)
DB_POOL_MIN_SIZE = env.int("DB_POOL_MIN_SIZE", default=1)
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=8)
DB_POOL_TIMEOUT = env.float("DB_POOL_TIMEOUT", default=10.0)
if IS_POSTGRES:
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int("DB_CONNECT_TIMEOUT", default=5)
    if DB_POOL:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with a pool
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": min(DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE),
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": DB_POOL_TIMEOUT,
        }
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    # Health checks cost one extra round trip on every request (with the pool: on every borrow). Off
    # by default: after a database restart the first request on each stale connection fails with a
    # JSON 503 (nothing applied, safe to retry: action tokens are single-use) and it is then dropped.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=False)
else:
    # SQLite: wait for the write lock instead of failing at once when requests overlap.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
# The statements every score update runs are server-side prepared on PostgreSQL (scoreboard/db.py).
# Turn off behind a pooler that cannot carry prepared statements (PgBouncer < 1.21, transaction mode).
DB_PREPARED_STATEMENTS = env.bool("DB_PREPARED_STATEMENTS", default=True)
if IS_POSTGRES and DB_PREPARED_STATEMENTS:
    # Django leaves psycopg's threshold at None, which refuses even an explicit prepare=True. Its own
    # (client-side binding) cursors never prepare whatever the threshold: only scoreboard/db.py does.
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 5

# A PostgreSQL read replica (streaming replication): the public read endpoints read from it, every
# write and every read that must see its own write from the primary (scoreboard/replica.py).
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    from scoreboard.replica import replica_database

    DATABASES["replica"] = replica_database(DATABASE_REPLICA_URL, DATABASES["default"])
    DATABASE_ROUTERS = ["scoreboard.replica.ReplicaRouter"]
    MIDDLEWARE.append("scoreboard.replica.ReplicaReadMiddleware")  # marks the replica reads, by URL name

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

REDIS_URL = env.str("REDIS_URL", default="")
# A Redis Cluster (startup nodes, "redis://h1:7000,h2:7000,h3:7000"; rediss:// for TLS): the ranking
# index, rate limits, fraud windows, replay pre-filter, live pub/sub and the cache then use it
# (scoreboard/redis.py). Celery's broker cannot be a cluster (kombu's Redis transport speaks to one
# server): it stays on the standalone REDIS_URL, or CELERY_BROKER_URL. REDIS_URL, the setting, becomes
# the cluster's data-plane URL ("redis+cluster://..."); STANDALONE_REDIS_URL keeps the variable's value.
REDIS_CLUSTER_URL = env.str("REDIS_CLUSTER_URL", default="")
STANDALONE_REDIS_URL = REDIS_URL
if REDIS_CLUSTER_URL:
    from scoreboard.redis import cluster_url

    try:
        REDIS_URL = cluster_url(REDIS_CLUSTER_URL)
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
REDIS_CLUSTER = bool(REDIS_CLUSTER_URL)

# Development secrets are public (they are in this file): fine for the embedded demo, never for a
# service with real stores. With PostgreSQL or Redis configured, say so where nobody can miss it
# (DJANGO_DEBUG=0 refuses them outright, above).
if USING_DEV_SECRETS and (IS_POSTGRES or REDIS_URL):
    _banner = "!" * 100
    sys.stderr.write(
        f"\n{_banner}\n!!! DEVELOPMENT SECRETS IN USE with {'PostgreSQL' if IS_POSTGRES else ''}"
        f"{' and ' if IS_POSTGRES and REDIS_URL else ''}{'Redis' if REDIS_URL else ''} configured: "
        f"{', '.join(USING_DEV_SECRETS)}.\n!!! Anyone can forge tokens for this service. Set real secrets "
        "and DJANGO_DEBUG=0 before it serves anybody.\n"
        f"{_banner}\n\n"
    )
# Socket timeouts keep a dead Redis from hanging a request: the update path degrades instead.
# A hung Redis costs a request at most this (connect, send, read; no retries: scoreboard/redis.py).
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=0.25)
# The circuit breaker (scoreboard/redis.py): opens after this many consecutive failures, then a
# background thread pings Redis this often and closes it when Redis answers.
REDIS_BREAKER_FAILURES = env.int("REDIS_BREAKER_FAILURES", default=2)
REDIS_BREAKER_PROBE_SECONDS = env.float("REDIS_BREAKER_PROBE_SECONDS", default=0.5)
# While Redis is down, the ranks in a score update's answer come from bounded PostgreSQL counts:
# exact up to this rank, null beyond (a count over the whole board on every update would be the
# degraded mode's bottleneck).
DEGRADED_RANK_LIMIT = env.int("DEGRADED_RANK_LIMIT", default=1000)
# Run scoreboard.redis.on_reconnect callbacks (tests turn them off where they flush Redis by hand).
REDIS_RECONNECT_HOOKS = env.bool("REDIS_RECONNECT_HOOKS", default=True)


def redis_caches(url: str) -> dict[str, dict[str, object]]:
    """``CACHES`` on the Redis (or cluster) at ``url`` (tests build the cluster's with it)."""
    from scoreboard.redis import GATE_TAG, NO_RETRY, BreakerConnection, is_cluster_url

    default: dict[str, object] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": "sb",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            # The same breaker and no-retry policy as every other client (scoreboard/redis.py).
            "CONNECTION_POOL_KWARGS": {"connection_class": BreakerConnection, "retry": NO_RETRY},
        },
    }
    if is_cluster_url(url):
        # django-redis over the process's RedisCluster (scoreboard.redis.ClusterConnectionFactory).
        default["LOCATION"] = [url]
        default["OPTIONS"] = {
            "CONNECTION_FACTORY": "scoreboard.redis.ClusterConnectionFactory",
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
        }
    return {
        "default": default,
        # django-ratelimit's counters: the same keys django-redis would write, one round trip per
        # counter instead of two (scoreboard/ratelimit_cache.py). Under the gate tag: a score
        # update's counters are counted with its other before-write checks, in one slot.
        "ratelimit": {
            "BACKEND": "scoreboard.ratelimit_cache.RateLimitCache",
            "LOCATION": url,
            "KEY_PREFIX": GATE_TAG,
            "OPTIONS": {"SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT},
        },
    }


if REDIS_URL:
    CACHES = redis_caches(REDIS_URL)
    # Nothing of ours uses the channel layer (the realtime hub subscribes to Redis itself); it is
    # kept for custom consumers, on the standalone Redis (channels-redis has no cluster support).
    CHANNEL_LAYERS = (
        {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [STANDALONE_REDIS_URL], "prefix": "sb:layer"},
            }
        }
        if STANDALONE_REDIS_URL
        else {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    )
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --------------------------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

JWT_ACCESS_LIFETIME = timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15))
JWT_REFRESH_LIFETIME = timedelta(days=env.int("JWT_REFRESH_DAYS", default=7))
# Absolute lifetime of a session: rotating the refresh token never extends it past this from login.
JWT_SESSION_MAX_LIFETIME = timedelta(days=env.int("JWT_SESSION_MAX_DAYS", default=30))

SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SECRET,
    "AUDIENCE": env.str("JWT_AUDIENCE", default="scoreboard"),
    "ISSUER": env.str("JWT_ISSUER", default="scoreboard"),
    "LEEWAY": env.int("JWT_LEEWAY_SECONDS", default=10),
    "ACCESS_TOKEN_LIFETIME": JWT_ACCESS_LIFETIME,
    "REFRESH_TOKEN_LIFETIME": JWT_REFRESH_LIFETIME,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "AUTH_HEADER_TYPES": ("Bearer",),
}

# Players of a studio's own identity provider (accounts/oidc.py): a JSON list of
# {"issuer", "audience", "jwks_url", optional "username_claim", "scopes_claim", "default_scopes",
# "algorithms"}. Empty: only our own accounts.
OIDC_ISSUERS = env.json("OIDC_ISSUERS", default=[])
OIDC_LEEWAY_SECONDS = env.int("OIDC_LEEWAY_SECONDS", default=30)
OIDC_JWKS_CACHE_SECONDS = env.float("OIDC_JWKS_CACHE_SECONDS", default=600.0)
OIDC_JWKS_REFETCH_SECONDS = env.float("OIDC_JWKS_REFETCH_SECONDS", default=60.0)
OIDC_JWKS_TIMEOUT_SECONDS = env.float("OIDC_JWKS_TIMEOUT_SECONDS", default=3.0)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["scoreboard.parsers.SafeJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ScopedJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "EXCEPTION_HANDLER": "scoreboard.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "scoreboard.api.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Scoreboard API",
    "DESCRIPTION": (
        "Real-time leaderboard: authenticated, cryptographically validated score increments "
        "and a live top 10. Every error uses the envelope "
        '`{"success": false, "error": {"code", "message", "details"}}`.'
    ),
    "VERSION": __version__,  # pyproject.toml
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --------------------------------------------------------------------------------------------
# Game rules
# --------------------------------------------------------------------------------------------
# action type -> allowed increment range and the minimum play time between two actions.
DEFAULT_ACTION_TYPES = {
    "LEVEL_COMPLETION": {"min_increment": 1, "max_increment": 1000, "min_play_seconds": 3},
    "ACHIEVEMENT_UNLOCK": {"min_increment": 1, "max_increment": 1000, "min_play_seconds": 3},
    # A lap or run time in milliseconds (1 s to 1 h), for low-wins "best" boards such as fastest-lap.
    # Points boards (global included, in the demo) list the action types they take.
    "LAP_TIME": {"min_increment": 1000, "max_increment": 3_600_000, "min_play_seconds": 20},
}
ACTION_TYPES: dict[str, dict[str, int]] = (
    json.loads(env.str("ACTION_TYPES")) if env.str("ACTION_TYPES", default="") else DEFAULT_ACTION_TYPES
)
ACTION_TOKEN_MAX_AGE_SECONDS = env.int("ACTION_TOKEN_MAX_AGE_SECONDS", default=300)
ACTION_TOKEN_MAX_FUTURE_SECONDS = env.int("ACTION_TOKEN_MAX_FUTURE_SECONDS", default=30)
ACTION_TOKEN_MAX_LENGTH = 1000
LEVEL_ID_MAX_LENGTH = 50
# Used nonces are kept this long past the token window before the cleanup job removes them.
NONCE_RETENTION_MARGIN_SECONDS = env.int("NONCE_RETENTION_MARGIN_SECONDS", default=600)

LEADERBOARD_DEFAULT_LIMIT = 10
# How long a process trusts its copy of the boards table: a board created or edited through another
# process is fed and shown by this one within this many seconds (0: read the table every time).
BOARDS_CACHE_SECONDS = env.float("BOARDS_CACHE_SECONDS", default=5.0)
LEADERBOARD_MAX_LIMIT = 100
# When true, the board (REST, WebSocket, SSE, page) needs a JWT carrying read:scores.
LEADERBOARD_REQUIRE_AUTH = env.bool("LEADERBOARD_REQUIRE_AUTH", default=False)
# A plain anonymous board read and a usual score update answered before Django's handler, middleware
# and DRF, with the same answer (scoreboard/fastpath.py); off: every request goes through Django.
FAST_PATH = env.bool("FAST_PATH", default=True)
# Pushed frames written pre-framed to uvicorn's transport (realtime/wire.py); off: every frame takes
# the ASGI send (slower, same frames). The writer also turns itself off when uvicorn's internals differ.
REALTIME_PREFRAMED_WRITES = env.bool("REALTIME_PREFRAMED_WRITES", default=True)
# At most one snapshot of a board per this many milliseconds from each live-board process (0: every
# change at once). A burst of top-10 changes then costs one fan-out per interval, the newest snapshot
# of the interval; a lone change still goes out at once (realtime/hub.py, Hub._board_frame).
REALTIME_BOARD_FRAME_INTERVAL_MS = env.int("REALTIME_BOARD_FRAME_INTERVAL_MS", default=0)
# A live-board process that was kept off the CPU during a fan-out (its wall time more than RATIO times
# its CPU time: the box is saturated) holds that board back for HOLD times as long as the fan-out took
# (at most 0.5 s), so the score updates keep cores to run on; its sockets then get the newest snapshot
# (Hub._fan_out_now). On the bench box at 10,000 sockets: delivery p95 2.3-2.6 s off, 1.3-1.4 s at
# HOLD 1, 0.49-0.77 s at HOLD 2, the score updates' p95 10 s / 3 s / 0.2-0.5 s; at 2,000 sockets
# 29.3 and 76.4 ms at HOLD 2 against 28.4-32.0 in two rounds (docs/benchmarks.md, 2026-12-08).
REALTIME_SATURATION_BACKOFF = env.bool("REALTIME_SATURATION_BACKOFF", default=True)
REALTIME_SATURATION_BACKOFF_RATIO = env.float("REALTIME_SATURATION_BACKOFF_RATIO", default=2.0)
REALTIME_SATURATION_BACKOFF_HOLD = env.float("REALTIME_SATURATION_BACKOFF_HOLD", default=2.0)
# While the back-off is triggered, a board waits until this process's fan-outs have used at most this
# share of one core (realtime/hub.py, Hub._fan_out_now); 0: it waits REALTIME_SATURATION_BACKOFF_HOLD
# times the fan-out's wall time instead. 0.15 measured best on the 2-core bench box with four live-board
# processes (docs/benchmarks.md, 2026-12-08 morning).
REALTIME_SATURATION_CPU_SHARE = env.float("REALTIME_SATURATION_CPU_SHARE", default=0.15)
# Every this many live sockets opened, an ASGI process collects the objects since the last time and
# freezes them out of later full collections (realtime/heap.py: connect storms). 0: never.
REALTIME_GC_FREEZE_CONNECTS = env.int("REALTIME_GC_FREEZE_CONNECTS", default=500)
# Open WebSockets and SSE streams one client address may hold, counted across every ASGI process in Redis
# (realtime/connection_cap.py; without Redis: per process). 0: no cap. nginx's limit_conn is the
# same 50 on the proxied path; the kernel-balanced path has only this one.
REALTIME_WS_PER_ADDRESS = env.int("REALTIME_WS_PER_ADDRESS", default=50)
# How often each process rewrites its counts, and when a silent process's counts stop counting.
REALTIME_WS_CAP_HEARTBEAT_SECONDS = env.float("REALTIME_WS_CAP_HEARTBEAT_SECONDS", default=15.0)
REALTIME_WS_CAP_STALE_SECONDS = env.int("REALTIME_WS_CAP_STALE_SECONDS", default=45)
# Where browsers open the live board's WebSocket when it is not the page's own origin: the
# kernel-balanced realtime port (make serve: ws://HOST:REALTIME_PORT) or, in Kubernetes, the L4
# load balancer's address (wss://live.example.com). Empty: the page's origin (through the proxy).
REALTIME_PUBLIC_URL = env.str("REALTIME_PUBLIC_URL", default="")

# Request bodies larger than this are refused with 413 before they are read.
MAX_REQUEST_BODY_BYTES = 64 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# Anti-cheat
RATE_LIMIT_USER_PER_MINUTE = env.int("RATE_LIMIT_USER_PER_MINUTE", default=10)
RATE_LIMIT_IP_PER_MINUTE = env.int("RATE_LIMIT_IP_PER_MINUTE", default=100)
RATE_LIMIT_GLOBAL_PER_MINUTE = env.int("RATE_LIMIT_GLOBAL_PER_MINUTE", default=10_000)
RATE_LIMIT_ENABLED = env.bool("RATE_LIMIT_ENABLED", default=True)
# POST /v1/actions with an X-API-Key (game servers minting for all their players), per IP.
RATE_LIMIT_GAME_SERVER_PER_MINUTE = env.int("RATE_LIMIT_GAME_SERVER_PER_MINUTE", default=60_000)
# WebSocket handshakes per client address and minute (a reconnect storm of one address, a socket flood).
RATE_LIMIT_WS_HANDSHAKES_PER_MINUTE = env.int("RATE_LIMIT_WS_HANDSHAKES_PER_MINUTE", default=60)
# Admin sign-in attempts (POST /admin/login/) per client address and minute.
RATE_LIMIT_ADMIN_LOGIN_PER_MINUTE = env.int("RATE_LIMIT_ADMIN_LOGIN_PER_MINUTE", default=10)
FRAUD_FLAG_THRESHOLD = env.float("FRAUD_FLAG_THRESHOLD", default=0.5)
FRAUD_BLOCK_THRESHOLD = env.float("FRAUD_BLOCK_THRESHOLD", default=0.8)
# Between flag and block: applied and acknowledged, but the player is hidden from public boards
# until a moderator releases or confirms (fraud/README.md, "Quarantine").
FRAUD_QUARANTINE_THRESHOLD = env.float("FRAUD_QUARANTINE_THRESHOLD", default=0.65)
# When the rate-limit counters (Redis) are down: "local" (default) counts in each process so updates
# still commit under (per-process) limits; "closed" refuses score updates with 503 + Retry-After;
# "open" lets them through unlimited. See scoreboard/ratelimit.py.
RATE_LIMIT_REDIS_DOWN: str = env.str("RATE_LIMIT_REDIS_DOWN", default="local")
if RATE_LIMIT_REDIS_DOWN not in ("local", "closed", "open"):
    raise ImproperlyConfigured("RATE_LIMIT_REDIS_DOWN must be 'local', 'closed' or 'open'.")
# django-ratelimit: its own Redis-backed cache with REDIS_URL, local memory otherwise (one process).
RATELIMIT_USE_CACHE = "ratelimit" if REDIS_URL else "default"
RATELIMIT_CACHE_PREFIX = "rl:"
# Fraud engine (fraud/rules.py): risk = min(1, sum of weight x contribution), each contribution in [0, 1].
# FRAUD_RULE_WEIGHTS / FRAUD_RULE_PARAMS (JSON) override single entries; a weight of 0 turns a rule off.
DEFAULT_FRAUD_RULE_WEIGHTS = {
    "rapid_succession": 0.35,
    "impossible_score_jump": 0.3,
    "timing_regularity": 0.4,
    "min_play_time": 0.35,
    "new_account_velocity": 0.25,
    "shared_ip": 0.1,
    "token_abuse": 0.3,
    "velocity_budget": 0.35,
    "increment_persistence": 0.65,
    "opening_run": 0.65,
    "account_cluster": 0.35,
}
FRAUD_RULE_WEIGHTS: dict[str, float] = {
    **DEFAULT_FRAUD_RULE_WEIGHTS,
    **json.loads(env.str("FRAUD_RULE_WEIGHTS", default="") or "{}"),
}
FRAUD_RULE_PARAMS: dict[str, int | float] = json.loads(env.str("FRAUD_RULE_PARAMS", default="") or "{}")
FRAUD_BLOCK_RETRY_AFTER_SECONDS = env.int("FRAUD_BLOCK_RETRY_AFTER_SECONDS", default=60)
# Batch scan (Celery): velocity outliers and accounts sharing an address over the last window.
FRAUD_SCAN_WINDOW_SECONDS = env.int("FRAUD_SCAN_WINDOW_SECONDS", default=3600)
# Points in the scan window at or above which the scan quarantines; 0 (default): the all-types
# velocity budget for that window (what a keen human can do in it, fraud/README.md "Velocity budgets").
FRAUD_SCAN_POINTS_PER_WINDOW = env.int("FRAUD_SCAN_POINTS_PER_WINDOW", default=0)
FRAUD_SCAN_MIN_POINTS = env.int("FRAUD_SCAN_MIN_POINTS", default=10_000)
FRAUD_SCAN_MIN_PLAYERS = env.int("FRAUD_SCAN_MIN_PLAYERS", default=5)
FRAUD_SCAN_MAD_FACTOR = env.float("FRAUD_SCAN_MAD_FACTOR", default=6.0)
FRAUD_SCAN_SHARED_IP_ACCOUNTS = env.int("FRAUD_SCAN_SHARED_IP_ACCOUNTS", default=5)
# Client addresses and user agents in score history and fraud logs are cleared after this many days
# (the rows stay; scoreboard/retention.py, a daily beat task).
PERSONAL_DATA_RETENTION_DAYS = env.int("PERSONAL_DATA_RETENTION_DAYS", default=90)
# Peers whose X-Forwarded-For is believed (comma-separated addresses or CIDRs).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# Game servers authenticate to POST /v1/actions with this header.
API_KEY_HEADER = "HTTP_X_API_KEY"

# --------------------------------------------------------------------------------------------
# Celery
# --------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or STANDALONE_REDIS_URL or "memory://"
if REDIS_CLUSTER and CELERY_BROKER_URL == "memory://":
    raise ImproperlyConfigured(
        "REDIS_CLUSTER_URL is set but Celery has no broker: kombu cannot use a Redis Cluster, so set "
        "REDIS_URL (or CELERY_BROKER_URL) to a standalone Redis for the task queue."
    )
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL == "memory://"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
# Keep Django's LOGGING (JSON, request ids) in the worker instead of Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "used-nonces-purge": {
        "task": "scores.used_nonces_purge",
        "schedule": env.int("NONCE_PURGE_EVERY_SECONDS", default=600),
    },
    "fraud-batch-scan": {
        "task": "fraud.batch_scan",
        "schedule": env.int("FRAUD_SCAN_EVERY_SECONDS", default=900),
    },
    "jwt-outstanding-tokens-purge": {
        "task": "accounts.outstanding_tokens_purge",
        "schedule": env.int("JWT_PURGE_EVERY_SECONDS", default=6 * 3600),
    },
    "personal-data-retention": {
        "task": "scoreboard.personal_data_retention",
        "schedule": env.int("PERSONAL_DATA_RETENTION_EVERY_SECONDS", default=24 * 3600),
    },
    "leaderboard-drift-check": {
        "task": "scores.leaderboard_drift_check",
        "schedule": env.int("DRIFT_CHECK_EVERY_SECONDS", default=300),
    },
    # Closes board periods at their boundary (with no request needed), drops the live index of
    # closed periods after their grace, and prunes archives beyond keep_periods.
    "board-periods-maintain": {
        "task": "scores.board_periods_maintain",
        "schedule": env.int("BOARD_PERIODS_EVERY_SECONDS", default=30),
    },
}

# --------------------------------------------------------------------------------------------
# i18n, static, logging
# --------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The JS client kit, which the spectator page loads: /static/scoreboard-client/scoreboard.js.
STATICFILES_DIRS: list[Path | tuple[str, Path]] = [("scoreboard-client", BASE_DIR / "clients" / "js" / "src")]
if (BASE_DIR / "static").exists():
    STATICFILES_DIRS.append(BASE_DIR / "static")
# Collected static files (admin CSS, the kit) are served by the app processes themselves (make serve
# and the image run collectstatic), so containers need no shared volume. In DEBUG (make run, the
# tests' servers) WhiteNoise serves them straight from their folders, under every server.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
if STATIC_ROOT.is_dir() or DEBUG:
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "whitenoise.middleware.WhiteNoiseMiddleware",
    )

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Structured JSON lines with the request id on each (LOG_FORMAT=plain for a terminal); see scoreboard/logging.py.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = sb_logging.logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
