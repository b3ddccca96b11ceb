"""One CO2-Net training step beside the official code: same weights, same batch, dropout off.

    python bench/parity_co2net_step.py --co2net CHECKOUT [--weights official_model.pt]
        [--length 64] [--record FILE.json]

The official ``model.CO2`` (run by ``bench/parity_shims.py co2net-step`` on its checkout,
never imported here) and our ``CO2Net`` + ``CO2NetLoss`` get one batch shaped like the
official one: 10 videos of ``--length`` points with 2048-d features (RGB then flow), where
videos (0, 1), (2, 3) and (4, 5) share a class (its co-activity pairs) and 6..9 are the
random ones. Both run in ``eval()`` (no dropout), so every number should agree up to float
rounding. Printed: for each network output, the loss and every parameter's gradient, the
largest absolute difference and that difference relative to the official tensor's largest
magnitude; the script exits 1 when one exceeds ``--tolerance``. Then the co-activity term
alone, in float64, on the official side's own features and suppressed CAS: in float32 that
term is ill-conditioned once a pair's high features are nearly parallel (as at
initialisation, 1 - cos near 0), and the two codes round differently there. At the default
64 points every float32 number agreed within 1e-6 relative; at the official 500 points the
fusion layer's gradient differed by up to 1.6e-4 (so pass ``--tolerance 1e-3`` there), while
the float64 co-activity rows agreed within 1e-13.

Weights: by default drawn from a seeded generator (``case_weights``, the official
initialisation's distribution), so the case is the same on every run; ``--weights`` takes the state dict
an official parity run saved (``official_model.pt``), to compare in a trained regime.
``--record`` writes the official side's loss and summaries of its outputs and gradients to a
JSON file, the reference that ``tests/bench/test_parity_co2net_step.py`` holds our code to
without the official checkout.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.loss import CO2NetLoss, coactivity_loss
from tal.methods.co2net.network import CO2Net

BENCH = Path(__file__).resolve().parent
IN_DIM = 2048  # the official model.CO2 splits its input at 1024 and has a 2048-d classifier
NUM_CLASSES = 20
PAIRS = [(0, 1), (2, 3), (4, 5)]  # the official batch: 3 similar pairs first, then 4 random
LABELS = [[3], [3, 7], [11], [11], [0], [0, 19], [5], [8, 12], [14], [2]]

# official parameter name -> ours; the official feat_encoder is built but never called
OFFICIAL_TO_OURS = {
    "fusion.0": "fusion.conv",
    "classifier.1": "hidden.conv",
    "classifier.4": "classifier.conv",
}
for _official, _ours in (("vAttn", "rgb"), ("fAttn", "flow")):
    OFFICIAL_TO_OURS.update(
        {
            f"{_official}.channel_conv.0": f"{_ours}.global_conv.conv",
            f"{_official}.bit_wise_attn.0": f"{_ours}.local_conv.conv",
            f"{_official}.attention.0": f"{_ours}.att1.conv",
            f"{_official}.attention.3": f"{_ours}.att2.conv",
            f"{_official}.attention.5": f"{_ours}.att3.conv",
        }
    )
OURS_TO_OFFICIAL = {ours: official for official, ours in OFFICIAL_TO_OURS.items()}
# official output name -> ours (the official attentions are [B, T, 1], ours [B, T])
OUTPUTS = {
    "cas": "cas",
    "attn": "attention",
    "v_atn": "attention_rgb",
    "f_atn": "attention_flow",
    "feat": "features",
}


def to_ours(name: str) -> str | None:
    """Our parameter name for an official one; None for the unused ``feat_encoder``."""
    module, _, leaf = name.rpartition(".")
    mapped = OFFICIAL_TO_OURS.get(module)
    return None if mapped is None else f"{mapped}.{leaf}"


def to_official(name: str) -> str:
    """The official parameter name for one of ours (every one of ours has one)."""
    module, _, leaf = name.rpartition(".")
    return f"{OURS_TO_OFFICIAL[module]}.{leaf}"


def case_weights(num_classes: int = NUM_CLASSES, seed: int = 0) -> dict[str, Tensor]:
    """Weights for our network's parameters under the official names, drawn from a seeded
    generator in sorted name order: uniform in +-sqrt(6 / fan-in) (the official
    ``kaiming_uniform_``), biases uniform in +-0.01."""
    shapes = {k: v.shape for k, v in _network(num_classes).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in sorted(shapes.items()):
        bound = math.sqrt(6 / math.prod(shape[1:])) if name.endswith("weight") else 0.01
        values = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound
        weights[to_official(name)] = values.float()
    return weights


def case_batch(length: int, num_classes: int = NUM_CLASSES, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``features [10, length, 2048]`` (uniform in [0, 2), non-negative like I3D's, from a
    seeded generator) and ``labels [10, K]``."""
    generator = torch.Generator().manual_seed(seed + 1)
    feats = 2 * torch.rand(len(LABELS), length, IN_DIM, generator=generator, dtype=torch.float64)
    labels = torch.zeros(len(LABELS), num_classes)
    for row, classes in enumerate(LABELS):
        labels[row, [c % num_classes for c in classes]] = 1
    return feats.float(), labels


