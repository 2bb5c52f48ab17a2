"""PostgresResource against a real server: connections, transactions, failures that keep secrets."""

from __future__ import annotations

import traceback

import psycopg
import pytest
from dagster import EnvVar, asset, materialize

from credit_assets.devtools.local_postgres import find_free_port
from credit_assets.resources.postgres import (
    PostgresResource,
    PostgresUnavailableError,
    redact_url,
    url_with_database,
)

SECRET = "S3cret-pa55"


def test_connect_yields_a_connection_to_the_configured_database(
    postgres_resource: PostgresResource, postgres_url: str
) -> None:
    with postgres_resource.connect() as connection:
        database = connection.execute("SELECT current_database()").fetchone()[0]
    assert postgres_url.endswith("/" + database)


def test_connect_commits_on_success_and_rolls_back_on_error(postgres_resource: PostgresResource) -> None:
    with postgres_resource.connect() as connection:
        connection.execute("CREATE TABLE kept (value INTEGER)")
        connection.execute("INSERT INTO kept VALUES (1)")
    with pytest.raises(RuntimeError, match="boom"), postgres_resource.connect() as connection:
        connection.execute("INSERT INTO kept VALUES (2)")
        raise RuntimeError("boom")
    with postgres_resource.connect() as connection:
        assert connection.execute("SELECT array_agg(value) FROM kept").fetchone()[0] == [1]


def test_module_database_fixture_gives_an_empty_database(postgres_url_module: str) -> None:
    with PostgresResource(url=postgres_url_module).connect() as connection:
        name = connection.execute("SELECT current_database()").fetchone()[0]
        tables = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()[0]
    assert name.startswith("credit_assets_test_")
    assert tables == 0


def test_unreachable_server_names_host_port_and_database_but_never_the_password() -> None:
    port = find_free_port()  # nothing listens there
    resource = PostgresResource(url=f"postgresql://credit:{SECRET}@127.0.0.1:{port}/credit_assets")

    with pytest.raises(PostgresUnavailableError) as caught:
        with resource.connect():
            pass

    message = str(caught.value)
    assert "host=127.0.0.1" in message
    assert f"port={port}" in message
    assert "dbname=credit_assets" in message
    assert SECRET not in message
    # Nothing chained into the traceback (which the Dagster UI shows) carries it either.
    shown = "".join(traceback.format_exception(caught.value))
    assert SECRET not in shown
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_redacted_url_hides_the_password_in_every_form() -> None:
    assert (
        PostgresResource(url=f"postgresql://credit:{SECRET}@db:5432/credit_assets").redacted_url
        == "postgresql://credit:***@db:5432/credit_assets"
    )
    assert redact_url("postgresql://credit@db/credit_assets") == "postgresql://credit@db/credit_assets"
    assert SECRET not in redact_url(f"postgresql://db/credit_assets?user=credit&password={SECRET}")
    assert SECRET not in redact_url(f"host=db dbname=credit_assets password={SECRET} user=credit")
    assert SECRET not in redact_url(f"host=db password='{SECRET} with space' user=credit")


def test_url_with_database_keeps_server_and_user() -> None:
    assert (
        url_with_database("postgresql://credit:pw@db:5433/postgres?sslmode=disable", "other")
        == "postgresql://credit:pw@db:5433/other?sslmode=disable"
    )
    assert psycopg.conninfo.conninfo_to_dict(url_with_database("host=db user=credit dbname=x", "other")) == {
        "host": "db",
        "user": "credit",
        "dbname": "other",
    }


def test_resource_reads_its_url_from_the_environment(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDIT_ASSETS_DATABASE_URL", postgres_url)
    seen: list[str] = []

    @asset
    def database_name(postgres: PostgresResource) -> None:
        with postgres.connect() as connection:
            seen.append(connection.execute("SELECT current_database()").fetchone()[0])

    result = materialize(
        [database_name], resources={"postgres": PostgresResource(url=EnvVar("CREDIT_ASSETS_DATABASE_URL"))}
    )

    assert result.success
    assert seen and postgres_url.endswith("/" + seen[0])
