"""HearO settings: one file, driven by environment variables.

With nothing set, HearO runs on an embedded default: SQLite in the project
folder, the in-memory channel layer, leases in the local-memory cache and the
matcher in-process. ``DATABASE_URL`` switches to PostgreSQL; ``REDIS_URL`` (or
``REDIS_SENTINELS``) switches to channels-redis, Redis-backed leases and a
Celery broker.
"""

import ipaddress
import logging
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """Return a positive integer env var, failing loudly with its name."""
    raw = env.str(name, default=str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_flag(name: str, default: bool = False) -> bool:
    """Return a boolean env var (1/0, true/false, yes/no), failing loudly."""
    raw = env.str(name, default="1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0), got {raw!r}")


DEV_SECRET_KEY = "django-insecure-hearo-development-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
DEBUG = env_flag("DEBUG", default=False)
# Production: refuse development secrets, and turn on the deploy-time protections.
PRODUCTION = env_flag("HEARO_PRODUCTION", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "queues",
    "matching",
    "realtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "common.security.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "hearo.urls"
WSGI_APPLICATION = "hearo.wsgi.application"
ASGI_APPLICATION = "hearo.asgi.application"

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

# --- Databases -------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg 3 with its connection pool (Django 5.1+), bounded per process:
    # persistent connections per Daphne thread exhausted PostgreSQL's
    # max_connections (measured in bench/), and a new connection per request
    # was a fifth of a cancel's time on the REST node (py-spy). A thread holds a
    # pooled connection only until Django closes it (the request's end, or
    # Channels' database_sync_to_async); a request Daphne kills before its end
    # gives it back too (hearo/asgi.py). The rank hub's kept session is outside
    # the pool (common/db.KeptConnection), so a server process holds at most
    # HEARO_DB_POOL_MAX + 1. Celery's prefork children close the pool after every
    # task (Celery's Django fixup). HEARO_DB_POOL_MAX=0: no pool, a
    # connection per request (CONN_MAX_AGE then comes from HEARO_CONN_MAX_AGE).
    # A pooled connection is checked before it is lent (one empty round trip):
    # one that died with a PostgreSQL restart is replaced, not handed out.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    pool_max = env_int("HEARO_DB_POOL_MAX", 8, minimum=0)
    if pool_max:
        pool = {"min_size": 1, "max_size": pool_max, "timeout": 10}
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = pool
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with a pool
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env_int("HEARO_CONN_MAX_AGE", 0, minimum=0)
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str("HEARO_TEST_DATABASE", default="test_hearo")
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; wait instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    # A file, not memory, so the tests' server processes share the test database.
    test_name = env.str("HEARO_TEST_DATABASE", default="test-db")
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(BASE_DIR / f".{test_name}.sqlite3")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, leases, Celery ----------------------------------
# One server (REDIS_URL), or the sentinels that name the primary
# (REDIS_SENTINELS="host:port,host:port,…" and REDIS_SENTINEL_MASTER): every
# Redis client then finds the primary through them and follows a failover
# (common/redis_clients.py).
REDIS_URL = env.str("REDIS_URL", default="")


def env_host_ports(name: str) -> tuple[tuple[str, int], ...]:
    """Return a comma-separated list of host:port, failing loudly with its name."""
    found = []
    for item in env.list(name, default=[]):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"{name}: {item.strip()!r} is not host:port")
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


REDIS_SENTINELS = env_host_ports("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="")
if REDIS_SENTINELS and REDIS_URL:
    raise ImproperlyConfigured("REDIS_SENTINELS and REDIS_URL are both set: set REDIS_URL to '' to use the sentinels")
if REDIS_SENTINEL_MASTER and not REDIS_SENTINELS:
    raise ImproperlyConfigured("REDIS_SENTINEL_MASTER is set without REDIS_SENTINELS (the sentinels to ask)")
REDIS_SENTINEL_MASTER = REDIS_SENTINEL_MASTER or "mymaster"

if REDIS_URL or REDIS_SENTINELS:
    # redis-py's defaults bite here: a finite socket_timeout kills idle blocking reads.
    _redis_host = {"socket_timeout": None, "max_connections": 1000}
    _redis_host["address"] = REDIS_URL or f"sentinel://{REDIS_SENTINEL_MASTER}"
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis, with a connection pool that waits when it is exhausted.
            "BACKEND": "realtime.layers.WaitingRedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_host],
                "capacity": env_int("HEARO_CHANNEL_CAPACITY", 1000),
                "expiry": 60,
                "prefix": env.str("HEARO_CHANNEL_PREFIX", default="hearo"),
            },
        },
    }
    # Queue changes skip the channel layer: one Redis PUBLISH per change on this
    # pub/sub channel, which every node's rank hub subscribes to.
    HEARO_QUEUE_BROADCAST = f"{CHANNEL_LAYERS['default']['CONFIG']['prefix']}:queue-changed"
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # With sentinels the location is a label: the pool asks them (common/redis_clients.py).
            "LOCATION": REDIS_URL or f"sentinel://{REDIS_SENTINEL_MASTER}",
            "KEY_PREFIX": env.str("HEARO_CACHE_PREFIX", default="hearo"),
            "OPTIONS": {
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
                "pool_class": "common.redis_clients.CachePool",
            },
        },
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    HEARO_QUEUE_BROADCAST = ""  # one process: queue changes ride the in-memory layer
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "hearo"}}

