"""The cluster profile of the loopback stack (``make up PROFILE=cluster``): what a cluster has
that the local profile lacks, on 127.0.0.1.

- PostgreSQL (Debian's server package, which the Makefile installs when missing): MLflow's
  and Prefect's databases; run as ``nobody`` when the stack runs as root (PostgreSQL refuses
  root).
- An S3 API (moto's server mode): the bucket for the feature store, Ray Train checkpoints
  and MLflow's artifacts. Moto keeps objects in memory: what is in the bucket lives as long
  as the server does.
- The MLflow server on PostgreSQL with its artifacts in S3, served through it; Prefect on
  PostgreSQL; a Ray head and a second Ray node joined to it (``ray start --address``) with
  its own CPUs, resource ``second_node``, temp dir and ports.

Credentials come from the environment (``POSTGRES_PASSWORD``, ``S3_ACCESS_KEY``,
``S3_SECRET_KEY``, the names of ``infra/services/services.env.example``); one that is not set
is generated once into ``STACK_DIR/credentials.env`` (mode 0600, outside the repository's
files) and read from there afterwards. ``stack.py`` imports this module; it uses only the
standard library until the servers it starts need a client (psycopg2, boto3, installed with
the project's ``cluster`` extra).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

HOST = "127.0.0.1"
PG_USER = "tal"
DATABASES = ("mlflow", "prefect")
CREDENTIALS = ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY")
# the second Ray node's workers take ports from a range apart from the head's (10002-19999),
# so that the two raylets on one address never hand out the same port
WORKER_NODE_PORTS = range(20002, 30000)


class ProfileError(RuntimeError):
    """A cluster-profile step that cannot go on; its message is one line for the user."""


def bucket() -> str:
    """The S3 bucket of the profile (``S3_BUCKET``, default ``tal``)."""
    return os.environ.get("S3_BUCKET", "tal")


def credentials(stack: Path) -> dict[str, str]:
    """``POSTGRES_PASSWORD``, ``S3_ACCESS_KEY`` and ``S3_SECRET_KEY``: from the environment,
    else from ``stack/credentials.env``, else generated there once (mode 0600)."""
    path = stack / "credentials.env"
    saved: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key in CREDENTIALS and value:
                saved[key] = value
    found = {k: os.environ.get(k) or saved.get(k) for k in CREDENTIALS}
    missing = [k for k, v in found.items() if not v]
    if missing:
        for key in missing:
            found[key] = ("tal-" if key == "S3_ACCESS_KEY" else "") + secrets.token_urlsafe(18)
        stack.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(f"{k}={found[k]}\n" for k in CREDENTIALS)
        print(
            f"credentials: generated {', '.join(missing)} into {path} (not set in the environment)"
        )
    return {k: str(v) for k, v in found.items()}


def pg_bin() -> Path:
    """PostgreSQL's server binaries: ``STACK_PG_BIN``, else the newest of Debian's
    (``/usr/lib/postgresql/N/bin``, with contrib's ``pg_trgm``, which Prefect needs)."""
    given = os.environ.get("STACK_PG_BIN")
    if given:
        found = [Path(given)]
    else:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        )
    for folder in reversed(found):
        if (folder / "postgres").is_file() and (folder / "initdb").is_file():
            return folder
    where = given or "/usr/lib/postgresql/*/bin"
    raise ProfileError(
        f"no PostgreSQL server in {where}: `make up PROFILE=cluster` installs Debian's "
        "postgresql (or set STACK_PG_BIN to a folder with postgres, initdb and pg_isready)"
    )


def server_user() -> tuple[int, int] | None:
    """The uid and gid PostgreSQL runs as: ``nobody`` when the stack runs as root (PostgreSQL
    refuses root), else None (the stack's own user)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _as_server_user(path: Path) -> None:
    ids = server_user()
    if ids is not None:
        os.chown(path, *ids)


def _check_reachable(folder: Path) -> None:
    """PostgreSQL, run as ``nobody`` under root, must reach the stack's folder."""
    ids = server_user()
    if ids is None:
        return
    probe = subprocess.run(
        ["test", "-x", str(folder)], user=ids[0], group=ids[1], extra_groups=[], check=False
    )
    if probe.returncode != 0:
        raise ProfileError(
            f"PostgreSQL runs as nobody (the stack runs as root) and cannot reach {folder}: "
            "set STACK_DIR to a folder whose parents other users may enter (e.g. under /tmp)"
        )


