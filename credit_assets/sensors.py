"""Sensors: retrain when the champion's numbers fall, and score a month once its data has landed."""

import json
from datetime import date

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    ResourceParam,
    RunFailureSensorContext,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)
from psycopg import sql

from credit_assets.jobs import monthly_data_job, retraining_job, scoring_job
from credit_assets.ml.retraining import ChampionMonth, Trigger, age_trigger, degradation_triggers
from credit_assets.partitions import model_months
from credit_assets.resources.io_managers import PostgresPandasIOManager
from credit_assets.resources.mlflow import MlflowModelRegistry
from credit_assets.resources.mlflow_tracking import settle_parent_run
from credit_assets.resources.retraining import RetrainingPolicyResource

# The champion's monitoring rows written since the cursor, each with the held-out macro F1 of the same
# model version (its own promise) to compare against.
_NEW_CHAMPION_MONTHS = """
SELECT m.id, m.month_date, m.model_version, m.macro_f1, m.prediction_psi, m.feature_psi,
       (SELECT h.macro_f1 FROM model_metrics h
         WHERE h.evaluation_kind = 'holdout_test' AND h.model_name = m.model_name
           AND h.model_version = m.model_version
         ORDER BY h.id DESC LIMIT 1) AS holdout_macro_f1
FROM model_metrics m
WHERE m.id > %s AND m.evaluation_kind = 'monitoring' AND m.model_role = 'champion'
ORDER BY m.id
"""
_NEWEST_MONITORED_MONTH = (
    "SELECT max(month_date), max(id) FROM model_metrics WHERE evaluation_kind = 'monitoring'"
)


def _retraining_partition(month: date) -> str:
    """A degraded month M is learned from by the model trained for M+1 (its window ends at M)."""
    key = month.isoformat()
    return model_months.get_next_partition_key(key) or key


def _request(month: date, triggers: list[Trigger], run_key: str) -> RunRequest:
    return RunRequest(
        run_key=run_key,
        partition_key=_retraining_partition(month),
        tags={
            "credit_assets/retrain_trigger": ",".join(t.kind for t in triggers),
            "credit_assets/retrain_reason": " | ".join(t.reason for t in triggers)[:4000],
            "credit_assets/trigger_month": month.isoformat(),
        },
    )


def _worst_feature(feature_psi: dict | None) -> tuple[str | None, float | None]:
    if not feature_psi:
        return None, None
    feature = max(feature_psi, key=lambda k: feature_psi[k])
    return feature, float(feature_psi[feature])


class _Cursor:
    """The retraining sensor's memory: the last model_metrics row read, and the events it already acted on
    (so a re-materialized month with the same numbers never asks twice, even if the run key were lost)."""

    KEEP_EVENTS = 500

    def __init__(self, raw: str | None):
        data = json.loads(raw) if raw else {}
        self.last_id: int = int(data.get("last_id", 0))
        self.events: list[str] = list(data.get("events", []))

    def seen(self, event: str) -> bool:
        return event in self.events

    def remember(self, event: str) -> None:
        self.events = [*self.events, event][-self.KEEP_EVENTS :]

    def dump(self) -> str:
        return json.dumps({"last_id": self.last_id, "events": self.events})