# --- HearO tunables (seconds) ----------------------------------------------
# How long a registration stays alive after its last heartbeat.
HEARO_LEASE_SECONDS = env_int("HEARO_LEASE_SECONDS", 40)
# How often clients send the REST heartbeat (told to clients; must be < lease).
HEARO_HEARTBEAT_SECONDS = env_int("HEARO_HEARTBEAT_SECONDS", 10)
# How often the matcher runs as a safety net (Celery beat, or in-process).
HEARO_MATCH_INTERVAL_SECONDS = env_int("HEARO_MATCH_INTERVAL_SECONDS", 5)
# How often a client on the REST-polling tier polls its rank.
HEARO_POLL_SECONDS = env_int("HEARO_POLL_SECONDS", 5)
# How long a matched side has to join the call before the match is undone.
HEARO_JOIN_TIMEOUT_SECONDS = env_int("HEARO_JOIN_TIMEOUT_SECONDS", 60)
# The handle time the wait estimate assumes until a queue has three completed calls.
HEARO_DEFAULT_HANDLE_SECONDS = env_int("HEARO_DEFAULT_HANDLE_SECONDS", 600, minimum=1)
# How long a call interrupted by one side leaving (LiveKit participant_left) waits
# for that side to come back before the match ends as call_dropped.
HEARO_RECONNECT_GRACE_SECONDS = env_int("HEARO_RECONNECT_GRACE_SECONDS", 60)
# How long a counselor is not handed back the customer it just released or could
# not reach (call_failed, call_dropped, no-show): the next free counselor, or the
# next customer, is tried first instead of the same failing pair again at once.
HEARO_REMATCH_PAUSE_SECONDS = env_int("HEARO_REMATCH_PAUSE_SECONDS", 60, minimum=0)
# How long a message to the clients is retried while Redis is unreachable (a
# Sentinel failover takes a few seconds); past it the message is dropped and the
# clients' re-sync repairs what it carried.
HEARO_PUBLISH_RETRY_SECONDS = env_int("HEARO_PUBLISH_RETRY_SECONDS", 15, minimum=0)
# Freeze the long-lived heap after start-up and connection storms so full garbage
# collections skip it, with a bounded unfreeze cycle (realtime/gc_policy.py).
HEARO_GC_FREEZE = env_flag("HEARO_GC_FREEZE", default=True)
if HEARO_HEARTBEAT_SECONDS >= HEARO_LEASE_SECONDS:
    raise ImproperlyConfigured("HEARO_HEARTBEAT_SECONDS must be shorter than HEARO_LEASE_SECONDS")

# Extra WebSocket origins beyond ALLOWED_HOSTS (e.g. "https://app.example.com"); "*" allows any.
HEARO_WS_ALLOWED_ORIGINS = env.list("HEARO_WS_ALLOWED_ORIGINS", default=[])
# The plain broker for STOMP conformance suites (guest/guest, /topic/test/…); off in production.
HEARO_STOMP_TEST_BROKER = env_flag("HEARO_STOMP_TEST_BROKER", default=False)
# Benchmark baselines only: "naive" sends one group_send per waiting customer per
# queue change (the design HearO replaces); HEARO_HEARTBEAT_FASTPATH=0 serves the
# heartbeat through the Django view. Production keeps the defaults.
HEARO_FANOUT = env.str("HEARO_FANOUT", default="hub")
if HEARO_FANOUT not in ("hub", "naive"):
    raise ImproperlyConfigured(f"HEARO_FANOUT must be 'hub' or 'naive', got {HEARO_FANOUT!r}")
