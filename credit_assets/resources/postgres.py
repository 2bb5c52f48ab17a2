"""PostgreSQL connection resource for the credit model tables (`model_inference`, `model_metrics`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from dagster import ConfigurableResource
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field

CONNECT_TIMEOUT_SECONDS = 10
REDACTED = "***"

_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL could not be reached. The message names host, port and database, never the password."""


def redact_url(url: str) -> str:
    """Return `url` with its password replaced by `***` (URL form and `key=value` form alike)."""
    if "://" not in url:
        return _KEYWORD_PASSWORD.sub(lambda match: f"{match.group(1)}{REDACTED}", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = f"{userinfo.split(':', 1)[0]}:{REDACTED}"
        netloc = f"{userinfo}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() == "password" for key, _ in pairs):
            query = urlencode(
                [(key, REDACTED if key.lower() == "password" else value) for key, value in pairs], safe="*"
            )
    if netloc == parts.netloc and query == parts.query:
        # Nothing to hide: return the URL as given (urlunsplit would turn sqlite:////abs into sqlite://abs).
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_with_database(url: str, dbname: str) -> str:
    """Return `url` pointing at database `dbname` (same server, user and options)."""
    if "://" in url:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname), parts.query, parts.fragment))
    params = {key: value for key, value in conninfo_to_dict(url).items() if value is not None}
    params["dbname"] = dbname
    return make_conninfo(**params)


def describe_target(url: str) -> str:
    """`host=... port=... dbname=... user=...` for `url`, for messages (never the password)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return f"url={redact_url(url)}"
    host = params.get("host") or params.get("hostaddr") or "<libpq default host>"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or "<default database>"
    user = params.get("user") or "<current OS user>"
    return f"host={host} port={port} dbname={dbname} user={user}"


def _password_of(url: str) -> str | None:
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.ProgrammingError:
        return None
    return str(password) if password else None


class PostgresResource(ConfigurableResource):
    """PostgreSQL server that holds the model tables (`model_inference`, `model_metrics`).

    Configure it with a libpq URL such as `postgresql://user:password@host:5432/credit_assets`,
    normally from the environment variable `CREDIT_ASSETS_DATABASE_URL` so the password stays out of
    code and run config. `connect()` yields a psycopg 3 connection that commits when its block ends
    normally and rolls back on an error. If the server cannot be reached, the step fails with a
    `PostgresUnavailableError` naming host, port and database (never the password).
    """

    url: str = Field(
        description=(
            "libpq connection URL of the PostgreSQL server, e.g. "
            "postgresql://user:password@host:5432/credit_assets. Set it from "
            "EnvVar('CREDIT_ASSETS_DATABASE_URL'); the password is never logged."
        )
    )

    @property
    def redacted_url(self) -> str:
        """The URL with its password replaced by `***`: safe for logs, metadata and errors."""
        return redact_url(self.url)

    @contextmanager
    def connect(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """Open a connection; commit when the block ends normally, roll back on error, always close.

        Raises:
            PostgresUnavailableError: the server cannot be reached or refuses the login.
        """
        connection = self._open(autocommit=autocommit)
        with connection:
            yield connection

    def _open(self, *, autocommit: bool) -> psycopg.Connection:
        failure: str
        try:
            return psycopg.connect(
                self.url,
                autocommit=autocommit,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name="credit_assets",
            )
        except psycopg.OperationalError as exc:
            failure = str(exc).strip()
        except psycopg.ProgrammingError:
            failure = "the URL is not a valid libpq connection string"
        # Raised outside the except block so the original exception (and whatever it echoes of the
        # connection string) is not chained into tracebacks shown in the Dagster UI.
        password = _password_of(self.url)
        if password:
            failure = failure.replace(password, REDACTED)
        raise PostgresUnavailableError(
            f"Cannot connect to PostgreSQL at {describe_target(self.url)}: {failure}. "
            "Check that the server is running and that CREDIT_ASSETS_DATABASE_URL points at it."
        )
