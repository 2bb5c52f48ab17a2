"""A project-local PostgreSQL cluster started from the system's PostgreSQL binaries.

Used by `make demo` (on a machine without a PostgreSQL server) and by the test suite's fallback:

    python -m credit_assets.devtools.local_postgres start --state-dir .state/postgres --port 54329
    python -m credit_assets.devtools.local_postgres url   --state-dir .state/postgres --port 54329
    python -m credit_assets.devtools.local_postgres stop  --state-dir .state/postgres

The cluster lives in `<state-dir>/data`, logs to `<state-dir>/postgres.log`, listens on 127.0.0.1 only
(no Unix socket) with trust authentication for the superuser `postgres`, and has a database
`credit_assets`. `initdb` and `pg_ctl` refuse to run as root, so under root the cluster runs as the OS
user `postgres` when it exists, else as a dedicated system user `credit_assets_pg` (created once).
Trust authentication means any local user can connect: this is a development cluster.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

DATABASE_NAME = "credit_assets"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
DEFAULT_PORT = 54329
DEFAULT_STATE_DIR = Path(".state/postgres")
DEDICATED_OS_USER = "credit_assets_pg"
READY_TIMEOUT_SECONDS = 60.0
BINDIR_ENV_VAR = "CREDIT_ASSETS_PG_BINDIR"

_CLUSTER_SETTINGS = """
# Added by credit_assets.devtools.local_postgres
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
synchronous_commit = off
"""


class LocalPostgresError(RuntimeError):
    """The local cluster could not be found, created, started or stopped; the message says why."""


@dataclass(frozen=True)
class OsUser:
    """The unprivileged OS user that owns and runs the cluster."""

    name: str
    uid: int
    gid: int


def cluster_url(port: int, dbname: str = DATABASE_NAME) -> str:
    """URL of database `dbname` of the local cluster listening on `port`."""
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{dbname}"


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def data_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "data"


def log_file(state_dir: Path) -> Path:
    return Path(state_dir) / "postgres.log"


def find_postgres_bindir() -> Path:
    """Directory holding `initdb`, `pg_ctl` and `postgres`.

    Tried in order: $CREDIT_ASSETS_PG_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/<newest>/bin,
    /usr/local/pgsql/bin, the directory of `initdb` on PATH.
    """
    candidates: list[Path] = []
    if os.environ.get(BINDIR_ENV_VAR):
        candidates.append(Path(os.environ[BINDIR_ENV_VAR]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    candidates.extend(Path(path) for path in sorted(versioned, key=_version_of, reverse=True))
    candidates.append(Path("/usr/local/pgsql/bin"))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise LocalPostgresError(
        "No PostgreSQL server binaries (initdb, pg_ctl, postgres) found. Tried: "
        + ", ".join(str(candidate) for candidate in candidates)
        + f". Install the PostgreSQL server package or set {BINDIR_ENV_VAR}."
    )


def _version_of(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([0-9.]+)/bin", path)
    return tuple(int(part) for part in match.group(1).split(".") if part) if match else (0,)


def cluster_owner() -> OsUser | None:
    """The OS user to run the cluster as: None (the current user) unless running as root."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, DEDICATED_OS_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return OsUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)
    useradd = shutil.which("useradd")
    if useradd is None:
        raise LocalPostgresError(
            "initdb refuses to run as root and there is no OS user 'postgres'; cannot create user "
            f"{DEDICATED_OS_USER!r} because useradd is missing. Create an unprivileged user and retry."
        )
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            DEDICATED_OS_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LocalPostgresError(f"Could not create OS user {DEDICATED_OS_USER!r}: {result.stderr.strip()}")
    entry = pwd.getpwnam(DEDICATED_OS_USER)
    return OsUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


def running_cluster_port(state_dir: Path) -> int | None:
    """Port of the cluster of `state_dir` if its postmaster is running, else None."""
    pid_file = data_dir(state_dir) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by another user
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        command = b"postgres"
    return port if b"postgres" in command or b"postmaster" in command else None


def ensure_local_cluster(state_dir: Path, port: int = DEFAULT_PORT) -> str:
    """Make sure the cluster of `state_dir` runs and has database `credit_assets`; return its URL.

    Reuses the cluster if it already runs (on whatever port it runs on); otherwise runs initdb on first
    use, starts it on 127.0.0.1:`port` and waits until it accepts connections.
    """
    state_dir = Path(state_dir).resolve()
    running_port = running_cluster_port(state_dir)
    if running_port is None:
        bindir = find_postgres_bindir()
        owner = cluster_owner()
        _refuse_busy_port(port)
        _prepare_state_dir(state_dir, owner)
        if not (data_dir(state_dir) / "PG_VERSION").exists():
            _initdb(bindir, state_dir, owner)
        _pg_ctl_start(bindir, state_dir, port, owner)
        running_port = port
    elif running_port != port:
        print(
            f"note: the cluster in {state_dir} already runs on port {running_port}, not {port}; using it.",
            file=sys.stderr,
        )
    _wait_until_ready(cluster_url(running_port, "postgres"), state_dir)
    _create_database(cluster_url(running_port, "postgres"), DATABASE_NAME)
    return cluster_url(running_port)


