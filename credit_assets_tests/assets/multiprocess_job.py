"""The retraining assets under Dagster's multiprocess executor (a reconstructable job for execute_job):
the executor under which dagster-mlflow was seen recording a failed run as FINISHED."""

from dagster import Definitions, JobDefinition, define_asset_job, multiprocess_executor
from dagster_mlflow import end_mlflow_on_run_finished

from credit_assets.definitions import defs
from credit_assets.jobs import RETRAINING_ASSETS

retraining_job_multiprocess = define_asset_job(
    "retraining_job_multiprocess",
    selection=RETRAINING_ASSETS,
    executor_def=multiprocess_executor,
    hooks={end_mlflow_on_run_finished},
)


def get_retraining_job_multiprocess() -> JobDefinition:
    return Definitions.merge(defs, Definitions(jobs=[retraining_job_multiprocess])).resolve_job_def(
        "retraining_job_multiprocess"
    )
