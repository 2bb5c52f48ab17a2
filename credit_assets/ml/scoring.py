"""Score every customer of a month: the rows written to ``model_inference``.

Every customer is scored, graded or not: an ungraded customer is exactly the one the lender needs a
prediction for. Each row carries the predicted grade, its probability (the seed table's
``prediction_probability``) and all three grade probabilities, so monitoring can recompute AUC and
calibration from the table alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from credit_assets.ml.metrics import predicted_grades
from credit_assets.ml.models import CreditGradeModel
from credit_assets.ml.schema import CUSTOMER_ID, GRADES, SNAPSHOT_DATE

PROBABILITY_COLUMNS: dict[str, str] = {grade: f"prob_{grade.lower()}" for grade in GRADES}
SCORE_COLUMNS: tuple[str, ...] = (
    CUSTOMER_ID,
    SNAPSHOT_DATE,
    "predicted_grade",
    "prediction_probability",
    *PROBABILITY_COLUMNS.values(),
)
DEFAULT_CHUNK_ROWS = 200_000


@contextmanager
def prediction_threads(model: CreditGradeModel, threads: int | None) -> Iterator[CreditGradeModel]:
    """Let `model` predict with `threads` threads inside the block (None: as trained).

    LightGBM models are trained with one thread (`n_jobs=1`, see models.DEFAULT_PARAMS), and its
    predictor then scores with one thread too: measured on 2 cores, 900 trees (300 rounds x 3 grades)
    took about 105 s per million customers with one thread and 60 s with two. Scoring a large month
    alone on a machine can use every core. CatBoost predicts on every core already.
    """
    estimator = model.estimator
    if threads is None or model.family != "lightgbm" or not hasattr(estimator, "set_params"):
        yield model
        return
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    previous = estimator.get_params().get("n_jobs")
    estimator.set_params(n_jobs=threads)
    try:
        yield model
    finally:
        estimator.set_params(n_jobs=previous)


def score_customers(
    model: CreditGradeModel, features: pd.DataFrame, *, threads: int | None = None
) -> pd.DataFrame:
    """One row per input customer, in input order and with the input's index: see SCORE_COLUMNS.

    `threads`: prediction threads (None: as the model was trained; see `prediction_threads`).
    """
    missing = [column for column in (CUSTOMER_ID, SNAPSHOT_DATE) if column not in features.columns]
    if missing:
        raise ValueError(f"feature frame is missing identity column(s) {missing}")
    with prediction_threads(model, threads):
        proba = model.predict_proba(features)
    scores = pd.DataFrame(
        {
            CUSTOMER_ID: features[CUSTOMER_ID],
            SNAPSHOT_DATE: features[SNAPSHOT_DATE],
            "predicted_grade": predicted_grades(proba),
            # The predicted grade is the argmax, so its probability is the row maximum.
            "prediction_probability": proba.to_numpy(dtype=np.float64).max(axis=1),
        },
        index=features.index,
    )
    for grade, column in PROBABILITY_COLUMNS.items():
        scores[column] = proba[grade].astype(np.float64)
    return scores.loc[:, list(SCORE_COLUMNS)]


def score_in_chunks(
    model: CreditGradeModel,
    features: pd.DataFrame,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    *,
    threads: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Score ``features`` ``chunk_rows`` customers at a time, yielding each chunk's scores.

    Encoding copies the feature matrix and the estimators allocate per-row buffers; chunking bounds
    that extra memory for multi-million-customer months, and lets a writer stream chunks to the
    database. The concatenated chunks equal :func:`score_customers` on the whole frame.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    for start in range(0, len(features), chunk_rows):
        yield score_customers(model, features.iloc[start : start + chunk_rows], threads=threads)


def inference_rows(scores: pd.DataFrame, lineage: dict[str, object]) -> pd.DataFrame:
    """Rows of ``model_inference`` from scores: the seed's columns plus the lineage given.

    ``lineage`` holds the values every row of the month shares (model_name, month_partition,
    model_version, model_family, mlflow_run_id, dagster_run_id ...).
    """
    rows = pd.DataFrame(
        {
            "customer_id": scores[CUSTOMER_ID],
            "snapshot_date": pd.to_datetime(scores[SNAPSHOT_DATE]),
            "predicted_grade": scores["predicted_grade"],
            "prediction_probability": scores["prediction_probability"],
        }
    )
    for name, value in lineage.items():
        rows[name] = value
    for column in PROBABILITY_COLUMNS.values():
        rows[column] = scores[column]
    return rows
