"""Small helpers the asset modules share: the partition's month and metadata builders."""

import warnings
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue
from dagster._utils.warnings import BetaWarning

OWNERS = ["team:ml-platform"]

# Backfill policy of every monthly asset: one month per run, deliberately.
# * Months must stay independent: one bad month of a range fails its own run, and every other month's
#   tables and models are still written (a single-run backfill fails or succeeds as a whole).
# * Each month of model_inference / model_metrics is replaced in its own transaction, so a re-run of a
#   failed month touches nothing else.
# * Intermediate frames are stored one file per month (the filesystem IO manager cannot persist a
#   multi-month output), and a model month's promotion must see the promotions of the months before it.
# The cost is one process start per month (a few seconds); the benchmark (make bench) measures it.
ONE_MONTH_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)
# `backfill_policy=` is a beta parameter of @asset in the pinned Dagster; its behaviour here is covered by
# tests (make test), so its beta warning is silenced for this project's assets only.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*`backfill_policy` of function `asset`.*")


def partition_month(context: AssetExecutionContext) -> date:
    """The month (first day) of the single partition being materialized."""
    return context.partition_time_window.start.date()


def month_key(month: date) -> str:
    return month.isoformat()


def markdown_preview(frame: pd.DataFrame, rows: int = 5) -> MetadataValue:
    return MetadataValue.md(frame.head(rows).to_markdown(index=False))


def metrics_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> MetadataValue:
    """A small markdown table of metric rows (plain dicts), numbers at 4 decimals."""

    def fmt(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(fmt(row.get(c)) for c in columns) + " |\n" for row in rows)
    return MetadataValue.md(header + body)


def grade_counts(values: pd.Series) -> dict[str, int]:
    counts = values.fillna("unknown").value_counts()
    return {str(k): int(v) for k, v in counts.sort_index().items()}
