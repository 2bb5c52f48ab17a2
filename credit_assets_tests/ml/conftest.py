"""Fixtures for the data-layer tests: tiny raw frames, source files on disk, and the real CS611 data."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pytest

from credit_assets.ml.schema import CLICKSTREAM_COLUMNS, REQUIRED_COLUMNS

# The real data lives beside the repository, never inside it: <repo>/../shared/data/cs611.
REAL_DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cs611"

# One valid raw row per source, as text exactly as the files hold it. Tests override single values.
VALID_RAW_ROWS: dict[str, dict[str, str]] = {
    "attributes": {
        "Customer_ID": "CUS_0x1000",
        "Name": "Person 0x1000",
        "Age": "33",
        "SSN": "123-45-6789",
        "Occupation": "Lawyer",
        "snapshot_date": "2024-03-01",
    },
    "financials": {
        "Customer_ID": "CUS_0x1000",
        "Annual_Income": "30625.94",
        "Monthly_Inhand_Salary": "2706.1616666666664",
        "Num_Bank_Accounts": "6",
        "Num_Credit_Card": "5",
        "Interest_Rate": "27",
        "Num_of_Loan": "2",
        "Type_of_Loan": "Credit-Builder Loan, and Home Equity Loan",
        "Delay_from_due_date": "57",
        "Num_of_Delayed_Payment": "26",
        "Changed_Credit_Limit": "1.63",
        "Num_Credit_Inquiries": "11.0",
        "Credit_Mix": "Bad",
        "Outstanding_Debt": "1562.91",
        "Credit_Utilization_Ratio": "30.07719135017377",
        "Credit_History_Age": "10 Years and 9 Months",
        "Payment_of_Min_Amount": "Yes",
        "Total_EMI_per_month": "42.941090422469365",
        "Amount_invested_monthly": "77.31427572208112",
        "Payment_Behaviour": "High_spent_Medium_value_payments",
        "Monthly_Balance": "400.36080052211616",
        "snapshot_date": "2024-03-01",
    },
    "clickstream": {
        **{column: str(10 * i) for i, column in enumerate(CLICKSTREAM_COLUMNS, start=1)},
        "Customer_ID": "CUS_0x1000",
        "snapshot_date": "2024-03-01",
    },
    "loan_daily": {
        "loan_id": "CUS_0x1000_2024_03_01",
        "Customer_ID": "CUS_0x1000",
        "loan_start_date": "2024-03-01",
        "tenure": "10",
        "installment_num": "1",
        "loan_amt": "10000",
        "due_amt": "1000.0",
        "paid_amt": "0.0",
        "overdue_amt": "1000.0",
        "balance": "10000.0",
        "snapshot_date": "2024-04-01",
    },
}
assert {source: tuple(row) for source, row in VALID_RAW_ROWS.items()} == REQUIRED_COLUMNS

RawFrameFactory = Callable[..., pd.DataFrame]


def _raw_frame(source: str, rows: Sequence[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{**VALID_RAW_ROWS[source], **row} for row in rows], dtype=str)


@pytest.fixture
def raw_frame() -> RawFrameFactory:
    """`raw_frame(source, {"Age": "28_"}, {...})`: one valid raw text row per dict, those values changed."""

    def make(source: str, *rows: dict[str, str]) -> pd.DataFrame:
        return _raw_frame(source, rows or [{}])

    return make


@pytest.fixture
def write_source_file(tmp_path: Path) -> Callable[..., Path]:
    """`write_source_file(name, lines)`: write lines (header first) to tmp_path/name; gzip if it ends .gz."""

    def write(name: str, lines: Sequence[str]) -> Path:
        path = tmp_path / name
        text = "".join(line + "\n" for line in lines)
        if name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
                handle.write(text)
        else:
            path.write_text(text, encoding="utf-8", newline="")
        return path

    return write


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real CS611 data. Missing data fails the test (it is never skipped): these checks are the only ones
    that see the real dirt, so silently not running them would hide a broken cleaning."""
    directory = REAL_DATA_DIR.resolve()
    if not directory.is_dir():
        pytest.fail(
            f"real data directory {directory} is missing: the real-data tests need the CS611 files "
            "(features_attributes, features_financials, feature_clickstream, lms_loan_daily as .csv.gz) in "
            "<repo>/../shared/data/cs611"
        )
    return directory
