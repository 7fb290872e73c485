"""Settings of the notes example, all from the environment.

| variable        | meaning                                                              |
|-----------------|----------------------------------------------------------------------|
| `DATABASE_URL`  | required: `postgresql://user:password@host:port/dbname`              |
| `NOTES_RELEASE` | `v1` (default) or `v2`; anything else is `ImproperlyConfigured`      |
| `HOST`          | optional: one more host name the app answers to (`ALLOWED_HOSTS`)    |
| `SECRET_KEY`    | optional: Django's signing key; unset, a random one per process      |
"""

import os
import secrets
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

RELEASES = ("v1", "v2")


def release_from_env() -> str:
    """The release this process runs, from `NOTES_RELEASE` (default `v1`)."""
    release = os.environ.get("NOTES_RELEASE", "v1")
    if release not in RELEASES:
        raise ImproperlyConfigured(
            f"NOTES_RELEASE must be one of {', '.join(RELEASES)}, not {release!r}"
        )
    return release


def database_from_url(url: str | None) -> dict[str, Any]:
    """Django's `DATABASES["default"]` for a `postgresql://user:pw@host:port/dbname` URL.

    Query parameters (`?sslmode=require`) are passed to libpq as connection options.
    """
    if not url:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set (expected postgresql://user:password@host:port/dbname)"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        scheme = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise ImproperlyConfigured(f"DATABASE_URL must start with postgresql://, not {scheme}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL has an invalid port: {exc}") from exc
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database (…/dbname)")
    return {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": unquote(parts.hostname or ""),
        "PORT": str(port) if port else "",
        # A fresh connection per request: after the database restarts, the next request
        # simply connects again, nothing stale to detect.
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            # Fail fast rather than hang: a database that does not answer costs a request
            # at most 3 s to connect and 5 s per statement, then an answer 503.
            "connect_timeout": 3,
            "options": "-c statement_timeout=5000",
            **dict(parse_qsl(parts.query)),
        },
    }


def allowed_hosts(extra: str | None) -> list[str]:
    """Loopback names, plus `extra` (the `HOST` variable) when set."""
    hosts = ["127.0.0.1", "localhost", "[::1]"]
    if extra:
        # ALLOWED_HOSTS spells an IPv6 address in brackets, as in a Host header.
        hosts.append(f"[{extra}]" if ":" in extra and not extra.startswith("[") else extra)
    return hosts


NOTES_RELEASE = release_from_env()

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL"))}

DEBUG = False
ALLOWED_HOSTS = allowed_hosts(os.environ.get("HOST"))
# No secret is committed: without SECRET_KEY each process draws its own. The app signs
# nothing (no sessions, no CSRF tokens), so a per-process key loses nothing.
SECRET_KEY = os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50)

INSTALLED_APPS = ["notes"]
# CommonMiddleware is what checks the Host header against ALLOWED_HOSTS; there is no CSRF
# middleware (a JSON API without cookies), the views are csrf_exempt all the same.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
APPEND_SLASH = False

ROOT_URLCONF = "notes_site.urls"
WSGI_APPLICATION = "notes_site.wsgi.application"
TEMPLATES: list[dict[str, Any]] = []

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

# Quiet: errors only. django.request reports each 5xx (with the traceback of a 500); the
# development server's per-request access log is off, and so are django.security's
# tracebacks for what the client got wrong (a Host not allowed, a body too large: the 400
# answer says which).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        "django": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        "django.server": {"handlers": ["stderr"], "level": "CRITICAL", "propagate": False},
        "django.security": {"handlers": ["stderr"], "level": "CRITICAL", "propagate": False},
    },
}
