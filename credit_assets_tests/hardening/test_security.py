"""Issue 4, kind 6: security of names from configuration, of customer ids, and of the database password.

Schema, table and registered-model names that reach SQL or a registry filter are validated (an injection is
refused before anything runs); customer ids with quotes, backslashes and the like round-trip exactly
through files, features, model_inference and back into monitoring; and a real run against a role with a
password leaves that password in no event, metadata entry, job snapshot or MLflow param, tag or metric.
"""

from __future__ import annotations

import psycopg
import pytest
from dagster import EnvVar, MonthlyPartitionsDefinition, build_output_context
from dagster._serdes import serialize_value
from psycopg import sql
from pydantic import ValidationError

from credit_assets.resources.io_managers import PostgresPandasIOManager
from credit_assets.resources.mlflow import MlflowModelRegistry
from credit_assets.resources.postgres import PostgresResource
from credit_assets.resources.postgres_io.tables import validate_identifier
from credit_assets_tests.hardening._writer import frame, write_table
from credit_assets_tests.hardening.conftest import (
    MODEL_MONTH,
    PasswordRole,
    Pipeline,
    mlflow_texts,
    query,
    read_source,
    table_rows,
    write_source,
)

INJECTIONS = [
    'x"; DROP TABLE model_metrics; --',
    "public; DROP TABLE model_metrics",
    "model_metrics --",
    'a"b',
    "a b",
    "",
    "x" * 64,
    "schéma",
]


# -- names from configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", INJECTIONS)
def test_a_schema_name_that_is_not_a_plain_identifier_is_refused_at_configuration(name: str) -> None:
    with pytest.raises(ValidationError, match="not a valid identifier"):
        PostgresPandasIOManager(postgres=PostgresResource(url="postgresql://unused/db"), schema_name=name)
    with pytest.raises(ValueError, match="not a valid identifier"):
        validate_identifier(name, "schema_name")


def test_an_injected_table_name_is_refused_and_no_table_changes(postgres_url: str) -> None:
    month = "2024-01-01"
    write_table(postgres_url, "model_metrics", frame("model_metrics", month, 3, "kept"), month)
    before = table_rows(postgres_url, "model_metrics")
    io_manager = PostgresPandasIOManager(postgres=PostgresResource(url=postgres_url))
    with build_output_context(
        asset_key=['model_metrics"; DROP TABLE model_metrics; --'],
        definition_metadata={"partition_expr": "month_date"},
        partition_key=month,
        asset_partitions_def=MonthlyPartitionsDefinition(start_date="2023-01-01"),
    ) as context:
        with pytest.raises(ValueError, match="not a valid identifier"):
            io_manager.handle_output(context, frame("model_metrics", month, 1, "injected"))
    assert table_rows(postgres_url, "model_metrics") == before


@pytest.mark.parametrize("name", ["x' OR name LIKE '%", "it's", 'a"b', "", "a/b"])
def test_a_registered_model_name_that_could_change_a_registry_filter_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="registered_model_name"):
        MlflowModelRegistry(tracking_uri="sqlite:///unused.db", registered_model_name=name)


def test_the_deployment_reads_every_secret_through_envvar() -> None:
    from credit_assets import definitions

    assert isinstance(definitions.postgres.url, EnvVar)
    assert definitions.postgres.url.env_var_name == "CREDIT_ASSETS_DATABASE_URL"


# -- customer ids ---------------------------------------------------------------------------------------

AWKWARD_IDS = [
    "O'Brien",
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "\\N",
    "NULL",
    "comma,semi;colon",
    "'; DROP TABLE model_inference; --",
    "tab\tinside",
    "Zürich-ß-東京",
    '""',
    "%s %(x)s {}",
]


def test_customer_ids_with_quotes_and_backslashes_round_trip_through_the_pipeline(pipeline: Pipeline) -> None:
    month = "2024-04-01"
    data = pipeline.copy_data()
    cohort = read_source(data, "attributes")
    cohort_ids = cohort.loc[cohort["snapshot_date"] == month, "Customer_ID"].tolist()
    renamed = {old: f"{AWKWARD_IDS[i % len(AWKWARD_IDS)]}#{i}" for i, old in enumerate(cohort_ids)}
    for source in ("attributes", "financials", "clickstream", "loan_daily"):
        rows = read_source(data, source)
        write_source(data, source, rows.assign(Customer_ID=rows["Customer_ID"].replace(renamed)))

    pipeline.run("monthly_data_job", month, data_dir=data)
    pipeline.run("scoring_job", month, data_dir=data)

    stored = query(pipeline.database_url, "SELECT customer_id FROM model_inference WHERE snapshot_date = %s", [month])
    assert sorted(customer_id for (customer_id,) in stored) == sorted(renamed.values())
    # Monitoring joins the graded customers to the predictions read back from the table: every one matched.
    graded = int(pipeline.features(month)["grade"].notna().sum())
    monitoring = query(
        pipeline.database_url,
        "SELECT total_samples FROM model_metrics WHERE month_date = %s AND evaluation_kind = 'monitoring'",
        [month],
    )
    assert monitoring and all(total == graded for (total,) in monitoring)


# -- the password -----------------------------------------------------------------------------------------


def test_a_run_with_a_password_leaves_it_in_no_log_metadata_snapshot_or_mlflow_entry(
    pipeline: Pipeline, password_role: PasswordRole
) -> None:
    with pipeline.database(owner=password_role.name) as url:
        role_url = password_role.url(url)
        with psycopg.connect(role_url) as connection:  # the run really logs in as the role
            assert connection.execute("SELECT current_user").fetchone() == (password_role.name,)
        result = pipeline.run("scoring_job", MODEL_MONTH, database_url=role_url)
        assert result.success
        assert query(url, "SELECT count(*) FROM model_inference") == [(len(pipeline.features(MODEL_MONTH)),)]

        events = pipeline.instance.all_logs(result.run_id)
        assert events
        for event in events:
            assert password_role.secret not in serialize_value(event), event.message
        run = pipeline.instance.get_run_by_id(result.run_id)
        snapshot = pipeline.instance.get_job_snapshot(run.job_snapshot_id)
        assert password_role.secret not in serialize_value(snapshot)
        assert password_role.secret not in serialize_value(run)
        for text in mlflow_texts(pipeline.tracking_uri):  # every run, incl. this run's monitoring runs
            assert password_role.secret not in text


def test_metadata_of_a_write_names_the_table_not_the_server(postgres_url: str, password_role: PasswordRole) -> None:
    month = "2024-01-01"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(password_role.name)))
    rows = frame("model_metrics", month, 2, "m")
    metadata = write_table(password_role.url(postgres_url), "model_metrics", rows, month)
    assert password_role.secret not in repr(metadata)
    assert metadata["table"] == "public.model_metrics"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://writer:Pw%40S3cr3t@db:5432/credit", "postgresql://writer:***@db:5432/credit"),
        ("host=db password='S3cr3t x' dbname=credit", "host=db password=*** dbname=credit"),
        ("http://user:S3cr3t@mlflow:5000", "http://user:***@mlflow:5000"),
        (
            "postgresql://db/credit?sslmode=require&password=S3cr3t",
            "postgresql://db/credit?sslmode=require&password=***",
        ),
        ("sqlite:////abs/path/mlflow.db", "sqlite:////abs/path/mlflow.db"),  # nothing to hide: unchanged
    ],
)
def test_urls_shown_in_messages_hide_the_password_and_nothing_else(url: str, shown: str) -> None:
    from credit_assets.resources.postgres import redact_url

    assert redact_url(url) == shown
