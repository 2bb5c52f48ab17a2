"""Monitoring: every model in force measured on the month's graded customers, plus the held-out test
scores of the models trained for the month, one row per (month, model version, evaluation kind)."""

from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Output, ResourceParam, asset
from dagster_mlflow.resources import MlFlow

from credit_assets.assets._common import (
    ONE_MONTH_PER_RUN,
    OWNERS,
    metrics_markdown,
    month_key,
    partition_month,
)
from credit_assets.assets._retry import DATABASE_RETRY_POLICY, retry_only_transient
from credit_assets.assets.scoring import ScoringConfig
from credit_assets.ml.drift import distribution_psi, feature_psi
from credit_assets.ml.metrics import METRIC_KEYS, classification_metrics
from credit_assets.ml.schema import CUSTOMER_ID, GRADE, GRADES
from credit_assets.ml.scoring import prediction_threads
from credit_assets.partitions import model_months
from credit_assets.resources.mlflow import MlflowModelRegistry, RegisteredModelVersion

PROBABILITY_COLUMNS = {grade: f"prob_{grade.lower()}" for grade in GRADES}
TABLE_COLUMNS = (
    "month_date",
    "model_name",
    "model_version",
    "model_family",
    "model_role",
    "evaluation_kind",
    "evaluated_month",
    *METRIC_KEYS,
    "mlflow_run_id",
    "dagster_run_id",
    "prediction_psi",
    "feature_psi",
)
# What monitoring reads of the month's stored predictions (the IO manager selects only these columns).
INFERENCE_COLUMNS = ("customer_id", "model_version", "predicted_grade", *PROBABILITY_COLUMNS.values())


def _row(
    month: str,
    version: RegisteredModelVersion,
    role: str,
    kind: str,
    evaluated_month: str,
    metrics: dict[str, Any],
    mlflow_run_id: str,
    dagster_run_id: str,
) -> dict[str, Any]:
    return {
        "month_date": month,
        "model_name": version.name,
        "model_version": version.version,
        "model_family": version.family,
        "model_role": role,
        "evaluation_kind": kind,
        "evaluated_month": pd.Timestamp(evaluated_month).date(),
        **{key: metrics[key] for key in METRIC_KEYS},
        "mlflow_run_id": mlflow_run_id,
        "dagster_run_id": dagster_run_id,
        "prediction_psi": None,
        "feature_psi": None,
    }


def _champion_drift(
    registry: MlflowModelRegistry,
    champion: RegisteredModelVersion,
    model_inference: pd.DataFrame,
    customer_features: pd.DataFrame,
) -> dict[str, Any]:
    """How far the month moved from the champion's own reference: its held-out prediction distribution
    (PSI over the month's predicted grades, every customer) and its training profile of key features."""
    reference = registry.holdout_metrics(champion)["predictions_distribution"]
    predicted = model_inference["predicted_grade"].value_counts().to_dict()
    prediction_psi = distribution_psi(reference, {g: float(predicted.get(g, 0)) for g in GRADES})
    psis = feature_psi(registry.feature_profile(champion), customer_features)
    return {
        "prediction_psi": prediction_psi,
        "feature_psi": psis,
        "metrics": {"prediction_psi": prediction_psi, **{f"psi_{k}": v for k, v in psis.items()}},
    }


