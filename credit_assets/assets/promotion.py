"""Champion/challenger: the better new model challenges the champion on the same held-out month, and
the ``champion`` alias moves only when the challenger wins (gated by a blocking asset check)."""

from dataclasses import dataclass
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output, asset

from credit_assets.assets._common import (
    ONE_MONTH_PER_RUN,
    OWNERS,
    metrics_markdown,
    month_key,
    partition_month,
)
from credit_assets.assets.training import METRIC_COLUMNS, TrainedModel
from credit_assets.ml.metrics import classification_metrics
from credit_assets.ml.schema import GRADE
from credit_assets.partitions import holdout_month, model_months
from credit_assets.resources.mlflow import MlflowModelRegistry, RegisteredModelVersion


@dataclass(frozen=True)
class ChallengerReport:
    """The better of the month's two new models, and how it compares with the champion in force."""

    month: str
    holdout_month: str
    challenger: TrainedModel
    runner_up: TrainedModel
    incumbent: RegisteredModelVersion | None
    incumbent_metrics: dict[str, Any] | None
    beats_champion: bool
    reason: str

    @property
    def challenger_macro_f1(self) -> float:
        return float(self.challenger.holdout_metrics["macro_f1"])

    @property
    def incumbent_macro_f1(self) -> float | None:
        return None if self.incumbent_metrics is None else float(self.incumbent_metrics["macro_f1"])


def _rank(trained: TrainedModel) -> tuple[float, float]:
    metrics = trained.holdout_metrics
    return (float(metrics["macro_f1"]), float(metrics["accuracy"]))


def compare_with_champion(
    month: str,
    challenger: TrainedModel,
    incumbent: RegisteredModelVersion | None,
    incumbent_metrics: dict[str, Any] | None,
) -> tuple[bool, str]:
    """Whether ``challenger`` may replace ``incumbent`` from ``month`` on, and why (pure decision rule)."""
    new_f1 = float(challenger.holdout_metrics["macro_f1"])
    if incumbent is None:
        return True, f"no champion yet: {challenger.version.label} becomes the first (macro F1 {new_f1:.4f})"
    if incumbent.champion_from and incumbent.champion_from > month:
        return False, (
            f"the champion in force ({incumbent.label}) was promoted for {incumbent.champion_from}, later than "
            f"{month}: a backfill of an older month never rolls the champion back"
        )
    assert incumbent_metrics is not None
    old_f1 = float(incumbent_metrics["macro_f1"])
    if new_f1 > old_f1:
        return True, f"challenger macro F1 {new_f1:.4f} > champion {old_f1:.4f} on the same held-out month"
    return False, f"challenger macro F1 {new_f1:.4f} <= champion {old_f1:.4f} on the same held-out month"


@asset(
    partitions_def=model_months,
    backfill_policy=ONE_MONTH_PER_RUN,
    ins={
        "lightgbm_model": AssetIn(),
        "catboost_model": AssetIn(),
        "customer_features": AssetIn(partition_mapping=holdout_month),
    },
    group_name="training",
    kinds={"mlflow"},
    owners=OWNERS,
    tags={"stage": "promotion"},
)
def challenger_model(
    context: AssetExecutionContext,
    mlflow_registry: MlflowModelRegistry,
    lightgbm_model: TrainedModel,
    catboost_model: TrainedModel,
    customer_features: pd.DataFrame,
) -> Output[ChallengerReport]:
    """The better of this month's LightGBM and CatBoost models (by macro F1 on their shared held-out
    month), measured against the current champion on that same month. The blocking check
    `challenger_beats_champion` decides whether champion_model may promote it."""
    month = month_key(partition_month(context))
    challenger, runner_up = sorted([lightgbm_model, catboost_model], key=_rank, reverse=True)
    incumbent = mlflow_registry.current_champion()
    incumbent_metrics = None
    if incumbent is not None:
        graded = customer_features[customer_features[GRADE].notna()]
        model = mlflow_registry.load(incumbent)
        incumbent_metrics = classification_metrics(graded[GRADE], model.predict_proba(graded))
    beats, reason = compare_with_champion(month, challenger, incumbent, incumbent_metrics)
    report = ChallengerReport(
        month=month,
        holdout_month=challenger.holdout_month,
        challenger=challenger,
        runner_up=runner_up,
        incumbent=incumbent,
        incumbent_metrics=incumbent_metrics,
        beats_champion=beats,
        reason=reason,
    )
    rows = [
        {"model": challenger.version.label, **challenger.holdout_metrics},
        {"model": runner_up.version.label, **runner_up.holdout_metrics},
    ]
    if incumbent is not None and incumbent_metrics is not None:
        rows.append({"model": f"champion {incumbent.label}", **incumbent_metrics})
    return Output(
        report,
        metadata={
            "challenger_version": challenger.version.version,
            "challenger_family": challenger.version.family,
            "challenger_macro_f1": report.challenger_macro_f1,
            "champion_version": incumbent.version if incumbent else None,
            "champion_macro_f1": report.incumbent_macro_f1,
            "beats_champion": beats,
            "reason": reason,
            "holdout_month": challenger.holdout_month,
            "comparison": metrics_markdown(rows, ("model", *METRIC_COLUMNS)),
        },
    )


@asset(
    partitions_def=model_months,
    backfill_policy=ONE_MONTH_PER_RUN,
    group_name="training",
    kinds={"mlflow"},
    owners=OWNERS,
    tags={"stage": "promotion"},
)
def champion_model(
    context: AssetExecutionContext, mlflow_registry: MlflowModelRegistry, challenger_model: ChallengerReport
) -> Output[RegisteredModelVersion]:
    """The model version in force from this month on: the registry alias `champion` is moved to the
    month's challenger, and the version is tagged `champion_from` = this month. Runs only after the
    blocking check `challenger_beats_champion` passed."""
    if not challenger_model.beats_champion:
        # The blocking check stops this asset in a normal run; this guards a run that skipped the check.
        raise RuntimeError(f"Refusing to promote: {challenger_model.reason}")
    version = challenger_model.challenger.version
    month = challenger_model.month
    mlflow_registry.promote(version, from_month=month)
    context.log.info(f"Promoted {version.label} to champion from {month}")
    promoted = mlflow_registry.get_version(version.version)
    return Output(
        promoted,
        metadata={
            "champion_version": promoted.version,
            "champion_family": promoted.family,
            "champion_from": month,
            "holdout_macro_f1": challenger_model.challenger_macro_f1,
            "replaced_version": challenger_model.incumbent.version if challenger_model.incumbent else None,
            "mlflow_model": MetadataValue.text(promoted.uri),
        },
    )