def _network(num_classes: int) -> CO2Net:
    return CO2Net(CO2NetConfig(), IN_DIM, num_classes)


@dataclass
class StepResult:
    """One side's step: outputs under the official names, the loss, gradients (official names);
    for the official side also its co-activity term alone in float64 (``coactivity64``)."""

    outputs: dict[str, Tensor]
    loss: Tensor
    grads: dict[str, Tensor]
    coactivity64: dict[str, Tensor] | None = None


def our_step(weights: dict[str, Tensor], feats: Tensor, labels: Tensor) -> StepResult:
    """Our network and loss on the case, dropout off."""
    net = _network(labels.shape[1])
    net.load_state_dict({to_ours(k): v for k, v in weights.items() if to_ours(k)})
    net.eval()
    masks = torch.ones(feats.shape[:2], dtype=torch.bool)
    out = net(feats.transpose(1, 2), masks)
    loss = CO2NetLoss(CO2NetConfig())(out, labels, PAIRS)["loss"]
    loss.backward()
    grads = {to_official(name): p.grad for name, p in net.named_parameters()}
    outputs = {k: getattr(out, v).detach() for k, v in OUTPUTS.items()}
    return StepResult(outputs, loss.detach(), grads)


def official_step(
    checkout: Path, weights: dict[str, Tensor], feats: Tensor, labels: Tensor
) -> StepResult:
    """The official code's step, in a subprocess on its checkout (``parity_shims.py``)."""
    with tempfile.TemporaryDirectory() as scratch:
        case, result = Path(scratch) / "case.pt", Path(scratch) / "result.pt"
        torch.save({"weights": weights, "features": feats, "labels": labels}, case)
        subprocess.run(
            [
                sys.executable,
                str(BENCH / "parity_shims.py"),
                "co2net-step",
                str(checkout),
                str(case),
                str(result),
            ],
            check=True,
            cwd=scratch,
        )
        got = torch.load(result, weights_only=True)
    expected_options = {"k": 7, "alpha1": 0.8, "alpha2": 0.8, "alpha3": 1, "alpha4": 1}
    if got["options"] != expected_options:
        raise SystemExit(f"official default options {got['options']} are not {expected_options}")
    outputs = {
        k: v.squeeze(-1) if k in ("attn", "v_atn", "f_atn") else v
        for k, v in got["outputs"].items()
    }
    grads = {k: v for k, v in got["grads"].items() if to_ours(k)}
    return StepResult(outputs, got["loss"], grads, got["coactivity64"])


