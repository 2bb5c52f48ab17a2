"""Issue 4, kind 2: models that see less than everything.

A grade absent from the training window (binary models, probabilities by the model's own classes), a grade
below the configurable minimum (refused through the training asset, nothing in MLflow), categories never
seen or only partly present in a month (scored from the category list frozen at training, CatBoost's
missing token), and every way a month's frame can differ from the training frame in type, order or shape
(normalised, or refused naming the column). Scoring checks use the models the pipeline registered in a
real MLflow store and loaded back from it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from credit_assets.ml.encoding import MISSING_TOKEN, FeatureSchemaError
from credit_assets.ml.models import (
    CreditGradeModel,
    InsufficientTrainingDataError,
    check_training_data,
    load_model,
    save_model,
    train_model,
)
from credit_assets.ml.schema import FEATURE_COLUMNS, GRADES
from credit_assets.resources.mlflow import MlflowModelRegistry
from credit_assets_tests.hardening.conftest import MODEL_MONTH, Pipeline, step_failures
from credit_assets_tests.ml.test_models import FAST_PARAMS, make_feature_frame

FAMILIES = ("lightgbm", "catboost")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_feature_frame(customers_per_month=150)


@pytest.fixture(scope="module")
def registered(pipeline: Pipeline) -> dict[str, CreditGradeModel]:
    """Both families as the pipeline registered them, loaded back from the MLflow store."""
    registry = pipeline.registry()
    return {family: registry.load(v) for family, v in registry.latest_by_family(MODEL_MONTH).items()}


@pytest.fixture(scope="module")
def month(pipeline: Pipeline) -> pd.DataFrame:
    return pipeline.features(MODEL_MONTH)


def probabilities(model: CreditGradeModel, features: pd.DataFrame) -> np.ndarray:
    return model.predict_proba(features).to_numpy()


# -- a grade absent or nearly so ---------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_window_without_bad_gives_a_binary_model_read_by_its_own_classes(family: str, frame, tmp_path) -> None:
    """Bad is the first grade: a model without it has columns (Good, Standard); reading them by position
    would call every Good probability "Bad"."""
    train = frame[frame["grade"] != "Bad"]
    model = train_model(family, train, params=FAST_PARAMS[family], min_examples_per_grade=0)
    assert model.classes == ("Good", "Standard")

    raw = model.estimator.predict_proba(model.encoder.transform(frame))
    assert raw.shape[1] == 2
    proba = model.predict_proba(frame)
    assert list(proba.columns) == list(GRADES)
    assert (proba["Bad"] == 0.0).all()
    np.testing.assert_array_equal(proba["Good"], raw[:, list(model.estimator.classes_).index("Good")])
    np.testing.assert_array_equal(proba["Standard"], raw[:, list(model.estimator.classes_).index("Standard")])
    assert "Bad" not in set(model.predict(frame))
    # The class list travels with the saved model.
    reloaded = load_model(save_model(model, tmp_path / family))
    assert reloaded.classes == model.classes
    np.testing.assert_array_equal(probabilities(reloaded, frame), proba.to_numpy())


@pytest.mark.parametrize("family", FAMILIES)
def test_nearly_absent_grade_is_refused_below_the_minimum_and_kept_at_it(family: str, frame) -> None:
    keep_two_good = frame[(frame["grade"] != "Good")].index.union(frame[frame["grade"] == "Good"].index[:2])
    train = frame.loc[keep_two_good]
    with pytest.raises(InsufficientTrainingDataError, match=r"'Good' has 2 training example\(s\).*=3"):
        train_model(family, train, params=FAST_PARAMS[family], min_examples_per_grade=3)
    model = train_model(family, train, params=FAST_PARAMS[family], min_examples_per_grade=2)
    assert model.classes == GRADES


def test_the_minimum_itself_is_checked(frame) -> None:
    with pytest.raises(ValueError, match="0 or more"):
        check_training_data("lightgbm", frame, min_examples_per_grade=-1)
    with pytest.raises(ValueError, match="no 'grade' column"):
        check_training_data("lightgbm", frame.drop(columns="grade"))
    assert sum(check_training_data("lightgbm", frame, 0).values()) == int(frame["grade"].notna().sum())


def test_training_asset_refuses_a_rare_grade_before_anything_reaches_mlflow(pipeline: Pipeline) -> None:
    """Through lightgbm_model with a real MLflow store: a clear error, no model version, no training run.

    The check runs before the asset opens its MLflow run (a refused window is not a training attempt worth
    a FAILED run in the experiment: the Dagster run records the failure and its message)."""
    tracking_uri = pipeline.new_tracking_uri()
    result = pipeline.run(
        "retraining_job",
        MODEL_MONTH,
        tracking_uri=tracking_uri,
        assets=["lightgbm_model"],
        run_config={"ops": {"lightgbm_model": {"config": {"min_examples_per_grade": 100_000}}}},
        raise_on_error=False,
    )

    assert not result.success
    message = step_failures(result)["lightgbm_model"]
    assert "cannot train lightgbm" in message and "min_examples_per_grade=100000" in message
    assert "counts: Bad=" in message
    registry = MlflowModelRegistry(tracking_uri=tracking_uri)
    assert registry.all_versions() == []
    assert registry.client.search_registered_models() == []
    experiments = registry.client.search_experiments()
    runs = registry.client.search_runs([e.experiment_id for e in experiments])
    assert [run for run in runs if run.data.params] == []  # no run with training params
    assert [run for run in runs if run.info.experiment_id == "0"] == []  # nothing in Default


# -- categories ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_unseen_occupation_scores_exactly_as_missing(family: str, registered, month) -> None:
    model = registered[family]
    assert "Influencer" not in model.encoder.categories["Occupation"]
    influencer = month.assign(Occupation="Influencer")
    missing = month.assign(Occupation=np.nan)
    np.testing.assert_array_equal(probabilities(model, influencer), probabilities(model, missing))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_month_with_few_categories_scores_each_customer_as_inside_the_full_month(
    family: str, registered, month
) -> None:
    model = registered[family]
    full = model.predict_proba(month)
    for occupation in month["Occupation"].dropna().unique()[:3]:
        part = month[month["Occupation"] == occupation]
        np.testing.assert_array_equal(model.predict_proba(part).to_numpy(), full.loc[part.index].to_numpy())
    one = month.iloc[[7]]
    np.testing.assert_array_equal(model.predict_proba(one).to_numpy(), full.loc[one.index].to_numpy())
    # The encoding itself is the frozen one, not the month's own categories.
    encoded = model.encoder.transform(month.iloc[[7]])
    if family == "lightgbm":
        assert tuple(encoded["Occupation"].cat.categories) == model.encoder.categories["Occupation"]


def test_catboost_learns_and_scores_missing_categories_as_one_token(frame) -> None:
    """Missing in training and missing in scoring are the same category: a model that learned "no
    occupation means Bad" applies that to a missing occupation at scoring time, without an error."""
    train = frame.copy()
    train.loc[train["grade"] == "Bad", "Occupation"] = np.nan
    train.loc[train["grade"] != "Bad", "Occupation"] = "Lawyer"
    model = train_model("catboost", train, params=FAST_PARAMS["catboost"])
    assert model.encoder.transform(train.head(50))["Occupation"].isin([MISSING_TOKEN, "Lawyer"]).all()

    probe = frame.head(200).assign(Occupation=np.nan)
    lawyer = probe.assign(Occupation="Lawyer")
    assert model.predict_proba(probe)["Bad"].mean() > model.predict_proba(lawyer)["Bad"].mean() + 0.2
    never_seen = probe.assign(Occupation="Influencer")  # unseen -> the same token as missing
    np.testing.assert_array_equal(probabilities(model, never_seen), probabilities(model, probe))


