"""Issue 4, kind 3: MLflow state the pipeline does not expect (real MLflow stores in a temp dir).

A soft-deleted experiment is restored and used (never MLflow's Default experiment), through the resource
and through the training asset; scoring before any promotion fails with the NoChampionError message, at
once (no retries), and leaves the table as it was; a registry version or artifacts that vanished are named.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest

from credit_assets.resources.mlflow import MlflowModelRegistry, NoChampionError, RegistryStateError
from credit_assets_tests.hardening.conftest import (
    MODEL_MONTH,
    Pipeline,
    retries,
    step_failures,
    tables_state,
)

DEFAULT_EXPERIMENT_ID = "0"


def runs_in(registry: MlflowModelRegistry, experiment_id: str) -> list[mlflow.entities.Run]:
    return registry.client.search_runs([experiment_id], run_view_type=3)


def test_soft_deleted_experiment_is_restored_and_used(tmp_path: Path) -> None:
    registry = MlflowModelRegistry(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=str(tmp_path / "artifacts")
    )
    experiment_id = registry.experiment_id()
    registry.client.delete_experiment(experiment_id)
    assert registry.client.get_experiment(experiment_id).lifecycle_stage == "deleted"

    with registry.start_run("after_delete", {"purpose": "test"}) as run:
        mlflow.log_param("family", "lightgbm")

    assert run.info.experiment_id == experiment_id
    assert registry.client.get_experiment(experiment_id).lifecycle_stage == "active"
    assert [r.info.run_id for r in runs_in(registry, experiment_id)] == [run.info.run_id]
    assert runs_in(registry, DEFAULT_EXPERIMENT_ID) == []
    assert registry.experiment_id() == experiment_id  # restored once, not re-created


def test_an_empty_experiment_name_is_refused() -> None:
    with pytest.raises(ValueError, match="Default experiment"):
        MlflowModelRegistry(tracking_uri="sqlite:///unused.db", experiment_name="  ")


@pytest.fixture(scope="module")
def trained_after_delete(pipeline: Pipeline) -> tuple[str, object]:
    """A fresh store whose experiment was deleted before the training asset ran (no promotion)."""
    tracking_uri = pipeline.new_tracking_uri()
    registry = MlflowModelRegistry(tracking_uri=tracking_uri, artifact_location=str(pipeline.root / "deleted_art"))
    registry.client.delete_experiment(registry.experiment_id())
    result = pipeline.run(
        "retraining_job",
        MODEL_MONTH,
        tracking_uri=tracking_uri,
        assets=["lightgbm_model"],
        run_config={"ops": {"lightgbm_model": {"config": {"n_estimators": 10}}}},
    )
    return tracking_uri, result


def test_training_asset_restores_a_deleted_experiment_and_never_logs_into_default(trained_after_delete) -> None:
    tracking_uri, result = trained_after_delete
    assert result.success
    registry = MlflowModelRegistry(tracking_uri=tracking_uri)
    experiment = registry.client.get_experiment_by_name("assignment2")
    assert experiment.lifecycle_stage == "active"
    [version] = registry.all_versions()
    assert registry.client.get_run(version.run_id).info.experiment_id == experiment.experiment_id
    assert runs_in(registry, DEFAULT_EXPERIMENT_ID) == []


def test_scoring_before_any_promotion_fails_with_the_no_champion_message(
    pipeline: Pipeline, trained_after_delete
) -> None:
    """Two registries without a champion: an empty store, and one with a registered but unpromoted version."""
    trained_store, _ = trained_after_delete
    for tracking_uri in (pipeline.new_tracking_uri(), trained_store):
        before = tables_state(pipeline.database_url)
        result = pipeline.run("scoring_job", MODEL_MONTH, tracking_uri=tracking_uri, raise_on_error=False)

        assert not result.success
        failures = step_failures(result)
        assert "model_inference" in failures
        message = failures["model_inference"]
        assert "NoChampionError: No champion of registered model 'credit_grade_model' is in force for 2024-01-01" in (
            message
        )
        assert "materialize lightgbm_model, catboost_model, challenger_model and champion_model" in message
        assert "MlflowException" not in message and "RESOURCE_DOES_NOT_EXIST" not in message
        assert retries(result) == []  # a missing champion does not heal by waiting
        assert tables_state(pipeline.database_url) == before


def test_champion_for_month_before_the_first_promotion_raises(trained_after_delete) -> None:
    tracking_uri, _ = trained_after_delete
    with pytest.raises(NoChampionError, match="train and promote"):
        MlflowModelRegistry(tracking_uri=tracking_uri).champion_for_month("2024-06-01")
    assert MlflowModelRegistry(tracking_uri=tracking_uri).current_champion() is None


def test_a_version_missing_from_the_registry_is_named(pipeline: Pipeline) -> None:
    with pytest.raises(RegistryStateError, match="Version 999 of registered model 'credit_grade_model'"):
        pipeline.registry().get_version(999)


def test_a_version_whose_artifacts_vanished_is_named(trained_after_delete) -> None:
    tracking_uri, _ = trained_after_delete
    registry = MlflowModelRegistry(tracking_uri=tracking_uri)
    [version] = registry.all_versions()
    # The experiment's artifact root holds both the run's files and (MLflow 3) the logged model's.
    experiment = registry.client.get_experiment(registry.client.get_run(version.run_id).info.experiment_id)
    shutil.rmtree(Path(urlparse(experiment.artifact_location).path))
    with pytest.raises(RegistryStateError, match=rf"Cannot load .* v{version.version} "):
        registry.load(version)
    with pytest.raises(RegistryStateError, match="holdout_metrics.json"):
        registry.holdout_metrics(version)
