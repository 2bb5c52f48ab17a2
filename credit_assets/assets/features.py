"""Features: one row per customer of the month's cohort, ready for training and scoring."""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from credit_assets.assets._common import (
    ONE_MONTH_PER_RUN,
    OWNERS,
    grade_counts,
    markdown_preview,
    month_key,
    partition_month,
)
from credit_assets.ml.features import build_features
from credit_assets.ml.schema import CUSTOMER_ID, FEATURE_COLUMNS, GRADE, SNAPSHOT_DATE
from credit_assets.partitions import data_months


@asset(
    partitions_def=data_months,
    backfill_policy=ONE_MONTH_PER_RUN,
    group_name="features",
    kinds={"pandas"},
    owners=OWNERS,
    tags={"stage": "features"},
)
def customer_features(
    context: AssetExecutionContext,
    customer_attributes: pd.DataFrame,
    customer_financials: pd.DataFrame,
    customer_clickstream: pd.DataFrame,
) -> Output[pd.DataFrame]:
    """The month's cohort as a feature frame: customer id, snapshot date, grade (None when unknown) and
    the cleaned attributes, financials and clickstream fe_1..fe_20 (missing for customers without
    clickstream). Every customer is here, graded or not: all are scored, only graded ones are learned
    from and measured."""
    features = build_features(customer_attributes, customer_financials, customer_clickstream)
    graded = int(features[GRADE].notna().sum())
    missing_share = features[list(FEATURE_COLUMNS)].isna().mean().sort_values(ascending=False).head(5)
    return Output(
        features,
        metadata={
            "dagster/row_count": len(features),
            "month": month_key(partition_month(context)),
            "graded_customers": graded,
            "ungraded_customers": len(features) - graded,
            "grade_counts": grade_counts(features[GRADE]),
            "most_missing_features": MetadataValue.md(
                missing_share.rename("missing share").to_frame().to_markdown(floatfmt=".3f")
            ),
            "preview": markdown_preview(features[[CUSTOMER_ID, SNAPSHOT_DATE, GRADE, *FEATURE_COLUMNS[:6]]]),
        },
    )
