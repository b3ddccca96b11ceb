#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, set up what is needed, then run
# bench/gpu_check.py (the demo's extraction in float32, bfloat16 and float16, and 1-GPU NCCL
# training, against the CPU path; it prints the throughput ratios and writes
# docs/results/gpu_check.md). A few minutes; the run is stopped at GPU_CHECK_TIMEOUT seconds
# (450 by default), so that set-up and all stay inside 8 minutes.
#
#   bash bench/gpu_check.sh [ARGS of bench/gpu_check.py, e.g. --results-dir DIR]
#       Python: the project's .venv where it is there; else python3 (a GPU image's, with
#       CUDA PyTorch) with what it lacks installed from .gpu/wheels (see --prepare) into
#       /tmp/tal-gpu-site; else `make install` (needs the package registry).
#       Data: .gpu/data where --prepare made it, else the demo's (made on first use).
#
#   bash bench/gpu_check.sh --prepare [PYTHON_VERSION]
#       Where pip reaches the registry and `make install` has run: the demo's videos into
#       .gpu/data, and the wheels of the packages that a bare PyTorch image lacks (zarr,
#       pydantic, decord, ...) for Python PYTHON_VERSION (default 3.12), x86-64 Linux, into
#       .gpu/wheels; .gpu/ is git-ignored: copy it along to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# what the check imports beyond a PyTorch image (numpy, pyarrow, opencv, yaml, fsspec...):
# pinned as requirements.lock pins them
WHEELS=(zarr numcodecs donfig google-crc32c pydantic pydantic_core annotated-types
    typing-inspection typing_extensions decord orjson)

pinned() { # NAME==VERSION from requirements.lock
    local line
    line=$(grep -i -E "^${1//[-_]/[-_]}==" requirements.lock) || {
        echo "gpu_check: $1 is not in requirements.lock" >&2
        exit 2
    }
    echo "$line"
}

if [[ "${1:-}" == "--prepare" ]]; then
    version="${2:-3.12}"
    test -x .venv/bin/python || make install
    # (-c, not a script on stdin: the renderer's worker processes re-import the main module)
    .venv/bin/python -c 'from pipelines.synth import ensure_synth_dataset
from tal.config import load_config
ensure_synth_dataset(load_config("configs/demo.yaml", ["data.root=.gpu/data"]))'
    mkdir -p .gpu/wheels
    for name in "${WHEELS[@]}"; do
        .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: \
            --python-version "$version" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
            -d .gpu/wheels "$(pinned "$name")"
    done
    du -sh .gpu/data .gpu/wheels
    exit 0
fi

needs='import zarr, pydantic, decord, orjson, cv2, pyarrow, torch'
if [[ -x .venv/bin/python ]]; then
    python=.venv/bin/python
elif python3 -c "$needs" 2>/dev/null; then
    python=python3
elif [[ -d .gpu/wheels ]]; then
    python=python3
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/tal-gpu-site .gpu/wheels/*.whl
    export PYTHONPATH="/tmp/tal-gpu-site${PYTHONPATH:+:$PYTHONPATH}"
else
    make install
    python=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c "$needs" || {
    echo "gpu_check: $python lacks a package the check needs ($needs)" >&2
    exit 2
}
data=()
if [[ -f .gpu/data/annotations.json ]]; then
    data=(--set data.root=.gpu/data)
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
limit="${GPU_CHECK_TIMEOUT:-450}"
status=0
timeout "$limit" "$python" bench/gpu_check.py "${data[@]}" "$@" || status=$?
if [[ $status -eq 124 ]]; then
    echo "gpu_check: stopped after ${limit} s (GPU_CHECK_TIMEOUT); what it printed is above" >&2
fi
exit $status
