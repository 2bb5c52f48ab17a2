"""Shared fixtures: a real PostgreSQL server, and a fresh database per test.

The server is, in order of preference:
1. `$CREDIT_ASSETS_TEST_ADMIN_URL` (a superuser URL; if set it must work),
2. `postgresql://postgres@127.0.0.1:5432/postgres` when something answers there,
3. a throwaway cluster started from the system's PostgreSQL binaries in a temporary directory
   (`credit_assets.devtools.local_postgres`), stopped and deleted at the end of the session.
If none works the tests fail with what was tried: they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from credit_assets.devtools.local_postgres import (
    LocalPostgresError,
    ensure_local_cluster,
    find_free_port,
    stop_local_cluster,
)
from credit_assets.resources.postgres import PostgresResource, redact_url, url_with_database

ADMIN_URL_ENV_VAR = "CREDIT_ASSETS_TEST_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_DATABASE_PREFIX = "credit_assets_test_"


def _connection_error(url: str) -> str | None:
    """None if `url` accepts a connection, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """URL of a superuser connection to a real PostgreSQL server (see the module docstring)."""
    explicit = os.environ.get(ADMIN_URL_ENV_VAR)
    if explicit:
        error = _connection_error(explicit)
        if error is not None:
            pytest.fail(f"{ADMIN_URL_ENV_VAR}={redact_url(explicit)} is set but does not connect: {error}")
        yield explicit
        return

    tried = [f"{ADMIN_URL_ENV_VAR}: not set"]
    error = _connection_error(DEFAULT_ADMIN_URL)
    if error is None:
        yield DEFAULT_ADMIN_URL
        return
    tried.append(f"{DEFAULT_ADMIN_URL}: {error}")

    # Under /tmp (not pytest's 0700 tmp_path): under root the cluster runs as an unprivileged user.
    state_dir = Path(tempfile.mkdtemp(prefix="credit_assets_test_pg_"))
    try:
        try:
            cluster_database_url = ensure_local_cluster(state_dir, find_free_port())
        except (LocalPostgresError, OSError, psycopg.Error) as exc:
            tried.append(f"temporary cluster in {state_dir}: {exc}")
            pytest.fail("No PostgreSQL server for the tests. Tried:\n  " + "\n  ".join(tried))
        yield url_with_database(cluster_database_url, "postgres")
    finally:
        stop_local_cluster(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create database `credit_assets_test_<uuid>`, yield its URL, drop it WITH (FORCE) afterwards."""
    dbname = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield url_with_database(admin_url, dbname)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """URL of a fresh, empty database for this test (`credit_assets_test_<uuid>`, dropped after it)."""
    with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(scope="module")
def postgres_url_module(postgres_admin_url: str) -> Iterator[str]:
    """URL of a fresh, empty database shared by the tests of one module (dropped after the module)."""
    with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def postgres_resource(postgres_url: str) -> PostgresResource:
    """A `PostgresResource` on the test's fresh database."""
    return PostgresResource(url=postgres_url)
