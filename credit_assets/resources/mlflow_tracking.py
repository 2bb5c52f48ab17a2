"""One MLflow parent run per Dagster run, through dagster-mlflow, with its known faults closed.

dagster-mlflow's ``MlFlow`` finds or starts the parent run of the Dagster run (tag ``dagster_run_id``)
in every process that executes a step, and its ``end_mlflow_on_run_finished`` hook ends it. Each asset
then logs into a run of its own, nested under that parent and ended by ``MlflowModelRegistry.start_run``
(FINISHED or FAILED) right after the asset's work. Two faults of dagster-mlflow are covered here:

* it creates the experiment with ``mlflow.set_experiment``: no artifact location (artifacts land in
  ``./mlruns`` of whatever directory the process runs in) and an error for a deleted experiment. The
  experiment is therefore made (or restored) by ``MlflowModelRegistry.experiment_id()`` first;
* under the multiprocess executor a failed Dagster run was recorded FINISHED in MLflow, and a parent run
  ended by the hook too early is reopened by a later step and left RUNNING. The run-status sensors in
  ``sensors.py`` settle the parent run from the Dagster run's final status with ``settle_parent_run``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import mlflow
from dagster import InitResourceContext, resource
from dagster._utils.warnings import BetaWarning
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow
from mlflow.entities import RunStatus

from credit_assets.resources.mlflow import MlflowModelRegistry

# Tag dagster-mlflow puts on the parent run (and searches for); the assets' own runs use "dagster.run_id"
# so that search never mistakes an asset's run for the parent.
PARENT_TAG = "dagster_run_id"
ASSET_RUN_TAG = "dagster.run_id"


@resource(
    config_schema=CONFIG_SCHEMA,
    required_resource_keys={"mlflow_registry"},
    description="dagster-mlflow's parent MLflow run of the Dagster run; asset runs are nested under it.",
)
def mlflow_parent_run(context: InitResourceContext) -> Iterator[MlFlow]:
    registry: MlflowModelRegistry = context.resources.mlflow_registry
    registry.experiment_id()  # created with its artifact location, or restored, before dagster-mlflow looks
    with warnings.catch_warnings():
        # dagster-mlflow marks MlFlow beta; the pinned version's behaviour is what the tests cover.
        warnings.filterwarnings("ignore", category=BetaWarning)
        tracking = MlFlow(context)
    yield tracking
    tracking.cleanup_on_error()


def settle_parent_run(tracking_uri: str, experiment_id: str, dagster_run_id: str, succeeded: bool) -> list[str]:
    """Give the MLflow runs of a finished Dagster run their final status; return the ids changed.

    The parent run gets FINISHED or FAILED as the Dagster run ended. An asset's nested run still RUNNING
    (its process was killed) becomes FAILED; a nested run that already ended keeps its status.
    """
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    changed: list[str] = []
    parents = client.search_runs([experiment_id], filter_string=f"tags.{PARENT_TAG} = '{dagster_run_id}'")
    for run in parents:
        target = RunStatus.to_string(RunStatus.FINISHED if succeeded else RunStatus.FAILED)
        if run.info.status != target:
            client.set_terminated(run.info.run_id, status=target)
            changed.append(run.info.run_id)
    nested = client.search_runs([experiment_id], filter_string=f"tags.`{ASSET_RUN_TAG}` = '{dagster_run_id}'")
    for run in nested:
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.FAILED))
            changed.append(run.info.run_id)
    return changed


def mlflow_config(tracking_uri: Any, experiment_name: str) -> dict[str, Any]:
    """Config of ``mlflow_parent_run`` for a tracking URI (plain or ``{"env": VAR}``) and experiment."""
    return {"experiment_name": experiment_name, "mlflow_tracking_uri": tracking_uri}
