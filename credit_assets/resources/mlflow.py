"""MLflow tracking and model registry, as one typed Dagster resource.

Every training materialization is one MLflow run in the experiment (``assignment2`` by default) and one
new version of one registered model (``credit_grade_model`` by default) holding both model families; the
version's tags say which family it is and which month it was trained for. The registry alias ``champion``
points at the version in force for the newest month, and each promoted version carries the tag
``champion_from`` = the first month it is in force for. That history, not "the newest file", answers
"which model scored month M?", so re-scoring an old month reproduces what that month's model said.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from dagster import ConfigurableResource
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from pydantic import Field, field_validator

from credit_assets.ml.models import CreditGradeModel, load_model, save_model
from credit_assets.resources.postgres import redact_url

CHAMPION_ALIAS = "champion"
TAG_FAMILY = "model_family"
TAG_TRAINED_FOR = "trained_for_month"
TAG_CHAMPION_FROM = "champion_from"

# Logging the model with explicit requirements skips MLflow's dependency inference, which imports the
# model in a subprocess (measured: log_model 3.8 s -> about 1 s).
_MODEL_PIP_REQUIREMENTS = (
    "lightgbm==4.7.0",
    "catboost==1.2.10",
    "scikit-learn==1.7.2",
    "pandas==2.3.3",
    "numpy==2.3.5",
)


# A registered model name goes into registry filter strings (``name = '...'``): letters, digits and
# ``_ . -`` only, so a quote can neither break the filter nor widen it to other models.
REGISTERED_MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,255}$")


class NoChampionError(LookupError):
    """No model version is in force for the month asked about."""


class RegistryStateError(LookupError):
    """The registry or tracking store does not hold what the pipeline needs; the message says how to fix it."""


@dataclass(frozen=True)
class RegisteredModelVersion:
    """One version of the registered model, with the tags that place it in time."""

    name: str
    version: int
    run_id: str
    family: str
    trained_for_month: str
    champion_from: str | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.family}, trained for {self.trained_for_month})"


class CreditGradePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper: ``predict`` returns one probability column per grade."""

    # MLflow 3 would turn predict's type hints into an input check (and warn that it cannot check a
    # DataFrame of mixed features); the model's own encoder validates its input against the training schema.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.model = load_model(Path(context.artifacts["credit_grade_model"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.model.predict_proba(model_input)


