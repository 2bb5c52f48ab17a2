"""Issue 4, kind 1: metrics on awkward months, as stored in model_metrics (real PostgreSQL, real jobs).

The worked example of the issue, a month whose graded customers share one grade (AUC NULL, the rest
stored), a month without any graded customer (no monitoring row, and the metadata says so), and no NaN
or numpy value ever reaching a NUMERIC or JSONB column: through the IO manager and through the asset.
"""

from __future__ import annotations

import decimal
import math
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from credit_assets.assets.monitoring import TABLE_COLUMNS, _row
from credit_assets.ml.metrics import classification_metrics
from credit_assets.ml.schema import GRADES
from credit_assets.resources.io_managers import PostgresWriteError
from credit_assets.resources.mlflow import RegisteredModelVersion
from credit_assets_tests.hardening.conftest import (
    Pipeline,
    edit_month,
    materialization_metadata,
    query,
    table_rows,
    write_table,
)

WORKED_EXAMPLE = [  # (true grade, P(Bad), P(Good), P(Standard)) from the issue
    ("Bad", 0.60, 0.10, 0.30),
    ("Bad", 0.30, 0.20, 0.50),
    ("Standard", 0.20, 0.10, 0.70),
    ("Standard", 0.10, 0.50, 0.40),
    ("Standard", 0.35, 0.20, 0.45),
    ("Bad", 0.50, 0.30, 0.20),
]
VERSION = RegisteredModelVersion("credit_grade_model", 7, "run0123", "lightgbm", "2024-01-01", "2024-01-01")
METRIC_COLUMNS = ("accuracy", "precision", "recall", "auc", "macro_f1", "weighted_f1")
NUMERIC_COLUMNS = (*METRIC_COLUMNS, "prediction_psi")
JSON_COLUMNS = ("f1_by_grade", "predictions_distribution", "feature_psi")


def worked_example() -> tuple[list[str], pd.DataFrame]:
    truth = [row[0] for row in WORKED_EXAMPLE]
    return truth, pd.DataFrame([row[1:] for row in WORKED_EXAMPLE], columns=list(GRADES))


def metrics_row(month: str, metrics: dict[str, Any], **overrides: Any) -> pd.DataFrame:
    """The row model_metrics builds for a monitoring evaluation (the asset's own row builder)."""
    row = _row(month, VERSION, "champion", "monitoring", month, metrics, "evalrun", "dagster-run")
    return pd.DataFrame([{**row, **overrides}], columns=list(TABLE_COLUMNS))


def stored(url: str, month: str) -> list[dict[str, Any]]:
    columns = ", ".join(f'"{c}"' for c in (*NUMERIC_COLUMNS, "total_samples", *JSON_COLUMNS))
    rows = query(url, f"SELECT {columns} FROM model_metrics WHERE month_date = %s ORDER BY id", [month])
    return [dict(zip((*NUMERIC_COLUMNS, "total_samples", *JSON_COLUMNS), row, strict=True)) for row in rows]


def assert_no_nan_or_non_number(url: str) -> None:
    """No NUMERIC 'NaN' and every JSONB value a plain JSON number (or null), in the whole table."""
    nan_numeric = " OR ".join(f"{c} = 'NaN'::numeric" for c in METRIC_COLUMNS)
    assert query(url, f"SELECT count(*) FROM model_metrics WHERE {nan_numeric}") == [(0,)]
    assert query(url, "SELECT count(*) FROM model_metrics WHERE prediction_psi = 'NaN'::float8") == [(0,)]
    kinds = query(
        url,
        """SELECT DISTINCT jsonb_typeof(value) FROM model_metrics,
             LATERAL (SELECT value FROM jsonb_each(f1_by_grade)
                      UNION ALL SELECT value FROM jsonb_each(predictions_distribution)
                      UNION ALL SELECT value FROM jsonb_each(coalesce(feature_psi, '{}'))) AS v""",
    )
    assert {kind for (kind,) in kinds} <= {"number"}, kinds


# -- through the IO manager ------------------------------------------------------------------------


