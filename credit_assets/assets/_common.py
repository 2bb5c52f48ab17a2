"""Small helpers the asset modules share: the partition's month and metadata builders."""

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue

OWNERS = ["team:ml-platform"]


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
