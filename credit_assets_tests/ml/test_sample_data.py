"""The sample generator: real shape, real kinds of dirt, learnable grade, determinism, chunked writing."""

from __future__ import annotations

import datetime as dt
import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from credit_assets.ml import sample_data
from credit_assets.ml.cleaning import clean_attributes, clean_clickstream, clean_financials, clean_loan_daily
from credit_assets.ml.features import build_features
from credit_assets.ml.sample_data import DEFAULT_MONTHS, generate_sample
from credit_assets.ml.schema import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    GRADE,
    GRADES,
    REQUIRED_COLUMNS,
    SOURCE_FILES,
)
from credit_assets.ml.sources import find_source_file, read_source_month, read_source_months, source_months

SOURCES = tuple(SOURCE_FILES)
CUSTOMERS_PER_MONTH = 500


@pytest.fixture(scope="module")
def default_sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample as the demo writes it: default months (2023-01..2025-01), 500 customers a month, seed 0."""
    return generate_sample(tmp_path_factory.mktemp("sample"), customers_per_month=CUSTOMERS_PER_MONTH)


@pytest.fixture(scope="module")
def raw_text(default_sample: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """Every generated file as raw text (the dirt as written)."""
    return {
        source: pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        for source, path in default_sample.items()
    }


def file_bytes(paths: dict[str, Path]) -> dict[str, bytes]:
    return {source: path.read_bytes() for source, path in paths.items()}


class TestShape:
    def test_writes_the_four_gzip_files_the_reader_finds(self, default_sample: dict[str, Path]) -> None:
        directory = default_sample["attributes"].parent
        for source in SOURCES:
            assert default_sample[source] == directory / f"{SOURCE_FILES[source]}.csv.gz"
            assert find_source_file(directory, source) == default_sample[source]
        assert sorted(path.name for path in directory.iterdir()) == sorted(
            f"{stem}.csv.gz" for stem in SOURCE_FILES.values()
        )

    def test_columns_and_order_are_the_real_ones(
        self, default_sample: dict[str, Path], real_data_dir: Path
    ) -> None:
        for source in SOURCES:
            with (
                gzip.open(find_source_file(real_data_dir, source), "rt") as real,
                gzip.open(default_sample[source], "rt") as sample,
            ):
                assert sample.readline() == real.readline(), source
            assert pd.read_csv(default_sample[source], nrows=0).columns.tolist() == list(
                REQUIRED_COLUMNS[source]
            )

    def test_months_and_customers(
        self, default_sample: dict[str, Path], raw_text: dict[str, pd.DataFrame]
    ) -> None:
        assert source_months(default_sample["attributes"]) == list(DEFAULT_MONTHS)
        assert DEFAULT_MONTHS[0] == dt.date(2023, 1, 1) and DEFAULT_MONTHS[-1] == dt.date(2025, 1, 1)
        attributes = raw_text["attributes"]
        assert (attributes.groupby("snapshot_date").size() == CUSTOMERS_PER_MONTH).all()
        assert attributes["Customer_ID"].is_unique
        assert attributes["Customer_ID"].str.fullmatch(r"CUS_0x[0-9a-f]+").all()
        assert raw_text["financials"]["Customer_ID"].tolist() == attributes["Customer_ID"].tolist()

    def test_about_a_fifth_of_grades_unknown_and_every_grade_present(
        self, raw_text: dict[str, pd.DataFrame]
    ) -> None:
        shares = raw_text["financials"]["Credit_Mix"].value_counts(normalize=True)
        assert set(shares.index) == {*GRADES, "_"}
        assert 0.17 < shares["_"] < 0.23
        assert all(shares[grade] > 0.12 for grade in GRADES)

    def test_clickstream_for_about_70_percent_over_several_months_from_the_cohort_on(
        self, raw_text: dict[str, pd.DataFrame]
    ) -> None:
        attributes = raw_text["attributes"].set_index("Customer_ID")["snapshot_date"]
        clicks = raw_text["clickstream"]
        assert 0.65 < clicks["Customer_ID"].nunique() / len(attributes) < 0.75
        cohort = pd.to_datetime(clicks["Customer_ID"].map(attributes))
        months_after = (
            pd.to_datetime(clicks["snapshot_date"]).dt.to_period("M") - cohort.dt.to_period("M")
        ).map(lambda offset: offset.n)
        assert months_after.min() == 0 and months_after.max() == sample_data.CLICKSTREAM_MONTHS - 1
        assert not clicks.duplicated(["Customer_ID", "snapshot_date"]).any()
        assert clicks["snapshot_date"].max() == "2025-01-01"  # never past the last generated month

    def test_loan_rows_one_per_instalment_month(self, raw_text: dict[str, pd.DataFrame]) -> None:
        loans = raw_text["loan_daily"]
        per_loan = loans.groupby("loan_id")
        assert (per_loan.size() == sample_data.LOAN_TENURE + 1).all()
        first = loans[loans["loan_id"] == loans["loan_id"].iloc[0]]
        assert first["installment_num"].tolist() == [str(i) for i in range(sample_data.LOAN_TENURE + 1)]
        months = pd.to_datetime(first["snapshot_date"]).dt.to_period("M")
        assert (months.diff().dropna().map(lambda offset: offset.n) == 1).all()
        assert first["snapshot_date"].iloc[0] == first["loan_start_date"].iloc[0]
        amounts = loans[["due_amt", "paid_amt", "overdue_amt", "balance"]].astype(float)
        assert (amounts >= 0).all().all()
        assert (loans["paid_amt"].astype(float) == 0).mean() > 0.02  # some instalments are missed


class TestDirt:
    @pytest.mark.parametrize(
        ("source", "column", "pattern"),
        [
            ("attributes", "Age", r"\d+_"),
            ("attributes", "Age", r"-500"),
            ("attributes", "Age", r"[1-9]\d{3}"),  # 4-digit impossible ages
            ("attributes", "Occupation", r"_______"),
            ("attributes", "Name", r'.*"Jr"'),
            ("attributes", "SSN", r"#F%\$D@\*&8"),
            ("financials", "Annual_Income", r"[\d.]+_"),
            ("financials", "Num_of_Loan", r"\d+_"),
            ("financials", "Num_of_Loan", r"-100"),
            ("financials", "Num_of_Delayed_Payment", r"\d+_"),
            ("financials", "Changed_Credit_Limit", r"_"),
            ("financials", "Amount_invested_monthly", r"__10000__"),
            ("financials", "Monthly_Balance", r"__-333333333333333333333333333__"),
            ("financials", "Payment_of_Min_Amount", r"NM"),
            ("financials", "Payment_Behaviour", r"!@9#%8"),
            ("financials", "Credit_History_Age", r"\d+ Years and \d+ Months"),
            ("financials", "Type_of_Loan", r""),
            ("financials", "Type_of_Loan", r"[A-Za-z -]+, and [A-Za-z -]+"),
            ("financials", "Credit_Mix", r"_"),
        ],
    )
    def test_each_kind_of_dirt_is_present(
        self, raw_text: dict[str, pd.DataFrame], source: str, column: str, pattern: str
    ) -> None:
        assert raw_text[source][column].str.fullmatch(pattern).any(), f"{source}.{column} has no {pattern!r}"

    def test_names_with_quotes_are_written_with_doubled_quotes(self, default_sample: dict[str, Path]) -> None:
        with gzip.open(default_sample["attributes"], "rt") as handle:
            assert any(re.search(r',"Person 0x[0-9a-f]+ ""Jr""",', line) for line in handle)