def coactivity_in_float64(
    official: dict[str, Tensor], labels: Tensor
) -> list[tuple[str, float, float]]:
    """Our co-activity term in float64 on the official side's features and suppressed CAS,
    beside the official term's value and gradients (``differences``' rows). In float32 the
    term is ill-conditioned once the pair's high features are nearly parallel (1 - cos near
    0): then the two codes' rounding differs, and this shows whether the function does."""
    feats = official["features"].clone().requires_grad_()
    supp = official["suppressed"].clone().requires_grad_()
    masks = torch.ones(feats.shape[:2], dtype=torch.bool)
    margin = CO2NetConfig().coactivity_margin
    value = coactivity_loss(feats, supp[:, :, :-1], masks, labels.double(), PAIRS, margin)
    grad_feats, grad_supp = torch.autograd.grad(value, [feats, supp])
    rows = []
    for name, a, b in (
        ("co-activity (float64)", official["loss"].reshape(1), value.detach().reshape(1)),
        ("  grad features", official["grad_features"], grad_feats),
        ("  grad suppressed CAS", official["grad_suppressed"], grad_supp),
    ):
        diff = float((a - b).abs().max())
        rows.append((name, diff, diff / max(float(a.abs().max()), 1e-30)))
    return rows


def summary(result: StepResult) -> dict[str, float | dict[str, float]]:
    """What ``--record`` keeps: the loss, each output's sum and each gradient's norm."""
    return {
        "loss": float(result.loss),
        "output_sums": {k: float(v.double().sum()) for k, v in sorted(result.outputs.items())},
        "grad_norms": {k: float(v.double().norm()) for k, v in sorted(result.grads.items())},
    }


def differences(official: StepResult, ours: StepResult) -> list[tuple[str, float, float]]:
    """``(name, largest |difference|, that / largest |official value|)`` for every output, the
    loss and every gradient."""
    pairs = [(f"output {k}", official.outputs[k], ours.outputs[k]) for k in OUTPUTS]
    pairs.append(("loss", official.loss.reshape(1), ours.loss.reshape(1)))
    pairs += [(f"grad {k}", official.grads[k], ours.grads[k]) for k in sorted(official.grads)]
    rows = []
    for name, a, b in pairs:
        if a.shape != b.shape:
            raise SystemExit(f"{name}: official shape {tuple(a.shape)}, ours {tuple(b.shape)}")
        diff = float((a.double() - b.double()).abs().max())
        rows.append((name, diff, diff / max(float(a.double().abs().max()), 1e-30)))
    return rows


def _commit(checkout: Path) -> str:
    """The checkout's git commit, or "unknown" when it is not a git work tree."""
    done = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--co2net", type=Path, required=True, help="official CO2-Net checkout")
    parser.add_argument("--weights", type=Path, help="official_model.pt of a parity run")
    parser.add_argument("--length", type=int, default=64, help="points per video")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="largest relative difference")
    parser.add_argument("--record", type=Path, help="write the official side's summary here")
    args = parser.parse_args(argv)
    weights = torch.load(args.weights, weights_only=True) if args.weights else case_weights()
    num_classes = int(weights["classifier.4.bias"].shape[0]) - 1
    if num_classes != NUM_CLASSES and not args.weights:
        raise SystemExit(f"case weights have {num_classes} classes, expected {NUM_CLASSES}")
    feats, labels = case_batch(args.length, num_classes)
    official = official_step(args.co2net.resolve(), weights, feats, labels)
    ours = our_step(weights, feats, labels)
    rows = differences(official, ours)
    assert official.coactivity64 is not None
    extra = coactivity_in_float64(official.coactivity64, labels)
    width = max(len(name) for name, _, _ in rows)
    print(f"{'':{width}}  max |official - ours|  relative")
    for name, diff, rel in rows:
        print(f"{name:{width}}  {diff:20.3e}  {rel:8.1e}")
    for name, diff, rel in extra:
        print(f"{name:{width}}  {diff:20.3e}  {rel:8.1e}")
    worst = max(rows + extra, key=lambda row: row[2])
    print(
        f"official loss {float(official.loss):.6f}, ours {float(ours.loss):.6f}; largest relative difference {worst[2]:.1e} ({worst[0]})"
    )
    if args.record:
        record = {
            "command": f"python bench/parity_co2net_step.py --co2net CHECKOUT --length {args.length}",
            "official_commit": _commit(args.co2net),
            "torch": torch.__version__,
            "length": args.length,
            "official": summary(official),
        }
        args.record.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.record}")
    return 1 if worst[2] > args.tolerance else 0


if __name__ == "__main__":
    sys.exit(main())
