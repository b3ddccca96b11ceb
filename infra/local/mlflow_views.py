"""Screenshots of the MLflow UI for a tracking store, in headless Chromium: the experiment,
a run and a registered model, as a person opening the UI would see them.

    python infra/local/mlflow_views.py --tracking-uri sqlite:///runs/demo/mlflow.db \
        --out runs/mlflow_views [--run RUN_ID] [--model NAME]

Starts ``mlflow server`` on 127.0.0.1 (a free port) over the store, opens each page in
``chromium --headless`` (``apt-get install chromium``) and writes ``experiment.png``,
``run.png`` and ``model.png``; stops the server. By default the latest run and the first
registered model. What to look for: the experiment opens on the model-training view (not
GenAI evaluation runs), the run lists its dataset inputs and its logged model, and the
registered model and its versions carry descriptions.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"mlflow server did not answer {url} in {timeout:g} s")


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise SystemExit("no chromium found: apt-get install chromium")


def screenshot(browser: str, url: str, path: Path) -> None:
    """One page, after its scripts had 15 s of virtual time to load and render."""
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1500,1000",
            "--virtual-time-budget=15000",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    print(f"{url} -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/mlflow_views"))
    parser.add_argument("--run", help="run id (default: the latest run)")
    parser.add_argument("--model", help="registered model (default: the first)")
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import UI_VIEW

    client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    if args.run:
        run = client.get_run(args.run)
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, order_by=["attributes.start_time DESC"])
        if not runs:
            raise SystemExit(f"{args.tracking_uri}: no runs")
        run = runs[0]
    models = [m.name for m in client.search_registered_models()]
    model = args.model or (models[0] if models else None)
    browser = _browser()
    args.out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", HOST, "--port",
         str(port), "--backend-store-uri", args.tracking_uri, "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://{HOST}:{port}"
    try:
        _wait(f"{base}/health")
        exp, view = run.info.experiment_id, f"?{UI_VIEW}"
        screenshot(browser, f"{base}/#/experiments/{exp}{view}", args.out / "experiment.png")
        run_page = f"{base}/#/experiments/{exp}/runs/{run.info.run_id}{view}"
        screenshot(browser, run_page, args.out / "run.png")
        if model:
            screenshot(browser, f"{base}/#/models/{model}{view}", args.out / "model.png")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
