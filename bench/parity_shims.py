"""Run an official checkout's code on a CPU without editing it: patches applied at run time,
then its own entry point (``bench/parity.py`` calls this in a subprocess).

    python bench/parity_shims.py actionformer-train CHECKOUT CONFIG OUTPUT_NAME
    python bench/parity_shims.py actionformer-eval CHECKOUT CONFIG CKPT_DIR
    python bench/parity_shims.py co2net CHECKOUT PROPOSALS_PKL -- OFFICIAL_OPTIONS...
    python bench/parity_shims.py co2net-step CHECKOUT CASE_PT RESULT_PT

The checkout goes first on ``sys.path``; the working directory is the caller's (a scratch
folder), so whatever the official code writes beside itself lands there. What is patched:

- ``torch.Tensor.cuda`` and ``nn.Module.cuda`` return their object unchanged;
  ``torch.set_default_tensor_type`` ignores CUDA tensor types (CO2-Net sets
  ``torch.cuda.FloatTensor`` at import); ``torch.cuda.synchronize`` does nothing without a
  GPU; ``torch.load`` maps storages to the CPU (ActionFormer maps them with ``.cuda()``).
- ActionFormer's compiled ``nms_1d_cpu`` (``libs/utils/csrc/nms_cpu.cpp``) is replaced by
  ``soft_nms_1d``/``nms_1d`` below, our Python implementation of the same algorithm (selection
  of the best remaining segment, Gaussian/linear/hard decay of the rest, a segment decayed
  under ``min_score`` dropped by swapping in the last one), unless an extension built from the
  checkout is importable already (then that one runs). The arithmetic is in float64 where the
  extension uses float32, so scores may differ in the last float32 digit.
- ``h5py``, imported by ActionFormer's ActivityNet loader (unused here), is a stub that
  fails when used, when it is not installed.
- Absent loggers become no-ops: ``torch.utils.tensorboard.SummaryWriter`` (ActionFormer) and
  the ``tensorboard_logger`` package (CO2-Net), neither of which changes a number.

CO2-Net: its ``main.py`` chooses the checkpoint with the best *test* mAP every ``interval``
iterations (model selection on the test set). The parity run instead trains ``--max-iter``
iterations with its ``train.train`` step (same optimizer: Adam, ``--lr``, ``--weight_decay``;
same seeding as ``main.setup_seed``) and tests the last model once, with the proposal method
its ``test.py`` uses (``proposal_methods.multiple_threshold_hamnet`` by default), writing the
concatenated proposals DataFrame as a pickle and the final weights beside it
(``official_model.pt``, a state dict); it prints the mean training loss of every 50
iterations, to read beside our epochs' loss. Its ``--feature-size`` arrives as a string
from the command line when given there, so it is set through ``--feature-size`` as an int.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import random
import runpy
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

# ---------------------------------------------------------------------- NMS stand-in


def soft_nms_1d(
    segs: Tensor,
    scores: Tensor,
    dets: Tensor,
    iou_threshold: float,
    sigma: float,
    min_score: float,
    method: int,
) -> Tensor:
    """Soft-NMS over 1-D segments with the interface of ActionFormer's ``nms_1d_cpu.softnms``:
    fills ``dets[k] = (start, end, score)`` in selection order and returns the original index
    of each kept segment. ``method``: 0 hard, 1 linear, 2 Gaussian decay."""
    n = int(segs.shape[0])
    if n == 0:
        return torch.empty(0, dtype=torch.long)
    x1 = [float(v) for v in segs[:, 0]]
    x2 = [float(v) for v in segs[:, 1]]
    sc = [float(v) for v in scores]
    area = [b - a + 1e-6 for a, b in zip(x1, x2, strict=True)]
    idx = list(range(n))
    out = []
    i = 0
    while i < n:
        best = max(range(i, n), key=lambda k: (sc[k], -k))  # first of the highest
        for arr in (x1, x2, sc, area, idx):
            arr[i], arr[best] = arr[best], arr[i]
        out.append((x1[i], x2[i], sc[i]))
        pos = i + 1
        while pos < n:
            inter = max(0.0, min(x2[i], x2[pos]) - max(x1[i], x1[pos]))
            ovr = inter / (area[i] + area[pos] - inter)
            if method == 0:
                weight = 0.0 if ovr >= iou_threshold else 1.0
            elif method == 1:
                weight = 1.0 - ovr if ovr >= iou_threshold else 1.0
            elif method == 2:
                weight = math.exp(-(ovr * ovr) / sigma)
            else:
                weight = 1.0
            sc[pos] *= weight
            if sc[pos] < min_score:  # drop it: the last segment takes its place
                n -= 1
                for arr in (x1, x2, sc, area, idx):
                    arr[pos] = arr[n]
                continue
            pos += 1
        i += 1
    dets[: len(out)] = torch.tensor(out, dtype=dets.dtype).reshape(-1, 3)
    return torch.tensor(idx[:n], dtype=torch.long)


def nms_1d(segs: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS with the interface of ``nms_1d_cpu.nms``: indices kept, best first."""
    if segs.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    order = torch.sort(scores, descending=True).indices
    x1, x2 = segs[:, 0], segs[:, 1]
    area = x2 - x1 + 1e-6
    keep = torch.ones(len(order), dtype=torch.bool)
    for a in range(len(order)):
        if not keep[a]:
            continue
        i = order[a]
        rest = order[a + 1 :]
        inter = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        ovr = inter / (area[i] + area[rest] - inter)
        keep[a + 1 :] &= ~(ovr >= iou_threshold)
    return order[keep]


