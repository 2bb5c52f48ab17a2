"""Asset checks: the promotion gate, and (on every partition written) the shape of the two tables."""

import warnings
from datetime import date
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    ResourceParam,
    asset_check,
)
from dagster._utils.warnings import PreviewWarning
from psycopg import sql

from credit_assets.assets.monitoring import model_metrics
from credit_assets.assets.promotion import ChallengerReport, challenger_model
from credit_assets.assets.scoring import model_inference
from credit_assets.ml.schema import CUSTOMER_ID, GRADES
from credit_assets.partitions import model_months
from credit_assets.resources.io_managers import PostgresPandasIOManager

# Partitioned asset checks are a Dagster preview feature; they are what makes each check read only the
# month its run wrote (an unpartitioned check on a partitioned asset loads every partition). The pinned
# Dagster version is tested with them, so the preview warning is silenced here and nowhere else.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")


@asset_check(
    asset=challenger_model,
    partitions_def=model_months,
    blocking=True,
    description=(
        "Promotion gate: passes only when the challenger's macro F1 on the held-out month is higher than the "
        "current champion's on the same month (or there is no champion yet). When it fails, champion_model "
        "does not run and the new version stays a registered challenger."
    ),
)
def challenger_beats_champion(challenger_model: ChallengerReport) -> AssetCheckResult:
    report = challenger_model
    return AssetCheckResult(
        passed=report.beats_champion,
        severity=AssetCheckSeverity.ERROR,
        description=report.reason,
        metadata={
            "challenger_version": report.challenger.version.version,
            "challenger_macro_f1": report.challenger_macro_f1,
            "champion_version": report.incumbent.version if report.incumbent else None,
            "champion_macro_f1": report.incumbent_macro_f1,
            "holdout_month": report.holdout_month,
        },
    )


# -- table checks: each reads only the partition (month) the run wrote ------------------------------------


def _month_bounds(context: AssetCheckExecutionContext) -> tuple[date, date]:
    window = context.partition_time_window
    return window.start.date(), window.end.date()


def _fetch_one(tables: PostgresPandasIOManager, query: str, params: tuple[Any, ...]) -> tuple[Any, ...]:
    """One row of ``query`` run in the schema the IO manager writes the tables to."""
    with tables.postgres.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(tables.schema_name)))
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row


@asset_check(
    asset=model_inference,
    partitions_def=model_months,
    additional_ins={"customer_features": AssetIn()},
    description="Exactly one row per customer of the month's cohort, and no (customer, month, model) twice.",
)
def one_prediction_per_customer(
    context: AssetCheckExecutionContext,
    postgres_io_manager: ResourceParam[PostgresPandasIOManager],
    customer_features: pd.DataFrame,
) -> AssetCheckResult:
    start, end = _month_bounds(context)
    rows, customers, keys = _fetch_one(
        postgres_io_manager,
        """SELECT count(*), count(DISTINCT customer_id),
                  count(DISTINCT (customer_id, snapshot_date, model_name, model_version))
           FROM model_inference WHERE snapshot_date >= %s AND snapshot_date < %s""",
        (start, end),
    )
    cohort = int(customer_features[CUSTOMER_ID].nunique())
    return AssetCheckResult(
        passed=bool(rows == cohort == customers == keys),
        metadata={
            "rows": rows,
            "distinct_customers": customers,
            "cohort_customers": cohort,
            "distinct_keys": keys,
        },
    )


@asset_check(
    asset=model_inference,
    partitions_def=model_months,
    description="Every probability in [0, 1], and each customer's three grade probabilities sum to 1.",
)
def probabilities_are_valid(
    context: AssetCheckExecutionContext, postgres_io_manager: ResourceParam[PostgresPandasIOManager]
) -> AssetCheckResult:
    start, end = _month_bounds(context)
    out_of_range, worst_sum_error, rows = _fetch_one(
        postgres_io_manager,
        """SELECT
             count(*) FILTER (WHERE NOT (prediction_probability BETWEEN 0 AND 1 AND prob_bad BETWEEN 0 AND 1
                                         AND prob_good BETWEEN 0 AND 1 AND prob_standard BETWEEN 0 AND 1)
                              OR prediction_probability IS NULL OR prob_bad IS NULL
                              OR prob_good IS NULL OR prob_standard IS NULL),
             coalesce(max(abs(prob_bad + prob_good + prob_standard - 1)), 0),
             count(*)
           FROM model_inference WHERE snapshot_date >= %s AND snapshot_date < %s""",
        (start, end),
    )
    return AssetCheckResult(
        passed=bool(out_of_range == 0 and float(worst_sum_error) <= 1e-6 and rows > 0),
        metadata={"rows_out_of_range": out_of_range, "worst_sum_error": float(worst_sum_error), "rows": rows},
    )


@asset_check(
    asset=model_metrics,
    partitions_def=model_months,
    description="Every metric within [0, 1] or NULL (AUC of a single-grade month), every grade a key of "
    "f1_by_grade and predictions_distribution, one row per (model version, evaluation kind).",
)
def metrics_are_well_formed(
    context: AssetCheckExecutionContext, postgres_io_manager: ResourceParam[PostgresPandasIOManager]
) -> AssetCheckResult:
    start, _ = _month_bounds(context)
    grades = list(GRADES)
    bad_values, missing_keys, duplicates, rows = _fetch_one(
        postgres_io_manager,
        """SELECT
             count(*) FILTER (WHERE NOT (coalesce(accuracy BETWEEN 0 AND 1, true)
                                         AND coalesce(precision BETWEEN 0 AND 1, true)
                                         AND coalesce(recall BETWEEN 0 AND 1, true)
                                         AND coalesce(auc BETWEEN 0 AND 1, true)
                                         AND coalesce(macro_f1 BETWEEN 0 AND 1, true)
                                         AND coalesce(weighted_f1 BETWEEN 0 AND 1, true))),
             count(*) FILTER (WHERE NOT (f1_by_grade ?& %s AND predictions_distribution ?& %s)),
             count(*) - count(DISTINCT (model_name, model_version, evaluation_kind)),
             count(*)
           FROM model_metrics WHERE month_date = %s""",
        (grades, grades, start.isoformat()),
    )
    return AssetCheckResult(
        passed=bool(bad_values == 0 and missing_keys == 0 and duplicates == 0),
        metadata={
            "rows": rows,
            "rows_with_metric_out_of_range": bad_values,
            "rows_missing_a_grade_key": missing_keys,
            "duplicate_rows": duplicates,
        },
    )


table_checks = [one_prediction_per_customer, probabilities_are_valid, metrics_are_well_formed]
