"""The code location: every asset, check, job and resource of credit_assets.

Settings come from the environment (``make demo`` writes them to ``.env``, which ``dagster dev`` reads):

* ``CREDIT_ASSETS_DATA_DIR``: directory of the four source files.
* ``CREDIT_ASSETS_DATABASE_URL``: PostgreSQL URL for ``model_inference`` and ``model_metrics`` (a secret).
* ``CREDIT_ASSETS_DB_SCHEMA``: schema of the two tables (default ``public``).
* ``CREDIT_ASSETS_MLFLOW_TRACKING_URI`` / ``CREDIT_ASSETS_MLFLOW_ARTIFACTS``: MLflow store and artifact root.
"""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, load_assets_from_modules

from credit_assets import checks
from credit_assets.assets import features, ingestion, monitoring, promotion, scoring, training
from credit_assets.jobs import monthly_data_job, retraining_job, scoring_job
from credit_assets.resources.data_source import CreditDataDirectory
from credit_assets.resources.io_managers import PostgresPandasIOManager
from credit_assets.resources.mlflow import MlflowModelRegistry
from credit_assets.resources.mlflow_tracking import mlflow_config, mlflow_parent_run
from credit_assets.resources.postgres import PostgresResource
from credit_assets.resources.retraining import RetrainingPolicyResource
from credit_assets.schedules import monthly_data_schedule
from credit_assets.sensors import (
    mlflow_runs_on_failure,
    mlflow_runs_on_success,
    retraining_sensor,
    score_month_after_data,
)

all_assets = load_assets_from_modules([ingestion, features, training, promotion, scoring, monitoring])
all_checks = [checks.challenger_beats_champion, *checks.table_checks]

postgres = PostgresResource(url=EnvVar("CREDIT_ASSETS_DATABASE_URL"))
mlflow_registry = MlflowModelRegistry(
    tracking_uri=EnvVar("CREDIT_ASSETS_MLFLOW_TRACKING_URI"),
    artifact_location=EnvVar("CREDIT_ASSETS_MLFLOW_ARTIFACTS"),
)

defs = Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[monthly_data_job, retraining_job, scoring_job],
    schedules=[monthly_data_schedule],
    sensors=[retraining_sensor, score_month_after_data, mlflow_runs_on_success, mlflow_runs_on_failure],
    resources={
        "credit_data": CreditDataDirectory(path=EnvVar("CREDIT_ASSETS_DATA_DIR")),
        "postgres": postgres,
        "postgres_io_manager": PostgresPandasIOManager(
            postgres=postgres, schema_name=os.environ.get("CREDIT_ASSETS_DB_SCHEMA", "public")
        ),
        "mlflow_registry": mlflow_registry,
        # dagster-mlflow: the parent MLflow run of each Dagster run (asset runs nest under it).
        "mlflow": mlflow_parent_run.configured(
            mlflow_config({"env": "CREDIT_ASSETS_MLFLOW_TRACKING_URI"}, mlflow_registry.experiment_name)
        ),
        "retraining_policy": RetrainingPolicyResource(),
    },
)
