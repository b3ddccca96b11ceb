"""The cluster profile's pieces without servers: credentials from the environment (or generated
once outside the repository), the PostgreSQL binaries it needs, the ports it refuses."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "infra" / "local"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture
def profile(monkeypatch):
    for key in ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "STACK_PG_BIN"):
        monkeypatch.delenv(key, raising=False)
    return _load("cluster_profile")


def test_credentials_come_from_the_environment(profile, tmp_path, monkeypatch):
    monkeypatch.setenv("POSTGRES_PASSWORD", "pw")
    monkeypatch.setenv("S3_ACCESS_KEY", "key")
    monkeypatch.setenv("S3_SECRET_KEY", "secret")
    found = profile.credentials(tmp_path)
    assert found == {"POSTGRES_PASSWORD": "pw", "S3_ACCESS_KEY": "key", "S3_SECRET_KEY": "secret"}
    assert not (tmp_path / "credentials.env").exists()


def test_missing_credentials_are_generated_once_into_a_private_file(
    profile, tmp_path, capsys, monkeypatch
):
    first = profile.credentials(tmp_path)
    path = tmp_path / "credentials.env"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(set(first.values())) == 3 and all(len(v) >= 20 for v in first.values())
    assert "generated POSTGRES_PASSWORD, S3_ACCESS_KEY, S3_SECRET_KEY" in capsys.readouterr().out
    assert profile.credentials(tmp_path) == first  # read back, not made again
    monkeypatch.setenv("POSTGRES_PASSWORD", "from-env")  # the environment comes first
    assert profile.credentials(tmp_path)["POSTGRES_PASSWORD"] == "from-env"


def test_a_missing_postgresql_server_is_named(profile, tmp_path, monkeypatch):
    monkeypatch.setenv("STACK_PG_BIN", str(tmp_path))
    with pytest.raises(profile.ProfileError) as err:
        profile.pg_bin()
    assert str(err.value) == (
        f"no PostgreSQL server in {tmp_path}: `make up PROFILE=cluster` installs Debian's "
        "postgresql (or set STACK_PG_BIN to a folder with postgres, initdb and pg_isready)"
    )


def test_the_database_password_is_quoted_in_urls(profile):
    url = profile.database_url("prefect", 5433, "p@ss/w:rd", "postgresql+asyncpg")
    assert url == "postgresql+asyncpg://tal:p%40ss%2Fw%3Ard@127.0.0.1:5433/prefect"


def test_a_port_in_the_second_nodes_worker_range_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACK_")}
    env |= {"STACK_DIR": str(tmp_path / "stack"), "STACK_S3_PORT": "20500"}
    done = subprocess.run(
        [sys.executable, str(LOCAL / "stack.py"), "up", "--profile", "cluster"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: STACK_S3_PORT=20500: inside Ray's worker port range 10002-19999 and "
        "20002-29999, where a Ray worker can take it; choose a port outside it"
    )
    assert not (tmp_path / "stack").exists()  # nothing started, nothing written
