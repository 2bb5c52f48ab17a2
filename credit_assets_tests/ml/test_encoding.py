import numpy as np
import pandas as pd
import pytest

from credit_assets.ml.encoding import MISSING_TOKEN, FeatureEncoder, FeatureSchemaError
from credit_assets.ml.schema import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES
from credit_assets_tests.ml.test_models import make_feature_frame


def _tiny_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "Age": [30.0, np.nan, 41.0],
            "Income": [1000.0, 2000.0, 1500.0],
            "Occupation": ["Teacher", np.nan, "Doctor"],
        }
    )


def _tiny_encoder(output: str = "category") -> FeatureEncoder:
    return FeatureEncoder(output, numeric_features=["Age", "Income"], categorical_features=["Occupation"])


def test_fit_freezes_sorted_categories_without_missing():
    encoder = _tiny_encoder().fit(_tiny_frame())
    assert encoder.categories == {"Occupation": ("Doctor", "Teacher")}


def test_transform_outputs_training_columns_in_training_order_and_keeps_the_index():
    encoder = _tiny_encoder().fit(_tiny_frame())
    later = _tiny_frame()[["Occupation", "customer_id", "Income", "Age"]].assign(extra=1)
    later.index = [10, 11, 12]
    encoded = encoder.transform(later)
    assert list(encoded.columns) == ["Age", "Income", "Occupation"]
    assert list(encoded.index) == [10, 11, 12]
    assert encoded["Age"].dtype == np.float64


def test_categories_come_from_the_frozen_list_not_the_month():
    encoder = _tiny_encoder().fit(_tiny_frame())
    teachers_only = pd.DataFrame({"Age": [1.0], "Income": [2.0], "Occupation": ["Teacher"]})
    encoded = encoder.transform(teachers_only)["Occupation"]
    assert list(encoded.cat.categories) == ["Doctor", "Teacher"]
    assert encoded.cat.codes.tolist() == [1]  # Teacher's code in the full training list


def test_unseen_category_becomes_missing_in_category_mode():
    encoder = _tiny_encoder().fit(_tiny_frame())
    later = pd.DataFrame({"Age": [1.0, 2.0], "Income": [2.0, 3.0], "Occupation": ["Influencer", "Doctor"]})
    encoded = encoder.transform(later)["Occupation"]
    assert encoded.isna().tolist() == [True, False]
    assert encoded.cat.codes.tolist() == [-1, 0]


def test_token_mode_gives_strings_with_the_missing_token_for_unseen_and_missing():
    encoder = _tiny_encoder("token").fit(_tiny_frame())
    later = pd.DataFrame(
        {"Age": [1.0, 2.0, 3.0], "Income": [2.0, 3.0, 4.0], "Occupation": ["Influencer", None, "Teacher"]}
    )
    encoded = encoder.transform(later)["Occupation"]
    assert encoded.tolist() == [MISSING_TOKEN, MISSING_TOKEN, "Teacher"]
    assert all(type(value) is str for value in encoded)


def test_numeric_strings_are_cast_and_text_is_refused_naming_column_and_value():
    encoder = _tiny_encoder().fit(_tiny_frame())
    as_text = _tiny_frame().assign(Income=pd.Series(["1000", None, "12.5"], dtype=object))
    assert encoder.transform(as_text)["Income"].tolist()[::2] == [1000.0, 12.5]
    dirty = _tiny_frame().assign(Income=pd.Series(["1000", "__10000__", "12.5"], dtype=object))
    with pytest.raises(FeatureSchemaError, match=r"'Income'.*'__10000__'"):
        encoder.transform(dirty)


def test_integer_columns_become_float64():
    encoder = _tiny_encoder().fit(_tiny_frame())
    encoded = encoder.transform(_tiny_frame().assign(Income=[1, 2, 3]))
    assert encoded["Income"].dtype == np.float64


def test_missing_feature_column_is_named():
    encoder = _tiny_encoder().fit(_tiny_frame())
    with pytest.raises(FeatureSchemaError, match="'Income'"):
        encoder.transform(_tiny_frame().drop(columns=["Income"]))
    with pytest.raises(FeatureSchemaError, match="'Occupation'"):
        _tiny_encoder().fit(_tiny_frame().drop(columns=["Occupation"]))


def test_transform_before_fit_is_refused():
    with pytest.raises(RuntimeError, match="not fitted"):
        _tiny_encoder().transform(_tiny_frame())


def test_reserved_token_in_training_data_is_refused():
    with pytest.raises(FeatureSchemaError, match=MISSING_TOKEN):
        _tiny_encoder("token").fit(_tiny_frame().assign(Occupation=[MISSING_TOKEN, "a", "b"]))


def test_dict_round_trip_restores_an_equal_encoder():
    encoder = _tiny_encoder("token").fit(_tiny_frame())
    restored = FeatureEncoder.from_dict(encoder.to_dict())
    assert restored == encoder
    pd.testing.assert_frame_equal(restored.transform(_tiny_frame()), encoder.transform(_tiny_frame()))


def test_default_features_are_the_shared_schema():
    frame = make_feature_frame(customers_per_month=30, months=("2024-01-01",))
    encoder = FeatureEncoder().fit(frame)
    encoded = encoder.transform(frame)
    assert tuple(encoded.columns) == FEATURE_COLUMNS
    assert (encoded[list(NUMERIC_FEATURES)].dtypes == np.float64).all()
    assert all(isinstance(encoded[column].dtype, pd.CategoricalDtype) for column in CATEGORICAL_FEATURES)


def test_one_row_encodes_exactly_as_inside_the_full_frame():
    frame = make_feature_frame(customers_per_month=50, months=("2024-01-01",))
    for output in ("category", "token"):
        encoder = FeatureEncoder(output).fit(frame)
        full = encoder.transform(frame)
        single = encoder.transform(frame.iloc[[7]])
        pd.testing.assert_frame_equal(single, full.iloc[[7]])
