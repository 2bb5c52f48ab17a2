"""The monthly feature frame: joins, column contract, duplicates, and the whole real data set."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from credit_assets.ml.cleaning import clean_attributes, clean_clickstream, clean_financials, clean_loan_daily
from credit_assets.ml.features import OUTPUT_COLUMNS, build_features
from credit_assets.ml.schema import (
    CATEGORICAL_FEATURES,
    CLICKSTREAM_COLUMNS,
    CUSTOMER_ID,
    FEATURE_COLUMNS,
    GRADE,
    GRADES,
    NUMERIC_FEATURES,
    PERSONAL_COLUMNS,
    SNAPSHOT_DATE,
)
from credit_assets.ml.sources import SourceDataError, find_source_file, read_source_months, source_months


def cleaned_month(raw_frame, customers: list[str], clicks_for: list[str], month: str = "2024-03-01"):
    """Cleaned attributes, financials and clickstream of a tiny cohort."""
    rows = [{"Customer_ID": customer, "snapshot_date": month} for customer in customers]
    attributes = clean_attributes(raw_frame("attributes", *rows))
    financials = clean_financials(raw_frame("financials", *rows))
    click_rows = [{"Customer_ID": customer, "snapshot_date": month} for customer in clicks_for]
    clickstream = clean_clickstream(raw_frame("clickstream", *click_rows)) if click_rows else None
    return attributes, financials, clickstream


def assert_contract_types(features: pd.DataFrame) -> None:
    assert tuple(features.columns) == OUTPUT_COLUMNS
    for column in NUMERIC_FEATURES:
        assert features[column].dtype == np.float64, column
    for column in (*CATEGORICAL_FEATURES, CUSTOMER_ID, GRADE):
        assert features[column].dtype == object, column
    assert features[SNAPSHOT_DATE].dtype == np.dtype("datetime64[ns]")
    assert set(features[GRADE].dropna()) <= set(GRADES)
    assert features[GRADE].map(lambda grade: grade is None or grade in GRADES).all()


class TestBuildFeatures:
    def test_columns_in_contract_order_and_types(self, raw_frame) -> None:
        features = build_features(*cleaned_month(raw_frame, ["CUS_0x2", "CUS_0x1"], ["CUS_0x1"]))
        assert OUTPUT_COLUMNS == (CUSTOMER_ID, SNAPSHOT_DATE, GRADE, *FEATURE_COLUMNS)
        assert_contract_types(features)
        assert not {*PERSONAL_COLUMNS, "Customer_ID", "Credit_Mix"} & set(features.columns)

    def test_one_row_per_customer_sorted_with_a_fresh_index(self, raw_frame) -> None:
        features = build_features(*cleaned_month(raw_frame, ["CUS_0x3", "CUS_0x1", "CUS_0x2"], []))
        assert features[CUSTOMER_ID].tolist() == ["CUS_0x1", "CUS_0x2", "CUS_0x3"]
        assert features.index.tolist() == [0, 1, 2]

    def test_customers_without_clickstream_keep_nan(self, raw_frame) -> None:
        features = build_features(*cleaned_month(raw_frame, ["CUS_0x1", "CUS_0x2"], ["CUS_0x2"]))
        by_customer = features.set_index(CUSTOMER_ID)
        assert by_customer.loc["CUS_0x1", list(CLICKSTREAM_COLUMNS)].isna().all()
        assert by_customer.loc["CUS_0x2", "fe_1"] == 10.0 and by_customer.loc["CUS_0x2", "fe_20"] == 200.0

    @pytest.mark.parametrize("clickstream", [None, "empty"])
    def test_a_month_without_any_clickstream(self, raw_frame, clickstream) -> None:
        attributes, financials, clicks = cleaned_month(raw_frame, ["CUS_0x1"], ["CUS_0x9"])
        features = build_features(
            attributes, financials, clicks.iloc[0:0] if clickstream == "empty" else None
        )
        assert len(features) == 1
        assert features[list(CLICKSTREAM_COLUMNS)].isna().all().all()
        assert_contract_types(features)

    def test_clickstream_of_another_month_is_not_joined(self, raw_frame) -> None:
        attributes, financials, _ = cleaned_month(raw_frame, ["CUS_0x1"], [])
        april_clicks = clean_clickstream(
            raw_frame("clickstream", {"Customer_ID": "CUS_0x1", "snapshot_date": "2024-04-01"})
        )
        features = build_features(attributes, financials, april_clicks)
        assert features[list(CLICKSTREAM_COLUMNS)].isna().all().all()

    def test_cohort_is_the_customers_with_attributes_and_financials(self, raw_frame) -> None:
        attributes, _, _ = cleaned_month(raw_frame, ["CUS_0x1", "CUS_0x2"], [])
        _, financials, _ = cleaned_month(raw_frame, ["CUS_0x2", "CUS_0x3"], [])
        assert build_features(attributes, financials, None)[CUSTOMER_ID].tolist() == ["CUS_0x2"]

    def test_grade_and_missing_categories_survive_the_join(self, raw_frame) -> None:
        month = {"snapshot_date": "2024-03-01"}
        attributes = clean_attributes(
            raw_frame(
                "attributes",
                {"Customer_ID": "A", **month},
                {"Customer_ID": "B", "Occupation": "_______", **month},
            )
        )
        financials = clean_financials(
            raw_frame(
                "financials",
                {"Customer_ID": "A", "Credit_Mix": "Good", **month},
                {"Customer_ID": "B", "Credit_Mix": "_", "Payment_of_Min_Amount": "NM", **month},
            )
        )
        features = build_features(attributes, financials, None)
        assert features[GRADE].tolist() == ["Good", None]
        assert pd.isna(features.loc[1, "Occupation"]) and pd.isna(features.loc[1, "Payment_of_Min_Amount"])
        assert features.loc[0, "Occupation"] == "Lawyer"

    @pytest.mark.parametrize("source", ["attributes", "financials", "clickstream"])
    def test_duplicate_customer_in_a_month_names_the_customer(self, raw_frame, source: str) -> None:
        frames = dict(
            zip(
                ("attributes", "financials", "clickstream"),
                cleaned_month(raw_frame, ["CUS_0x1", "CUS_0x7"], ["CUS_0x1", "CUS_0x7"]),
                strict=True,
            )
        )
        frames[source] = pd.concat([frames[source], frames[source].iloc[[1]]])
        with pytest.raises(SourceDataError) as error:
            build_features(frames["attributes"], frames["financials"], frames["clickstream"])
        message = str(error.value)
        assert f"customer CUS_0x7 appears 2 times in {source} for 2024-03-01" in message

    def test_missing_input_column_is_named(self, raw_frame) -> None:
        attributes, financials, clicks = cleaned_month(raw_frame, ["CUS_0x1"], [])
        with pytest.raises(SourceDataError, match="Interest_Rate"):
            build_features(attributes, financials.drop(columns=["Interest_Rate"]), clicks)


@pytest.mark.real_data
def test_real_data_every_month_cleans_and_builds_contract_features(real_data_dir: Path) -> None:
    """Every month of the real CS611 data goes through reading, cleaning and features without an error, with
    the contracted types, and the 2024-01..2025-01 cohorts are the known 6,542 customers, 5,172 graded."""
    paths = {
        source: find_source_file(real_data_dir, source)
        for source in ("attributes", "financials", "clickstream", "loan_daily")
    }
    months = source_months(paths["attributes"])
    assert months == [dt.date(2023 + i // 12, i % 12 + 1, 1) for i in range(25)]
    raw = {
        source: read_source_months(paths[source], source, months, allow_empty=(source == "clickstream"))
        for source in ("attributes", "financials", "clickstream")
    }

    recent_customers = recent_graded = 0
    for month in months:
        features = build_features(
            clean_attributes(raw["attributes"][month]),
            clean_financials(raw["financials"][month]),
            clean_clickstream(raw["clickstream"][month]),
        )
        assert_contract_types(features)
        assert (features[SNAPSHOT_DATE] == pd.Timestamp(month)).all()
        assert features[CUSTOMER_ID].is_unique
        if month >= dt.date(2024, 1, 1):
            recent_customers += len(features)
            recent_graded += int(features[GRADE].notna().sum())
    assert (recent_customers, recent_graded) == (6542, 5172)

    loan_months = source_months(paths["loan_daily"])
    for month, rows in read_source_months(paths["loan_daily"], "loan_daily", loan_months).items():
        loans = clean_loan_daily(rows)
        assert not loans[["loan_amt", "due_amt", "paid_amt", "overdue_amt", "balance"]].isna().any().any(), (
            month
        )


@pytest.mark.real_data
def test_real_data_dirt_is_cleaned_as_the_rules_say(real_data_dir: Path) -> None:
    """Spot checks on known rows of the real data, so a rule that silently stops matching is noticed."""
    months = [dt.date(2025, 1, 1)]
    financials = clean_financials(
        read_source_months(find_source_file(real_data_dir, "financials"), "financials", months)[months[0]]
    )
    customer = financials.set_index("Customer_ID").loc["CUS_0x1009"]  # "52312.68_", "_" grade, 4 loan types
    assert customer["Annual_Income"] == 52312.68
    assert customer[GRADE] is None
    assert customer["Credit_History_Age"] == 31 * 12
    assert (
        customer[
            [
                "loan_type_not_specified",
                "loan_type_home_equity_loan",
                "loan_type_credit_builder_loan",
                "loan_type_payday_loan",
            ]
        ].tolist()
        == [1.0] * 4
    )