class TestThroughThePipeline:
    def test_every_month_reads_cleans_and_builds(self, default_sample: dict[str, Path]) -> None:
        months = list(DEFAULT_MONTHS)
        raw = {
            source: read_source_months(default_sample[source], source, months)
            for source in ("attributes", "financials", "clickstream")
        }
        for month in months:
            features = build_features(
                clean_attributes(raw["attributes"][month]),
                clean_financials(raw["financials"][month]),
                clean_clickstream(raw["clickstream"][month]),
            )
            assert len(features) == CUSTOMERS_PER_MONTH
            assert tuple(features.columns[3:]) == FEATURE_COLUMNS
            assert set(features[GRADE].dropna()) == set(GRADES)
            assert 0.6 < features["fe_1"].notna().mean() < 0.8
            numeric = features[[c for c in FEATURE_COLUMNS if c not in CATEGORICAL_FEATURES]]
            assert (numeric.dtypes == np.float64).all()
        loans = clean_loan_daily(
            read_source_month(default_sample["loan_daily"], "loan_daily", DEFAULT_MONTHS[5])
        )
        assert (
            len(loans) == CUSTOMERS_PER_MONTH * 6
        )  # the instalments of the first six cohorts fall in month 6

    def test_grade_is_learnable_out_of_time(self, default_sample: dict[str, Path]) -> None:
        """A LightGBM trained on 12 months scores a macro F1 near 0.9 on the next month."""
        import lightgbm  # a pinned dependency: a missing one fails here, it is not skipped
        from sklearn.metrics import f1_score

        months = list(DEFAULT_MONTHS[:14])
        raw = {
            source: read_source_months(default_sample[source], source, months)
            for source in ("attributes", "financials", "clickstream")
        }
        frames = [
            build_features(
                clean_attributes(raw["attributes"][m]),
                clean_financials(raw["financials"][m]),
                clean_clickstream(raw["clickstream"][m]),
            )
            for m in months
        ]
        data = pd.concat(frames, ignore_index=True)
        data = data[data[GRADE].notna()]
        features = data[list(FEATURE_COLUMNS)].astype({column: "category" for column in CATEGORICAL_FEATURES})
        train = data["snapshot_date"] < pd.Timestamp(months[12])
        model = lightgbm.LGBMClassifier(n_estimators=100, num_leaves=15, n_jobs=1, verbose=-1, random_state=0)
        model.fit(features[train], data.loc[train, GRADE])
        macro_f1 = f1_score(data.loc[~train, GRADE], model.predict(features[~train]), average="macro")
        assert 0.8 < macro_f1 < 0.97


