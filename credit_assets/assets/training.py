"""Training: one LightGBM and one CatBoost model per model month, logged and registered in MLflow.

Model month M learns from the graded customers of the 12 months before M. The last of those months is
held out (out-of-time, never a random split), and both families are measured on exactly that month, so
challenger selection compares like with like.
"""

from dataclasses import dataclass
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    Config,
    MetadataValue,
    Output,
    ResourceParam,
    asset,
)
from dagster_mlflow.resources import MlFlow
from mlflow import log_dict, log_metrics, log_params
from pydantic import Field

from credit_assets.assets._common import (
    ONE_MONTH_PER_RUN,
    OWNERS,
    grade_counts,
    metrics_markdown,
    month_key,
    partition_month,
)
from credit_assets.ml.drift import feature_profile
from credit_assets.ml.metrics import classification_metrics
from credit_assets.ml.models import check_training_data, train_model
from credit_assets.ml.schema import GRADE
from credit_assets.ml.split import time_split, training_window
from credit_assets.partitions import TRAINING_WINDOW_MONTHS, model_months
from credit_assets.partitions import training_window as window_mapping
from credit_assets.resources.mlflow import MlflowModelRegistry, RegisteredModelVersion

METRIC_COLUMNS = ("accuracy", "precision", "recall", "auc", "macro_f1", "weighted_f1", "total_samples")


@dataclass(frozen=True)
class TrainedModel:
    """What a training materialization produced: the registered version and its held-out scores."""

    version: RegisteredModelVersion
    trained_for_month: str
    holdout_month: str
    train_rows: int
    holdout_metrics: dict[str, Any]


class TrainingConfig(Config):
    """Knobs of one training run."""

    min_examples_per_grade: int = Field(
        default=20,
        description="Refuse to train (nothing is registered) when a grade has fewer graded examples than this "
        "in the training months: a model that never saw a grade cannot predict it.",
    )
    n_estimators: int = Field(default=300, description="Boosting rounds (LightGBM n_estimators, CatBoost iterations).")
    learning_rate: float = Field(default=0.05, description="Boosting learning rate.")


def _model_asset(family: str, display: str) -> AssetsDefinition:
    @asset(
        name=f"{family}_model",
        description=(
            f"A {display} credit-grade model for use from this month on, trained on the graded customers of "
            f"the {TRAINING_WINDOW_MONTHS} months before it (the last one held out for testing). Each "
            "materialization is one MLflow run and one new registered model version (a challenger until "
            "champion_model promotes it)."
        ),
        partitions_def=model_months,
        backfill_policy=ONE_MONTH_PER_RUN,
        ins={"customer_features": AssetIn(partition_mapping=window_mapping)},
        group_name="training",
        kinds={family, "mlflow"},
        owners=OWNERS,
        tags={"stage": "training"},
    )
    def _train(
        context: AssetExecutionContext,
        config: TrainingConfig,
        mlflow_registry: MlflowModelRegistry,
        mlflow: ResourceParam[MlFlow],
        customer_features: dict[str, pd.DataFrame],
    ) -> Output[TrainedModel]:
        month = partition_month(context)
        first, last = training_window(month, TRAINING_WINDOW_MONTHS)
        frame = pd.concat(customer_features.values(), ignore_index=True)
        train, holdout = time_split(frame, holdout_month=last)
        # Refused before this asset's MLflow run opens: a window that cannot support a model (a grade below
        # min_examples_per_grade) leaves no run, no params and no registered version behind.
        check_training_data(family, train, config.min_examples_per_grade)
        params = {"n_estimators": config.n_estimators, "learning_rate": config.learning_rate}
        # "dagster.*" rather than dagster-mlflow's "dagster_run_id", which marks the parent run only.
        tags = {
            "dagster.run_id": context.run.run_id,
            "dagster.asset_key": context.asset_key.to_user_string(),
            "dagster.partition": context.partition_key,
            "model_family": family,
        }
        # `mlflow` (dagster-mlflow) holds the Dagster run's parent MLflow run; this asset's run nests under it.
        with mlflow_registry.start_run(run_name=f"{family}_{context.partition_key}", tags=tags) as run:
            log_params(
                {
                    **params,
                    "family": family,
                    "min_examples_per_grade": config.min_examples_per_grade,
                    "window_months": f"{first.isoformat()}..{last.isoformat()}",
                    "holdout_month": last.isoformat(),
                    "train_rows": len(train),
                    "holdout_rows": len(holdout),
                }
            )
            model = train_model(family, train, params=params, min_examples_per_grade=config.min_examples_per_grade)
            metrics = classification_metrics(holdout[GRADE], model.predict_proba(holdout))
            log_metrics({f"holdout_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
            log_dict(metrics, "holdout_metrics.json")
            # The reference the monitoring stage measures drift against.
            log_dict(feature_profile(train), "feature_profile.json")
            version = mlflow_registry.log_and_register(model, trained_for_month=month_key(month), tags=tags)
            run_id = run.info.run_id
        trained = TrainedModel(
            version=version,
            trained_for_month=month_key(month),
            holdout_month=month_key(last),
            train_rows=len(train),
            holdout_metrics=metrics,
        )
        context.log.info(f"Registered {version.label}: holdout macro F1 {metrics['macro_f1']:.4f}")
        return Output(
            trained,
            metadata={
                "model_version": version.version,
                "registered_model": version.name,
                "mlflow_run_id": run_id,
                "mlflow_run": MetadataValue.url(mlflow_registry.run_url(run_id)),
                "train_months": f"{first.isoformat()} .. {last.isoformat()}",
                "holdout_month": month_key(last),
                "train_rows": len(train),
                "holdout_rows": len(holdout),
                "train_grade_counts": grade_counts(train[GRADE]),
                "holdout_macro_f1": metrics["macro_f1"],
                "holdout_metrics": metrics_markdown([metrics], METRIC_COLUMNS),
            },
        )

    return _train


lightgbm_model = _model_asset("lightgbm", "LightGBM")
catboost_model = _model_asset("catboost", "CatBoost")