HEARO_HEARTBEAT_FASTPATH = env_flag("HEARO_HEARTBEAT_FASTPATH", default=True)
# SockJS: bytes a streaming response carries before the client must reconnect,
# and the protocol test suite's services under /sockjs-test/ (off in production).
HEARO_SOCKJS_RESPONSE_LIMIT = env_int("HEARO_SOCKJS_RESPONSE_LIMIT", 128 * 1024)
# Seconds a SockJS session outlives its last receiving connection (the protocol's 5 s).
HEARO_SOCKJS_DISCONNECT_DELAY = env_int("HEARO_SOCKJS_DISCONNECT_DELAY", 5)
HEARO_SOCKJS_TEST_SERVICES = env_flag("HEARO_SOCKJS_TEST_SERVICES", default=False)
# Server STOMP heart-beat offer "sx,sy" in ms (sent every max(sx, client cy)).
HEARO_STOMP_HEARTBEAT_MS = env_int("HEARO_STOMP_HEARTBEAT_MS", 10000, minimum=0)

# LiveKit: development defaults match `livekit-server --dev`.
LIVEKIT_URL = env.str("LIVEKIT_URL", default="ws://127.0.0.1:7880")
LIVEKIT_API_KEY = env.str("LIVEKIT_API_KEY", default="devkey")
LIVEKIT_DEV_SECRET = "secret"
LIVEKIT_API_SECRET = env.str("LIVEKIT_API_SECRET", default=LIVEKIT_DEV_SECRET)
LIVEKIT_TOKEN_TTL_SECONDS = env_int("LIVEKIT_TOKEN_TTL_SECONDS", 600)

# --- Abuse limits --------------------------------------------------------------
# Joins per client IP (django-ratelimit syntax), frames a connection may send per
# second (a burst of twice that is allowed), live connections per customer (across
# every node with Redis, on this process without), and subscriptions per STOMP
# connection. A node that dies without closing its sockets stops counting against
# the cap HEARO_CONNECTION_SLOT_SECONDS after it last vouched for them.
HEARO_JOIN_RATE = env.str("HEARO_JOIN_RATE", default="30/m")
HEARO_FRAMES_PER_SECOND = env_int("HEARO_FRAMES_PER_SECOND", 50)
HEARO_MAX_CONNECTIONS_PER_CUSTOMER = env_int("HEARO_MAX_CONNECTIONS_PER_CUSTOMER", 5)
HEARO_CONNECTION_SLOT_SECONDS = env_int("HEARO_CONNECTION_SLOT_SECONDS", 60, minimum=3)
HEARO_MAX_SUBSCRIPTIONS = env_int("HEARO_MAX_SUBSCRIPTIONS", 10)
# A socket must authenticate (STOMP CONNECT, the raw tier's auth message) within
# HEARO_AUTH_TIMEOUT_SECONDS or it is closed, and one client address may hold at
# most HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS sockets that have not authenticated
# yet (across every node with Redis): a browser authenticates within
# milliseconds, so even a school behind one NAT address stays far below it.
HEARO_AUTH_TIMEOUT_SECONDS = env_int("HEARO_AUTH_TIMEOUT_SECONDS", 10)
HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS = env_int("HEARO_MAX_UNAUTHENTICATED_PER_ADDRESS", 50)
# Password guessing on POST /api/auth/token and /accounts/login/ (django-ratelimit
# rates: failures per fixed window): past either, that username or that address
# is refused with 429 until its window ends (common/lockout.py).
HEARO_LOGIN_FAILURES_PER_USERNAME = env.str("HEARO_LOGIN_FAILURES_PER_USERNAME", default="5/15m")
HEARO_LOGIN_FAILURES_PER_ADDRESS = env.str("HEARO_LOGIN_FAILURES_PER_ADDRESS", default="30/15m")
# Request bodies over this many bytes are refused (413 on the JSON API, 400 elsewhere).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("HEARO_MAX_BODY_BYTES", 256 * 1024)


def env_networks(name: str) -> tuple:
    """Return a comma-separated list of IPs/CIDRs as networks, failing loudly with its name."""
    try:
        return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in env.list(name, default=[]))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


# The reverse proxies in front of Daphne (IPs or CIDRs, e.g. "172.16.0.0/12"):
# only a request whose peer is one of them has its X-Forwarded-For believed,
# for the join rate limit, the sign-in lock-out and the socket caps. Default:
# none (the peer is the client).
HEARO_TRUSTED_PROXIES = env_networks("HEARO_TRUSTED_PROXIES")

