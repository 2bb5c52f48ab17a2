"""MLflow runs through dagster-mlflow, with its known faults covered: a failed Dagster run leaves its MLflow
runs FAILED (in-process and under the multiprocess executor), a successful one FINISHED, and each asset's
run ends once, after the asset's work (its model version exists before the run's end)."""

from __future__ import annotations

import mlflow
from dagster import DagsterEventType, build_run_status_sensor_context, execute_job, reconstructable

from credit_assets.sensors import mlflow_runs_on_failure, mlflow_runs_on_success
from credit_assets_tests.assets.conftest import SmallWorld, training_config
from credit_assets_tests.assets.multiprocess_job import get_retraining_job_multiprocess

REFUSE = {"ops": {name: {"config": {"min_examples_per_grade": 10**6}} for name in ("lightgbm_model", "catboost_model")}}
FAST = training_config(n_estimators=20, learning_rate=0.1)


def runs_of(world: SmallWorld, dagster_run_id: str) -> dict[str, list]:
    client = mlflow.MlflowClient(world.registry.tracking_uri)
    experiment = world.registry.experiment_id()
    parent = client.search_runs([experiment], filter_string=f"tags.dagster_run_id = '{dagster_run_id}'")
    nested = client.search_runs([experiment], filter_string=f"tags.`dagster.run_id` = '{dagster_run_id}'")
    return {"parent": parent, "nested": nested}


def settle(world: SmallWorld, dagster_run_id: str, sensor) -> None:
    """What the daemon does when the run ends: evaluate the run-status sensor for it."""
    run = world.instance.get_run_by_id(dagster_run_id)
    event_type = DagsterEventType.RUN_SUCCESS if sensor is mlflow_runs_on_success else DagsterEventType.RUN_FAILURE
    [event] = world.instance.all_logs(dagster_run_id, of_type=event_type)
    context = build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=world.instance,
        dagster_run=run,
        dagster_event=event.dagster_event,
        resources={"mlflow_registry": world.registry},
    )
    sensor(context.for_run_failure() if sensor is mlflow_runs_on_failure else context)


def test_a_failed_run_leaves_its_mlflow_runs_failed_in_process(small_world: SmallWorld):
    result = small_world.run("retraining_job", "2024-01-01", REFUSE)
    assert not result.success
    runs = runs_of(small_world, result.run_id)
    assert [r.info.status for r in runs["parent"]] == ["FAILED"]
    # Training was refused before an asset run opened: no asset run, nothing registered.
    assert runs["nested"] == [] and small_world.registry.all_versions() == []


def test_a_failed_run_under_the_multiprocess_executor_ends_failed(small_world: SmallWorld):
    with execute_job(
        reconstructable(get_retraining_job_multiprocess),
        instance=small_world.instance,
        run_config=REFUSE,
        tags={"dagster/partition": "2024-01-01"},
    ) as result:
        assert not result.success
        run_id = result.run_id
    settle(small_world, run_id, mlflow_runs_on_failure)
    runs = runs_of(small_world, run_id)
    # Two steps starting at once in two processes may each create a parent run (dagster-mlflow searches,
    # then creates): the failure sensor settles every run carrying the Dagster run's id.
    assert runs["parent"] and {r.info.status for r in runs["parent"]} == {"FAILED"}
    assert all(r.info.status != "RUNNING" for r in runs["nested"])


def test_a_successful_run_ends_each_mlflow_run_once_after_its_work(small_world: SmallWorld):
    result = small_world.run("retraining_job", "2024-01-01", FAST)
    assert result.success
    settle(small_world, result.run_id, mlflow_runs_on_success)
    runs = runs_of(small_world, result.run_id)
    [parent] = runs["parent"]
    assert parent.info.status == "FINISHED"
    by_run = {v.run_id: v for v in small_world.registry.all_versions()}
    assert {r.data.tags["model_family"] for r in runs["nested"]} == {"lightgbm", "catboost"}
    client = mlflow.MlflowClient(small_world.registry.tracking_uri)
    for run in runs["nested"]:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        model_name = small_world.registry.registered_model_name
        version = client.get_model_version(model_name, str(by_run[run.info.run_id].version))
        assert run.info.end_time >= version.creation_timestamp  # ended after the model was registered
        assert run.data.tags["dagster.partition"] == "2024-01-01"
        assert run.data.tags["dagster.asset_key"] in {"lightgbm_model", "catboost_model"}
    assert parent.info.end_time >= max(r.info.end_time for r in runs["nested"])


def test_training_restores_a_deleted_experiment_instead_of_logging_elsewhere(small_world: SmallWorld):
    client = mlflow.MlflowClient(small_world.registry.tracking_uri)
    experiment_id = small_world.registry.experiment_id()
    client.delete_experiment(experiment_id)
    result = small_world.run("retraining_job", "2024-02-01", FAST)
    assert result.success
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    assert runs_of(small_world, result.run_id)["nested"]
    default = client.get_experiment_by_name("Default")
    assert default is None or not client.search_runs([default.experiment_id])