@sensor(
    job=retraining_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Reads model_metrics and requests retraining (both models, then champion selection) when the "
        "champion's macro F1 on a month falls below the floor, drops too far below its held-out score, "
        "when predictions or key features drift past the PSI threshold, or when the champion is too old. "
        "The cursor is the last model_metrics row read plus the events already acted on; each event has its "
        "own run key, so idle ticks request nothing and an event requests one run."
    ),
)
def retraining_sensor(
    context: SensorEvaluationContext,
    postgres_io_manager: ResourceParam[PostgresPandasIOManager],
    mlflow_registry: MlflowModelRegistry,
    retraining_policy: RetrainingPolicyResource,
):
    policy = retraining_policy.policy()
    cursor = _Cursor(context.cursor)
    with postgres_io_manager.postgres.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(postgres_io_manager.schema_name)))
        rows = conn.execute(_NEW_CHAMPION_MONTHS, (cursor.last_id,)).fetchall()
        newest_month, max_id = conn.execute(_NEWEST_MONITORED_MONTH).fetchone()

    requests: list[RunRequest] = []
    for _row_id, month_text, version, macro_f1, prediction_psi, feature_psi, holdout_f1 in rows:
        month = date.fromisoformat(month_text)
        feature, feature_value = _worst_feature(feature_psi)
        measured = ChampionMonth(
            month=month,
            model_version=int(version),
            macro_f1=float(macro_f1),
            holdout_macro_f1=None if holdout_f1 is None else float(holdout_f1),
            prediction_psi=None if prediction_psi is None else float(prediction_psi),
            worst_feature=feature,
            worst_feature_psi=feature_value,
        )
        triggers = degradation_triggers(measured, policy)
        # Same month, same version, same numbers -> same event: a re-materialization that changes nothing
        # requests nothing; one that changes the numbers (a data fix) may request one more run.
        event = f"degraded:{month.isoformat()}:v{version}:{float(macro_f1):.4f}:{','.join(t.kind for t in triggers)}"
        if triggers and not cursor.seen(event):
            cursor.remember(event)
            requests.append(_request(month, triggers, event))

    champion = mlflow_registry.current_champion()
    if champion is not None and champion.champion_from and newest_month:
        newest = date.fromisoformat(newest_month)
        trigger = age_trigger(champion.version, date.fromisoformat(champion.champion_from), newest, policy)
        event = f"age:v{champion.version}"
        if trigger is not None and not cursor.seen(event):
            cursor.remember(event)
            requests.append(_request(newest, [trigger], event))

    cursor.last_id = max(cursor.last_id, int(max_id or 0))
    context.update_cursor(cursor.dump())
    if not requests:
        return SkipReason(f"No new event breaks the retraining policy (read up to model_metrics.id {max_id}).")
    return requests


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[monthly_data_job],
    request_job=scoring_job,
    default_status=DefaultSensorStatus.STOPPED,
    description="When a month's data run succeeds, score and measure that month (if it is a model month).",
)
def score_month_after_data(context: RunStatusSensorContext):
    partition = context.dagster_run.tags.get("dagster/partition")
    if partition is None or partition not in model_months.get_partition_keys():
        return SkipReason(f"{partition} is not a model month")
    return RunRequest(run_key=f"score:{context.dagster_run.run_id}", partition_key=partition)


def _settle(context: RunStatusSensorContext, registry: MlflowModelRegistry, succeeded: bool) -> SkipReason:
    changed = settle_parent_run(
        registry.tracking_uri, registry.experiment_id(), context.dagster_run.run_id, succeeded=succeeded
    )
    return SkipReason(f"MLflow runs of Dagster run {context.dagster_run.run_id} settled: {changed or 'none changed'}")


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[retraining_job, scoring_job],
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks the MLflow parent run of a successful Dagster run FINISHED (dagster-mlflow can leave it "
    "RUNNING when a step reopens it after the hook ended it).",
)
def mlflow_runs_on_success(context: RunStatusSensorContext, mlflow_registry: MlflowModelRegistry):
    return _settle(context, mlflow_registry, succeeded=True)


@run_failure_sensor(
    monitored_jobs=[retraining_job, scoring_job],
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks the MLflow parent run of a failed Dagster run FAILED, and any asset run left RUNNING "
    "(under the multiprocess executor dagster-mlflow recorded failed runs as FINISHED).",
)
def mlflow_runs_on_failure(context: RunFailureSensorContext, mlflow_registry: MlflowModelRegistry):
    return _settle(context, mlflow_registry, succeeded=False)
