"""Turn a feature frame into exactly the matrix a trained model expects, the same way every month.

Tree models see categories as integer codes. If codes were derived from the values of the frame being
scored, a month in which only some occupations occur (or a single customer) would give "Lawyer" a
different code than at training time and the model would silently score the wrong category. The
encoder therefore freezes, at fit time, the column order and each categorical's sorted category list,
and every later frame is encoded against that frozen list: an unseen value (a new occupation appearing
months later) or a missing one becomes "missing", never a new code and never a crash.

Two outputs for categoricals, because the two model libraries disagree:
- ``"category"`` (LightGBM): ``pd.Categorical`` with the frozen categories, missing/unseen -> NaN.
- ``"token"`` (CatBoost): plain ``str``; CatBoost rejects NaN in categorical features, so
  missing/unseen become the fixed token :data:`MISSING_TOKEN`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from credit_assets.ml.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES

CategoricalOutput = Literal["category", "token"]
CATEGORICAL_OUTPUTS: tuple[str, ...] = ("category", "token")

# CatBoost's stand-in for "no usable category". Reserved: a real value equal to it is refused at fit.
MISSING_TOKEN = "__missing__"


class FeatureSchemaError(ValueError):
    """A frame cannot be encoded: a feature column is missing or a numeric column holds text."""


class FeatureEncoder:
    """Frozen mapping from a feature frame to model input; fit once on the training frame.

    Args:
        categorical_output: ``"category"`` for LightGBM, ``"token"`` for CatBoost (see module doc).
        numeric_features / categorical_features: the feature lists; default to the shared schema so
            every model uses the same features unless a caller deliberately overrides them.
    """

    def __init__(
        self,
        categorical_output: CategoricalOutput = "category",
        numeric_features: Iterable[str] = NUMERIC_FEATURES,
        categorical_features: Iterable[str] = CATEGORICAL_FEATURES,
    ) -> None:
        if categorical_output not in CATEGORICAL_OUTPUTS:
            raise ValueError(
                f"categorical_output must be one of {CATEGORICAL_OUTPUTS}, got {categorical_output!r}"
            )
        self.categorical_output: CategoricalOutput = categorical_output
        self.numeric_features: tuple[str, ...] = tuple(numeric_features)
        self.categorical_features: tuple[str, ...] = tuple(categorical_features)
        overlap = set(self.numeric_features) & set(self.categorical_features)
        if overlap:
            raise ValueError(f"columns listed as both numeric and categorical: {sorted(overlap)}")
        self.categories: dict[str, tuple[str, ...]] | None = None

    # ------------------------------------------------------------------ fit / transform

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The model's input columns, in the order the model was trained on."""
        return (*self.numeric_features, *self.categorical_features)

    @property
    def is_fitted(self) -> bool:
        return self.categories is not None

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        """Freeze each categorical's sorted list of observed values (missing excluded)."""
        _require_columns(frame, self.feature_columns)
        categories: dict[str, tuple[str, ...]] = {}
        for column in self.categorical_features:
            values = _as_optional_str(frame[column])
            observed = tuple(sorted(values.dropna().unique()))
            if MISSING_TOKEN in observed:
                raise FeatureSchemaError(
                    f"column {column!r} contains the reserved value {MISSING_TOKEN!r}, which the encoder "
                    "uses to mark missing categories"
                )
            categories[column] = observed
        self.categories = categories
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Encode ``frame`` against the frozen schema: training columns only, in training order.

        Extra columns (ids, grade, anything new upstream) are ignored so the identity columns can stay
        on the frame the caller holds. The result keeps ``frame``'s index.
        """
        categories = self._fitted_categories()
        _require_columns(frame, self.feature_columns)
        encoded: dict[str, pd.Series] = {}
        for column in self.numeric_features:
            encoded[column] = _to_float64(frame[column], column)
        for column in self.categorical_features:
            encoded[column] = self._encode_categorical(frame[column], categories[column])
        return pd.DataFrame(encoded, index=frame.index, columns=list(self.feature_columns))

    def fit_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.fit(frame).transform(frame)

    def _encode_categorical(self, column: pd.Series, categories: tuple[str, ...]) -> pd.Series:
        values = _as_optional_str(column)
        # Codes come from the frozen list, never from this frame's own values; unseen -> NaN.
        as_category = pd.Categorical(values, categories=list(categories))
        if self.categorical_output == "category":
            return pd.Series(as_category, index=column.index, name=column.name)
        known = np.asarray(as_category.codes) >= 0
        tokens = np.where(known, values.to_numpy(dtype=object), MISSING_TOKEN)
        return pd.Series(tokens, index=column.index, name=column.name, dtype=object)

    def _fitted_categories(self) -> dict[str, tuple[str, ...]]:
        if self.categories is None:
            raise RuntimeError("FeatureEncoder is not fitted: call fit() on the training frame first")
        return self.categories

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, saved next to the model so the frozen categories travel with it."""
        return {
            "categorical_output": self.categorical_output,
            "numeric_features": list(self.numeric_features),
            "categorical_features": list(self.categorical_features),
            "categories": {column: list(values) for column, values in self._fitted_categories().items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        encoder = cls(
            categorical_output=data["categorical_output"],
            numeric_features=data["numeric_features"],
            categorical_features=data["categorical_features"],
        )
        encoder.categories = {
            column: tuple(data["categories"][column]) for column in encoder.categorical_features
        }
        return encoder

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureEncoder):
            return NotImplemented
        return (
            self.categorical_output == other.categorical_output
            and self.numeric_features == other.numeric_features
            and self.categorical_features == other.categorical_features
            and self.categories == other.categories
        )

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (
            f"FeatureEncoder({self.categorical_output!r}, {len(self.numeric_features)} numeric, "
            f"{len(self.categorical_features)} categorical, {state})"
        )


def _require_columns(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    """Every feature column present exactly once (a repeated name would be ambiguous: which one is it?)."""
    columns = list(columns)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise FeatureSchemaError(f"feature frame is missing column(s) {missing}")
    wanted = set(columns)
    repeated = sorted({column for column in frame.columns[frame.columns.duplicated()] if column in wanted})
    if repeated:
        raise FeatureSchemaError(
            f"feature frame has feature column(s) {repeated} more than once: keep one column per feature"
        )


def _as_optional_str(column: pd.Series) -> pd.Series:
    """Categorical values as ``str`` with missing kept as NaN, so 3 and "3" are one category."""
    values = column.astype(object)
    missing = values.isna()
    if missing.all():
        return pd.Series(np.nan, index=column.index, dtype=object)
    return values.where(missing, values.astype(str)).where(~missing, np.nan)


def _to_float64(column: pd.Series, name: str) -> pd.Series:
    """Cast to float64; a value that is not a finite number is an upstream bug, so the column is named.

    Dates and durations are refused rather than cast: pandas would turn them into nanosecond counts, a
    number the model never saw in training. Infinity is refused too: cleaning never produces it, and a
    tree model would silently put it in its last bin.
    """
    dtype = column.dtype
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
        or pd.api.types.is_complex_dtype(dtype)
    ):
        raise FeatureSchemaError(
            f"numeric feature column {name!r} has dtype {dtype}, not a number: "
            "it must hold numbers as at training time"
        )
    if dtype == np.float64:
        numbers = column
    elif pd.api.types.is_numeric_dtype(dtype):  # ints, bools, nullable Int64/Float64
        numbers = column.astype(np.float64)
    else:
        numbers = pd.to_numeric(column, errors="coerce")
        not_numeric = numbers.isna() & column.notna()
        if not_numeric.any():
            bad_value = column[not_numeric].iloc[0]
            raise FeatureSchemaError(
                f"numeric feature column {name!r} holds a non-numeric value {bad_value!r} "
                f"({int(not_numeric.sum())} such row(s))"
            )
        numbers = numbers.astype(np.float64)
    infinite = np.isinf(numbers.to_numpy(dtype=np.float64))
    if infinite.any():
        raise FeatureSchemaError(
            f"numeric feature column {name!r} holds an infinite value {float(numbers[infinite].iloc[0])!r} "
            f"({int(infinite.sum())} such row(s)): write NaN for an unknown value"
        )
    return numbers