class TestDeterminismAndScale:
    def test_same_seed_same_bytes_other_seed_other_bytes(self, tmp_path: Path) -> None:
        months = ["2024-01-01", "2024-02-01", "2024-03-01"]
        first = file_bytes(generate_sample(tmp_path / "a", months=months, customers_per_month=200, seed=7))
        again = file_bytes(generate_sample(tmp_path / "b", months=months, customers_per_month=200, seed=7))
        other = file_bytes(generate_sample(tmp_path / "c", months=months, customers_per_month=200, seed=8))
        assert first == again
        assert all(content[4:8] == bytes(4) for content in first.values())  # gzip MTIME 0: no build timestamp
        assert all(first[source] != other[source] for source in SOURCES)

    def test_a_month_does_not_depend_on_the_other_months_generated(self, tmp_path: Path) -> None:
        alone = generate_sample(tmp_path / "alone", months=["2024-02-01"], customers_per_month=100)
        with_others = generate_sample(
            tmp_path / "range", months=["2024-01-01", "2024-02-01", "2024-03-01"], customers_per_month=100
        )
        for source in ("attributes", "financials", "loan_daily"):
            expected = read_source_month(alone[source], source, "2024-02-01").reset_index(drop=True)
            february_cohort = read_source_month(with_others[source], source, "2024-02-01").reset_index(
                drop=True
            )
            if source == "loan_daily":  # February's instalment rows also hold January's loans
                february_cohort = february_cohort[
                    february_cohort["loan_start_date"] == "2024-02-01"
                ].reset_index(drop=True)
            pd.testing.assert_frame_equal(february_cohort, expected, check_index_type=False)

    def test_chunked_generation_writes_every_customer_once(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(sample_data, "CHUNK_CUSTOMERS", 64)
        paths = generate_sample(tmp_path, months=["2024-05-01", "2024-06-01"], customers_per_month=150)
        attributes = pd.read_csv(paths["attributes"], dtype=str)
        assert len(attributes) == 300 and attributes["Customer_ID"].is_unique
        numbers = attributes["Customer_ID"].str.removeprefix("CUS_0x").map(lambda text: int(text, 16))
        assert (numbers.groupby(attributes["snapshot_date"]).agg(lambda n: n.max() - n.min()) == 149).all()
        loans = pd.read_csv(paths["loan_daily"], dtype=str)
        assert len(loans) == 300 * (sample_data.LOAN_TENURE + 1)

    def test_plain_csv_replaces_an_earlier_gzip_sample(self, tmp_path: Path) -> None:
        generate_sample(tmp_path, months=["2024-01-01"], customers_per_month=20)
        paths = generate_sample(tmp_path, months=["2024-01-01"], customers_per_month=20, compress=False)
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
            f"{stem}.csv" for stem in SOURCE_FILES.values()
        )
        assert paths["financials"].read_text().startswith("Customer_ID,Annual_Income,")

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ({"months": []}, "months is empty"),
            ({"customers_per_month": 0}, "customers_per_month must be at least 1"),
            ({"seed": -1}, "seed must be a non-negative"),
            ({"months": ["2024-01-15"]}, "not the first day of a month"),
        ],
    )
    def test_bad_arguments(self, tmp_path: Path, arguments: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            generate_sample(tmp_path, **arguments)
