"""Start-up time of `tal --help` and `tal eval` against what importing torch and zarr costs.

    python bench/cli_startup.py [--repeat 5] [--no-page]

Each command runs as a fresh process (`python -m pipelines ...`, the same command as `tal`),
``--repeat`` times; the median wall time is reported beside two references timed in the
same run: a bare interpreter (`python -c pass`) and `python -c "import torch, zarr"`, what
every command paid before the CLI kept heavy imports inside the commands. The ratio is ours
over the torch-and-zarr import. Writes ``docs/results/cli_startup.md`` (``--no-page``: print
only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_page import Transcript, add_page_flag, write_results_page

REPO = Path(__file__).resolve().parents[1]


def _seconds(argv: list[str], repeat: int) -> float:
    """Median wall time of ``argv`` run ``repeat`` times (after one untimed warm-up run)."""
    times = []
    for i in range(repeat + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        took = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr[-500:]}")
        if i:
            times.append(took)
    return statistics.median(times)


def _eval_files(folder: Path) -> tuple[Path, Path]:
    video = {"subset": "validation", "duration": 60.0, "fps": 30.0}
    video["annotations"] = [{"label": "jump", "segment": [3.0, 9.0]}]
    gt = folder / "gt.json"
    gt.write_text(json.dumps({"version": "1.3", "database": {"v1": video}}))
    found = [{"label": "jump", "segment": [3.5, 9.0], "score": 0.8}]
    pred = folder / "pred.json"
    pred.write_text(json.dumps({"version": "1.3", "results": {"v1": found}}))
    return gt, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each command")
    add_page_flag(parser, "cli_startup")
    args = parser.parse_args()
    out = Transcript()
    py = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        gt, pred = _eval_files(Path(folder))
        rows = {
            "python -c pass (interpreter)": [py, "-c", "pass"],
            'python -c "import torch, zarr" (reference)': [py, "-c", "import torch, zarr"],
            "tal --help": [py, "-m", "pipelines", "--help"],
            "tal eval (one video)": [
                *(py, "-m", "pipelines", "eval"),
                *("--ground-truth", str(gt), "--predictions", str(pred)),
            ],
        }
        seconds = {name: _seconds(argv, args.repeat) for name, argv in rows.items()}
    reference = seconds['python -c "import torch, zarr" (reference)']
    out(f"median of {args.repeat} runs each, fresh processes:\n")
    out("| command | seconds | / import torch, zarr |")
    out("|---|---|---|")
    for name, value in seconds.items():
        out(f"| {name} | {value:.2f} | {value / reference:.2f} |")
    if not args.no_page:
        write_results_page(
            "cli_startup", "Start-up of `tal --help` and `tal eval`", "\n".join(out.lines)
        )


if __name__ == "__main__":
    main()