def prepare_postgres(stack: Path, password: str) -> Path:
    """Initialise the database cluster in ``stack/postgres`` once (superuser ``tal`` with the
    password, password authentication over TCP); returns the unix socket folder."""
    data, sockets = stack / "postgres", stack / "pgsock"
    sockets.mkdir(parents=True, exist_ok=True)
    _as_server_user(sockets)
    _check_reachable(sockets)
    if (data / "PG_VERSION").is_file():
        return sockets
    if data.exists():
        shutil.rmtree(data)  # a half-made folder from an interrupted initdb
    data.mkdir(mode=0o700)
    _as_server_user(data)
    setup = stack / "pginit"
    setup.mkdir(parents=True, exist_ok=True)
    _as_server_user(setup)
    pwfile = setup / "pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password + "\n")
    _as_server_user(pwfile)
    ids = server_user()
    command = [str(pg_bin() / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}"]
    command += ["--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C"]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
            check=False,
        )
    finally:
        shutil.rmtree(setup, ignore_errors=True)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise ProfileError(f"initdb of {data} failed: {' '.join(last)}")
    return sockets


def postgres_command(stack: Path, port: int) -> list[str]:
    """The PostgreSQL server on 127.0.0.1:port, its unix socket in ``stack/pgsock``."""
    data, sockets = stack / "postgres", stack / "pgsock"
    server = [str(pg_bin() / "postgres"), "-D", str(data), "-h", HOST, "-p", str(port)]
    return [*server, "-k", str(sockets)]


def postgres_ready(port: int) -> list[str]:
    """A command that exits 0 once PostgreSQL accepts connections on 127.0.0.1:port."""
    return [str(pg_bin() / "pg_isready"), "-q", "-h", HOST, "-p", str(port)]


def database_url(name: str, port: int, password: str, driver: str) -> str:
    """The SQLAlchemy URL of one of the profile's databases (password quoted); SQLAlchemy 2.1
    reads a bare ``postgresql://`` as psycopg 3, which the project does not install, so the
    driver is named."""
    secret = urllib.parse.quote(password, safe="")
    return f"{driver}://{PG_USER}:{secret}@{HOST}:{port}/{name}"


def create_databases(port: int, password: str) -> None:
    """MLflow's and Prefect's databases, made when missing."""
    import psycopg2

    try:
        conn = psycopg2.connect(
            host=HOST, port=port, user=PG_USER, password=password, dbname="postgres"
        )
    except psycopg2.OperationalError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ProfileError(
            f"PostgreSQL on {HOST}:{port} refused user {PG_USER}: {first} (POSTGRES_PASSWORD "
            "must be the one its data folder was made with; `make down` and remove "
            "STACK_DIR/postgres to start over)"
        ) from exc
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in DATABASES:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
                    print(f"postgres: created database {name}")
    finally:
        conn.close()


def s3_command(port: int) -> list[str]:
    """Moto's S3 API on 127.0.0.1:port."""
    return [str(Path(sys.executable).parent / "moto_server"), "-H", HOST, "-p", str(port)]


def s3_env(port: int, creds: dict[str, str]) -> dict[str, str]:
    """What boto3, s3fs (fsspec ``s3://``) and MLflow read to reach the profile's S3 API."""
    endpoint = f"http://{HOST}:{port}"
    return {
        "AWS_ACCESS_KEY_ID": creds["S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": creds["S3_SECRET_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,  # boto3 and s3fs (botocore's per-service endpoint)
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }


def create_bucket(port: int, creds: dict[str, str]) -> None:
    """The profile's bucket, made when missing."""
    import boto3

    env = s3_env(port, creds)
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket() not in names:
        client.create_bucket(Bucket=bucket())
        print(f"s3: created bucket {bucket()}")
