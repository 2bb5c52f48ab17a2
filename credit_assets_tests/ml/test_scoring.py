import numpy as np
import pandas as pd
import pytest

from credit_assets.ml.models import train_model
from credit_assets.ml.schema import GRADES
from credit_assets.ml.scoring import SCORE_COLUMNS, score_customers, score_in_chunks
from credit_assets_tests.ml.test_models import make_feature_frame


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    return make_feature_frame(customers_per_month=150, months=("2024-04-01",), seed=11)


@pytest.fixture(scope="module")
def model():
    return train_model("lightgbm", make_feature_frame(), params={"n_estimators": 30})


def test_every_customer_is_scored_graded_or_not(model, month):
    assert month["grade"].isna().any()
    scores = score_customers(model, month)
    assert len(scores) == len(month)
    assert scores["customer_id"].tolist() == month["customer_id"].tolist()
    assert (scores["snapshot_date"] == pd.Timestamp("2024-04-01")).all()
    assert scores["snapshot_date"].dtype == "datetime64[ns]"


def test_columns_and_types(model, month):
    scores = score_customers(model, month)
    assert tuple(scores.columns) == SCORE_COLUMNS
    probability_columns = ["prediction_probability", "prob_bad", "prob_good", "prob_standard"]
    assert (scores[probability_columns].dtypes == np.float64).all()
    assert set(scores["predicted_grade"]) <= set(GRADES)


def test_scores_agree_with_the_model_probabilities(model, month):
    scores = score_customers(model, month)
    proba = model.predict_proba(month)
    np.testing.assert_allclose(scores[["prob_bad", "prob_good", "prob_standard"]], proba[list(GRADES)])
    assert scores["predicted_grade"].tolist() == model.predict(month).tolist()
    chosen = proba.to_numpy()[np.arange(len(proba)), [GRADES.index(g) for g in scores["predicted_grade"]]]
    np.testing.assert_allclose(scores["prediction_probability"], chosen)


def test_chunks_concatenate_to_the_whole_month(model, month):
    chunks = list(score_in_chunks(model, month, chunk_rows=40))
    assert [len(chunk) for chunk in chunks] == [40, 40, 40, 30]
    pd.testing.assert_frame_equal(pd.concat(chunks), score_customers(model, month))


def test_empty_month_scores_to_an_empty_frame_with_the_columns(model, month):
    scores = score_customers(model, month.iloc[0:0])
    assert scores.empty
    assert tuple(scores.columns) == SCORE_COLUMNS
    assert list(score_in_chunks(model, month.iloc[0:0])) == []


def test_missing_identity_column_is_named(model, month):
    with pytest.raises(ValueError, match="customer_id"):
        score_customers(model, month.drop(columns=["customer_id"]))


def test_chunk_size_must_be_positive(model, month):
    with pytest.raises(ValueError, match="chunk_rows"):
        next(score_in_chunks(model, month, chunk_rows=0))
