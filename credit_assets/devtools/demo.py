"""``make demo``: the whole pipeline, every month, through real Dagster backfills.

1. PostgreSQL: ``CREDIT_ASSETS_DATABASE_URL`` if set, else a project-local cluster under ``.state/``.
2. Data: ``CREDIT_ASSETS_DATA_DIR`` if set, else a generated sample under ``.state/sample_data``.
3. A Dagster instance in ``.state/dagster`` with a queued run coordinator, and ``dagster-daemon``.
4. Three backfills, submitted with ``dagster job backfill`` exactly as a user would type them:
   data months, then retraining of every model month (one run at a time, so promotions happen in month
   order), then scoring and monitoring of every model month. Each waits for its runs, checked through
   the instance, not by reading CLI output.
5. A summary read back from PostgreSQL and MLflow.

Running it again replaces each month's rows: the tables end with the same counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from credit_assets.devtools.local_postgres import ensure_local_cluster
from credit_assets.ml.sample_data import generate_sample
from credit_assets.ml.sources import find_source_file, source_months

REPO = Path(__file__).resolve().parents[2]
LOCAL_PG_PORT = 54329
RUN_TIMEOUT_S = 60 * 60

DAGSTER_YAML = """\
# Local demo instance: SQLite storage under this directory, runs queued so the daemon can order them.
# See dagster.production.yaml at the repository root for the PostgreSQL-backed production instance.
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      # Promotions must happen in month order: one retraining run at a time, in submission order.
      - key: credit_assets/stage
        value: retraining
        limit: 1
telemetry:
  enabled: false
"""


@dataclass(frozen=True)
class DemoSettings:
    state_dir: Path
    data_dir: Path
    database_url: str
    mlflow_tracking_uri: str
    mlflow_artifacts: str
    dagster_home: Path

    def environment(self) -> dict[str, str]:
        return {
            "CREDIT_ASSETS_DATA_DIR": str(self.data_dir),
            "CREDIT_ASSETS_DATABASE_URL": self.database_url,
            "CREDIT_ASSETS_MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "CREDIT_ASSETS_MLFLOW_ARTIFACTS": self.mlflow_artifacts,
            "DAGSTER_HOME": str(self.dagster_home),
        }


def prepare(state_dir: Path) -> DemoSettings:
    state_dir.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("CREDIT_ASSETS_DATABASE_URL") or ensure_local_cluster(
        state_dir / "postgres", LOCAL_PG_PORT
    )
    data_dir_env = os.environ.get("CREDIT_ASSETS_DATA_DIR")
    if data_dir_env:
        data_dir = Path(data_dir_env).resolve()
    else:
        data_dir = state_dir / "sample_data"
        if not (data_dir / "features_attributes.csv.gz").exists():
            print(f"Generating the sample data set in {data_dir} ...", flush=True)
            generate_sample(data_dir)
    mlflow_dir = state_dir / "mlflow"
    mlflow_dir.mkdir(exist_ok=True)
    dagster_home = state_dir / "dagster"
    dagster_home.mkdir(exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    return DemoSettings(
        state_dir=state_dir,
        data_dir=data_dir,
        database_url=database_url,
        mlflow_tracking_uri=f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        mlflow_artifacts=str(mlflow_dir / "artifacts"),
        dagster_home=dagster_home,
    )


def write_dotenv(settings: DemoSettings) -> Path:
    """``dagster dev`` reads ``.env`` from its working directory: the UI then sees the demo's state."""
    path = REPO / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in settings.environment().items()))
    return path


