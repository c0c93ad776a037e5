"""Environment-driven settings: one module for development, CI and production.

Every knob is an environment variable with an embedded default that runs the
product on a fresh machine (SQLite file, embedded Redis started by `make run`,
the tiny offline base model). Production sets DJANGO_DEBUG=0 and the variables
documented in README.md; `manage.py check --deploy` is then clean.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from audit.checkpoints import load_public_key, parse_sinks
from consent.crypto import MIN_MASTER_SECRET_CHARS

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _env_int(name: str, default: int, *, low: int, high: int) -> int:
    """A bounded whole number: a typo or an absurd value stops the start instead of weakening a limit."""
    raw = os.environ.get(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name} must be a whole number from {low} to {high}, got {raw!r}.")
    return value


DEBUG = _env_bool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required unless DJANGO_DEBUG=1.")
    # Development only: a fixed key keeps sessions valid across restarts of `make run`.
    SECRET_KEY = "likeness-insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "guardian",
    "axes",
    "channels",
    "csp",
    "tenancy",
    "audit",
    "consent",
    "training",
    "editing",
]

MIDDLEWARE = [
    # First, so that its response half runs last and sees every response, error pages included.
    "config.middleware.NoStoreMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenancy.middleware.ActiveTenantMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a login refused during a lockout into the 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"

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
                "tenancy.context_processors.tenancy",
                "csp.context_processors.nonce",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'likeness.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and os.environ.get(
    "LIKENESS_DB_POOL", "1"
).strip() not in ("0", "false", "no"):
    # A pool of open connections per process (psycopg_pool through Django): a request no longer pays
    # for a new authenticated PostgreSQL connection (issue 14 measured half the latency with it).
    # Each server process and worker has its own; size it so that processes x max_size stays under
    # the server's max_connections. Celery's prefork children close the pool they inherit.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": int(os.environ.get("LIKENESS_DB_POOL_SIZE", "8")),
        "timeout": 10,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The embedded database is shared by the web server, the Celery worker and
    # beat: WAL lets readers run beside the writer, IMMEDIATE transactions take
    # the write lock up front (no "database is locked" on upgrade), and writers
    # wait up to 20 s for each other instead of failing. secure_delete zeroes a
    # deleted row's bytes instead of leaving them in free space (most SQLite
    # builds leave it off): crypto-erasure deletes the wrapped subject key and
    # then checkpoints the WAL (consent.actions.erasure.checkpoint_sqlite_wal).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA secure_delete=ON;",
        }
    )

AUTHENTICATION_BACKENDS = [
    # First: refuses every login of a locked-out account or client address before a password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Guardian's anonymous-user row is not used: anonymous visitors never hold permissions.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Login brute force (django-axes, on /login/, /admin/login/ and the API's token endpoint): after
# LIKENESS_LOGIN_FAILURE_LIMIT failed logins within the cool-off, the username and, separately, the
# client address are locked out for LIKENESS_LOGIN_COOLOFF_MINUTES, the right password included.
LIKENESS_LOGIN_FAILURE_LIMIT = _env_int("LIKENESS_LOGIN_FAILURE_LIMIT", 10, low=3, high=100)
LIKENESS_LOGIN_COOLOFF_MINUTES = _env_int("LIKENESS_LOGIN_COOLOFF_MINUTES", 15, low=1, high=24 * 60)
# How many reverse proxies stand in front of the web server. Only the X-Forwarded-For entries they
# appended are believed (the right-most N); with 0 the header is ignored, as a client can write it.
LIKENESS_TRUSTED_PROXIES = _env_int("LIKENESS_TRUSTED_PROXIES", 0, low=0, high=5)
AXES_FAILURE_LIMIT = LIKENESS_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LIKENESS_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Attempts refused during a lockout are not recorded: the lockout ends one cool-off after it began,
# and hammering a locked account grows no row.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Not reset by a success: one account that logs in would otherwise wipe its address's failures,
# and with them the count against every account tried from there.
AXES_RESET_ON_SUCCESS = False
AXES_CLIENT_IP_CALLABLE = "tenancy.throttling.client_address"
AXES_LOCKOUT_CALLABLE = "tenancy.throttling.lockout_response"
# The audit log records logins; the admin stays read-only (tenancy.admin); unlocking is a command.
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ADMIN = False
# Log lines name only the lockout parameters, masked (no user agent, no startup banner).
AXES_VERBOSE = False

# API tokens (tenancy.models.ApiToken): their lifetime, which a client may only shorten.
LIKENESS_API_TOKEN_DAYS = _env_int("LIKENESS_API_TOKEN_DAYS", 90, low=1, high=365)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The dashboard's stylesheet and scripts (static/likeness). Served by the ASGI app itself in DEBUG
# (`make run`, config/asgi.py) and by the reverse proxy from collectstatic's folder in production.
STATICFILES_DIRS = [BASE_DIR / "static"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Private storage for reference photos, masks, adapters and outputs: never served
# from a public URL. Filesystem by default; S3 (django-storages) in production.
LIKENESS_STORAGE_ROOT = Path(os.environ.get("LIKENESS_STORAGE_ROOT", str(VAR_DIR / "storage")))
# Subjects' files are stored only as ciphertext (consent.crypto) in this backend and
# served only by views that check tenant and permission; it never has a public URL.
LIKENESS_STORAGE_BACKEND = os.environ.get("LIKENESS_STORAGE_BACKEND", "filesystem")
if LIKENESS_STORAGE_BACKEND == "s3":
    # Needs the `s3` extra of pyproject (boto3); credentials come from boto3's usual chain.
    if not os.environ.get("LIKENESS_S3_BUCKET"):
        raise ImproperlyConfigured("LIKENESS_STORAGE_BACKEND=s3 needs LIKENESS_S3_BUCKET.")
    _PRIVATE_STORAGE: dict[str, object] = {
        "BACKEND": "consent.s3storage.PrivateS3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["LIKENESS_S3_BUCKET"],
            "location": os.environ.get("LIKENESS_S3_PREFIX", "likeness"),
            # An S3-compatible store (MinIO, Ceph, a cloud's S3 API); unset means AWS itself.
            "endpoint_url": os.environ.get("LIKENESS_S3_ENDPOINT_URL") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
elif LIKENESS_STORAGE_BACKEND == "filesystem":
    _PRIVATE_STORAGE = {
        "BACKEND": "consent.storage.PrivateFileSystemStorage",
        "OPTIONS": {
            "location": str(LIKENESS_STORAGE_ROOT),
            "directory_permissions_mode": 0o700,
            "file_permissions_mode": 0o600,
        },
    }
else:
    raise ImproperlyConfigured("LIKENESS_STORAGE_BACKEND must be 'filesystem' or 's3'.")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "likeness_private": _PRIVATE_STORAGE,
}
# Deployment secret from which each tenant's key-encryption key is derived (HKDF);
# the per-subject data keys are stored only wrapped by those. Checked here, not at
# the first stored file: a deployment without a usable key must not start at all,
# rather than accept subjects and fail on their first photo.
LIKENESS_MASTER_KEY = os.environ.get("LIKENESS_MASTER_KEY", "")
if not LIKENESS_MASTER_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("LIKENESS_MASTER_KEY is required unless DJANGO_DEBUG=1.")
    LIKENESS_MASTER_KEY = "likeness-insecure-development-master-key-never-in-production"
if len(LIKENESS_MASTER_KEY) < MIN_MASTER_SECRET_CHARS:
    raise ImproperlyConfigured(f"LIKENESS_MASTER_KEY must be at least {MIN_MASTER_SECRET_CHARS} characters.")
# Master keys that LIKENESS_MASTER_KEY replaced (whitespace-separated, newest first): subject keys still
# wrapped by one of them keep opening until `manage.py rotate_master_key` has rewrapped them all under
# the current key (docs/operations.md, "Rotating the master key"); then remove them from here.
LIKENESS_PREVIOUS_MASTER_KEYS = os.environ.get("LIKENESS_PREVIOUS_MASTER_KEYS", "").split()
if any(len(previous) < MIN_MASTER_SECRET_CHARS for previous in LIKENESS_PREVIOUS_MASTER_KEYS):
    raise ImproperlyConfigured(
        f"every key in LIKENESS_PREVIOUS_MASTER_KEYS must be at least {MIN_MASTER_SECRET_CHARS} characters."
    )
if LIKENESS_MASTER_KEY in LIKENESS_PREVIOUS_MASTER_KEYS:
    raise ImproperlyConfigured(
        "LIKENESS_PREVIOUS_MASTER_KEYS must not contain the current LIKENESS_MASTER_KEY."
    )
# The audit chains are anchored outside the database (audit.anchoring, docs/operations.md): signed
# checkpoints go to every sink listed here; verification reads them back from the first file: or s3://
# one. Production must say where (a place the database's owner cannot rewrite); development appends
# to a file under var/.
LIKENESS_AUDIT_ANCHOR_SINKS = _env_list(
    "LIKENESS_AUDIT_ANCHOR_SINKS", f"file:{VAR_DIR / 'audit-anchors.jsonl'}" if DEBUG else ""
)
if not LIKENESS_AUDIT_ANCHOR_SINKS:
    raise ImproperlyConfigured(
        "LIKENESS_AUDIT_ANCHOR_SINKS is required unless DJANGO_DEBUG=1: where the audit log's signed "
        "checkpoints go (file:/path, s3://bucket/prefix, email:legal@example.com; comma-separated)."
    )
try:
    _ANCHOR_SINKS = parse_sinks(LIKENESS_AUDIT_ANCHOR_SINKS)
    # Public keys of retired anchor keys (ed25519:<base64>, whitespace-separated): their checkpoints
    # still verify.
    LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS = os.environ.get("LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS", "").split()
    for _public in LIKENESS_AUDIT_ANCHOR_TRUSTED_KEYS:
        load_public_key(_public)
except ValueError as error:
    raise ImproperlyConfigured(str(error)) from None
if any(sink.kind == "s3" for sink in _ANCHOR_SINKS) and importlib.util.find_spec("boto3") is None:
    raise ImproperlyConfigured("an s3:// audit anchor sink needs the `s3` extra of pyproject (boto3).")
# The secret the checkpoint signing key is derived from; by default the master key (with its own HKDF
# salt and info, so the two keys are unrelated). Never stored in the database.
LIKENESS_AUDIT_ANCHOR_KEY = os.environ.get("LIKENESS_AUDIT_ANCHOR_KEY", "")
if LIKENESS_AUDIT_ANCHOR_KEY and len(LIKENESS_AUDIT_ANCHOR_KEY) < MIN_MASTER_SECRET_CHARS:
    raise ImproperlyConfigured(
        f"LIKENESS_AUDIT_ANCHOR_KEY must be at least {MIN_MASTER_SECRET_CHARS} characters."
    )
LIKENESS_AUDIT_ANCHOR_MINUTES = int(os.environ.get("LIKENESS_AUDIT_ANCHOR_MINUTES", "60"))
if LIKENESS_AUDIT_ANCHOR_MINUTES < 1:
    raise ImproperlyConfigured("LIKENESS_AUDIT_ANCHOR_MINUTES must be at least 1.")
# An S3-compatible store for s3:// sinks (MinIO, Ceph); unset means AWS itself.
LIKENESS_AUDIT_ANCHOR_S3_ENDPOINT_URL = os.environ.get("LIKENESS_AUDIT_ANCHOR_S3_ENDPOINT_URL") or None
# The C2PA signing identity of released images (editing.provenance.certificates, docs/provenance.md):
# one platform signer; the chain file holds the signing certificate first, then its intermediates;
# the key comes from a file OR from the PEM in an environment variable, never from the database.
# Development signs with the self-signed chain `make setup` writes under var/certs/ (reads "Valid",
# untrusted); production names its own and nothing is defaulted. Checked when a release is signed.
LIKENESS_C2PA_CERT_CHAIN = os.environ.get(
    "LIKENESS_C2PA_CERT_CHAIN", str(VAR_DIR / "certs" / "chain.pem") if DEBUG else ""
)
LIKENESS_C2PA_KEY_PEM = os.environ.get("LIKENESS_C2PA_KEY_PEM", "")
LIKENESS_C2PA_KEY_FILE = os.environ.get(
    "LIKENESS_C2PA_KEY_FILE",
    str(VAR_DIR / "certs" / "signer.key") if DEBUG and not LIKENESS_C2PA_KEY_PEM else "",
)
# Root certificates a verifier trusts (a PEM file; empty: none, manifests read "Valid", not "Trusted").
LIKENESS_C2PA_TRUST_ANCHORS = os.environ.get(
    "LIKENESS_C2PA_TRUST_ANCHORS", str(VAR_DIR / "certs" / "root.pem") if DEBUG else ""
)
# Reference photo intake limits (consent.intake) and the identity-consistency threshold.
LIKENESS_MAX_UPLOAD_BYTES = int(os.environ.get("LIKENESS_MAX_UPLOAD_BYTES", str(20 * 1024 * 1024)))
LIKENESS_MAX_IMAGE_PIXELS = int(os.environ.get("LIKENESS_MAX_IMAGE_PIXELS", "40000000"))
LIKENESS_MIN_FACE_PX = int(os.environ.get("LIKENESS_MIN_FACE_PX", "100"))
LIKENESS_SAME_PERSON_THRESHOLD = float(os.environ.get("LIKENESS_SAME_PERSON_THRESHOLD", "0.6"))
# Request-body limits, enforced by config.bodylimit in front of Django (a 413 as soon as the
# Content-Length or the streamed body passes them, before anything is buffered). Every route
# accepts LIKENESS_MAX_REQUEST_BYTES; the photo upload routes (config.bodylimit.UPLOAD_ROUTE_NAMES)
# accept LIKENESS_MAX_UPLOAD_FILES photos of LIKENESS_MAX_UPLOAD_BYTES each, plus that allowance
# for the multipart framing and form fields. deploy/nginx.conf repeats both numbers.
LIKENESS_MAX_REQUEST_BYTES = _env_int(
    "LIKENESS_MAX_REQUEST_BYTES", 1024 * 1024, low=64 * 1024, high=64 * 1024 * 1024
)
LIKENESS_MAX_UPLOAD_FILES = _env_int("LIKENESS_MAX_UPLOAD_FILES", 10, low=1, high=100)
LIKENESS_MAX_UPLOAD_REQUEST_BYTES = (
    LIKENESS_MAX_UPLOAD_FILES * LIKENESS_MAX_UPLOAD_BYTES + LIKENESS_MAX_REQUEST_BYTES
)
DATA_UPLOAD_MAX_NUMBER_FILES = LIKENESS_MAX_UPLOAD_FILES
# Photo bodies never touch a disk in plaintext: Django keeps a request body in memory up to
# FILE_UPLOAD_MAX_MEMORY_SIZE (beyond it, a temporary file), and the body limit above makes every
# accepted body smaller than that; uploaded files are held by the memory handler only (there is no
# temporary-file handler to fall back to). The price is memory: see docs/compliance.md.
FILE_UPLOAD_MAX_MEMORY_SIZE = LIKENESS_MAX_UPLOAD_REQUEST_BYTES
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler"]
# How long a consent link may be used to sign (revoking through it stays possible).
LIKENESS_CONSENT_LINK_HOURS = int(os.environ.get("LIKENESS_CONSENT_LINK_HOURS", "168"))
# How long an invitation into a tenant may be accepted (a re-send starts it again).
LIKENESS_INVITATION_HOURS = int(os.environ.get("LIKENESS_INVITATION_HOURS", "168"))
if not 1 <= LIKENESS_INVITATION_HOURS <= 24 * 30:
    raise ImproperlyConfigured("LIKENESS_INVITATION_HOURS must be between 1 and 720.")
# Two-person rule: an erasure that staff start (a revocation they record, a "purpose satisfied"
# mark) waits this long for a tenant admin's confirmation. A revocation's erasure then runs
# unconfirmed: the rule may delay an erasure, never prevent it, so the wait is bounded (at most
# 30 days, GDPR Art. 12(3)'s month to act on a request).
LIKENESS_ERASURE_CONFIRM_HOURS = int(os.environ.get("LIKENESS_ERASURE_CONFIRM_HOURS", "72"))
if not 1 <= LIKENESS_ERASURE_CONFIRM_HOURS <= 720:
    raise ImproperlyConfigured("LIKENESS_ERASURE_CONFIRM_HOURS must be between 1 and 720 (30 days).")
# Mail (consent links to subjects, invitations to members): printed to the console in development.
EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("DJANGO_EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("DJANGO_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "likeness@localhost")
# Seconds before an unresponsive mail server counts as a failed delivery: consent e-mails are sent while
# the request waits, under the link's row lock (consent.actions.delivery), so this must never be unbounded.
EMAIL_TIMEOUT = int(os.environ.get("DJANGO_EMAIL_TIMEOUT", "10"))
# How often the retention/expiry sweep runs (Celery beat), in minutes.
LIKENESS_RETENTION_SWEEP_MINUTES = int(os.environ.get("LIKENESS_RETENTION_SWEEP_MINUTES", "15"))
# Due subjects the sweep erases at once on PostgreSQL, each on its own pooled connection (keep it under
# LIKENESS_DB_POOL_SIZE): while one waits for the database another runs (consent.actions.sweep).
LIKENESS_SWEEP_CONNECTIONS = _env_int("LIKENESS_SWEEP_CONNECTIONS", 2, low=1, high=16)
# Read lazily by config.celery (namespace CELERY): an expired consent is erased
# within one sweep interval, without undue delay.
CELERY_BEAT_SCHEDULE = {
    "consent-enforce-retention": {
        "task": "consent.enforce_retention",
        "schedule": LIKENESS_RETENTION_SWEEP_MINUTES * 60.0,
        "options": {"queue": "default"},
    },
    "audit-anchor-chains": {
        "task": "audit.anchor_chains",
        "schedule": LIKENESS_AUDIT_ANCHOR_MINUTES * 60.0,
        "options": {"queue": "default"},
    },
    # Jobs whose worker stopped beating go back to the queue (or fail); free GPU slots are handed out.
    "training-tend-jobs": {
        "task": "training.tend_jobs",
        "schedule": 30.0,
        "options": {"queue": "default"},
    },
}
# Jobs (training.jobs): GPU slots are the GPU worker processes the broker may feed at once (one per
# GPU); a tenant holds at most LIKENESS_TENANT_MAX_CONCURRENT_JOBS of them, and waits with at most
# LIKENESS_TENANT_MAX_QUEUED_JOBS jobs in line. Progress is stored (and pushed to sockets) at most every
# LIKENESS_JOB_PROGRESS_SECONDS; a running job beats every LIKENESS_JOB_HEARTBEAT_SECONDS, and one that
# has not beaten for LIKENESS_JOB_STALE_SECONDS lost its worker: it is queued again, up to
# LIKENESS_JOB_MAX_ATTEMPTS starts, then fails with the reason.
LIKENESS_JOB_SLOTS = _env_int("LIKENESS_JOB_SLOTS", 1, low=1, high=256)
LIKENESS_TENANT_MAX_CONCURRENT_JOBS = _env_int("LIKENESS_TENANT_MAX_CONCURRENT_JOBS", 2, low=1, high=256)
# Fairness remembers who had the GPUs lately: a tenant's jobs started within this window count against
# its turn, so a tenant with a long queue and one with a single job alternate (training.jobs.dispatch).
LIKENESS_FAIR_SHARE_MINUTES = _env_int("LIKENESS_FAIR_SHARE_MINUTES", 60, low=1, high=24 * 60)
LIKENESS_TENANT_MAX_QUEUED_JOBS = _env_int("LIKENESS_TENANT_MAX_QUEUED_JOBS", 100, low=1, high=10_000)
LIKENESS_JOB_PROGRESS_SECONDS = float(_env_int("LIKENESS_JOB_PROGRESS_SECONDS", 1, low=0, high=60))
LIKENESS_JOB_HEARTBEAT_SECONDS = float(_env_int("LIKENESS_JOB_HEARTBEAT_SECONDS", 10, low=1, high=300))
LIKENESS_JOB_STALE_SECONDS = _env_int("LIKENESS_JOB_STALE_SECONDS", 120, low=3, high=3600)
LIKENESS_JOB_MAX_ATTEMPTS = _env_int("LIKENESS_JOB_MAX_ATTEMPTS", 3, low=1, high=10)
if LIKENESS_JOB_STALE_SECONDS < 3 * LIKENESS_JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("LIKENESS_JOB_STALE_SECONDS must be at least 3 heartbeats long.")
# Decrypted inputs of a running job (reference crops, a trained folder) live here only while it runs;
# give it a memory-backed filesystem in production (compose.yaml mounts a tmpfs).
LIKENESS_SCRATCH_ROOT = Path(os.environ.get("LIKENESS_SCRATCH_ROOT", str(VAR_DIR / "scratch")))
# A GPU worker keeps the base pipelines it loaded between jobs (training.jobs.pipelines, the core's
# PipelineCache), the least recently used dropped while their parameters and buffers exceed this many
# bytes; one larger than the budget is still served, then dropped. SD 1.5 in bf16 is ~2 GiB, SDXL ~7 GiB.
LIKENESS_PIPELINE_CACHE_BYTES = _env_int("LIKENESS_PIPELINE_CACHE_BYTES", 16 * 2**30, low=0, high=2**40)
# Base diffusion model: a hub id or a local folder. The default is the tiny
# random-init model that `make setup` builds, so the product runs offline.
LIKENESS_BASE_MODEL = os.environ.get("LIKENESS_BASE_MODEL", str(VAR_DIR / "models" / "tiny-sd"))
# The base models a training job may ask for (comma-separated; the default base model first, always
# included): an operator decides which weights the GPU workers hold and whose licences allow this use.
LIKENESS_TRAINING_BASE_MODELS = list(
    dict.fromkeys([LIKENESS_BASE_MODEL, *_env_list("LIKENESS_TRAINING_BASE_MODELS", "")])
)
# A style photo is refused when a face in it is at least this share of the photo's shorter side (or at
# least LIKENESS_MIN_FACE_PX across): a face that large is a person's likeness, not a style (docs).
LIKENESS_STYLE_MAX_FACE_FRACTION = float(os.environ.get("LIKENESS_STYLE_MAX_FACE_FRACTION", "0.1"))
if not 0.01 <= LIKENESS_STYLE_MAX_FACE_FRACTION <= 1.0:
    raise ImproperlyConfigured("LIKENESS_STYLE_MAX_FACE_FRACTION must be between 0.01 and 1.")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# Shared by every server process and worker: DRF's request rates (the token endpoint's) are counted
# here, and a count in one process's memory would multiply the limit by the number of processes.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("LIKENESS_CACHE_URL", REDIS_URL),
        "KEY_PREFIX": "likeness-cache",
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("LIKENESS_TASK_SOFT_TIME_LIMIT", "3600"))
CELERY_TASK_TIME_LIMIT = int(os.environ.get("LIKENESS_TASK_TIME_LIMIT", "3900"))
# Redis redelivers an unacknowledged message after this long: longer than the longest job, or a job
# still running would be delivered a second time (which the runner recognises, but need not see).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 600}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that a refused token is a 401 with `WWW-Authenticate: Token`, as DRF answers only
        # for the first class; a request without the header falls through to the session.
        "tenancy.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # The client address of the throttles, as for django-axes (tenancy.throttling.client_address).
    "NUM_PROXIES": LIKENESS_TRUSTED_PROXIES,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PARSER_CLASSES": [
        "tenancy.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Keyset (cursor) pages: no COUNT, and page N costs what page 1 costs (tenancy.pagination).
    "DEFAULT_PAGINATION_CLASS": "tenancy.pagination.KeysetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Likeness API",
    "DESCRIPTION": (
        "Consent-first personalized portrait models: subjects, consent, training, studio, audit. "
        "Lists are paginated by cursor: follow `next` (null on the last page); `limit` sets the rows per "
        "page (at most 200); there is no `count`, and `offset` is refused (the members list excepted)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema maps every route and field: for signed-in users only (the docs page too).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Several fields share a name ("status": a job's, a reference set's, an output's; "preset"): each
    # choice set gets its own enum name.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "training.models.JobStatus",
        "ReferenceSetStatusEnum": "training.models.ReferenceSetStatus",
        "OutputStatusEnum": "editing.models.OutputStatus",
        # The core's presets (quick, standard, max) of training and generation jobs, beside edit presets.
        "PresetNameEnum": "personalization.presets.PRESET_NAMES",
    },
}

# Security: strict by default, relaxed only in DEBUG so `make run` works over plain HTTP.
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 0 if DEBUG else int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Every HTML page: scripts and styles only from this origin or inline with the request's nonce
# (templates use {{ request.csp_nonce }}; no style attributes or inline event handlers, which a
# test keeps out of templates). Views that set their own policy (asset downloads) keep it.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

LIKENESS_LOG_LEVEL = os.environ.get("LIKENESS_LOG_LEVEL", "INFO")
# Every line goes through one handler whose filter (config.logredact) removes consent and
# invitation tokens from the message and its arguments: the web server's access log and
# django.request name the path, and a token in a path can sign or revoke. Loggers that come with
# handlers of their own (Django's, which print unfiltered in DEBUG; uvicorn's, set up before Django
# starts) are routed to it instead; Celery's get the filter in config.celery.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "config.logredact.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]}
    },
    "root": {"handlers": ["console"], "level": LIKENESS_LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LIKENESS_LOG_LEVEL, "propagate": False},
        "django.server": {"handlers": ["console"], "level": LIKENESS_LOG_LEVEL, "propagate": False},
        "uvicorn": {"handlers": ["console"], "level": LIKENESS_LOG_LEVEL, "propagate": False},
        "uvicorn.error": {"level": LIKENESS_LOG_LEVEL},
        "uvicorn.access": {"handlers": ["console"], "level": LIKENESS_LOG_LEVEL, "propagate": False},
    },
}
