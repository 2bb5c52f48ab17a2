"""Pure-Python machine learning for credit grades: cleaning, features, splits, models, metrics, scoring.

Nothing in this package imports Dagster, MLflow or a database driver, so every function can be
tested on a frame of a few rows.
"""
