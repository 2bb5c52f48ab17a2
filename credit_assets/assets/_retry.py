"""Retry policies that retry what can heal by itself, and nothing else.

A Dagster ``RetryPolicy`` retries a step whatever made it fail. For the steps that read or write
PostgreSQL that is right for a dropped connection or a database restart, and wrong for a bad frame,
a missing champion or a broken input file: those fail the same way every time, and retrying them
only delays the error by the policy's back-off (10 s, then 20 s). So each asset body is wrapped with
:func:`retry_only_transient`: an exception the predicate calls permanent is re-raised as a
``dagster.Failure(allow_retries=False)``, which Dagster fails at once, with the original message
and the original exception chained as its cause.

The IO manager's own checks raise ``PostgresWriteError``, which is such a Failure already; a
connection error raised while the IO manager loads or stores the table is retried by the policy.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from dagster import Backoff, Failure, RetryPolicy

from credit_assets.resources.postgres import PostgresUnavailableError

F = TypeVar("F", bound=Callable[..., Any])

DATABASE_RETRY_POLICY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL)
"""For steps that read or write PostgreSQL: 2 retries, 10 s then 20 s after the failure."""

FILE_RETRY_POLICY = RetryPolicy(max_retries=1, delay=5)
"""For steps that read the source files: one retry after 5 s (a network share briefly away)."""


def is_connection_error(exc: BaseException) -> bool:
    """A failure to reach or keep talking to a server: worth another attempt."""
    if isinstance(exc, PostgresUnavailableError | psycopg.OperationalError | ConnectionError | TimeoutError):
        return True
    try:  # MLflow's HTTP client (only installed with mlflow; imported lazily, it is slow to import)
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import Timeout
    except ImportError:  # pragma: no cover - requests comes with mlflow
        return False
    return isinstance(exc, RequestsConnectionError | Timeout)


def is_file_unavailable(exc: BaseException) -> bool:
    """An operating-system error while reading a file (not a corrupt gzip): the share may come back.

    ``SourceDataError`` wraps read errors; its cause tells an I/O error (transient) from bad content
    (a truncated or corrupt file, a malformed row: the same on every attempt).
    """
    for error in (exc, exc.__cause__):
        if isinstance(error, OSError) and not isinstance(error, gzip.BadGzipFile):
            return True
    return False


def retry_only_transient(is_transient: Callable[[BaseException], bool] = is_connection_error) -> Callable[[F], F]:
    """Decorate an asset body so that only errors ``is_transient`` accepts reach the retry policy.

    Put it under ``@asset(retry_policy=...)``; it keeps the body's signature, so Dagster still sees
    the context, config, resources and inputs.
    """

    def decorate(body: F) -> F:
        @functools.wraps(body)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return body(*args, **kwargs)
            except Failure:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc

        return wrapper  # type: ignore[return-value]

    return decorate