# ---------------------------------------------------------------------- patches


def _stub_module(name: str, **attrs: object) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module


class _NoLogger:
    """Accepts any logging call and does nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _missing(package: str):
    def fail(*args: object, **kwargs: object) -> None:
        raise ImportError(f"{package} is not installed: run the official code with --python")

    return fail


def install_cpu_patches() -> list[str]:
    """Apply the patches of the module docstring; returns what was patched, for the log."""
    done = []
    nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    done.append("Tensor.cuda/Module.cuda -> no-op")
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None
        done.append("torch.cuda.synchronize -> no-op")
    original_default = torch.set_default_tensor_type

    def set_default_tensor_type(t: object) -> None:
        if "cuda" in str(t):
            return
        original_default(t)  # type: ignore[arg-type]

    torch.set_default_tensor_type = set_default_tensor_type  # type: ignore[assignment]
    done.append("set_default_tensor_type(cuda) -> ignored")
    original_load = torch.load

    def load(*args: object, **kwargs: object):
        kwargs["map_location"] = "cpu"
        kwargs.setdefault("weights_only", False)  # official checkpoints hold plain pickles
        return original_load(*args, **kwargs)  # type: ignore[arg-type]

    torch.load = load  # type: ignore[assignment]
    done.append("torch.load -> map_location=cpu")
    try:
        import nms_1d_cpu  # noqa: F401  (an extension the user built from the checkout)

        done.append("nms_1d_cpu: the compiled extension")
    except ImportError:
        _stub_module("nms_1d_cpu", softnms=soft_nms_1d, nms=nms_1d)
        done.append("nms_1d_cpu -> bench/parity_shims.py Python stand-in")
    try:
        import h5py  # noqa: F401
    except ImportError:
        _stub_module("h5py", File=_missing("h5py"))
        done.append("h5py -> absent (imported by ActionFormer's anet loader, unused here)")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        _stub_module("torch.utils.tensorboard", SummaryWriter=_NoLogger)
        done.append("torch.utils.tensorboard.SummaryWriter -> no-op")
    try:
        import tensorboard_logger  # noqa: F401
    except ImportError:
        _stub_module("tensorboard_logger", Logger=_NoLogger, log_value=lambda *a, **k: None)
        done.append("tensorboard_logger -> no-op")
    return done


# ---------------------------------------------------------------------- entry points


def _run_script(checkout: Path, script: str, argv: list[str]) -> None:
    sys.path.insert(0, str(checkout))
    sys.argv = [str(checkout / script), *argv]
    runpy.run_path(str(checkout / script), run_name="__main__")


LOSS_WINDOW = 50  # CO2-Net iterations whose mean training loss is printed together


def _co2net(checkout: Path, proposals_out: Path, official_argv: list[str]) -> None:
    """Train with CO2-Net's ``train.train`` for ``--max-iter`` steps, then write the last
    model's proposals on its test videos (see the module docstring)."""
    sys.path.insert(0, str(checkout))
    sys.argv = [str(checkout / "main.py"), *official_argv]
    import options  # the official argument parser; proposal_methods parses at import too

    args = options.parser.parse_args(official_argv)
    args.feature_size = int(args.feature_size)
    import model as co2_model
    import pandas as pd
    import proposal_methods
    import train as co2_train
    import wsad_dataset

    random.seed(args.seed)
    os.environ["PYTHONHASHSEED"] = str(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    dataset = getattr(wsad_dataset, args.dataset)(args)
    net = getattr(co2_model, args.use_model)(dataset.feature_size, dataset.num_class, opt=args)
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    logger = _NoLogger()
    t0 = time.perf_counter()
    recent: list[float] = []
    for itr in range(args.max_iter):
        loss = co2_train.train(itr, dataset, args, net, optimizer, logger, device)
        recent.append(float(loss))
        if itr % max(1, args.interval) == 0:
            print(f"co2net iteration {itr}: loss {float(loss):.4f}", flush=True)
        if len(recent) == LOSS_WINDOW or itr == args.max_iter - 1:  # beside our epochs' loss
            mean = sum(recent) / len(recent)
            print(f"co2net iterations to {itr}: mean loss {mean:.4f}", flush=True)
            recent.clear()
    train_seconds = time.perf_counter() - t0
    # the final weights, to run through our network and decoding beside the official ones
    torch.save(net.state_dict(), proposals_out.with_name("official_model.pt"))
    net.eval()
    proposals = []
    done = False
    t0 = time.perf_counter()
    with torch.no_grad():
        while not done:
            features, _labels, vn, done = dataset.load_data(is_training=False)
            inputs = torch.from_numpy(features).float().unsqueeze(0)
            outputs = net(inputs, is_training=False, seq_len=[features.shape[0]])
            method = getattr(proposal_methods, args.proposal_method)
            proposals.append(method(vn, outputs))
    test_seconds = time.perf_counter() - t0
    frame = pd.concat(proposals).reset_index(drop=True)
    proposals_out.write_bytes(
        pickle.dumps(
            {
                "proposals": {c: frame[c].to_numpy() for c in frame.columns},
                "train_seconds": train_seconds,
                "test_seconds": test_seconds,
            }
        )
    )
    print(f"wrote {len(frame)} proposals to {proposals_out}", flush=True)


def _co2net_step(checkout: Path, case_path: Path, result_path: Path) -> None:
    """One CO2-Net training step of the official code with dropout off (``eval()``): its
    ``model.CO2`` with the case's weights (official names) on the case's batch and labels,
    its ``criterion`` with its default options, and the gradients of that loss. Written to
    ``result_path`` for ``bench/parity_co2net_step.py`` to set beside ours, with its
    co-activity term alone in float64 (its inputs, value and gradients)."""
    sys.path.insert(0, str(checkout))
    sys.argv = [str(checkout / "main.py")]
    import model as co2_model
    import options

    args = options.parser.parse_args([])
    case = torch.load(case_path, weights_only=True)
    feats, labels = case["features"], case["labels"]
    net = co2_model.CO2(feats.shape[-1], labels.shape[1], opt=args)
    missing, unexpected = net.load_state_dict(case["weights"], strict=False)
    unused = [k for k in missing if not k.startswith("feat_encoder.")]  # built, never called
    if unused or unexpected:
        raise SystemExit(f"case weights do not fit model.CO2: missing {unused}, extra {unexpected}")
    net.eval()
    outputs = net(feats, is_training=False, opt=args)
    loss = net.criterion(outputs, labels, opt=args)
    loss.backward()
    grads = {k: p.grad for k, p in net.named_parameters() if p.grad is not None}
    # its co-activity term alone in float64, on its own features and suppressed CAS
    feat = outputs["feat"].detach().double().requires_grad_()
    supp = net._multiply(outputs["cas"], outputs["attn"], include_min=True)
    supp = supp.detach().double().requires_grad_()
    coactivity = net.Contrastive(feat, supp, labels.double())
    coactivity.backward()
    torch.save(
        {
            "outputs": {k: v.detach() for k, v in outputs.items()},
            "loss": loss.detach(),
            "grads": grads,
            "coactivity64": {
                "features": feat.detach(),
                "suppressed": supp.detach(),
                "loss": coactivity.detach(),
                "grad_features": feat.grad,
                "grad_suppressed": supp.grad,
            },
            "options": {k: getattr(args, k) for k in ("k", "alpha1", "alpha2", "alpha3", "alpha4")},
        },
        result_path,
    )
    print(f"official step: loss {float(loss.detach()):.6f}, {len(grads)} gradients", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    official: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, official = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    train = sub.add_parser("actionformer-train")
    train.add_argument("checkout", type=Path)
    train.add_argument("config", type=Path)
    train.add_argument("output_name")
    evaluate = sub.add_parser("actionformer-eval")
    evaluate.add_argument("checkout", type=Path)
    evaluate.add_argument("config", type=Path)
    evaluate.add_argument("ckpt_dir", type=Path)
    co2 = sub.add_parser("co2net")
    co2.add_argument("checkout", type=Path)
    co2.add_argument("proposals", type=Path)
    step = sub.add_parser("co2net-step")
    step.add_argument("checkout", type=Path)
    step.add_argument("case", type=Path)
    step.add_argument("result", type=Path)
    args = parser.parse_args(argv)
    for line in install_cpu_patches():
        print(f"parity_shims: {line}", flush=True)
    checkout = args.checkout.resolve()
    if args.kind == "actionformer-train":
        _run_script(
            checkout,
            "train.py",
            [str(args.config), "--output", args.output_name, "-c", "0", "-p", "1000000"],
        )
    elif args.kind == "actionformer-eval":
        _run_script(checkout, "eval.py", [str(args.config), str(args.ckpt_dir), "--saveonly"])
    elif args.kind == "co2net-step":
        _co2net_step(checkout, args.case.resolve(), args.result.resolve())
    else:
        _co2net(checkout, args.proposals.resolve(), official)


if __name__ == "__main__":
    main()
