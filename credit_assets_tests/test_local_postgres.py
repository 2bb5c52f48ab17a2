"""The project-local cluster: really started from the system's binaries, reused, stopped."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from credit_assets.devtools import local_postgres
from credit_assets.devtools.local_postgres import (
    LocalPostgresError,
    OsUser,
    ensure_local_cluster,
    find_free_port,
    find_postgres_bindir,
    running_cluster_port,
    stop_local_cluster,
)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh dir under /tmp: pytest's tmp_path is 0700, which the unprivileged cluster user cannot enter."""
    path = Path(tempfile.mkdtemp(prefix="credit_assets_local_pg_"))
    try:
        yield path
    finally:
        stop_local_cluster(path)
        shutil.rmtree(path, ignore_errors=True)


def test_cluster_starts_is_reused_and_stops(state_dir: Path) -> None:
    port = find_free_port()

    url = ensure_local_cluster(state_dir, port)

    assert url == f"postgresql://postgres@127.0.0.1:{port}/credit_assets"
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT current_database()").fetchone()[0] == "credit_assets"
    assert (state_dir / "postgres.log").exists()
    postmaster_pid = (state_dir / "data" / "postmaster.pid").read_text().splitlines()[0]

    assert ensure_local_cluster(state_dir, port) == url  # reused: same server process
    assert (state_dir / "data" / "postmaster.pid").read_text().splitlines()[0] == postmaster_pid

    assert stop_local_cluster(state_dir) is True
    assert running_cluster_port(state_dir) is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3)
    assert stop_local_cluster(state_dir) is False

    assert ensure_local_cluster(state_dir, port) == url  # restarts the existing data directory
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_a_busy_port_is_refused_before_initdb(state_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy_port = listener.getsockname()[1]
        with pytest.raises(LocalPostgresError, match=f"Port {busy_port} .* in use"):
            ensure_local_cluster(state_dir, busy_port)
    assert not (state_dir / "data").exists()


def test_an_unreachable_state_dir_is_explained(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    stranger = OsUser(name="stranger", uid=os.getuid() + 4242, gid=os.getgid() + 4242)
    with pytest.raises(LocalPostgresError, match=f"cannot enter {locked}"):
        local_postgres._check_reachable(locked / "state", stranger)


def test_server_binaries_are_found() -> None:
    bindir = find_postgres_bindir()
    assert (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()


def test_cli_prints_the_url(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert local_postgres.main(["url", "--state-dir", str(state_dir), "--port", "54999"]) == 0
    assert capsys.readouterr().out.strip() == "postgresql://postgres@127.0.0.1:54999/credit_assets"
    assert local_postgres.main(["stop", "--state-dir", str(state_dir)]) == 0