@asset(
    partitions_def=model_months,
    backfill_policy=ONE_MONTH_PER_RUN,
    io_manager_key="postgres_io_manager",
    metadata={"partition_expr": "month_date"},
    ins={"model_inference": AssetIn(metadata={"columns": list(INFERENCE_COLUMNS)})},
    group_name="monitoring",
    kinds={"postgres", "mlflow"},
    owners=OWNERS,
    tags={"stage": "monitoring"},
    # Retries a lost PostgreSQL/MLflow connection only; an inconsistent month fails at once.
    retry_policy=DATABASE_RETRY_POLICY,
)
@retry_only_transient()
def model_metrics(
    context: AssetExecutionContext,
    config: ScoringConfig,
    mlflow_registry: MlflowModelRegistry,
    mlflow: ResourceParam[MlFlow],
    model_inference: pd.DataFrame,
    customer_features: pd.DataFrame,
) -> Output[pd.DataFrame]:
    """Table `model_metrics` for the month: accuracy, weighted precision/recall, one-vs-rest AUC (NULL
    when the month has a single grade), macro and weighted F1, F1 per grade and the prediction
    distribution. Rows of kind `monitoring` measure the champion that scored the month (from the stored
    predictions) and the newest model of each other family in force (in shadow) on the month's graded
    customers; each is also logged to MLflow as a run linked to the model version. Rows of kind
    `holdout_test` are the out-of-time test scores of the models trained for this month."""
    month = month_key(partition_month(context))
    tags = {"dagster.run_id": context.run.run_id, "dagster.partition": context.partition_key}
    graded = customer_features.loc[customer_features[GRADE].notna(), [CUSTOMER_ID, GRADE]]
    rows: list[dict[str, Any]] = []

    if graded.empty:
        context.log.warning(f"{month} has no graded customer: no monitoring row is written for it")
    else:
        scored = graded.merge(model_inference, left_on=CUSTOMER_ID, right_on="customer_id", how="left")
        if scored["model_version"].isna().any():
            missing = scored.loc[scored["model_version"].isna(), CUSTOMER_ID].head(5).tolist()
            raise ValueError(
                f"model_inference for {month} lacks graded customers (e.g. {missing}); "
                "re-materialize model_inference for this month first"
            )
        versions = scored["model_version"].astype(int).unique()
        if len(versions) != 1:
            raise ValueError(f"model_inference for {month} mixes model versions {sorted(versions)}")
        champion = mlflow_registry.get_version(int(versions[0]))
        proba = scored[list(PROBABILITY_COLUMNS.values())].astype(float)
        proba.columns = list(GRADES)
        champion_metrics = classification_metrics(scored[GRADE], proba)
        drift = _champion_drift(mlflow_registry, champion, model_inference, customer_features)
        run_id = mlflow_registry.log_evaluation(champion, month, {**champion_metrics, **drift["metrics"]}, tags)
        row = _row(month, champion, "champion", "monitoring", month, champion_metrics, run_id, context.run.run_id)
        rows.append({**row, "prediction_psi": drift["prediction_psi"], "feature_psi": drift["feature_psi"]})

        features = customer_features[customer_features[GRADE].notna()]
        # One monitoring row per model family: the champion speaks for its own family, the newest model of
        # each other family in force is measured in shadow. Retraining more versions never adds rows.
        for shadow in mlflow_registry.latest_by_family(month).values():
            if shadow.family == champion.family:
                continue
            with prediction_threads(mlflow_registry.load(shadow), config.threads()) as shadow_model:
                metrics = classification_metrics(features[GRADE], shadow_model.predict_proba(features))
            run_id = mlflow_registry.log_evaluation(shadow, month, metrics, tags)
            rows.append(_row(month, shadow, "challenger", "monitoring", month, metrics, run_id, context.run.run_id))

    trained_here = [v for v in mlflow_registry.latest_by_family(month).values() if v.trained_for_month == month]
    for version in trained_here:
        metrics = mlflow_registry.holdout_metrics(version)
        role = "champion" if version.champion_from == month else "challenger"
        holdout = (pd.Timestamp(month) - pd.DateOffset(months=1)).date().isoformat()
        rows.append(_row(month, version, role, "holdout_test", holdout, metrics, version.run_id, context.run.run_id))

    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return Output(
        frame,
        metadata={
            "graded_customers": len(graded),
            "monitoring": (
                f"no graded customer in {month}: no monitoring row written"
                if graded.empty
                else f"measured on {len(graded)} graded customers"
            ),
            "monitoring_rows": int((frame["evaluation_kind"] == "monitoring").sum()),
            "holdout_test_rows": int((frame["evaluation_kind"] == "holdout_test").sum()),
            "champion_macro_f1": next(
                (r["macro_f1"] for r in rows if r["model_role"] == "champion" and r["evaluation_kind"] == "monitoring"),
                None,
            ),
            "prediction_psi": next((r["prediction_psi"] for r in rows if r["prediction_psi"] is not None), None),
            "metrics": metrics_markdown(
                rows,
                (
                    "model_version",
                    "model_family",
                    "model_role",
                    "evaluation_kind",
                    "accuracy",
                    "macro_f1",
                    "auc",
                    "total_samples",
                ),
            ),
        },
    )