def stop_local_cluster(state_dir: Path) -> bool:
    """Stop the cluster of `state_dir` (fast shutdown); False if it was not running."""
    state_dir = Path(state_dir).resolve()
    if running_cluster_port(state_dir) is None:
        return False
    owner = None
    if os.geteuid() == 0:
        entry = pwd.getpwuid(data_dir(state_dir).stat().st_uid)
        owner = OsUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid) if entry.pw_uid != 0 else None
    bindir = find_postgres_bindir()
    result = _run_as(
        owner, [str(bindir / "pg_ctl"), "-D", str(data_dir(state_dir)), "-m", "fast", "-w", "stop"], state_dir
    )
    if result.returncode != 0:
        raise LocalPostgresError(
            f"pg_ctl stop failed for {state_dir}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return True


def _run_as(
    owner: OsUser | None, command: list[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(cwd)}
    as_owner: dict[str, Any] = (
        {} if owner is None else {"user": owner.uid, "group": owner.gid, "extra_groups": []}
    )
    return subprocess.run(
        command,
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **as_owner,
    )


def _prepare_state_dir(state_dir: Path, owner: OsUser | None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    if owner is None:
        return
    _check_reachable(state_dir, owner)
    for path in (state_dir, data_dir(state_dir), log_file(state_dir)):
        if path.exists():
            os.chown(path, owner.uid, owner.gid)
    state_dir.chmod(0o700)


def _check_reachable(state_dir: Path, owner: OsUser) -> None:
    """Every parent of `state_dir` must be enterable by `owner`, or initdb fails obscurely."""
    for parent in state_dir.parents:
        info = parent.stat()
        if info.st_uid == owner.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == owner.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            raise LocalPostgresError(
                f"The cluster runs as OS user {owner.name!r} (initdb refuses root), which cannot enter "
                f"{parent} (mode {stat.filemode(info.st_mode)}). Use a state dir under a directory it can "
                f"enter (e.g. under /tmp) or run: chmod o+x {parent}"
            )


def _initdb(bindir: Path, state_dir: Path, owner: OsUser | None) -> None:
    target = data_dir(state_dir)
    command = [
        str(bindir / "initdb"),
        "-D",
        str(target),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
    ]
    result = _run_as(owner, command, state_dir)
    if result.returncode != 0:
        raise LocalPostgresError(
            f"initdb failed for {target} (as {owner.name if owner else 'the current user'}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    with (target / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(_CLUSTER_SETTINGS)


def _refuse_busy_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        if probe.connect_ex((HOST, port)) == 0:
            raise LocalPostgresError(
                f"Port {port} on {HOST} is already in use by another process; choose another --port."
            )


def _pg_ctl_start(bindir: Path, state_dir: Path, port: int, owner: OsUser | None) -> None:
    command = [
        str(bindir / "pg_ctl"),
        "-D",
        str(data_dir(state_dir)),
        "-l",
        str(log_file(state_dir)),
        "-w",
        "-t",
        str(int(READY_TIMEOUT_SECONDS)),
        "-o",
        f"-p {port}",
        "start",
    ]
    result = _run_as(owner, command, state_dir, timeout=READY_TIMEOUT_SECONDS + 30)
    if result.returncode != 0:
        raise LocalPostgresError(
            f"pg_ctl start failed for {state_dir} on port {port}: "
            f"{result.stderr.strip() or result.stdout.strip()}\n{_log_tail(state_dir)}"
        )


def _wait_until_ready(admin_url: str, state_dir: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last_error = ""
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(admin_url, connect_timeout=3):
                return
        except psycopg.OperationalError as exc:
            last_error = str(exc).strip()
            time.sleep(0.2)
    raise LocalPostgresError(
        f"The cluster in {state_dir} did not accept connections within {READY_TIMEOUT_SECONDS:.0f} s: "
        f"{last_error}\n{_log_tail(state_dir)}"
    )


def _create_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def _log_tail(state_dir: Path, lines: int = 20) -> str:
    try:
        tail = log_file(state_dir).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {log_file(state_dir)})"
    return f"Last lines of {log_file(state_dir)}:\n" + "\n".join(tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m credit_assets.devtools.local_postgres",
        description="Start, stop or locate the project-local PostgreSQL cluster.",
    )
    parser.add_argument(
        "command",
        choices=("start", "stop", "url"),
        help="start: ensure it runs and print its URL; stop: stop it; url: print its URL",
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="cluster directory")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port on 127.0.0.1")
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "start":
            print(ensure_local_cluster(arguments.state_dir, arguments.port))
        elif arguments.command == "stop":
            stopped = stop_local_cluster(arguments.state_dir)
            print("stopped" if stopped else f"not running ({arguments.state_dir})", file=sys.stderr)
        else:
            print(cluster_url(running_cluster_port(arguments.state_dir) or arguments.port))
    except LocalPostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
