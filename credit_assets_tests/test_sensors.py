"""The retraining sensor against a real PostgreSQL model_metrics table, a real MLflow registry and a
Dagster test instance: idle ticks, a degraded month, the same month re-materialized, and an old champion."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from dagster import RunRequest, SkipReason, build_sensor_context, instance_for_test

from credit_assets.resources.io_managers import PostgresPandasIOManager
from credit_assets.resources.mlflow import MlflowModelRegistry
from credit_assets.resources.postgres import PostgresResource
from credit_assets.resources.postgres_io.tables import apply_ddl
from credit_assets.resources.retraining import RetrainingPolicyResource
from credit_assets.sensors import retraining_sensor

HEALTHY = 0.93
HOLDOUT = 0.94


@pytest.fixture
def tables(postgres_url: str) -> PostgresPandasIOManager:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        apply_ddl(conn, "public")
    return PostgresPandasIOManager(postgres=PostgresResource(url=postgres_url))


@pytest.fixture
def registry(tmp_path) -> MlflowModelRegistry:
    return MlflowModelRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=str(tmp_path))


def write_metrics(url: str, month: str, macro_f1: float, *, kind: str = "monitoring", version: int = 1) -> None:
    """What model_metrics would hold after the month's materialization (the sensor's only input)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            """DELETE FROM model_metrics WHERE month_date = %s AND evaluation_kind = %s AND model_version = %s""",
            (month, kind, version),
        )
        conn.execute(
            """INSERT INTO model_metrics (month_date, model_name, model_version, model_family, model_role,
                                          evaluation_kind, accuracy, macro_f1, total_samples, f1_by_grade,
                                          predictions_distribution, prediction_psi, feature_psi)
               VALUES (%s, 'credit_grade_model', %s, 'lightgbm', 'champion', %s, %s, %s, 400,
                       '{"Bad": 0.9, "Good": 0.9, "Standard": 0.9}', '{"Bad": 100, "Good": 100, "Standard": 200}',
                       0.01, '{"Interest_Rate": 0.02}')""",
            (month, version, kind, macro_f1, macro_f1),
        )


class Ticker:
    """Evaluates the sensor tick after tick, carrying the cursor like the daemon does."""

    def __init__(self, tables, registry, instance):
        self.resources = {
            "postgres_io_manager": tables,
            "mlflow_registry": registry,
            "retraining_policy": RetrainingPolicyResource(),
        }
        self.instance = instance
        self.cursor: str | None = None

    def tick(self) -> list[RunRequest]:
        with build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources) as context:
            result = retraining_sensor(context)
            self.cursor = context.cursor
        if isinstance(result, SkipReason):
            return []
        return list(result)


@pytest.fixture
def ticker(tables, registry) -> Iterator[Ticker]:
    with instance_for_test() as instance:
        yield Ticker(tables, registry, instance)


def test_idle_ticks_request_nothing(ticker, postgres_url):
    write_metrics(postgres_url, "2024-01-01", HOLDOUT, kind="holdout_test")
    write_metrics(postgres_url, "2024-01-01", HEALTHY)
    assert [ticker.tick() for _ in range(10)] == [[]] * 10
    assert json.loads(ticker.cursor)["last_id"] > 0


def test_a_degraded_month_requests_one_retraining_run_and_says_why(ticker, postgres_url):
    write_metrics(postgres_url, "2024-01-01", HOLDOUT, kind="holdout_test")
    write_metrics(postgres_url, "2024-01-01", HEALTHY)
    assert ticker.tick() == []
    write_metrics(postgres_url, "2024-02-01", 0.80)
    [request] = ticker.tick()
    assert request.partition_key == "2024-03-01"  # the model trained for March learns from February
    assert request.tags["credit_assets/trigger_month"] == "2024-02-01"
    assert request.tags["credit_assets/retrain_trigger"] == "macro_f1_floor,drop_below_holdout"
    assert "0.8000 < floor 0.8700" in request.tags["credit_assets/retrain_reason"]
    assert [ticker.tick() for _ in range(10)] == [[]] * 10