# --- Celery (only used with Redis) --------------------------------------------
_sentinel_broker = ";".join(f"sentinel://{host}:{port}" for host, port in REDIS_SENTINELS)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or _sentinel_broker or "memory://")
if CELERY_BROKER_URL.startswith("sentinel://"):
    # kombu asks the sentinels for this primary, and again after losing it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"master_name": REDIS_SENTINEL_MASTER}
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One task at a time, none waiting in the worker: a matcher pass is cheap to
# queue again, and a message prefetched when the broker fails over is only
# redelivered after the visibility timeout (see hearo/celery.py).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The in-process matcher replaces Celery when there is no Redis.
HEARO_INPROCESS_MATCHER = env_flag("HEARO_INPROCESS_MATCHER", default=not (REDIS_URL or REDIS_SENTINELS))

# --- Matching: Celery beat and event triggers (owned by matching/) ---------
# Run a matcher pass at once when a customer joins, a counselor becomes
# AVAILABLE or a match ends; the periodic pass below is the safety net.
HEARO_MATCH_ON_EVENTS = env_flag("HEARO_MATCH_ON_EVENTS", default=True)
CELERY_BEAT_SCHEDULE = {
    "matching.match_pass": {
        "task": "matching.match_pass",
        "schedule": float(HEARO_MATCH_INTERVAL_SECONDS),
        # Shorter than the interval: a run the worker could not start in time
        # is dropped, not piled up behind the next one.
        "options": {"expires": HEARO_MATCH_INTERVAL_SECONDS * 0.8},
        # Only the beat's passes stamp readiness (event-driven ones run without a beat).
        "kwargs": {"scheduled": True},
    },
}
# --- end of the matching block ----------------------------------------------

# --- REST API --------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with a body size and a nesting limit (common/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["common.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes a bad credential a 401.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HearO API",
    "DESCRIPTION": "Live waiting room of a counseling service: queue, counselors, matches.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Three choice sets share the field name "status"; name each for what it is.
    "ENUM_NAME_OVERRIDES": {
        "RegistrationStatusEnum": "queues.models.Registration.Status",
        "CounselorStatusEnum": "matching.models.Counselor.Status",
        "SelfServiceStatusEnum": "matching.counselors.SELF_SERVICE_STATUSES",
    },
}

# --- Auth, i18n, static ----------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/counselor/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "ko"
LANGUAGES = [("ko", "한국어"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Seoul"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Browser libraries come from the npm registry (package.json), served from node_modules.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/stompjs", BASE_DIR / "node_modules/@stomp/stompjs/bundles"),
    ("vendor/sockjs", BASE_DIR / "node_modules/sockjs-client/dist"),
    ("vendor/livekit", BASE_DIR / "node_modules/livekit-client/dist"),
]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Daphne serves no static files itself; WhiteNoise does, straight from the finders.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Logs --------------------------------------------------------------------
# "plain" text lines for a terminal, or "json": one object a line (timestamp,
# level, logger, message and the event's ids: registration_id, customer_id,
# match_id, counselor_id, event) for a log pipeline. JSON in production.
HEARO_LOG_FORMAT = env.str("HEARO_LOG_FORMAT", default="json" if PRODUCTION else "plain").strip().lower()
if HEARO_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"HEARO_LOG_FORMAT must be 'plain' or 'json', got {HEARO_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # One handler for everything, behind the filter that scrubs bearer tokens,
    # JWTs and the configured secrets (hearo/logs.py).
    # "one_line" drops the traceback Django attaches to a refused request
    # (bad Host header, oversized body: django.security.*).
    "filters": {"redact": {"()": "common.logs.RedactSecrets"}, "one_line": {"()": "common.security.OneLineRefusals"}},
    "formatters": {
        "plain": {"()": "common.logs.PlainFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": True,  # ISO 8601, UTC
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": HEARO_LOG_FORMAT, "filters": ["redact", "one_line"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Django's own handlers (a DEBUG-only console, mail_admins) would print
    # django.* records a second time, unfiltered; they reach the root's instead.
    "loggers": {"django": {"handlers": [], "level": "INFO"}},
}
# Celery workers keep this configuration instead of installing their own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Python warnings become records of "py.warnings", so they come out in the same format.
logging.captureWarnings(True)

# --- Production hardening ----------------------------------------------------
if PRODUCTION:
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be set to a long random value in production")
    if LIVEKIT_API_SECRET == LIVEKIT_DEV_SECRET or len(LIVEKIT_API_SECRET) < 32:
        raise ImproperlyConfigured("LIVEKIT_API_SECRET must be set to a real secret in production")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_flag("HEARO_SSL_REDIRECT", default=True)
    # Probes from inside the network speak plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