def test_worked_example_is_stored_with_the_issues_values(postgres_url_module: str) -> None:
    metrics = classification_metrics(*worked_example())
    write_table(postgres_url_module, "model_metrics", metrics_row("2024-01-01", metrics), "2024-01-01")

    [row] = stored(postgres_url_module, "2024-01-01")
    assert {c: row[c] for c in METRIC_COLUMNS} == {
        "accuracy": decimal.Decimal("0.6667"),
        "precision": decimal.Decimal("0.8333"),
        "recall": decimal.Decimal("0.6667"),
        "auc": decimal.Decimal("0.8333"),
        "macro_f1": decimal.Decimal("0.4889"),
        "weighted_f1": decimal.Decimal("0.7333"),
    }
    assert row["total_samples"] == 6
    assert row["f1_by_grade"] == pytest.approx({"Bad": 0.8, "Good": 0.0, "Standard": 0.6667}, abs=5e-5)
    assert row["predictions_distribution"] == {"Bad": 2, "Good": 1, "Standard": 3}


def test_single_grade_month_stores_null_auc_and_every_other_metric(postgres_url_module: str) -> None:
    _, proba = worked_example()
    metrics = classification_metrics(["Standard"] * 6, proba)
    write_table(postgres_url_module, "model_metrics", metrics_row("2024-02-01", metrics), "2024-02-01")

    [row] = stored(postgres_url_module, "2024-02-01")
    assert row["auc"] is None
    assert row["accuracy"] == decimal.Decimal("0.5000")
    assert all(row[c] is not None for c in METRIC_COLUMNS if c != "auc")
    assert row["f1_by_grade"] == pytest.approx({"Bad": 0.0, "Good": 0.0, "Standard": 2 / 3}, abs=5e-5)
    assert sorted(row["predictions_distribution"]) == sorted(GRADES)


def test_numpy_values_and_nan_reach_the_table_as_plain_numbers_and_null(postgres_url_module: str) -> None:
    """Whatever numeric type an evaluation produces, the table holds DECIMAL/INTEGER/JSON numbers or NULL."""
    metrics = classification_metrics(*worked_example())
    numpy_metrics = {
        **metrics,
        "accuracy": np.float32(0.5),
        "precision": np.float64("nan"),
        "recall": None,
        "auc": pd.NA,
        "macro_f1": np.float64(0.25),
        "total_samples": np.int64(6),
        "f1_by_grade": {"Bad": np.float32(0.5), "Good": np.float64(0.0), "Standard": np.int64(1)},
        "predictions_distribution": {"Bad": np.int64(2), "Good": np.int32(1), "Standard": np.uint8(3)},
    }
    frame = metrics_row(
        "2024-03-01", numpy_metrics, prediction_psi=np.float64("nan"), feature_psi={"Age": np.float32(0.125)}
    )
    write_table(postgres_url_module, "model_metrics", frame, "2024-03-01")

    [row] = stored(postgres_url_module, "2024-03-01")
    assert row["accuracy"] == decimal.Decimal("0.5000")
    assert row["precision"] is None and row["recall"] is None and row["auc"] is None
    assert row["prediction_psi"] is None
    assert row["total_samples"] == 6
    assert row["f1_by_grade"] == {"Bad": 0.5, "Good": 0.0, "Standard": 1}
    assert row["predictions_distribution"] == {"Bad": 2, "Good": 1, "Standard": 3}
    assert row["feature_psi"] == {"Age": 0.125}
    assert_no_nan_or_non_number(postgres_url_module)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"f1_by_grade": {"Bad": float("nan"), "Good": 0.5, "Standard": 0.5}}, "f1_by_grade"),
        ({"f1_by_grade": {"Bad": np.float32("nan"), "Good": 0.5, "Standard": 0.5}}, "f1_by_grade"),
        ({"feature_psi": {"Age": float("inf")}}, "feature_psi"),
        ({"predictions_distribution": {"Bad": pd.NA, "Good": 1, "Standard": 1}}, "predictions_distribution"),
        ({"accuracy": float("inf")}, "accuracy"),
    ],
    ids=["nan-in-json", "numpy-nan-in-json", "inf-in-json", "NA-in-json", "inf-in-numeric"],
)
def test_a_value_json_or_numeric_cannot_hold_fails_and_keeps_the_month(
    postgres_url_module: str, overrides: dict[str, Any], message: str
) -> None:
    month = "2024-04-01"
    good = metrics_row(month, classification_metrics(*worked_example()))
    write_table(postgres_url_module, "model_metrics", good, month)
    before = table_rows(postgres_url_module, "model_metrics")

    bad = good.assign(**{column: [value] for column, value in overrides.items()})
    with pytest.raises((PostgresWriteError, psycopg.DataError), match=message):
        write_table(postgres_url_module, "model_metrics", bad, month)
    assert table_rows(postgres_url_module, "model_metrics") == before


