"""The cleaning rules, one kind of dirt per test, on tiny raw frames."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from credit_assets.ml.cleaning import (
    COUNT_COLUMNS,
    clean_attributes,
    clean_clickstream,
    clean_financials,
    clean_loan_daily,
    parse_numbers,
)
from credit_assets.ml.schema import CLICKSTREAM_COLUMNS, GRADE, GRADES, LOAN_TYPE_FEATURES, PERSONAL_COLUMNS
from credit_assets.ml.sources import SourceDataError, read_source_month


def financial_value(raw_frame, column: str, raw_value: str, output: str | None = None) -> object:
    """The cleaned value of one raw financial value (other columns valid)."""
    return clean_financials(raw_frame("financials", {column: raw_value}))[output or column].iloc[0]


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class TestNumbers:
    @pytest.mark.parametrize(
        ("column", "raw_value", "expected"),
        [
            ("Annual_Income", "35547.71_", 35547.71),
            ("Annual_Income", "113781.38999999998", 113781.38999999998),
            ("Num_of_Loan", "4_", 4.0),
            ("Num_of_Delayed_Payment", "18__", 18.0),
            ("Outstanding_Debt", " 1562.91 ", 1562.91),
            ("Changed_Credit_Limit", "-6.49", -6.49),
            ("Delay_from_due_date", "-3", -3.0),  # early payment: negative is meaningful, not a count
            ("Num_Credit_Inquiries", "11.0", 11.0),
        ],
    )
    def test_numbers_keep_their_value(self, raw_frame, column: str, raw_value: str, expected: float) -> None:
        assert financial_value(raw_frame, column, raw_value) == expected

    @pytest.mark.parametrize(
        ("column", "raw_value"),
        [
            ("Amount_invested_monthly", "__10000__"),  # a placeholder, not 10000
            ("Monthly_Balance", "__-333333333333333333333333333__"),
            ("Changed_Credit_Limit", "_"),
            ("Monthly_Inhand_Salary", ""),
            ("Monthly_Inhand_Salary", "NA"),
            ("Total_EMI_per_month", "nan"),
        ],
    )
    def test_placeholders_and_empty_values_are_missing(self, raw_frame, column: str, raw_value: str) -> None:
        assert is_missing(financial_value(raw_frame, column, raw_value))

    @pytest.mark.parametrize("column", COUNT_COLUMNS)
    def test_negative_counts_are_impossible_so_missing(self, raw_frame, column: str) -> None:
        assert is_missing(financial_value(raw_frame, column, "-100"))
        assert financial_value(raw_frame, column, "0") == 0.0

    @pytest.mark.parametrize("raw_value", ["12a", "1.2.3", "_12", "inf", "--"])
    def test_unparseable_number_names_source_column_and_value(self, raw_frame, raw_value: str) -> None:
        raw = raw_frame("financials", {}, {"Annual_Income": raw_value})
        with pytest.raises(SourceDataError) as error:
            clean_financials(raw, source_name="features_financials.csv.gz")
        message = str(error.value)
        assert message.startswith("features_financials.csv.gz row 1, column Annual_Income: cannot parse ")
        assert repr(raw_value) in message

    def test_error_counts_and_shows_several_bad_values(self) -> None:
        values = pd.Series(["1", "x1", "2", "y2", "x1"])
        with pytest.raises(SourceDataError, match=r"row 1, column c: .*'x1'.*3 such value\(s\).*'x1', 'y2'"):
            parse_numbers(values, "c")

    def test_result_is_float64_with_the_input_index(self) -> None:
        values = pd.Series(["1", "2_", ""], index=[10, 11, 12])
        parsed = parse_numbers(values, "c")
        assert parsed.dtype == np.float64
        assert parsed.index.tolist() == [10, 11, 12]
        assert parsed.iloc[:2].tolist() == [1.0, 2.0] and np.isnan(parsed.iloc[2])


class TestAttributes:
    @pytest.mark.parametrize(
        ("raw_age", "expected"), [("28_", 28.0), ("14", 14.0), ("100", 100.0), ("56", 56.0)]
    )
    def test_plausible_ages_are_kept(self, raw_frame, raw_age: str, expected: float) -> None:
        assert clean_attributes(raw_frame("attributes", {"Age": raw_age}))["Age"].iloc[0] == expected

    @pytest.mark.parametrize("raw_age", ["-500", "8678", "169", "13", "101", ""])
    def test_impossible_ages_are_missing(self, raw_frame, raw_age: str) -> None:
        assert np.isnan(clean_attributes(raw_frame("attributes", {"Age": raw_age}))["Age"].iloc[0])

    @pytest.mark.parametrize("placeholder", ["_______", "_", "", "!@9#%8"])
    def test_occupation_placeholders_are_missing(self, raw_frame, placeholder: str) -> None:
        cleaned = clean_attributes(
            raw_frame("attributes", {"Occupation": placeholder}, {"Occupation": "Media_Manager"})
        )
        assert is_missing(cleaned["Occupation"].iloc[0])
        assert cleaned["Occupation"].iloc[1] == "Media_Manager"

    def test_name_and_ssn_never_leave(self, raw_frame) -> None:
        cleaned = clean_attributes(raw_frame("attributes", {"Name": 'Person "Jr"', "SSN": "#F%$D@*&8"}))
        assert not set(PERSONAL_COLUMNS) & set(cleaned.columns)
        assert list(cleaned.columns) == ["Customer_ID", "Age", "Occupation", "snapshot_date"]

    def test_columns_not_in_the_contract_do_not_leak(self, raw_frame) -> None:
        raw = raw_frame("attributes").assign(Email="someone@example.com")
        assert "Email" not in clean_attributes(raw).columns

    def test_types(self, raw_frame) -> None:
        cleaned = clean_attributes(raw_frame("attributes", {"Customer_ID": " CUS_0x1 "}))
        assert cleaned.dtypes.to_dict() == {
            "Customer_ID": np.dtype(object),
            "Age": np.dtype("float64"),
            "Occupation": np.dtype(object),
            "snapshot_date": np.dtype("datetime64[ns]"),
        }
        assert cleaned["Customer_ID"].iloc[0] == "CUS_0x1"
        assert cleaned["snapshot_date"].iloc[0] == pd.Timestamp("2024-03-01")

    def test_empty_customer_id_is_an_error(self, raw_frame) -> None:
        with pytest.raises(SourceDataError, match="column Customer_ID: cannot parse '' as an identifier"):
            clean_attributes(raw_frame("attributes", {"Customer_ID": ""}))

    def test_missing_column_is_named(self, raw_frame) -> None:
        with pytest.raises(SourceDataError, match=r"attributes data is missing required column\(s\) Age"):
            clean_attributes(raw_frame("attributes").drop(columns=["Age"]))


class TestCategories:
    @pytest.mark.parametrize(
        ("column", "placeholder"),
        [("Payment_of_Min_Amount", "NM"), ("Payment_Behaviour", "!@9#%8"), ("Payment_Behaviour", "")],
    )
    def test_placeholders_are_missing(self, raw_frame, column: str, placeholder: str) -> None:
        assert is_missing(financial_value(raw_frame, column, placeholder))

    def test_real_categories_are_kept_stripped(self, raw_frame) -> None:
        assert financial_value(raw_frame, "Payment_of_Min_Amount", " No ") == "No"
        assert financial_value(raw_frame, "Payment_Behaviour", "Low_spent_Small_value_payments") == (
            "Low_spent_Small_value_payments"
        )


class TestGrade:
    @pytest.mark.parametrize("grade", GRADES)
    def test_known_grades_are_kept(self, raw_frame, grade: str) -> None:
        assert financial_value(raw_frame, "Credit_Mix", grade, output=GRADE) == grade

    @pytest.mark.parametrize("unknown", ["_", ""])
    def test_unknown_grade_is_none(self, raw_frame, unknown: str) -> None:
        assert financial_value(raw_frame, "Credit_Mix", unknown, output=GRADE) is None

    @pytest.mark.parametrize("bad_grade", ["Excellent", "good", "__", "1"])
    def test_any_other_grade_names_column_and_value(self, raw_frame, bad_grade: str) -> None:
        raw = raw_frame("financials", {}, {}, {"Credit_Mix": bad_grade})
        with pytest.raises(SourceDataError) as error:
            clean_financials(raw)
        message = str(error.value)
        assert f"row 2, column Credit_Mix: cannot parse {bad_grade!r} as a grade" in message

    def test_grade_column_replaces_credit_mix(self, raw_frame) -> None:
        cleaned = clean_financials(raw_frame("financials", {"Credit_Mix": "Good"}, {"Credit_Mix": "_"}))
        assert "Credit_Mix" not in cleaned.columns
        assert cleaned[GRADE].tolist() == ["Good", None]
        assert cleaned[GRADE].dtype == object


class TestCreditHistoryAge:
    @pytest.mark.parametrize(
        ("raw_value", "months"),
        [("22 Years and 5 Months", 269.0), ("0 Years and 1 Months", 1.0), ("1 Year and 0 Months", 12.0)],
    )
    def test_text_duration_becomes_months(self, raw_frame, raw_value: str, months: float) -> None:
        assert financial_value(raw_frame, "Credit_History_Age", raw_value) == months

    @pytest.mark.parametrize("raw_value", ["", "NA", "_"])
    def test_missing_duration(self, raw_frame, raw_value: str) -> None:
        assert is_missing(financial_value(raw_frame, "Credit_History_Age", raw_value))

    def test_other_text_is_an_error(self, raw_frame) -> None:
        with pytest.raises(SourceDataError, match=r"column Credit_History_Age: cannot parse '22 Years' as"):
            financial_value(raw_frame, "Credit_History_Age", "22 Years")


class TestTypeOfLoan:
    @pytest.mark.parametrize(
        ("raw_value", "expected_counts"),
        [
            ("Credit-Builder Loan, and Home Equity Loan", {"credit_builder_loan": 1, "home_equity_loan": 1}),
            ("Not Specified, Payday Loan", {"not_specified": 1, "payday_loan": 1}),
            ("Payday Loan, Payday Loan, and Home Equity Loan", {"payday_loan": 2, "home_equity_loan": 1}),
            ("Auto Loan", {"auto_loan": 1}),
            ("", {}),
        ],
    )
    def test_counts_each_loan_type(self, raw_frame, raw_value: str, expected_counts: dict[str, int]) -> None:
        cleaned = clean_financials(raw_frame("financials", {"Type_of_Loan": raw_value}))
        counts = {feature: cleaned[feature].iloc[0] for feature in LOAN_TYPE_FEATURES}
        expected = {
            feature: float(expected_counts.get(feature.removeprefix("loan_type_"), 0))
            for feature in LOAN_TYPE_FEATURES
        }
        assert counts == expected
        assert all(cleaned[feature].dtype == np.float64 for feature in LOAN_TYPE_FEATURES)
        assert "Type_of_Loan" not in cleaned.columns

    def test_unknown_loan_type_is_named(self, raw_frame) -> None:
        with pytest.raises(
            SourceDataError, match=r"row 0, column Type_of_Loan: unknown loan type\(s\) \['Boat Loan'\]"
        ):
            financial_value(raw_frame, "Type_of_Loan", "Auto Loan, and Boat Loan")


class TestErrorsNameTheFileAndLine:
    def test_bad_value_read_from_a_file_names_file_line_column_value(
        self, write_source_file, raw_frame
    ) -> None:
        good = raw_frame("financials").iloc[0]
        bad = good.copy()
        bad["Outstanding_Debt"] = "1,562.91"  # a thousands separator: not in the known dirt
        lines = [",".join(good.index)] + [",".join(f'"{v}"' for v in row) for row in (good, good, bad)]
        path = write_source_file("features_financials.csv", lines)

        raw = read_source_month(path, "financials", "2024-03-01")
        with pytest.raises(SourceDataError) as error:
            clean_financials(raw)  # no source_name: the file is taken from the frame
        assert str(error.value).startswith(f"{path} line 4, column Outstanding_Debt: cannot parse '1,562.91'")

    def test_explicit_source_name_wins(self, raw_frame) -> None:
        with pytest.raises(SourceDataError, match=r"^my_file\.csv row 0, column Age"):
            clean_attributes(raw_frame("attributes", {"Age": "old"}), source_name=Path("my_file.csv"))


class TestFinancialTypes:
    def test_every_output_column_has_its_contract_type(self, raw_frame) -> None:
        cleaned = clean_financials(
            raw_frame("financials", {}, {"Credit_Mix": "_", "Payment_of_Min_Amount": "NM"})
        )
        categories = {"Customer_ID", GRADE, "Payment_of_Min_Amount", "Payment_Behaviour"}
        for column, dtype in cleaned.dtypes.items():
            if column in categories:
                assert dtype == np.dtype(object), column
            elif column == "snapshot_date":
                assert dtype == np.dtype("datetime64[ns]")
            else:
                assert dtype == np.float64, column


class TestClickstreamAndLoans:
    def test_clickstream_numbers(self, raw_frame) -> None:
        cleaned = clean_clickstream(raw_frame("clickstream", {"fe_1": "-101", "fe_2": "", "fe_3": "7_"}))
        assert list(cleaned.columns) == ["Customer_ID", "snapshot_date", *CLICKSTREAM_COLUMNS]
        assert (
            cleaned["fe_1"].iloc[0] == -101.0
            and np.isnan(cleaned["fe_2"].iloc[0])
            and cleaned["fe_3"].iloc[0] == 7.0
        )
        assert (cleaned[list(CLICKSTREAM_COLUMNS)].dtypes == np.float64).all()

    def test_clickstream_bad_value(self, raw_frame) -> None:
        with pytest.raises(SourceDataError, match="column fe_20: cannot parse 'abc'"):
            clean_clickstream(raw_frame("clickstream", {"fe_20": "abc"}))

    def test_loan_daily_types(self, raw_frame) -> None:
        cleaned = clean_loan_daily(raw_frame("loan_daily"))
        assert cleaned["loan_start_date"].dtype == np.dtype("datetime64[ns]")
        assert cleaned["snapshot_date"].iloc[0] == pd.Timestamp("2024-04-01")
        numbers = cleaned[["tenure", "installment_num", "loan_amt", "due_amt", "overdue_amt"]].iloc[0]
        assert numbers.tolist() == [10.0, 1.0, 10000.0, 1000.0, 1000.0]

    def test_loan_daily_bad_date(self, raw_frame) -> None:
        with pytest.raises(
            SourceDataError, match="column loan_start_date: cannot parse '2024-13-01' as an ISO date"
        ):
            clean_loan_daily(raw_frame("loan_daily", {"loan_start_date": "2024-13-01"}))
