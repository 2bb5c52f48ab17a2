import math

import numpy as np
import pandas as pd
import pytest

from credit_assets.ml.drift import distribution_psi, feature_profile, feature_psi, psi


def test_psi_of_identical_distributions_is_zero():
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)


def test_psi_matches_hand_computation():
    # shares (0.5, 0.5) -> (0.8, 0.2): (0.3*ln 1.6) + (-0.3*ln 0.4)
    expected = 0.3 * math.log(1.6) + (-0.3) * math.log(0.4)
    assert psi([50, 50], [80, 20]) == pytest.approx(expected)


def test_distribution_psi_handles_a_grade_missing_on_one_side():
    value = distribution_psi({"Bad": 10, "Good": 10, "Standard": 10}, {"Bad": 15, "Standard": 15})
    assert math.isfinite(value) and value > 0.2


def test_psi_refuses_empty_distributions():
    with pytest.raises(ValueError, match="non-empty"):
        psi([0, 0], [1, 2])


def test_feature_psi_is_small_for_the_same_population_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"Interest_Rate": rng.normal(15, 5, 5000)})
    profile = feature_profile(reference, ["Interest_Rate"])
    same = feature_psi(profile, pd.DataFrame({"Interest_Rate": rng.normal(15, 5, 5000)}))
    shifted = feature_psi(profile, pd.DataFrame({"Interest_Rate": rng.normal(22, 5, 5000)}))
    assert same["Interest_Rate"] < 0.05
    assert shifted["Interest_Rate"] > 0.2


def test_missing_values_count_as_their_own_bin():
    reference = pd.DataFrame({"Age": np.arange(100, dtype=float)})
    profile = feature_profile(reference, ["Age"])
    half_missing = pd.DataFrame({"Age": np.r_[np.arange(50, dtype=float), [np.nan] * 50]})
    assert feature_psi(profile, half_missing)["Age"] > 0.2


def test_feature_missing_from_the_month_is_an_error_naming_it():
    profile = feature_profile(pd.DataFrame({"Age": [1.0, 2.0, 3.0]}), ["Age"])
    with pytest.raises(KeyError, match="Age"):
        feature_psi(profile, pd.DataFrame({"Other": [1.0]}))