# -- through the asset -----------------------------------------------------------------------------


def graded_count(pipeline: Pipeline, month: str) -> int:
    return int(pipeline.features(month)["grade"].notna().sum())


def test_single_grade_month_through_the_asset_stores_null_auc(pipeline: Pipeline) -> None:
    month = "2024-02-01"
    data = pipeline.copy_data()

    def one_grade(rows: pd.DataFrame) -> pd.DataFrame:
        graded = rows["Credit_Mix"] != "_"
        rows.loc[graded, "Credit_Mix"] = "Standard"
        return rows

    edit_month(data, "financials", month, one_grade)
    pipeline.run("monthly_data_job", month, data_dir=data)
    result = pipeline.run("scoring_job", month, data_dir=data)

    rows = query(
        pipeline.database_url,
        f"SELECT model_role, {', '.join(METRIC_COLUMNS)}, total_samples, f1_by_grade, predictions_distribution"
        " FROM model_metrics WHERE month_date = %s AND evaluation_kind = 'monitoring' ORDER BY model_role",
        [month],
    )
    assert [row[0] for row in rows] == ["challenger", "champion"]  # the champion and the other family
    for role, accuracy, precision, recall, auc, macro_f1, weighted_f1, total, f1_by_grade, dist in rows:
        assert auc is None, role
        assert None not in (accuracy, precision, recall, macro_f1, weighted_f1), role
        assert total == graded_count(pipeline, month) > 0
        assert sorted(f1_by_grade) == sorted(dist) == sorted(GRADES)
        assert sum(dist.values()) == total
    assert_no_nan_or_non_number(pipeline.database_url)

    metadata = materialization_metadata(result, "model_metrics")
    assert metadata["monitoring_rows"] == 2
    for value in metadata.values():  # no NaN in what the UI shows either
        assert not (isinstance(value, float) and math.isnan(value))
    # The MLflow evaluation runs of the month log the defined metrics and leave AUC out (never NaN).
    registry = pipeline.registry()
    runs = registry.client.search_runs([registry.experiment_id()], filter_string=f"tags.evaluated_month = '{month}'")
    assert len(runs) == 2
    for run in runs:
        assert "auc" not in run.data.metrics
        assert run.data.metrics["accuracy"] >= 0
        assert not any(math.isnan(value) for value in run.data.metrics.values())


def test_month_without_graded_customers_writes_no_monitoring_row_and_says_so(pipeline: Pipeline) -> None:
    month = "2024-03-01"
    data = pipeline.copy_data()

    def no_grades(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(Credit_Mix="_")

    edit_month(data, "financials", month, no_grades)
    pipeline.run("monthly_data_job", month, data_dir=data)
    result = pipeline.run("scoring_job", month, data_dir=data)

    assert result.success
    assert query(pipeline.database_url, "SELECT count(*) FROM model_metrics WHERE month_date = %s", [month]) == [(0,)]
    scored = query(pipeline.database_url, "SELECT count(*) FROM model_inference WHERE snapshot_date = %s", [month])
    assert scored == [(len(pipeline.features(month)),)]  # every customer is still scored
    metadata = materialization_metadata(result, "model_metrics")
    assert metadata["graded_customers"] == 0
    assert metadata["monitoring_rows"] == 0
    assert "no graded customer" in metadata["monitoring"]
