"""Scoring: every customer of the month, graded or not, scored by the model in force for that month."""

import os

import pandas as pd
from dagster import AssetDep, AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from credit_assets.assets._common import (
    ONE_MONTH_PER_RUN,
    OWNERS,
    grade_counts,
    markdown_preview,
    month_key,
    partition_month,
)
from credit_assets.assets._retry import DATABASE_RETRY_POLICY, retry_only_transient
from credit_assets.ml.scoring import score_customers
from credit_assets.partitions import model_months
from credit_assets.resources.mlflow import MlflowModelRegistry


class ScoringConfig(Config):
    """How a month is scored."""

    prediction_threads: int = Field(
        default=0,
        ge=0,
        description="Threads a LightGBM model predicts with; 0 = every core this process may use. Models are trained "
        "single-threaded and would otherwise score single-threaded too: on 2 cores, a million customers took "
        "about 105 s with one thread and 60 s with two. Set 1 when several scoring runs share a machine. "
        "CatBoost always predicts on every core.",
    )

    def threads(self) -> int:
        """The thread count to predict with (0 resolved to this machine's cores)."""
        if self.prediction_threads:
            return self.prediction_threads
        if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on (a container's share)
            return len(os.sched_getaffinity(0)) or 1
        return os.cpu_count() or 1


@asset(
    partitions_def=model_months,
    backfill_policy=ONE_MONTH_PER_RUN,
    deps=[AssetDep("champion_model")],
    io_manager_key="postgres_io_manager",
    metadata={"partition_expr": "snapshot_date"},
    group_name="scoring",
    kinds={"postgres", "pandas"},
    owners=OWNERS,
    tags={"stage": "scoring"},
    # Retries a lost PostgreSQL/MLflow connection only; a missing champion or a bad frame fails at once.
    retry_policy=DATABASE_RETRY_POLICY,
)
@retry_only_transient()
def model_inference(
    context: AssetExecutionContext,
    config: ScoringConfig,
    mlflow_registry: MlflowModelRegistry,
    customer_features: pd.DataFrame,
) -> Output[pd.DataFrame]:
    """Predicted grade of every customer of the month (table `model_inference`, one row per customer),
    by the champion in force for that month: the latest version promoted from this month or earlier.
    Re-scoring an old month therefore reproduces what that month's model said, whatever the champion is
    today. Each row records the model version, its MLflow run and the probability of every grade."""
    month = partition_month(context)
    version = mlflow_registry.champion_for_month(month_key(month))
    model = mlflow_registry.load(version)
    scores = score_customers(model, customer_features, threads=config.threads())
    rows = pd.DataFrame(
        {
            "customer_id": scores["customer_id"],
            "snapshot_date": pd.to_datetime(scores["snapshot_date"]).dt.date,
            "predicted_grade": scores["predicted_grade"],
            "prediction_probability": scores["prediction_probability"],
            "model_name": version.name,
            "month_partition": month.strftime("%Y_%m_%d"),
            "model_version": version.version,
            "model_family": version.family,
            "mlflow_run_id": version.run_id,
            "dagster_run_id": context.run.run_id,
            "prob_bad": scores["prob_bad"],
            "prob_good": scores["prob_good"],
            "prob_standard": scores["prob_standard"],
        }
    )
    context.log.info(f"Scored {len(rows)} customers of {month_key(month)} with {version.label}")
    return Output(
        rows,
        metadata={
            "model": version.label,
            "model_version": version.version,
            "model_family": version.family,
            "prediction_threads": config.threads(),
            "champion_from": version.champion_from,
            "mlflow_model": MetadataValue.text(version.uri),
            "mlflow_run": MetadataValue.url(mlflow_registry.run_url(version.run_id)),
            "predicted_grade_counts": grade_counts(rows["predicted_grade"]),
            "preview": markdown_preview(
                rows[["customer_id", "snapshot_date", "predicted_grade", "prediction_probability"]]
            ),
        },
    )
