"""A month in batches (ml/streaming.py) gives exactly what the whole-month functions give."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from credit_assets.ml import cleaning
from credit_assets.ml.features import build_features
from credit_assets.ml.metrics import classification_metrics
from credit_assets.ml.models import train_model
from credit_assets.ml.sample_data import generate_sample
from credit_assets.ml.schema import CUSTOMER_ID, GRADE
from credit_assets.ml.scoring import inference_rows, prediction_threads, score_customers
from credit_assets.ml.sources import (
    SourceDataError,
    find_source_file,
    iter_source_month_chunks,
    read_source_month,
)
from credit_assets.ml.streaming import customer_buckets, iter_feature_batches, read_cleaned_month, score_month

MONTHS = [dt.date(2023, 11, 1), dt.date(2023, 12, 1), dt.date(2024, 1, 1)]
MONTH = dt.date(2023, 12, 1)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sample")
    generate_sample(directory, months=MONTHS, customers_per_month=3_000, seed=3)
    return directory


def whole_month_features(data_dir: Path, month: dt.date) -> pd.DataFrame:
    raw = {
        source: read_source_month(find_source_file(data_dir, source), source, month, allow_empty=True)
        for source in ("attributes", "financials", "clickstream")
    }
    return build_features(
        cleaning.clean_attributes(raw["attributes"]),
        cleaning.clean_financials(raw["financials"]),
        cleaning.clean_clickstream(raw["clickstream"]),
    )


def test_month_chunks_concatenate_to_the_month(sample_dir: Path) -> None:
    path = find_source_file(sample_dir, "financials")
    chunks = list(iter_source_month_chunks(path, "financials", MONTH, chunk_rows=1_000))
    assert len(chunks) >= 3
    assert all(len(chunk) <= 1_000 and chunk.attrs["source_path"] == str(path) for chunk in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks), read_source_month(path, "financials", MONTH))


@pytest.mark.parametrize(
    ("source", "clean"),
    [
        ("attributes", cleaning.clean_attributes),
        ("financials", cleaning.clean_financials),
        ("clickstream", cleaning.clean_clickstream),
        ("loan_daily", cleaning.clean_loan_daily),
    ],
)
def test_a_month_cleaned_chunk_by_chunk_is_the_month_cleaned_whole(sample_dir: Path, source: str, clean) -> None:  # type: ignore[no-untyped-def]
    path = find_source_file(sample_dir, source)
    whole = clean(read_source_month(path, source, MONTH), source_name=str(path))

    chunked = read_cleaned_month(path, source, MONTH, clean, chunk_rows=700)

    assert len(whole) > 700  # several chunks
    pd.testing.assert_frame_equal(chunked, whole)
    assert chunked.attrs == whole.attrs


def test_a_month_cleaned_chunk_by_chunk_names_a_bad_value_in_a_later_chunk(sample_dir: Path, tmp_path: Path) -> None:
    def spoil_the_last_row(rows: pd.DataFrame) -> pd.DataFrame:
        rows.iloc[-1, rows.columns.get_loc("Annual_Income")] = "lots"
        return rows

    path = find_source_file(_copy_with_financials(sample_dir, tmp_path, spoil_the_last_row), "financials")
    with pytest.raises(ValueError, match=r"Annual_Income.*'lots'") as refused:
        read_cleaned_month(path, "financials", MONTH, cleaning.clean_financials, chunk_rows=700)
    assert str(path) in str(refused.value)


def test_an_allowed_empty_month_cleans_to_the_empty_frame_with_its_columns(sample_dir: Path) -> None:
    path = find_source_file(sample_dir, "clickstream")
    empty = read_cleaned_month(path, "clickstream", dt.date(2022, 1, 1), cleaning.clean_clickstream, allow_empty=True)
    expected = cleaning.clean_clickstream(read_source_month(path, "clickstream", dt.date(2022, 1, 1), allow_empty=True))
    assert empty.empty
    pd.testing.assert_frame_equal(empty, expected, check_index_type=False)
    with pytest.raises(SourceDataError, match="no rows for 2022-01-01"):
        read_cleaned_month(path, "clickstream", dt.date(2022, 1, 1), cleaning.clean_clickstream)


def test_month_chunks_refuse_a_month_without_rows(sample_dir: Path) -> None:
    path = find_source_file(sample_dir, "attributes")
    with pytest.raises(SourceDataError, match="no rows for 2022-01-01"):
        list(iter_source_month_chunks(path, "attributes", dt.date(2022, 1, 1)))
    assert list(iter_source_month_chunks(path, "attributes", dt.date(2022, 1, 1), allow_empty=True)) == []


def test_feature_batches_hold_exactly_the_month(sample_dir: Path, tmp_path: Path) -> None:
    batches = list(
        iter_feature_batches(sample_dir, MONTH, batch_rows=700, read_chunk_rows=1_000, spill_dir=tmp_path)
    )
    assert len(batches) > 2
    assert all(len(batch) <= 2 * 700 for batch in batches)
    streamed = pd.concat(batches).sort_values(CUSTOMER_ID, ignore_index=True)
    expected = whole_month_features(sample_dir, MONTH).sort_values(CUSTOMER_ID, ignore_index=True)
    pd.testing.assert_frame_equal(streamed, expected)
    assert list(tmp_path.iterdir()) == []  # the spill is gone


def test_a_duplicate_customer_across_chunks_is_still_found(tmp_path: Path, sample_dir: Path) -> None:
    path = find_source_file(sample_dir, "attributes")
    lines = path.read_bytes()
    import gzip

    text = gzip.decompress(lines).decode().splitlines()
    duplicated = [line for line in text[1:] if "2023-12-01" in line][0]
    (tmp_path / "features_attributes.csv").write_text("\n".join([*text, duplicated]) + "\n")
    for source in ("financials", "clickstream"):
        found = find_source_file(sample_dir, source)
        (tmp_path / found.name).write_bytes(found.read_bytes())
    with pytest.raises(SourceDataError, match="appears 2 times"):
        list(iter_feature_batches(tmp_path, MONTH, batch_rows=500, read_chunk_rows=1_000))


def _copy_with_financials(sample_dir: Path, target: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """`sample_dir`'s files in `target`, the financials' rows of MONTH passed through `edit` first."""
    for source in ("attributes", "clickstream"):
        found = find_source_file(sample_dir, source)
        (target / found.name).write_bytes(found.read_bytes())
    found = find_source_file(sample_dir, "financials")
    raw = pd.read_csv(found, dtype=str, keep_default_na=False)
    in_month = raw["snapshot_date"] == MONTH.isoformat()
    edited = pd.concat([raw.loc[~in_month], edit(raw.loc[in_month].copy())])
    edited.to_csv(target / found.name, index=False)
    return target


def test_a_batch_of_customers_one_file_lacks_is_skipped_not_refused(sample_dir: Path, tmp_path: Path) -> None:
    # With one bucket per batch, dropping bucket 0's financials leaves a batch with no cohort at all:
    # the month as a whole still has one, so the batches hold exactly the whole-month join.
    def drop_bucket_zero(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.loc[customer_buckets(rows["Customer_ID"]) != 0]

    data_dir = _copy_with_financials(sample_dir, tmp_path, drop_bucket_zero)
    batches = list(iter_feature_batches(data_dir, MONTH, batch_rows=1, read_chunk_rows=1_000))
    assert len(batches) == 63  # 64 buckets, the first of them empty
    streamed = pd.concat(batches).sort_values(CUSTOMER_ID, ignore_index=True)
    expected = whole_month_features(data_dir, MONTH).sort_values(CUSTOMER_ID, ignore_index=True)
    assert 0 < len(expected) < 3_000
    pd.testing.assert_frame_equal(streamed, expected)


def test_a_month_without_any_cohort_is_refused_naming_both_files(sample_dir: Path, tmp_path: Path) -> None:
    def other_customers(rows: pd.DataFrame) -> pd.DataFrame:
        rows["Customer_ID"] = "X" + rows["Customer_ID"]
        return rows

    data_dir = _copy_with_financials(sample_dir, tmp_path, other_customers)
    with pytest.raises(SourceDataError, match="cohort is empty") as raised:
        list(iter_feature_batches(data_dir, MONTH, batch_rows=500, read_chunk_rows=1_000))
    message = str(raised.value)
    assert str(find_source_file(data_dir, "attributes")) in message
    assert str(find_source_file(data_dir, "financials")) in message
    assert "3000 row(s) for 2023-12-01" in message


def test_buckets_are_stable_and_spread() -> None:
    ids = pd.Series([f"CUS_0x{i:x}" for i in range(10_000)])
    buckets = customer_buckets(ids)
    np.testing.assert_array_equal(buckets, customer_buckets(ids.sample(frac=1, random_state=1).sort_index()))
    counts = np.bincount(buckets, minlength=64)
    assert counts.min() > 100 and counts.max() < 220


def test_score_month_writes_every_customer_and_measures_both_models(sample_dir: Path) -> None:
    train = whole_month_features(sample_dir, dt.date(2023, 11, 1))
    champion = train_model("lightgbm", train, params={"n_estimators": 20})
    shadow = train_model("catboost", train, params={"n_estimators": 20})
    written: list[pd.DataFrame] = []
    result = score_month(
        iter_feature_batches(sample_dir, MONTH, batch_rows=1_000),
        champion,
        written.append,
        shadow=shadow,
        chunk_rows=400,
    )
    month = whole_month_features(sample_dir, MONTH)
    scores = pd.concat(written).sort_values(CUSTOMER_ID, ignore_index=True)
    assert result.customers == len(month) == len(scores)
    expected = score_customers(champion, month).sort_values(CUSTOMER_ID, ignore_index=True)
    pd.testing.assert_frame_equal(scores, expected)
    graded = month[month[GRADE].notna()]
    assert result.graded == len(graded)
    shadow_metrics = classification_metrics(graded[GRADE], shadow.predict_proba(graded))
    assert result.shadow_metrics is not None
    assert result.shadow_metrics["macro_f1"] == pytest.approx(shadow_metrics["macro_f1"], abs=1e-6)
    assert result.champion_metrics["total_samples"] == len(graded)


def test_prediction_threads_change_nothing_but_speed(sample_dir: Path) -> None:
    frame = whole_month_features(sample_dir, dt.date(2023, 11, 1))
    model = train_model("lightgbm", frame, params={"n_estimators": 10})
    before = model.estimator.get_params()["n_jobs"]
    with prediction_threads(model, 2):
        assert model.estimator.get_params()["n_jobs"] == 2
    assert model.estimator.get_params()["n_jobs"] == before
    pd.testing.assert_frame_equal(score_customers(model, frame, threads=2), score_customers(model, frame))
    with pytest.raises(ValueError, match="threads"):
        score_customers(model, frame, threads=0)


def test_inference_rows_carry_the_lineage() -> None:
    scores = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "snapshot_date": pd.Timestamp("2024-01-01"),
            "predicted_grade": ["Bad", "Good"],
            "prediction_probability": [0.6, 0.7],
            "prob_bad": [0.6, 0.1],
            "prob_good": [0.2, 0.7],
            "prob_standard": [0.2, 0.2],
        }
    )
    rows = inference_rows(scores, {"model_name": "m", "model_version": 3})
    assert list(rows.columns) == [
        "customer_id", "snapshot_date", "predicted_grade", "prediction_probability", "model_name", "model_version",
        "prob_bad", "prob_good", "prob_standard",
    ]  # fmt: skip
    assert rows["model_version"].tolist() == [3, 3]


def test_generating_some_sources_writes_the_same_bytes(tmp_path: Path) -> None:
    months = [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    full = generate_sample(tmp_path / "full", months=months, customers_per_month=300, seed=5)
    some = generate_sample(
        tmp_path / "some",
        months=months,
        customers_per_month=300,
        seed=5,
        sources=["attributes", "clickstream"],
    )
    assert set(some) == {"attributes", "clickstream"}
    assert sorted(path.name for path in (tmp_path / "some").iterdir()) == sorted(
        p.name for p in some.values()
    )
    for source, path in some.items():
        assert path.read_bytes() == full[source].read_bytes()
    with pytest.raises(ValueError, match="sources"):
        generate_sample(tmp_path / "bad", months=months, sources=["loans"])
