"""Helpers for tests that run the Dagster services as real processes (dagster-daemon, dagster-webserver).

Every service is started in its own session (``start_new_session=True``): a Dagster CLI started from a
non-interactive parent ignores SIGINT/SIGTERM sent to the parent's group, and its children (the code
server it spawns, the run workers) stay in the new group, so :func:`stop_process_group` ends all of
them by that group's id. Nothing is matched by name.

The services run from a scratch working directory, never the repository: the Dagster CLIs load ``.env``
from their working directory and let it override the environment they were given (``make demo`` writes
one at the repository root with ``DAGSTER_HOME=.state/dagster`` and the demo's database URL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "workspace.yaml"
PRODUCTION_YAML = REPO / "dagster.production.yaml"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dagster_pg_environment(url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables that dagster.production.yaml reads, for a ``postgresql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ValueError(f"not a postgresql://user@host:port/db URL: {parts.scheme}://...")
    return {
        "DAGSTER_PG_USERNAME": unquote(parts.username or ""),
        "DAGSTER_PG_PASSWORD": unquote(parts.password or ""),
        "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_DB": parts.path.strip("/"),
    }


def service_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without anything that could point a service at another instance or
    database, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DAGSTER_", "CREDIT_ASSETS_")) and k != "PYTEST_CURRENT_TEST"
    }
    env.update(extra)
    return env


def start_service(
    args: list[str], *, cwd: Path, env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``BIN/args[0] args[1:]`` in its own session, output to ``log_path``."""
    if (cwd / ".env").exists():
        raise RuntimeError(
            f"{cwd} holds a .env file: the Dagster CLIs would let it override the test's settings"
        )
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM the process group led by ``process`` (started with start_new_session), wait, then SIGKILL
    whatever is left of that group (code servers, run workers)."""
    pgid = process.pid
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.poll() is None:
        process.wait(timeout=10)


def log_tail(log_path: Path, lines: int = 40) -> str:
    if not log_path.exists():
        return f"(no log at {log_path})"
    text = log_path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def assert_running(process: subprocess.Popen[bytes], name: str, log_path: Path) -> None:
    """Raise (with the log's tail) if the service has exited."""
    code = process.poll()
    if code is not None:
        raise AssertionError(f"{name} exited with code {code}; its log ends with:\n{log_tail(log_path)}")


def wait_for_http(
    url: str, process: subprocess.Popen[bytes], name: str, log_path: Path, timeout_s: float = 90.0
) -> bytes:
    """GET ``url`` until it answers 200; fail early if the service dies."""
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt"
    while time.monotonic() < deadline:
        assert_running(process, name, log_path)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return response.read()
                last_error = f"HTTP {response.status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last_error = str(exc)
        time.sleep(0.5)
    raise AssertionError(
        f"{name} did not answer {url} within {timeout_s} s ({last_error}); log:\n{log_tail(log_path)}"
    )
