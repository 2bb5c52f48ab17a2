"""Credit-grade classifiers: train, predict three grade probabilities, save and load.

Two model families compete for champion (LightGBM and CatBoost). Whatever the family, a trained model
is a :class:`CreditGradeModel`: the fitted estimator plus the :class:`FeatureEncoder` frozen on its
training data, so scoring any later month applies exactly the training-time encoding.

Probabilities are always returned as the three columns of :data:`GRADES`, mapped through the
estimator's own ``classes_``. Estimators order their probability columns by the classes they saw,
which need not be GRADES (a window without any "Good" customer yields a two-class model); reading the
columns by position would then label Standard probabilities as Good. A grade the model never saw
gets probability 0.0.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from credit_assets.ml.encoding import FeatureEncoder
from credit_assets.ml.metrics import check_grades, predicted_grades
from credit_assets.ml.schema import GRADE, GRADES

MODEL_FAMILIES: tuple[str, ...] = ("lightgbm", "catboost")
DEFAULT_MIN_EXAMPLES_PER_GRADE = 20

# Defaults chosen to train a 12-month window of a few thousand customers in a few seconds on 2 cores, and to
# give the same model for the same data and seed (deterministic LightGBM, fixed CatBoost seed).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "n_estimators": 300,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        # 63 histogram bins and 80% of the features per tree halve training time on a 12-month window
        # (~5,000 graded rows) with no measurable loss of accuracy.
        "max_bin": 63,
        "colsample_bytree": 0.8,
        # One thread: with 2 OpenMP threads on a 2-core machine that is also running anything else
        # (the other family's training, Postgres), LightGBM's threads wait on each other and training
        # took 21 s instead of 2.4 s for ~5,000 rows. Raise it on a dedicated machine.
        "n_jobs": 1,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    },
    "catboost": {
        "iterations": 300,
        "depth": 6,
        "learning_rate": 0.1,
        # 64 borders instead of 254: about twice as fast at this size, same accuracy.
        "border_count": 64,
        "thread_count": 2,
        "verbose": 0,
        "allow_writing_files": False,
    },
}

# How each family names its random seed, so `random_state` means the same thing for both.
_SEED_PARAM = {"lightgbm": "random_state", "catboost": "random_seed"}
_CATEGORICAL_OUTPUT = {"lightgbm": "category", "catboost": "token"}

# Parameter synonyms per family, canonical (the name used in DEFAULT_PARAMS) first.
PARAM_SYNONYMS: dict[str, tuple[tuple[str, ...], ...]] = {
    "lightgbm": (
        ("n_estimators", "num_iterations", "num_boost_round", "num_trees", "iterations"),
        ("learning_rate", "eta"),
        ("random_state", "random_seed", "seed"),
        ("n_jobs", "num_threads", "thread_count"),
        ("colsample_bytree", "feature_fraction"),
        ("min_child_samples", "min_data_in_leaf"),
    ),
    "catboost": (
        ("iterations", "n_estimators", "num_boost_round", "num_trees"),
        ("learning_rate", "eta"),
        ("random_seed", "random_state", "seed"),
        ("thread_count", "n_jobs", "num_threads"),
        ("depth", "max_depth"),
        ("border_count", "max_bin"),
        ("l2_leaf_reg", "reg_lambda"),
    ),
}

PREDICT_CHUNK_ROWS = 200_000
"""Rows `CreditGradeModel.predict_proba` encodes and predicts at a time."""

MODEL_METADATA_FILE = "model.json"
ESTIMATOR_FILE = "estimator.joblib"
SAVE_FORMAT_VERSION = 1


class InsufficientTrainingDataError(ValueError):
    """The training frame cannot support a model: a grade is too rare, or fewer than two grades."""


@dataclass
class CreditGradeModel:
    """A fitted estimator together with everything needed to apply it to a new month."""

    family: str
    estimator: Any
    encoder: FeatureEncoder
    classes: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, features: pd.DataFrame, *, chunk_rows: int = PREDICT_CHUNK_ROWS) -> pd.DataFrame:
        """Probability of each grade, columns exactly GRADES, index aligned with ``features``.

        Rows are encoded and predicted ``chunk_rows`` at a time: the encoded copy of the features and the
        estimator's own float matrix then follow the chunk, not the month (predictions are per row, so
        the result is the same).
        """
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        if len(features) > chunk_rows:
            return pd.concat(
                [
                    self.predict_proba(features.iloc[start : start + chunk_rows], chunk_rows=chunk_rows)
                    for start in range(0, len(features), chunk_rows)
                ]
            )
        encoded = self.encoder.transform(features)
        if encoded.empty:
            # LightGBM refuses empty input; an empty month simply has no probabilities.
            return pd.DataFrame(np.empty((0, len(GRADES))), columns=list(GRADES), index=features.index)
        raw = np.asarray(self.estimator.predict_proba(encoded), dtype=np.float64)
        return _probabilities_by_grade(raw, self.estimator.classes_, features.index)

    def predict(self, features: pd.DataFrame) -> pd.Series:
        """The most probable grade per row (ties go to the first grade in GRADES order)."""
        return predicted_grades(self.predict_proba(features))


def train_model(
    family: str,
    train_frame: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    min_examples_per_grade: int = DEFAULT_MIN_EXAMPLES_PER_GRADE,
    random_state: int = 0,
) -> CreditGradeModel:
    """Fit a model of ``family`` on the graded rows of ``train_frame``.

    ``params`` override :data:`DEFAULT_PARAMS` key by key. Ungraded rows are dropped (they carry no
    label). Refuses to train when any grade of GRADES has fewer than ``min_examples_per_grade``
    examples: a model that has seen a handful of Bad customers would still emit confident-looking Bad
    probabilities, and promoting it is worse than keeping the previous model.
    """
    graded, labels = _graded_training_rows(family, train_frame, min_examples_per_grade)
    effective_params = resolve_params(family, params, random_state)
    encoder = FeatureEncoder(categorical_output=_CATEGORICAL_OUTPUT[family]).fit(graded)
    encoded = encoder.transform(graded)
    estimator = _build_estimator(family, effective_params, encoder)
    estimator.fit(encoded, labels.to_numpy(dtype=str))
    classes = tuple(str(label) for label in estimator.classes_)
    return CreditGradeModel(family, estimator, encoder, classes, effective_params)


def check_training_data(
    family: str, train_frame: pd.DataFrame, min_examples_per_grade: int = DEFAULT_MIN_EXAMPLES_PER_GRADE
) -> dict[str, int]:
    """Everything :func:`train_model` checks before fitting, without fitting; returns the grade counts.

    Callers that record a training attempt somewhere (an MLflow run, a registry version) call this
    first, so a window that cannot support a model is refused before anything is recorded. Raises
    :class:`InsufficientTrainingDataError` (a grade below the minimum, fewer than two grades) or
    ``ValueError`` (unknown family, labels that are not grades, no grade column).
    """
    _, labels = _graded_training_rows(family, train_frame, min_examples_per_grade)
    return {grade: int((labels == grade).sum()) for grade in GRADES}


def resolve_params(family: str, params: Mapping[str, Any] | None, random_state: int) -> dict[str, Any]:
    """Defaults, then the seed, then the caller's overrides (an explicit seed in ``params`` wins).

    Caller keys are first renamed to the family's canonical name (see :data:`PARAM_SYNONYMS`) so one
    config such as ``{"n_estimators": 200}`` works for both families: CatBoost would otherwise refuse
    ``n_estimators`` next to the default ``iterations`` as two values for one parameter.
    """
    _check_family(family)
    resolved = dict(DEFAULT_PARAMS[family])
    resolved[_SEED_PARAM[family]] = random_state
    resolved.update(_canonical_params(family, params or {}))
    if family == "catboost" and "cat_features" in resolved:
        raise ValueError("do not pass cat_features: they come from the feature encoder")
    return resolved


def save_model(model: CreditGradeModel, directory: str | Path) -> Path:
    """Write ``model`` to ``directory``: the estimator (joblib) and a JSON with encoder, classes, params.

    The JSON keeps the frozen categories and class list readable without unpickling anything, and
    records the library versions the estimator was pickled with.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model.estimator, directory / ESTIMATOR_FILE)
    metadata = {
        "format_version": SAVE_FORMAT_VERSION,
        "family": model.family,
        "classes": list(model.classes),
        "params": model.params,
        "encoder": model.encoder.to_dict(),
        "library_versions": _library_versions(model.family),
        "estimator_file": ESTIMATOR_FILE,
    }
    (directory / MODEL_METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
    return directory


def load_model(directory: str | Path) -> CreditGradeModel:
    """Read a model written by :func:`save_model`. Only load directories you trust (joblib unpickles)."""
    directory = Path(directory)
    metadata_path = directory / MODEL_METADATA_FILE
    if not metadata_path.is_file():
        raise FileNotFoundError(f"no {MODEL_METADATA_FILE} in {directory}: not a saved credit-grade model")
    metadata = json.loads(metadata_path.read_text())
    if metadata.get("format_version") != SAVE_FORMAT_VERSION:
        raise ValueError(
            f"{metadata_path} has format_version {metadata.get('format_version')!r}; "
            f"this code reads version {SAVE_FORMAT_VERSION}"
        )
    family = metadata["family"]
    _check_family(family)
    _warn_on_version_change(metadata.get("library_versions", {}), family, directory)
    estimator = joblib.load(directory / metadata["estimator_file"])
    classes = tuple(metadata["classes"])
    estimator_classes = tuple(str(label) for label in estimator.classes_)
    if estimator_classes != classes:
        raise ValueError(
            f"{directory}: estimator classes {estimator_classes} differ from the saved classes {classes}"
        )
    encoder = FeatureEncoder.from_dict(metadata["encoder"])
    return CreditGradeModel(family, estimator, encoder, classes, dict(metadata["params"]))


# ---------------------------------------------------------------------------- helpers


def _check_family(family: str) -> None:
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {MODEL_FAMILIES}")


def _graded_training_rows(
    family: str, train_frame: pd.DataFrame, min_examples_per_grade: int
) -> tuple[pd.DataFrame, pd.Series]:
    """The graded rows and their labels, after checking family, labels and grade counts."""
    _check_family(family)
    if isinstance(min_examples_per_grade, bool) or not isinstance(min_examples_per_grade, int | np.integer):
        raise ValueError(f"min_examples_per_grade must be an integer, got {min_examples_per_grade!r}")
    if min_examples_per_grade < 0:
        raise ValueError(f"min_examples_per_grade must be 0 or more, got {min_examples_per_grade}")
    if GRADE not in train_frame.columns:
        raise ValueError(f"training frame has no {GRADE!r} column: nothing to learn from")
    graded = train_frame.loc[train_frame[GRADE].notna()]
    labels = graded[GRADE].astype(object)
    check_grades(labels, what=f"{GRADE} column of the training frame")
    _check_grade_counts(family, labels, min_examples_per_grade)
    return graded, labels


def _check_grade_counts(family: str, labels: pd.Series, min_examples_per_grade: int) -> None:
    counts = {grade: int((labels == grade).sum()) for grade in GRADES}
    summary = ", ".join(f"{grade}={count}" for grade, count in counts.items())
    for grade, count in counts.items():
        if count < min_examples_per_grade:
            raise InsufficientTrainingDataError(
                f"cannot train {family}: grade {grade!r} has {count} training example(s), fewer than "
                f"min_examples_per_grade={min_examples_per_grade} (counts: {summary})"
            )
    if sum(count > 0 for count in counts.values()) < 2:
        raise InsufficientTrainingDataError(
            f"cannot train {family}: a classifier needs at least two grades (counts: {summary})"
        )


def _canonical_params(family: str, params: Mapping[str, Any]) -> dict[str, Any]:
    canonical_name = {synonym: group[0] for group in PARAM_SYNONYMS[family] for synonym in group}
    renamed: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in params.items():
        name = canonical_name.get(key, key)
        if name in renamed:
            raise ValueError(f"{family} parameters {given_as[name]!r} and {key!r} both set {name!r}")
        renamed[name] = value
        given_as[name] = key
    return renamed


def _build_estimator(family: str, params: dict[str, Any], encoder: FeatureEncoder) -> Any:
    # Imported here so that using one family never pays the import time of the other.
    if family == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(**params)
    from catboost import CatBoostClassifier

    return CatBoostClassifier(**params, cat_features=list(encoder.categorical_features))


def _probabilities_by_grade(raw: np.ndarray, estimator_classes: Any, index: pd.Index) -> pd.DataFrame:
    """Place each estimator column under its own class's grade; grades never seen stay 0.0."""
    classes = [str(label) for label in estimator_classes]
    if raw.shape[1] != len(classes):
        raise ValueError(f"estimator returned {raw.shape[1]} probability columns for classes {classes}")
    unknown = [label for label in classes if label not in GRADES]
    if unknown:
        raise ValueError(f"estimator classes {unknown} are not grades {GRADES}")
    by_grade = np.zeros((raw.shape[0], len(GRADES)), dtype=np.float64)
    by_grade[:, [GRADES.index(label) for label in classes]] = raw
    return pd.DataFrame(by_grade, columns=list(GRADES), index=index)


def _library_versions(family: str) -> dict[str, str]:
    import sklearn

    versions = {"scikit-learn": sklearn.__version__, "pandas": pd.__version__, "numpy": np.__version__}
    if family == "lightgbm":
        import lightgbm

        versions["lightgbm"] = lightgbm.__version__
    else:
        import catboost

        versions["catboost"] = catboost.__version__
    return versions


def _warn_on_version_change(saved: Mapping[str, str], family: str, directory: Path) -> None:
    """A pickle from another library version may load yet predict differently: say so loudly."""
    current = _library_versions(family)
    changed = {
        name: f"{saved[name]} -> {version}"
        for name, version in current.items()
        if name in saved and saved[name] != version
    }
    if changed:
        warnings.warn(f"model in {directory} was saved with other library versions: {changed}", stacklevel=3)
