"""The UI's server for real: ``dagster-webserver -w workspace.yaml`` in its own process group (always
stopped), the code location checked through GraphQL, and a partitioned materialization launched through
GraphQL's ``launchRun``, then checked through GraphQL, through the instance and in the table it wrote.

The launched run is ``scoring_job`` for 2024-01 (``model_inference`` + ``model_metrics``). What it needs
(the 12 data months the 2024-01 model learns from, the month's own data, the model) is materialized in
this process on the same instance while the webserver starts. The instance is the local-development one
(SQLite in a temp DAGSTER_HOME) with the DefaultRunCoordinator, so the webserver launches runs itself; the
queued, PostgreSQL-backed production instance is tested with dagster-daemon in test_production_instance.py.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from credit_assets.definitions import defs
from credit_assets.ml.sample_data import generate_sample
from credit_assets_tests._processes import (
    WORKSPACE,
    assert_running,
    free_port,
    log_tail,
    service_environment,
    start_service,
    stop_process_group,
    wait_for_http,
)

pytestmark = [pytest.mark.slow]

DATA_MONTHS = [f"2023-{m:02d}-01" for m in range(1, 13)] + ["2024-01-01"]
SCORED_MONTH = "2024-01-01"
CUSTOMERS_PER_MONTH = 200
SMALL_TRAINING = {"n_estimators": 40, "learning_rate": 0.2}
RUN_TIMEOUT_S = 120
ALLOWED_LOAD_WARNINGS = {
    "BetaWarning: Function `_create_mlflow_run_hook` is currently in beta, and may have breaking changes in "
    "minor version releases, with behavior changes in patch releases."
}

LOCAL_INSTANCE_YAML = """\
# Local instance for the test: SQLite storage in this directory; runs launched by the webserver itself.
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
"""

WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name jobs { name } } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

ASSET_NODES_QUERY = """
query {
  assetNodes {
    assetKey { path }
    description
    groupName
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    kinds
    isPartitioned
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status tags { key value } } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status jobName tags { key value } assetMaterializations { assetKey { path } partition } }
    ... on Error { message }
  }
}
"""


def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert not body.get("errors"), f"GraphQL errors: {body['errors']}"
    return body["data"]


def test_webserver_loads_the_location_and_runs_a_partition_launched_through_graphql(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    data_dir = tmp_path / "data"
    generate_sample(data_dir, months=DATA_MONTHS, customers_per_month=CUSTOMERS_PER_MONTH, seed=5)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(LOCAL_INSTANCE_YAML)
    workdir = tmp_path / "workdir"  # no .env here (see credit_assets_tests/_processes.py)
    workdir.mkdir()
    settings = {
        "DAGSTER_HOME": str(dagster_home),
        "CREDIT_ASSETS_DATA_DIR": str(data_dir),
        "CREDIT_ASSETS_DATABASE_URL": postgres_url,
        "CREDIT_ASSETS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "CREDIT_ASSETS_MLFLOW_ARTIFACTS": str(tmp_path / "mlflow_artifacts"),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dagster-webserver.log"
    webserver = start_service(
        ["dagster-webserver", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)],
        cwd=workdir,
        env=service_environment(settings),
        log_path=log_path,
    )
    try:
        # What scoring 2024-01 needs, materialized on the same instance while the webserver starts.
        with DagsterInstance.get() as instance:
            for month in DATA_MONTHS:
                result = defs.resolve_job_def("monthly_data_job").execute_in_process(
                    partition_key=month, instance=instance
                )
                assert result.success, f"data for {month}"
            training = {"ops": {f"{f}_model": {"config": SMALL_TRAINING} for f in ("lightgbm", "catboost")}}
            result = defs.resolve_job_def("retraining_job").execute_in_process(
                partition_key=SCORED_MONTH, instance=instance, run_config=training
            )
            assert result.success, "the 2024-01 model was not trained and promoted"
        timings["in-process preparation"] = time.monotonic() - started

        server_info = json.loads(
            wait_for_http(f"{base_url}/server_info", webserver, "dagster-webserver", log_path)
        )
        assert server_info["dagster_webserver_version"]
        timings["webserver up"] = time.monotonic() - started

        # The code location loads with no error.
        workspace = graphql(base_url, WORKSPACE_QUERY)["workspaceOrError"]
        assert workspace["__typename"] == "Workspace", workspace
        (entry,) = workspace["locationEntries"]
        location = entry["locationOrLoadError"]
        assert entry["name"] == "credit_assets" and entry["loadStatus"] == "LOADED", entry
        assert location["__typename"] == "RepositoryLocation", location
        (repository,) = location["repositories"]
        assert {"monthly_data_job", "retraining_job", "scoring_job"} <= {
            j["name"] for j in repository["jobs"]
        }

        # Every asset says what it is, which group it belongs to, who owns it and what it is made of.
        nodes = graphql(base_url, ASSET_NODES_QUERY)["assetNodes"]
        assert len(nodes) >= 11
        lacking = {
            "/".join(node["assetKey"]["path"]): [
                field
                for field, missing in (
                    ("description", not (node["description"] or "").strip()),
                    ("group", node["groupName"] in (None, "", "default")),
                    ("owner", not node["owners"]),
                    ("kind", not node["kinds"]),
                )
                if missing
            ]
            for node in nodes
        }
        assert {key: fields for key, fields in lacking.items() if fields} == {}

        # A partitioned run launched through GraphQL, as the UI's "Materialize" does.
        launched = graphql(
            base_url,
            LAUNCH_RUN_MUTATION,
            {
                "executionParams": {
                    "selector": {
                        "repositoryLocationName": entry["name"],
                        "repositoryName": repository["name"],
                        "jobName": "scoring_job",
                    },
                    "runConfigData": {},
                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": SCORED_MONTH}]},
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            assert_running(webserver, "dagster-webserver", log_path)
            run = graphql(base_url, RUN_QUERY, {"runId": run_id})["runOrError"]
            assert run["__typename"] == "Run", run
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {RUN_TIMEOUT_S} s"
            time.sleep(1)
        timings["run launched and finished"] = time.monotonic() - started
        assert run["status"] == "SUCCESS", (
            f"run {run_id}: {run['status']}\nwebserver log:\n{log_tail(log_path)}"
        )
        assert {t["key"]: t["value"] for t in run["tags"]}["dagster/partition"] == SCORED_MONTH
        assert {("/".join(m["assetKey"]["path"]), m["partition"]) for m in run["assetMaterializations"]} == {
            ("model_inference", SCORED_MONTH),
            ("model_metrics", SCORED_MONTH),
        }
    finally:
        stop_process_group(webserver)
        timings["total"] = time.monotonic() - started
        print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))

    # The same run through the instance.
    with DagsterInstance.get() as instance:
        record = instance.get_run_record_by_id(run_id)
        materialization = instance.get_latest_materialization_event(AssetKey("model_inference"))
    assert record is not None and record.dagster_run.status == DagsterRunStatus.SUCCESS
    assert record.dagster_run.job_name == "scoring_job"
    assert materialization is not None and materialization.run_id == run_id
    written = materialization.asset_materialization
    assert written is not None and written.partition == SCORED_MONTH

    # The table it wrote: every customer of the month once, by this run.
    attributes = pd.read_csv(
        data_dir / "features_attributes.csv.gz", usecols=["Customer_ID", "snapshot_date"]
    )
    cohort = int(attributes.loc[attributes["snapshot_date"] == SCORED_MONTH, "Customer_ID"].nunique())
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            """SELECT snapshot_date::text, count(*), count(DISTINCT customer_id), array_agg(DISTINCT dagster_run_id)
               FROM model_inference GROUP BY 1"""
        ).fetchall()
    assert rows == [(SCORED_MONTH, cohort, cohort, [run_id])]
    assert written.metadata["dagster/row_count"].value == cohort

    # Loading the location (in the webserver's code server, then in the run worker up to the run's start)
    # warns about nothing in the project's own code. The one warning allowed is dagster-mlflow's: importing
    # dagster_mlflow at all runs its module-level `_create_mlflow_run_hook(...)`, a beta function of its own.
    load_log = log_path.read_text(errors="replace").split("RUN_START")[0]
    load_warnings = set(re.findall(r"\w+Warning: [^\n]*", load_log))
    assert load_warnings <= ALLOWED_LOAD_WARNINGS, f"warnings while loading the code location:\n{load_log}"