def start_daemon(env: dict[str, str], log_path: Path, cwd: Path = REPO) -> subprocess.Popen[bytes]:
    """Start ``dagster-daemon run`` on the repository's workspace.

    ``cwd``: the Dagster CLIs load ``.env`` from their working directory and let it override ``env``
    (DAGSTER_HOME included), so callers with their own instance (the tests) run them from a directory
    without one.
    """
    # Its own session: a daemon started from a script ignores SIGINT/SIGTERM sent to our group.
    log = log_path.open("ab")
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_daemon(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def backfill(job: str, first: str, last: str, env: dict[str, str], cwd: Path = REPO) -> str:
    """Submit a backfill with the Dagster CLI and return its id (read from the instance).

    The instance is ``DagsterInstance.get()``: ``DAGSTER_HOME`` of this process must be ``env``'s.
    ``cwd``: see :func:`start_daemon` (a ``.env`` there would override ``env``).
    """
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        before = {b.backfill_id for b in instance.get_backfills()}
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "job", "backfill", "-w", str(REPO / "workspace.yaml"), "-j", job,
        "--from", first, "--to", last, "--noprompt",
    ]  # fmt: skip
    print("$ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    with DagsterInstance.get() as instance:
        new = [b for b in instance.get_backfills() if b.backfill_id not in before]
    if len(new) != 1:
        raise RuntimeError(f"expected one new backfill for {job}, found {len(new)}")
    return new[0].backfill_id


def wait_for_backfill(
    backfill_id: str,
    expected_runs: int,
    timeout_s: float = RUN_TIMEOUT_S,
    on_poll: Callable[[], None] | None = None,
) -> dict[str, list[str]]:
    """Wait until every run of the backfill has finished; return partition keys by final status.

    ``on_poll`` is called on every poll and may raise to stop waiting (e.g. when the daemon has died).
    """
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + timeout_s
    last_report = ""
    while True:
        with DagsterInstance.get() as instance:
            runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
        done = [r for r in runs if r.status in finished]
        report = f"  {len(done)}/{expected_runs} runs finished"
        if report != last_report:
            print(report, flush=True)
            last_report = report
        if len(runs) >= expected_runs and len(done) == len(runs):
            by_status: dict[str, list[str]] = {}
            for run in runs:
                by_status.setdefault(run.status.value, []).append(run.tags.get("dagster/partition", "?"))
            return {k: sorted(v) for k, v in by_status.items()}
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {backfill_id} did not finish within {timeout_s} s")
        if on_poll is not None:
            on_poll()
        time.sleep(2)


def failed_outside_gate(backfill_id: str) -> list[str]:
    """Failed runs of a retraining backfill whose failure is not the promotion gate saying no."""
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

    problems = []
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(
            filters=RunsFilter(tags={"dagster/backfill": backfill_id}, statuses=[DagsterRunStatus.FAILURE])
        )
        for run in runs:
            failures = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
            messages = [f.dagster_event.step_failure_data.error.message for f in failures if f.dagster_event]
            if not messages or any("blocking asset check" not in m for m in messages):
                problems.append(
                    f"{run.tags.get('dagster/partition')}: {' | '.join(messages) or run.status.value}"
                )
    return problems


def months_of(data_dir: Path) -> list[str]:
    return [m.isoformat() for m in source_months(find_source_file(data_dir, "attributes"))]


def main() -> int:
    state_dir = Path(os.environ.get("CREDIT_ASSETS_STATE_DIR", REPO / ".state")).resolve()
    settings = prepare(state_dir)
    env = {**os.environ, **settings.environment()}
    os.environ.update(settings.environment())
    write_dotenv(settings)

    from credit_assets.partitions import FIRST_MODEL_MONTH

    months = months_of(settings.data_dir)
    model_months = [m for m in months if m >= FIRST_MODEL_MONTH]
    if not model_months:
        raise SystemExit(
            f"The data in {settings.data_dir} ends before the first model month {FIRST_MODEL_MONTH}"
        )
    print(
        f"Data: {settings.data_dir} ({months[0]} .. {months[-1]}); models for {model_months[0]} .. {model_months[-1]}"
    )

    daemon = start_daemon(env, settings.state_dir / "dagster-daemon.log")
    try:
        data_id = backfill("monthly_data_job", months[0], months[-1], env)
        statuses = wait_for_backfill(data_id, len(months))
        if set(statuses) != {"SUCCESS"}:
            raise SystemExit(f"Data backfill {data_id} had failed runs: {statuses}")

        train_id = backfill("retraining_job", model_months[0], model_months[-1], env)
        statuses = wait_for_backfill(train_id, len(model_months))
        problems = failed_outside_gate(train_id)
        if problems:
            raise SystemExit("Retraining runs failed:\n" + "\n".join(problems))
        kept = statuses.get("FAILURE", [])
        print(
            f"  promoted a new champion in {len(statuses.get('SUCCESS', []))} months; "
            f"challenger kept (gate said no) in {len(kept)}: {', '.join(kept) or '-'}"
        )

        score_id = backfill("scoring_job", model_months[0], model_months[-1], env)
        statuses = wait_for_backfill(score_id, len(model_months))
        if set(statuses) != {"SUCCESS"}:
            raise SystemExit(f"Scoring backfill {score_id} had failed runs: {statuses}")
    finally:
        stop_daemon(daemon)

    from credit_assets.devtools.summary import print_summary

    print_summary(settings.database_url, settings.mlflow_tracking_uri, model_months)
    print(
        textwrap.dedent(f"""
        Where to look next:
          Dagster UI:  DAGSTER_HOME={settings.dagster_home} .venv/bin/dagster dev -w workspace.yaml
                       (reads .env; open http://127.0.0.1:3000)
          MLflow UI:   .venv/bin/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri} --port 5000
          Tables:      psql "$CREDIT_ASSETS_DATABASE_URL" -c 'SELECT * FROM model_metrics ORDER BY month_date'
                       (the URL is in .env)
    """)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