# -- a month's frame differing from the training frame ----------------------------------------------

Variant = Callable[[pd.DataFrame], pd.DataFrame]
NORMALISED: dict[str, Variant] = {
    "columns-shuffled": lambda f: f[list(reversed(f.columns))],
    "extra-columns": lambda f: f.assign(new_upstream_column="x", Name="someone"),
    "rows-reordered": lambda f: f.iloc[::-1],
    "integer-counts": lambda f: f.assign(Num_Bank_Accounts=f["Num_Bank_Accounts"].fillna(0).astype("int64")),
    "numbers-as-text": lambda f: f.assign(Age=f["Age"].map(lambda v: None if pd.isna(v) else repr(float(v)))),
    "numbers-as-object": lambda f: f.assign(Interest_Rate=f["Interest_Rate"].astype(object)),
    "nullable-float": lambda f: f.assign(Outstanding_Debt=f["Outstanding_Debt"].astype("Float64")),
    "float32": lambda f: f.assign(Interest_Rate=f["Interest_Rate"].astype("float32").astype("float64")),
    "categories-as-category-dtype": lambda f: f.assign(Occupation=f["Occupation"].astype("category")),
    "categories-as-string-dtype": lambda f: f.assign(Payment_Behaviour=f["Payment_Behaviour"].astype("string")),
    "missing-as-None": lambda f: f.assign(Occupation=f["Occupation"].where(f["Occupation"].notna(), None)),
}
REFUSED: dict[str, tuple[Variant, str]] = {
    "column-missing": (lambda f: f.drop(columns="Interest_Rate"), "Interest_Rate"),
    "column-twice": (lambda f: pd.concat([f, f[["Age"]]], axis=1), "Age"),
    "text-in-number": (lambda f: f.assign(Annual_Income="12,000 USD"), "Annual_Income"),
    "date-in-number": (lambda f: f.assign(Credit_History_Age=pd.Timestamp("2024-01-01")), "Credit_History_Age"),
    "duration-in-number": (lambda f: f.assign(Credit_History_Age=pd.Timedelta(days=30)), "Credit_History_Age"),
    "infinite-number": (lambda f: f.assign(Monthly_Balance=np.inf), "Monthly_Balance"),
}


@pytest.mark.parametrize("variant", list(NORMALISED))
@pytest.mark.parametrize("family", FAMILIES)
def test_a_frame_in_another_type_or_order_is_normalised_to_the_training_schema(
    family: str, variant: str, registered, month
) -> None:
    model = registered[family]
    expected = model.predict_proba(month)
    changed = NORMALISED[variant](month.copy())
    got = model.predict_proba(changed)
    pd.testing.assert_frame_equal(got.loc[expected.index], expected, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("variant", list(REFUSED))
@pytest.mark.parametrize("family", FAMILIES)
def test_a_frame_that_cannot_be_normalised_is_refused_naming_the_column(
    family: str, variant: str, registered, month
) -> None:
    change, column = REFUSED[variant]
    with pytest.raises(FeatureSchemaError, match=column):
        registered[family].predict_proba(change(month.copy()))


def test_the_feature_list_is_the_one_the_models_were_trained_on(registered) -> None:
    for model in registered.values():
        assert set(model.encoder.feature_columns) == set(FEATURE_COLUMNS)