def test_rematerializing_the_month_requests_at_most_one_more(ticker, postgres_url):
    write_metrics(postgres_url, "2024-01-01", HOLDOUT, kind="holdout_test")
    write_metrics(postgres_url, "2024-02-01", 0.80)
    assert len(ticker.tick()) == 1
    write_metrics(postgres_url, "2024-02-01", 0.80)  # re-materialized, same numbers
    assert ticker.tick() == []
    write_metrics(postgres_url, "2024-02-01", 0.82)  # after a data fix, still degraded
    [again] = ticker.tick()
    assert again.run_key != "" and "0.8200" in again.run_key
    write_metrics(postgres_url, "2024-02-01", 0.82)
    assert ticker.tick() == []
    write_metrics(postgres_url, "2024-02-01", 0.95)  # fixed for good: nothing to do
    assert ticker.tick() == []


def test_drift_past_the_threshold_requests_retraining(ticker, postgres_url):
    write_metrics(postgres_url, "2024-01-01", HOLDOUT, kind="holdout_test")
    write_metrics(postgres_url, "2024-02-01", HEALTHY)
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            """UPDATE model_metrics SET feature_psi = '{"Interest_Rate": 0.45, "Age": 0.05}'
               WHERE month_date = '2024-02-01' AND evaluation_kind = 'monitoring'"""
        )
    [request] = ticker.tick()
    assert request.tags["credit_assets/retrain_trigger"] == "feature_drift"
    assert "Interest_Rate PSI 0.4500" in request.tags["credit_assets/retrain_reason"]


def test_an_old_champion_requests_one_retraining_run(ticker, postgres_url, registry):
    # A registered version promoted for January, no artifacts needed for the sensor's question.
    client = registry.client
    client.create_registered_model(registry.registered_model_name)
    with registry.start_run(run_name="stand-in", tags={}) as run:
        pass
    version = client.create_model_version(
        registry.registered_model_name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    registry.promote(registry.get_version(int(version.version)), from_month="2024-01-01")
    write_metrics(postgres_url, "2024-01-01", HOLDOUT, kind="holdout_test", version=int(version.version))
    for month in ("2024-02-01", "2024-03-01", "2024-04-01"):
        write_metrics(postgres_url, month, HEALTHY, version=int(version.version))
    assert ticker.tick() == []  # 3 months old at April: still allowed
    write_metrics(postgres_url, "2024-05-01", HEALTHY, version=int(version.version))
    [request] = ticker.tick()
    assert request.tags["credit_assets/retrain_trigger"] == "champion_age"
    assert request.partition_key == "2024-06-01"
    assert [ticker.tick() for _ in range(3)] == [[]] * 3


def _successful_data_run(instance, partition: str):
    from dagster import DagsterEvent, DagsterEventType, DagsterRun, DagsterRunStatus

    run = instance.add_run(
        DagsterRun(job_name="monthly_data_job", tags={"dagster/partition": partition}, status=DagsterRunStatus.SUCCESS)
    )
    event = DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name="monthly_data_job")
    return run, event


@pytest.mark.parametrize(("partition", "scored"), [("2024-02-01", True), ("2023-05-01", False)])
def test_a_months_data_run_success_requests_its_scoring(partition: str, scored: bool):
    from dagster import build_run_status_sensor_context

    from credit_assets.sensors import score_month_after_data

    with instance_for_test() as instance:
        run, event = _successful_data_run(instance, partition)
        context = build_run_status_sensor_context(
            sensor_name=score_month_after_data.name, dagster_instance=instance, dagster_run=run, dagster_event=event
        )
        result = score_month_after_data(context)
    if scored:  # a model month: scored and measured
        assert isinstance(result, RunRequest) and result.partition_key == partition
        assert result.run_key == f"score:{run.run_id}"
    else:  # a data-only month before the first model month
        assert isinstance(result, SkipReason) and "not a model month" in result.skip_message