class MlflowModelRegistry(ConfigurableResource):
    """MLflow tracking server and model registry where the credit-grade models are logged and promoted."""

    tracking_uri: str = Field(description="MLflow tracking URI, e.g. sqlite:///.state/mlflow.db or http://mlflow:5000.")
    artifact_location: str | None = Field(
        default=None,
        description=(
            "Where a newly created experiment stores artifacts. Set it for a local SQLite store, or MLflow "
            "writes to ./mlruns of whatever directory the process runs in."
        ),
    )
    experiment_name: str = Field(default="assignment2", description="Experiment that holds every run.")
    registered_model_name: str = Field(
        default="credit_grade_model", description="Registered model holding the versions of both families."
    )
    ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="Address of the MLflow UI, for the run links in materialization metadata.",
    )

    @field_validator("registered_model_name")
    @classmethod
    def _registered_model_name_is_plain(cls, value: str) -> str:
        if not REGISTERED_MODEL_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"registered_model_name {value!r} is not allowed: use letters, digits, '_', '.' and '-' "
                "(it is used inside registry search filters, where a quote would change the query)"
            )
        return value

    @field_validator("experiment_name")
    @classmethod
    def _experiment_name_is_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("experiment_name is empty: runs would land in MLflow's Default experiment")
        return value

    @cached_property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # -- experiment and runs -------------------------------------------------------------------------

    def experiment_id(self) -> str:
        """The experiment's id; created if missing, restored if it was deleted in the UI.

        Never falls back to MLflow's Default experiment: a run logged there is a run nobody finds.
        """
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            try:
                return self.client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location
                )
            except MlflowException:
                # Another process created it between our lookup and our create: use theirs.
                experiment = self.client.get_experiment_by_name(self.experiment_name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            try:
                self.client.restore_experiment(experiment.experiment_id)
            except MlflowException as exc:
                raise RegistryStateError(
                    f"MLflow experiment {self.experiment_name!r} (id {experiment.experiment_id}) is deleted and "
                    f"could not be restored ({exc.message}). Restore it in the MLflow UI or with "
                    f"`mlflow experiments restore --experiment-id {experiment.experiment_id}`, or configure "
                    "another experiment_name. Nothing was logged to the Default experiment."
                ) from None
            restored = self.client.get_experiment(experiment.experiment_id)
            if restored.lifecycle_stage != "active":
                raise RegistryStateError(
                    f"MLflow experiment {self.experiment_name!r} (id {experiment.experiment_id}) is still "
                    f"{restored.lifecycle_stage!r} after a restore; restore it by hand before training."
                )
        return experiment.experiment_id

    @contextmanager
    def start_run(self, run_name: str, tags: Mapping[str, str]) -> Iterator[mlflow.ActiveRun]:
        """Open an MLflow run for one asset's work; it ends exactly once, FINISHED or FAILED.

        Runs opened inside another active run (e.g. a Dagster run's parent run) are nested under it.
        """
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        experiment_id = self.experiment_id()
        nested = mlflow.active_run() is not None
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, tags=dict(tags), nested=nested
        ) as run:
            yield run

    def run_url(self, run_id: str) -> str:
        """Link to a run in the MLflow UI."""
        return f"{self.ui_url.rstrip('/')}/{self.run_url_path(run_id)}"

    def run_url_path(self, run_id: str) -> str:
        """Path of a run inside the MLflow UI (prefix with the UI's address)."""
        run = self.client.get_run(run_id)
        return f"#/experiments/{run.info.experiment_id}/runs/{run_id}"

    # -- models --------------------------------------------------------------------------------------

    def log_and_register(
        self, model: CreditGradeModel, *, trained_for_month: str, tags: Mapping[str, str]
    ) -> RegisteredModelVersion:
        """Log ``model`` to the active run and register it as a new version (a challenger, no alias)."""
        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("log_and_register must be called inside MlflowModelRegistry.start_run()")
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "credit_grade_model"
            save_model(model, model_dir)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=CreditGradePyfunc(),
                artifacts={"credit_grade_model": str(model_dir)},
                pip_requirements=list(_MODEL_PIP_REQUIREMENTS),
                registered_model_name=self.registered_model_name,
            )
        version = str(info.registered_model_version)
        version_tags = {**tags, TAG_FAMILY: model.family, TAG_TRAINED_FOR: trained_for_month}
        for key, value in version_tags.items():
            self.client.set_model_version_tag(self.registered_model_name, version, key, str(value))
        return self.get_version(int(version))

    def get_version(self, version: int) -> RegisteredModelVersion:
        """One version of the registered model; RegistryStateError if the registry no longer has it."""
        try:
            mv = self.client.get_model_version(self.registered_model_name, str(version))
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise
            raise RegistryStateError(
                f"Version {version} of registered model {self.registered_model_name!r} is not in the registry "
                f"at {redact_url(self.tracking_uri)!r} (deleted, or another tracking store). Re-score the month with a "
                "registered version (materialize model_inference) or restore the version."
            ) from None
        return self._to_registered(mv)

    def load(self, version: RegisteredModelVersion) -> CreditGradeModel:
        """Load a registered version as the pure-Python model it was trained as."""
        mlflow.set_registry_uri(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            pyfunc = mlflow.pyfunc.load_model(version.uri)
        except (MlflowException, OSError) as exc:
            raise RegistryStateError(
                f"Cannot load {version.label} from {version.uri} (run {version.run_id}): "
                f"{getattr(exc, 'message', exc)}. Its artifacts are missing or unreadable: check the "
                "artifact store, or retrain and promote a new version."
            ) from exc
        return pyfunc.unwrap_python_model().model

    def all_versions(self) -> list[RegisteredModelVersion]:
        """Every version of the registered model (empty when the model was never registered)."""
        versions = self.client.search_model_versions(
            f"name = '{self.registered_model_name}'", max_results=10_000
        )
        return sorted((self._to_registered(mv) for mv in versions), key=lambda v: v.version)

    # -- champion ------------------------------------------------------------------------------------

    def current_champion(self) -> RegisteredModelVersion | None:
        """The version the ``champion`` alias points at, or None before the first promotion."""
        try:
            mv = self.client.get_model_version_by_alias(self.registered_model_name, CHAMPION_ALIAS)
        except MlflowException as exc:
            if _is_not_found(exc):
                return None
            raise
        return self._to_registered(mv)

    def champion_for_month(self, month: str) -> RegisteredModelVersion:
        """The champion in force for ``month``: the latest promotion whose ``champion_from`` <= month."""
        promoted = [v for v in self.all_versions() if v.champion_from and v.champion_from <= month]
        if not promoted:
            raise NoChampionError(
                f"No champion of registered model {self.registered_model_name!r} is in force for {month}: "
                f"train and promote a model for {month} or an earlier month first "
                "(materialize lightgbm_model, catboost_model, challenger_model and champion_model)."
            )
        return max(promoted, key=lambda v: (v.champion_from, v.version))

    def latest_by_family(self, month: str) -> dict[str, RegisteredModelVersion]:
        """For each family, its newest version trained for ``month`` or earlier."""
        latest: dict[str, RegisteredModelVersion] = {}
        for v in self.all_versions():
            if v.trained_for_month <= month:
                current = latest.get(v.family)
                if current is None or (v.trained_for_month, v.version) > (current.trained_for_month, current.version):
                    latest[v.family] = v
        return latest

    def promote(self, version: RegisteredModelVersion, from_month: str) -> None:
        """Point ``champion`` at ``version`` and record the month it is in force from."""
        self.client.set_model_version_tag(
            self.registered_model_name, str(version.version), TAG_CHAMPION_FROM, from_month
        )
        self.client.set_registered_model_alias(self.registered_model_name, CHAMPION_ALIAS, str(version.version))

    def _to_registered(self, mv: Any) -> RegisteredModelVersion:
        tags = mv.tags or {}
        return RegisteredModelVersion(
            name=mv.name,
            version=int(mv.version),
            run_id=mv.run_id,
            family=tags.get(TAG_FAMILY, "unknown"),
            trained_for_month=tags.get(TAG_TRAINED_FOR, ""),
            champion_from=tags.get(TAG_CHAMPION_FROM),
        )

    # -- evaluations ---------------------------------------------------------------------------------

    def holdout_metrics(self, version: RegisteredModelVersion) -> dict[str, Any]:
        """The held-out test metrics logged by the run that trained ``version``."""
        return self._run_dict(version, "holdout_metrics.json")

    def feature_profile(self, version: RegisteredModelVersion) -> dict[str, Any]:
        """The feature distribution profile of the data ``version`` was trained on (drift reference)."""
        return self._run_dict(version, "feature_profile.json")

    def _run_dict(self, version: RegisteredModelVersion, artifact: str) -> dict[str, Any]:
        mlflow.set_tracking_uri(self.tracking_uri)
        uri = f"runs:/{version.run_id}/{artifact}"
        try:
            return mlflow.artifacts.load_dict(uri)
        except (MlflowException, OSError) as exc:
            raise RegistryStateError(
                f"Cannot read {artifact} of {version.label} ({uri}): {getattr(exc, 'message', exc)}. "
                "The training run or its artifacts are missing: retrain the model month."
            ) from exc

    def log_evaluation(
        self, version: RegisteredModelVersion, month: str, metrics: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        """Log one monthly monitoring evaluation of ``version`` as its own run, linked to the version."""
        run_tags = {
            **tags,
            "evaluation_kind": "monitoring",
            "evaluated_month": month,
            "registered_model_name": version.name,
            "model_version": str(version.version),
            "model_family": version.family,
            "model_run_id": version.run_id,
        }
        with self.start_run(run_name=f"monitoring_{month}_v{version.version}", tags=run_tags) as run:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
            mlflow.log_dict(dict(metrics), "monitoring_metrics.json")
            return run.info.run_id


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST) or "not found" in str(exc).lower()
