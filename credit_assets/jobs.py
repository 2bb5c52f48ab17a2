"""Jobs: the three monthly stages, each backfillable over any month range.

They are separate because their months differ (data starts a year before the first model month) and
because retraining is requested on its own, by the sensor or by hand, while data and scoring run
every month. Each run handles one month in one process (in-process executor: the steps are short and
share heavy imports, so a process per step would cost more than the work).
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor
from dagster_mlflow import end_mlflow_on_run_finished

DATA_ASSETS = AssetSelection.groups("ingestion", "features")
RETRAINING_ASSETS = AssetSelection.groups("training")
SCORING_ASSETS = AssetSelection.groups("scoring", "monitoring")

monthly_data_job = define_asset_job(
    name="monthly_data_job",
    description="Ingest the month's four source files and build its feature frame.",
    selection=DATA_ASSETS,
    executor_def=in_process_executor,
    tags={"credit_assets/stage": "data"},
)

retraining_job = define_asset_job(
    name="retraining_job",
    description=(
        "Train LightGBM and CatBoost for the month, pick the better as challenger and promote it to champion "
        "if it beats the champion on the same held-out month (blocking check). A run whose challenger loses "
        "ends failed at the gate, by design: the new versions stay registered challengers."
    ),
    selection=RETRAINING_ASSETS,
    executor_def=in_process_executor,
    hooks={end_mlflow_on_run_finished},
    # Promotions must happen in month order: the run queue lets one retraining run go at a time.
    tags={"credit_assets/stage": "retraining"},
)

scoring_job = define_asset_job(
    name="scoring_job",
    description="Score every customer of the month with the model in force and measure every model on it.",
    selection=SCORING_ASSETS,
    executor_def=in_process_executor,
    hooks={end_mlflow_on_run_finished},
    tags={"credit_assets/stage": "scoring"},
)
