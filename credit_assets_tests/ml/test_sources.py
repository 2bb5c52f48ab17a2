"""Finding and reading source files: month filtering, text kept as written, errors that name what to fix."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pandas as pd
import pytest

from credit_assets.ml import sources
from credit_assets.ml.schema import REQUIRED_COLUMNS
from credit_assets.ml.sources import (
    LINE_INDEX_NAME,
    SOURCE_PATH_ATTR,
    SourceDataError,
    as_month,
    find_source_file,
    read_source_month,
    read_source_months,
    source_months,
)

ATTRIBUTES_HEADER = ",".join(REQUIRED_COLUMNS["attributes"])
MARCH = dt.date(2024, 3, 1)

# Lines 2..7 of a small attributes file: two months, dirt and a quoted name with doubled quotes.
ATTRIBUTE_LINES = [
    ATTRIBUTES_HEADER,
    "CUS_0x1,Person 0x1,28_,123-45-6789,_______,2024-02-01",
    "CUS_0x2,Person 0x2,-500,#F%$D@*&8,Lawyer,2024-03-01",
    'CUS_0x3,"Person 0x3 ""Jr""",,123-45-6780,Doctor,2024-03-01',
    "CUS_0x4,Person 0x4,40,123-45-6781,NM,2024-02-01",
    "CUS_0x5,Person 0x5,41,123-45-6782,Writer,2024-03-01",
    "CUS_0x6,Person 0x6,42,123-45-6783,Writer,2024-04-01",
]


@pytest.fixture
def attributes_file(write_source_file) -> Path:
    return write_source_file("features_attributes.csv.gz", ATTRIBUTE_LINES)


class TestFindSourceFile:
    @pytest.mark.parametrize("name", ["features_financials.csv", "features_financials.csv.gz"])
    def test_finds_plain_or_gzip_file(self, tmp_path: Path, name: str) -> None:
        (tmp_path / name).write_text("x\n")
        assert find_source_file(tmp_path, "financials") == tmp_path / name

    def test_missing_file_names_directory_and_both_names(self, tmp_path: Path) -> None:
        with pytest.raises(SourceDataError) as error:
            find_source_file(tmp_path, "clickstream")
        message = str(error.value)
        assert str(tmp_path) in message
        assert "feature_clickstream.csv " in message and "feature_clickstream.csv.gz" in message

    def test_both_extensions_present_is_ambiguous(self, tmp_path: Path) -> None:
        (tmp_path / "lms_loan_daily.csv").write_text("x\n")
        (tmp_path / "lms_loan_daily.csv.gz").write_bytes(gzip.compress(b"x\n"))
        with pytest.raises(SourceDataError, match="keep only one"):
            find_source_file(tmp_path, "loan_daily")

    def test_unknown_source_lists_the_known_ones(self, tmp_path: Path) -> None:
        with pytest.raises(SourceDataError, match=r"unknown source 'payments'.*attributes"):
            find_source_file(tmp_path, "payments")


