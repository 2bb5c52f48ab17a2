"""Ingestion: the four source files, one cleaned frame per month.

Each asset reads only its month's rows from the source file, in chunks, and cleans each chunk as it is read, so
what is stored between steps is typed data, never the raw text with its placeholders.
"""

from collections.abc import Callable

import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MetadataValue, Output, asset

from credit_assets.assets._common import (
    ONE_MONTH_PER_RUN,
    OWNERS,
    markdown_preview,
    month_key,
    partition_month,
)
from credit_assets.assets._retry import FILE_RETRY_POLICY, is_file_unavailable, retry_only_transient
from credit_assets.ml import cleaning
from credit_assets.ml.streaming import read_cleaned_month
from credit_assets.partitions import data_months
from credit_assets.resources.data_source import CreditDataDirectory

Cleaner = Callable[..., pd.DataFrame]


def _source_asset(
    name: str, source: str, clean: Cleaner, description: str, *, month_may_be_empty: bool = False
) -> AssetsDefinition:
    @asset(
        name=name,
        description=description,
        partitions_def=data_months,
        backfill_policy=ONE_MONTH_PER_RUN,
        group_name="ingestion",
        kinds={"csv", "pandas"},
        owners=OWNERS,
        tags={"stage": "ingestion"},
        # A file on a network share can be briefly unavailable; a bad file fails the same way every time,
        # so only an I/O error is retried (a truncated file, a bad row or a missing column fail at once).
        retry_policy=FILE_RETRY_POLICY,
    )
    @retry_only_transient(is_file_unavailable)
    def _source(context: AssetExecutionContext, credit_data: CreditDataDirectory) -> Output[pd.DataFrame]:
        month = partition_month(context)
        path = credit_data.source_file(source)
        cleaned = read_cleaned_month(path, source, month, clean, allow_empty=month_may_be_empty)
        return Output(
            cleaned,
            metadata={
                "dagster/row_count": len(cleaned),
                "source_file": MetadataValue.path(str(path)),
                "month": month_key(month),
                "columns": len(cleaned.columns),
                "preview": markdown_preview(cleaned),
            },
        )

    return _source


customer_attributes = _source_asset(
    "customer_attributes",
    "attributes",
    cleaning.clean_attributes,
    "Customer attributes of the month's cohort (age, occupation) from features_attributes, cleaned. "
    "Name and SSN are dropped here and never stored.",
)
customer_financials = _source_asset(
    "customer_financials",
    "financials",
    cleaning.clean_financials,
    "Financial profile of the month's cohort from features_financials, cleaned, with the credit grade "
    "(Credit_Mix: Good, Standard, Bad, or unknown when the file says '_').",
)
customer_clickstream = _source_asset(
    "customer_clickstream",
    "clickstream",
    cleaning.clean_clickstream,
    "Web clickstream features fe_1..fe_20 of every customer active in the month, from feature_clickstream. "
    "A month without clickstream is valid (the real data has none for 2025-01): its customers get missing fe_*.",
    month_may_be_empty=True,
)
loan_daily = _source_asset(
    "loan_daily",
    "loan_daily",
    cleaning.clean_loan_daily,
    "Loan instalment records of the month from lms_loan_daily (kept for lineage and later features; "
    "not a model input today).",
)

ingestion_assets = [customer_attributes, customer_financials, customer_clickstream, loan_daily]
