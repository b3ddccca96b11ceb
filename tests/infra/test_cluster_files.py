"""The cluster infrastructure files (infra/, prefect.yaml) parse, pass the schemas their tools
ship (Ray's cluster-launcher schema), and name only what exists: files in the repo, the image
tag `make image` builds, CLI flags the pinned tools accept, flows and their parameters,
configs, and the ConfigMap, Secret and volume names they share."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PINS = dict(
    re.match(r"([A-Za-z0-9_.-]+)(?:\[.*\])?==(.+)", d).groups()
    for d in PYPROJECT["project"]["dependencies"]
)
OUR_IMAGE = f"tal-pipeline:{VERSION}"


def _docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _images(node) -> list[str]:
    """Every value of an `image` key, anywhere in a parsed document."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "image" and isinstance(v, str)]
        return found + [i for v in node.values() for i in _images(v)]
    if isinstance(node, list):
        return [i for v in node for i in _images(v)]
    return []


def _flags(command: list[str] | str) -> set[str]:
    tokens = command.split() if isinstance(command, str) else command
    return {t.split("=", 1)[0] for t in tokens if t.startswith("--")}


def _help_flags(*args: str) -> set[str]:
    """The long options a pinned CLI's --help lists."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / args[0]), *args[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout))


@pytest.fixture(scope="module")
def mlflow_server_flags() -> set[str]:
    from mlflow.cli import server

    return {o for p in server.params for o in p.opts}


@pytest.fixture(scope="module")
def ray_start_flags() -> set[str]:
    from ray.scripts.scripts import start

    return {o for p in start.params for o in p.opts}


def test_every_infra_file_parses():
    files = [*INFRA.rglob("*.yaml"), ROOT / "prefect.yaml"]
    assert len(files) >= 6
    for path in files:
        assert _docs(path), path


def test_make_image_builds_the_tag_every_manifest_names():
    dry = subprocess.run(["make", "-s", "-n", "image"], cwd=ROOT, capture_output=True, text=True)
    assert f"-t {OUR_IMAGE} " in dry.stdout and "-f infra/docker/Dockerfile" in dry.stdout
    named = {
        path.relative_to(ROOT): _images(_docs(path))
        for path in INFRA.rglob("*.yaml")
        if _images(_docs(path))
    }
    assert {str(p) for p in named} >= {
        "infra/ray/cluster.yaml",
        "infra/k8s/raycluster.yaml",
        "infra/k8s/services.yaml",
        "infra/services/compose.yaml",
    }
    for path, images in named.items():
        for image in images:
            if image.startswith("tal-pipeline:"):
                assert image == OUR_IMAGE, (path, image)
            else:  # third-party images are pinned to a release
                name, _, tag = image.rpartition(":")
                assert name and tag and tag != "latest", (path, image)


def test_dockerfile_base_matches_the_pins_and_copies_what_exists():
    text = (INFRA / "docker" / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    python = re.search(r">=(\d)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups()
    assert base == f"rayproject/ray:{PINS['ray']}-py{''.join(python)}-gpu"
    sources = [
        src
        for line in re.findall(r"^COPY (.+)$", text, re.M)
        for src in line.split()[:-1]
        if not src.startswith("--")
    ]
    assert "pyproject.toml" in sources and "requirements.lock" in sources
    for src in sources:
        assert (ROOT / src).exists(), src
    assert "cluster" in PYPROJECT["project"]["optional-dependencies"]
    # the build runs the project's CLI: the `tal` entry point and its weights command exist
    assert PYPROJECT["project"]["scripts"]["tal"] == "pipelines.cli:main"
    assert "tal weights kinetics-rgb" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_ray_cluster_launcher_config_is_valid(ray_start_flags):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # Ray's own schema, as `ray up` applies it
    assert config["docker"]["image"] == OUR_IMAGE
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["max_workers"] >= 1
    for remote, local in config["file_mounts"].items():
        assert (ROOT / local).exists(), (remote, local)
        env = dict(
            line.split("=", 1)
            for line in (ROOT / local / "tal.env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        assert {"MLFLOW_TRACKING_URI", "PREFECT_API_URL", "TAL_WEIGHTS_DIR"} <= set(env)
        assert all(f"{remote}/tal.env" in c for c in config["worker_start_ray_commands"][1:])
    commands = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    for command in commands:
        if "ray start" in command:
            assert _flags(command.split("ray start", 1)[1]) <= ray_start_flags, command
    worker = next(c for c in commands if "prefect worker start" in c)
    assert "--pool tal-cluster" in worker


def test_kuberay_cluster_and_services(mlflow_server_flags):
    cluster = _docs(INFRA / "k8s" / "raycluster.yaml")[0]
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert cluster["spec"]["rayVersion"] == PINS["ray"]
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    gpu = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    limits = gpu["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    worker = next(c for c in head["containers"] if c["name"] == "prefect-worker")
    assert worker["command"][:5] == ["prefect", "worker", "start", "--pool", "tal-cluster"]

    services = {
        (d["kind"], d["metadata"]["name"]): d for d in _docs(INFRA / "k8s" / "services.yaml")
    }
    config_maps = {n for k, n in services if k == "ConfigMap"}
    claims = {n for k, n in services if k == "PersistentVolumeClaim"}
    for spec in (head, gpu):
        for container in spec["containers"]:
            assert container["image"] == OUR_IMAGE
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
        for volume in spec["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims

    # the servers: MLflow on PostgreSQL with object-storage artifacts, Prefect on PostgreSQL
    mlflow = services[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["command"][:2] == ["mlflow", "server"]
    assert _flags(mlflow["command"]) <= mlflow_server_flags
    assert {"--backend-store-uri", "--artifacts-destination"} <= _flags(mlflow["command"])
    documented = (INFRA / "k8s" / "services.yaml").read_text()
    for var in re.findall(r"\$\((\w+)\)", " ".join(mlflow["command"])):
        assert f"--from-literal={var}=" in documented, var  # the Secret's documented keys
    prefect = services[("Deployment", "prefect")]["spec"]["template"]["spec"]["containers"][0]
    key = prefect["env"][0]["valueFrom"]["secretKeyRef"]["key"]
    assert key == "PREFECT_API_DATABASE_CONNECTION_URL" and f"--from-literal={key}=" in documented
    assert ("Service", "mlflow") in services and ("Service", "prefect") in services
    env = services[("ConfigMap", "tal-env")]["data"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["PREFECT_API_URL"] == "http://prefect:4200/api"


def test_compose_services(mlflow_server_flags):
    folder = INFRA / "services"
    compose = _docs(folder / "compose.yaml")[0]
    services = compose["services"]
    assert {"postgres", "minio", "mlflow", "prefect"} <= set(services)
    mlflow = services["mlflow"]["command"]
    assert mlflow[:2] == ["mlflow", "server"] and _flags(mlflow) <= mlflow_server_flags
    assert any(f.startswith("--backend-store-uri=postgresql://") for f in mlflow)
    assert any(f.startswith("--artifacts-destination=s3://") for f in mlflow)
    database = services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert database.startswith("postgresql+asyncpg://") and database.endswith("/prefect")
    assert "CREATE DATABASE prefect;" in (folder / "postgres-init.sql").read_text()
    for volume in services["postgres"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (folder / source).is_file(), volume
    # every variable compose interpolates is in the example env file
    example = {
        line.split("=", 1)[0]
        for line in (folder / "services.env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    used = set(re.findall(r"\$\{(\w+)", (folder / "compose.yaml").read_text()))
    assert used and used <= example
    # the images have the drivers the servers need
    for module in ("asyncpg",):
        importlib.import_module(module)
    assert any(
        d.startswith("psycopg2") for d in PYPROJECT["project"]["optional-dependencies"]["cluster"]
    )


def test_prefect_server_and_worker_commands_exist():
    assert {"--host", "--port"} <= _help_flags("prefect", "server", "start")
    assert {"--pool", "--type"} <= _help_flags("prefect", "worker", "start")


@pytest.mark.parametrize("deploy_file", ["prefect.yaml", "infra/prefect/cluster.yaml"])
def test_deployments_name_flows_parameters_and_configs_that_exist(deploy_file):
    from prefect import Flow

    spec = yaml.safe_load((ROOT / deploy_file).read_text())
    assert spec["prefect-version"] == PINS["prefect"]
    pools = set()
    for deployment in spec["deployments"]:
        path, func = deployment["entrypoint"].split(":")
        assert (ROOT / path).is_file(), path
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, func)
        assert isinstance(flow, Flow), deployment["entrypoint"]
        accepted = inspect.signature(flow.fn).parameters
        assert set(deployment["parameters"]) <= set(accepted), deployment["entrypoint"]
        assert (ROOT / deployment["parameters"]["config"]).is_file()
        pools.add(deployment["work_pool"]["name"])
    if deploy_file == "prefect.yaml":
        assert pools == {"tal-local"} and len(spec["deployments"]) == 7
    else:
        assert pools == {"tal-cluster"}
        assert spec["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == (
            "/app"
        )  # the WORKDIR of the image
        assert "WORKDIR /app" in (INFRA / "docker" / "Dockerfile").read_text()
