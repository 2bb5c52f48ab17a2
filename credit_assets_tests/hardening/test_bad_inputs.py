"""Issue 4, kind 4: bad input files, through the real monthly data job.

The package fixture has already stored a good month (2024-01) in model_inference and model_metrics. Each
test breaks a copy of one source file, re-materializes that month's data, and checks that the run fails
at once (a bad file is not retried) with an error naming the file and the line, column and value where
they apply, that no feature frame was produced for scoring to pick up, and that neither table changed
(the run failed, so the sensor that scores a month after its data run succeeds does not fire either).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from credit_assets_tests.hardening.conftest import (
    MODEL_MONTH,
    Pipeline,
    read_source,
    retries,
    source_path,
    step_failures,
    tables_state,
    write_source,
)

Breaker = Callable[[Path], list[str]]  # breaks the files in a data dir, returns what the error must say


def _first_row_of_month(frame: pd.DataFrame, month: str = MODEL_MONTH) -> int:
    return int((frame["snapshot_date"] == month).to_numpy().nonzero()[0][0])


def _set_value(data: Path, source: str, column: str, value: str) -> int:
    """Put ``value`` into ``column`` of the month's first row; return that row's line in the file."""
    frame = read_source(data, source)
    position = _first_row_of_month(frame)
    frame.loc[frame.index[position], column] = value
    write_source(data, source, frame)
    return position + 2  # line 1 is the header


def truncated_gzip(data: Path) -> list[str]:
    path = source_path(data, "attributes")
    packed = gzip.compress(path.read_bytes())
    path.unlink()
    (data / "features_attributes.csv.gz").write_bytes(packed[: len(packed) // 2])
    return ["features_attributes.csv.gz", "truncated or corrupt"]


def truncated_csv(data: Path) -> list[str]:
    path = source_path(data, "financials")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    return ["features_financials.csv", f"line {len(lines)}", "column snapshot_date"]


def wrong_delimiter(data: Path) -> list[str]:
    path = source_path(data, "clickstream")
    path.write_text(path.read_text().replace(",", ";"))
    return ["feature_clickstream.csv", "missing required column(s)", "not comma-delimited"]


def missing_column(data: Path) -> list[str]:
    write_source(data, "financials", read_source(data, "financials").drop(columns="Credit_Mix"))
    return ["features_financials.csv", "missing required column(s) Credit_Mix"]


def empty_month(data: Path) -> list[str]:
    frame = read_source(data, "attributes")
    write_source(data, "attributes", frame[frame["snapshot_date"] != MODEL_MONTH])
    return ["features_attributes.csv", f"no rows for {MODEL_MONTH}"]


def unparseable_snapshot_date(data: Path) -> list[str]:
    line = _set_value(data, "attributes", "snapshot_date", "2024-01-32")
    return ["features_attributes.csv", f"line {line}", "column snapshot_date", "'2024-01-32'"]


def unparseable_loan_date(data: Path) -> list[str]:
    line = _set_value(data, "loan_daily", "loan_start_date", "2023-02-30")
    return ["lms_loan_daily.csv", f"line {line}", "column loan_start_date", "'2023-02-30'"]


def unparseable_number(data: Path) -> list[str]:
    line = _set_value(data, "financials", "Annual_Income", "12x34")
    return ["features_financials.csv", f"line {line}", "column Annual_Income", "'12x34'"]


def unknown_grade(data: Path) -> list[str]:
    line = _set_value(data, "financials", "Credit_Mix", "Excellent")
    return ["features_financials.csv", f"line {line}", "column Credit_Mix", "'Excellent'"]


def disjoint_customers(data: Path) -> list[str]:
    """Every file parses, but financials name other customers: the cohort would be empty and scoring it
    would replace the month's predictions with nothing."""
    frame = read_source(data, "financials")
    in_month = frame["snapshot_date"] == MODEL_MONTH
    frame.loc[in_month, "Customer_ID"] = frame.loc[in_month, "Customer_ID"] + "_other"
    write_source(data, "financials", frame)
    return ["no customer has both attributes and financials", "features_financials.csv", "_other"]


BREAKERS: dict[str, Breaker] = {
    "truncated-gzip": truncated_gzip,
    "truncated-csv": truncated_csv,
    "wrong-delimiter": wrong_delimiter,
    "missing-column": missing_column,
    "empty-month": empty_month,
    "unparseable-snapshot-date": unparseable_snapshot_date,
    "unparseable-loan-date": unparseable_loan_date,
    "unparseable-number": unparseable_number,
    "unknown-grade": unknown_grade,
    "disjoint-customers": disjoint_customers,
}


@pytest.mark.parametrize("fault", list(BREAKERS))
def test_bad_file_fails_the_month_naming_where_and_changes_no_table(pipeline: Pipeline, fault: str) -> None:
    before = tables_state(pipeline.database_url)
    assert before["model_inference"] and before["model_metrics"]  # a good month is stored
    data = pipeline.copy_data()
    expected = BREAKERS[fault](data)

    result = pipeline.run("monthly_data_job", MODEL_MONTH, data_dir=data, raise_on_error=False)

    assert not result.success
    messages = "\n".join(step_failures(result).values())
    for fragment in expected:
        assert fragment in messages, f"{fragment!r} not in:\n{messages}"
    assert retries(result) == []  # the same bad file fails the same way: no retry, no delay
    if fault != "unparseable-loan-date":  # loan_daily feeds no model input; the other three feed the features
        assert result.asset_materializations_for_node("customer_features") == []
    assert tables_state(pipeline.database_url) == before


def test_build_features_refuses_an_empty_cohort_unless_joining_part_of_a_month(pipeline: Pipeline) -> None:
    from credit_assets.ml import cleaning
    from credit_assets.ml.features import build_features
    from credit_assets.ml.sources import SourceDataError, read_source_month

    attributes = cleaning.clean_attributes(
        read_source_month(source_path(pipeline.data_dir, "attributes"), "attributes", MODEL_MONTH)
    )
    financials = cleaning.clean_financials(
        read_source_month(source_path(pipeline.data_dir, "financials"), "financials", MODEL_MONTH)
    )
    others = financials.assign(Customer_ID=financials["Customer_ID"] + "_other")
    with pytest.raises(SourceDataError, match=r"cohort is empty: attributes \(.*features_attributes.csv\): 60 row"):
        build_features(attributes, others, None)
    assert build_features(attributes, others, None, require_cohort=False).empty  # a batch of a month may be
    assert len(build_features(attributes, financials, None)) == 60
