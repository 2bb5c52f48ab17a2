"""A separate process that writes one month of the model tables through PostgresPandasIOManager.

    python -m credit_assets_tests.hardening._writer URL MONTH LABEL TABLE=ROWS [TABLE=ROWS ...]

Used by the concurrency and kill -9 tests: each writer has its own process and connection, as two Dagster
runs (or a run and a killed run) have. The tables are written one after the other, each in its own
transaction, as scoring_job writes model_inference and then model_metrics. ``LABEL`` goes into model_name,
so the test can tell whose rows a month holds. Prints "written" and exits 0 once every write committed.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd

GRADES = ("Bad", "Good", "Standard")

PARTITION_EXPR = {"model_inference": "snapshot_date", "model_metrics": "month_date"}  # as in the assets


def write_table(url: str, table: str, frame: pd.DataFrame, partition_key: str) -> dict[str, Any]:
    """Store ``frame`` as one monthly partition of ``table`` through PostgresPandasIOManager."""
    from dagster import MonthlyPartitionsDefinition, build_output_context

    from credit_assets.resources.io_managers import PostgresPandasIOManager
    from credit_assets.resources.postgres import PostgresResource

    io_manager = PostgresPandasIOManager(postgres=PostgresResource(url=url))
    with build_output_context(
        asset_key=[table],
        definition_metadata={"partition_expr": PARTITION_EXPR[table]},
        partition_key=partition_key,
        asset_partitions_def=MonthlyPartitionsDefinition(start_date="2023-01-01"),
    ) as context:
        io_manager.handle_output(context, frame)
        return {key: value.value for key, value in context.get_logged_metadata().items()}


def frame(table: str, month: str, rows: int, label: str) -> pd.DataFrame:
    if table == "model_inference":
        rng = np.random.default_rng(rows)
        probabilities = rng.dirichlet([1.0, 1.0, 1.0], rows)
        return pd.DataFrame(
            {
                "customer_id": [f"{label}_{i:07d}" for i in range(rows)],
                "snapshot_date": pd.Timestamp(month),
                "predicted_grade": np.array(GRADES)[probabilities.argmax(axis=1)],
                "prediction_probability": probabilities.max(axis=1),
                "model_name": label,
                "month_partition": month.replace("-", "_"),
                "model_version": 1,
                "model_family": "lightgbm",
                "prob_bad": probabilities[:, 0],
                "prob_good": probabilities[:, 1],
                "prob_standard": probabilities[:, 2],
            }
        )
    return pd.DataFrame(
        {
            "month_date": month,
            "model_name": label,
            "model_version": np.arange(1, rows + 1),
            "model_family": "lightgbm",
            "model_role": "challenger",
            "evaluation_kind": "monitoring",
            "evaluated_month": pd.Timestamp(month),
            "accuracy": 0.5,
            "total_samples": 10,
            "f1_by_grade": [{grade: 0.5 for grade in GRADES}] * rows,
            "predictions_distribution": [{grade: 1 for grade in GRADES}] * rows,
        }
    )


def main(url: str, month: str, label: str, *tables: str) -> None:
    for spec in tables:
        table, rows = spec.split("=")
        write_table(url, table, frame(table, month, int(rows), label), month)
    print("written", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