class TestReadSourceMonth:
    def test_returns_only_the_month_rows_with_every_value_as_written(self, attributes_file: Path) -> None:
        march = read_source_month(attributes_file, "attributes", MARCH)

        assert march["Customer_ID"].tolist() == ["CUS_0x2", "CUS_0x3", "CUS_0x5"]
        assert march["Age"].tolist() == ["-500", "", "41"]  # empty stays "", not NaN: cleaning decides
        assert march["SSN"].tolist()[0] == "#F%$D@*&8"
        assert march["Name"].tolist()[1] == 'Person 0x3 "Jr"'
        assert list(march.columns) == list(REQUIRED_COLUMNS["attributes"])
        assert all(isinstance(value, str) for value in march.to_numpy().ravel())

    def test_index_is_the_file_line_number_and_attrs_name_the_file(self, attributes_file: Path) -> None:
        march = read_source_month(attributes_file, "attributes", MARCH)
        assert march.index.name == LINE_INDEX_NAME
        assert march.index.tolist() == [3, 4, 6]
        assert march.attrs[SOURCE_PATH_ATTR] == str(attributes_file)

    def test_month_may_be_an_iso_string_such_as_a_partition_key(self, attributes_file: Path) -> None:
        by_string = read_source_month(attributes_file, "attributes", "2024-02-01")
        assert by_string["Customer_ID"].tolist() == ["CUS_0x1", "CUS_0x4"]

    def test_reads_in_chunks_with_line_numbers_across_chunk_borders(
        self, attributes_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sources, "READ_CHUNK_ROWS", 2)
        march = read_source_month(attributes_file, "attributes", MARCH)
        assert march.index.tolist() == [3, 4, 6]
        assert march["Customer_ID"].tolist() == ["CUS_0x2", "CUS_0x3", "CUS_0x5"]

    def test_plain_csv_reads_like_gzip(self, write_source_file) -> None:
        path = write_source_file("features_attributes.csv", ATTRIBUTE_LINES)
        assert read_source_month(path, "attributes", MARCH)["Customer_ID"].tolist() == [
            "CUS_0x2",
            "CUS_0x3",
            "CUS_0x5",
        ]

    def test_month_without_rows_names_month_and_file(self, attributes_file: Path) -> None:
        with pytest.raises(SourceDataError) as error:
            read_source_month(attributes_file, "attributes", dt.date(2023, 7, 1))
        assert str(error.value) == f"no rows for 2023-07-01 in {attributes_file}"

    def test_allow_empty_returns_an_empty_frame_with_the_columns(self, attributes_file: Path) -> None:
        empty = read_source_month(attributes_file, "attributes", dt.date(2023, 7, 1), allow_empty=True)
        assert empty.empty
        assert list(empty.columns) == list(REQUIRED_COLUMNS["attributes"])

    def test_missing_column_names_file_and_column(self, write_source_file) -> None:
        header = ATTRIBUTES_HEADER.replace("Occupation,", "")
        path = write_source_file("features_attributes.csv", [header, "CUS_0x1,P,28,1-2-3,2024-03-01"])
        with pytest.raises(SourceDataError) as error:
            read_source_month(path, "attributes", MARCH)
        assert str(path) in str(error.value)
        assert "missing required column(s) Occupation " in str(error.value)

    def test_semicolon_delimited_file_reports_missing_columns_and_the_delimiter(
        self, write_source_file
    ) -> None:
        lines = [line.replace(",", ";") for line in ATTRIBUTE_LINES[:3]]
        path = write_source_file("features_attributes.csv", lines)
        with pytest.raises(SourceDataError) as error:
            read_source_month(path, "attributes", MARCH)
        message = str(error.value)
        assert str(path) in message
        assert "Customer_ID, Name, Age, SSN, Occupation, snapshot_date" in message
        assert "not comma-delimited" in message

    def test_truncated_gzip_names_file_and_says_truncated(self, tmp_path: Path) -> None:
        lines = [ATTRIBUTES_HEADER] + [
            f"CUS_0x{i:x},Person {i},30,123-45-6789,Lawyer,2024-03-01" for i in range(5000)
        ]
        complete = gzip.compress(("\n".join(lines) + "\n").encode())
        path = tmp_path / "features_attributes.csv.gz"
        path.write_bytes(complete[: len(complete) // 2])
        with pytest.raises(SourceDataError) as error:
            read_source_month(path, "attributes", MARCH)
        assert str(path) in str(error.value)
        assert "truncated or corrupt" in str(error.value)

    def test_file_that_is_not_gzip_despite_its_name(self, tmp_path: Path) -> None:
        path = tmp_path / "features_attributes.csv.gz"
        path.write_text(ATTRIBUTES_HEADER + "\n")
        with pytest.raises(SourceDataError, match=r"features_attributes\.csv\.gz.*(?i:gzip)"):
            read_source_month(path, "attributes", MARCH)

    def test_empty_file_says_the_header_is_missing(self, tmp_path: Path) -> None:
        path = tmp_path / "features_attributes.csv"
        path.write_bytes(b"")
        with pytest.raises(SourceDataError, match=r"features_attributes\.csv is empty"):
            read_source_month(path, "attributes", MARCH)

    def test_row_with_too_many_fields_names_file_and_line(self, write_source_file) -> None:
        lines = [*ATTRIBUTE_LINES[:3], "CUS_0x9,P,30,1-2-3,Lawyer,2024-03-01,extra"]
        path = write_source_file("features_attributes.csv", lines)
        with pytest.raises(SourceDataError) as error:
            read_source_month(path, "attributes", MARCH)
        assert str(path) in str(error.value)
        assert "line 4" in str(error.value)

    @pytest.mark.parametrize(
        ("bad_date", "reason"),
        [
            ("2024/03/01", "not a date in ISO format"),
            ("03-01-2024", "not a date in ISO format"),
            ("2024-02-30", "not a valid calendar date"),
            ("2024-03-15", "not the first day of a month"),
            ("", "not a date in ISO format"),
        ],
    )
    def test_unparseable_snapshot_date_names_file_line_and_value(
        self, write_source_file, bad_date: str, reason: str
    ) -> None:
        lines = [*ATTRIBUTE_LINES[:4], f"CUS_0x9,P,30,1-2-3,Lawyer,{bad_date}", *ATTRIBUTE_LINES[4:]]
        path = write_source_file("features_attributes.csv.gz", lines)
        with pytest.raises(SourceDataError) as error:
            read_source_month(path, "attributes", MARCH)
        message = str(error.value)
        assert message.startswith(f"{path} line 5, column snapshot_date: {bad_date!r} is {reason}")

    def test_unknown_source_is_refused(self, attributes_file: Path) -> None:
        with pytest.raises(SourceDataError, match="unknown source"):
            read_source_month(attributes_file, "attribute", MARCH)


class TestReadSourceMonths:
    def test_one_pass_gives_the_same_frames_as_one_read_per_month(self, attributes_file: Path) -> None:
        months = [dt.date(2024, 2, 1), MARCH, dt.date(2024, 4, 1)]
        together = read_source_months(attributes_file, "attributes", months)
        assert list(together) == months
        for month in months:
            pd.testing.assert_frame_equal(
                together[month], read_source_month(attributes_file, "attributes", month)
            )

    def test_lists_every_month_without_rows(self, attributes_file: Path) -> None:
        with pytest.raises(SourceDataError, match="no rows for 2023-01-01, 2023-02-01 in"):
            read_source_months(attributes_file, "attributes", ["2023-02-01", MARCH, "2023-01-01"])


class TestSourceMonths:
    def test_distinct_months_sorted(self, attributes_file: Path) -> None:
        assert source_months(attributes_file) == [dt.date(2024, 2, 1), MARCH, dt.date(2024, 4, 1)]

    def test_bad_date_names_the_line(self, write_source_file) -> None:
        path = write_source_file("x.csv", ["snapshot_date", "2024-01-01", "January"])
        with pytest.raises(SourceDataError, match=r"x\.csv line 3, column snapshot_date: 'January'"):
            source_months(path)

    def test_file_without_snapshot_date(self, write_source_file) -> None:
        path = write_source_file("x.csv", ["Customer_ID", "CUS_0x1"])
        with pytest.raises(SourceDataError, match="missing required column.*snapshot_date"):
            source_months(path)


class TestAsMonth:
    @pytest.mark.parametrize(
        "month", [dt.date(2024, 3, 1), dt.datetime(2024, 3, 1), pd.Timestamp("2024-03-01"), "2024-03-01"]
    )
    def test_accepts_first_days_in_several_types(self, month: object) -> None:
        assert as_month(month) == MARCH  # type: ignore[arg-type]

    def test_refuses_a_day_that_is_not_the_first(self) -> None:
        with pytest.raises(ValueError, match="2024-03-02 is not the first day of a month"):
            as_month(dt.date(2024, 3, 2))
