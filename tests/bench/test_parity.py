"""bench/parity_io.py: a tiny store exported to ActionFormer's and CO2-Net's layouts reads back
as their loaders read it, and a detection made in each official output format from a known
ground-truth segment survives the conversion to our predictions JSON (AP 1, same seconds).
No official checkout, no network."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import parity_io  # noqa: E402
from parity_shims import soft_nms_1d  # noqa: E402

from features.store import FeatureStore  # noqa: E402
from tal.data.annotations import load_annotations  # noqa: E402
from tal.data.predictions import load_predictions, write_predictions  # noqa: E402
from tal.evaluation.detection import evaluate_detection  # noqa: E402

FPS, STRIDE, CLIP = 15.0, 4, 16
ATTRS = {
    "extractor": "i3d",
    "weights_digest": "sha256:0",
    "weights_origin": "test",
    "clip_length": CLIP,
    "stride": STRIDE,
    "fps": FPS,
    "input_size": 112,
    "dtype": "float32",
    "feature_dims": {"rgb": 4, "flow": 4},
}


def cell(t: int) -> float:
    """Where CO2-Net's step t starts, in seconds: half a stride before feature t's centre."""
    return ((t - 0.5) * STRIDE + CLIP / 2) / FPS


# validation segments on CO2-Net's step boundaries (steps 6..21 and 3..12), so they hold exactly
VIDEOS = {
    "train_a": ("training", 120, [("jump", 1.6, 4.8)]),
    "train_b": ("training", 90, [("run", 0.8, 2.4), ("jump", 3.2, 4.0)]),
    "val_a": ("validation", 150, [("run", cell(6), cell(21))]),
    "val_b": ("validation", 100, [("jump", cell(3), cell(12))]),
    "test_a": ("test", 80, []),
}


@pytest.fixture
def tiny(tmp_path):
    """A 5-video store (8-d features whose values encode video and row) and annotations."""
    store = FeatureStore.create(tmp_path / "f.zarr", ATTRS)
    database = {}
    for k, (vid, (subset, frames, instances)) in enumerate(VIDEOS.items()):
        rows = (frames - CLIP) // STRIDE + 1
        base = np.arange(rows, dtype=np.float32)[:, None] + 1000 * k
        store.write_video(
            vid,
            {"rgb": np.repeat(base, 4, axis=1), "flow": -np.repeat(base, 4, axis=1)},
            {"num_frames": frames},
        )
        database[vid] = {
            "subset": subset,
            "duration": frames / FPS,
            "fps": FPS,
            "annotations": [{"label": n, "segment": [s, e]} for n, s, e in instances],
        }
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps({"database": database}))
    return store, load_annotations(ann), ann


def _score(ann_path, detections, tmp_path, subset="validation"):
    """As `tal eval` scores: the predictions file written, read back, evaluated."""
    path = write_predictions(detections, tmp_path / "pred.json")
    result = evaluate_detection(
        load_annotations(ann_path, segments="keep"),
        load_predictions(path),
        subset,
        [0.3, 0.5, 0.7, 0.95],
    )
    return result, load_predictions(path)


def test_actionformer_layout(tiny, tmp_path):
    store, annotations, _ = tiny
    out = parity_io.export_actionformer(
        store, annotations, tmp_path / "af", ["training", "validation"]
    )
    assert out.label_names == ["jump", "run"]
    assert sorted(out.subsets) == ["train_a", "train_b", "val_a", "val_b"]  # test_a not asked
    assert out.input_dim == 8
    feats = np.load(out.feat_folder / "val_b.npy")
    assert feats.dtype == np.float32
    assert feats.shape == ((100 - CLIP) // STRIDE + 1, 8)
    np.testing.assert_array_equal(feats[:, 0], np.arange(feats.shape[0]) + 3000)
    np.testing.assert_array_equal(feats[:, 4], -feats[:, 0])  # RGB first, then flow
    db = json.loads(out.json_file.read_text())["database"]
    entry = db["train_b"]
    assert entry["subset"] == "training"
    assert entry["fps"] == FPS
    assert entry["duration"] == pytest.approx(90 / FPS)
    assert entry["annotations"][0] == {"label": "run", "label_id": 1, "segment": [0.8, 2.4]}
    # its loader's grid: s * fps / feat_stride - 0.5 * num_frames / feat_stride, ours too
    start = entry["annotations"][0]["segment"][0] * FPS / STRIDE - 0.5 * CLIP / STRIDE
    assert start == pytest.approx((0.8 * FPS - CLIP / 2) / STRIDE)


def test_actionformer_detection_round_trip(tiny, tmp_path):
    """eval.py --saveonly's pickle: columns; each ground-truth segment as a detection, plus a
    low-scored miss, gives AP 1 at every tIoU and the same seconds in our JSON."""
    store, annotations, ann = tiny
    out = parity_io.export_actionformer(store, annotations, tmp_path / "af", ["validation"])
    results = {
        "video-id": ["val_a", "val_b", "val_b"],
        "t-start": np.array([2.0, 1.2, 4.0], dtype=np.float32),
        "t-end": np.array([6.0, 3.6, 6.0], dtype=np.float32),
        "label": np.array([1, 0, 0]),
        "score": np.array([0.9, 0.8, 0.1], dtype=np.float32),
    }
    (tmp_path / "eval_results.pkl").write_bytes(pickle.dumps(results))
    loaded = pickle.loads((tmp_path / "eval_results.pkl").read_bytes())
    detections = parity_io.actionformer_to_detections(loaded, out.label_names)
    result, back = _score(ann, detections, tmp_path)
    assert result.mAP == pytest.approx([1.0] * 4)
    assert list(back.labels) == ["run", "jump", "jump"]
    assert (cell(6), cell(21), cell(3), cell(12)) == pytest.approx((2.0, 6.0, 1.2, 3.6))
    np.testing.assert_allclose(back.start, [2.0, 1.2, 4.0], atol=1e-6)
    np.testing.assert_allclose(back.end, [6.0, 3.6, 6.0], atol=1e-6)


def test_co2net_layout(tiny, tmp_path):
    store, annotations, _ = tiny
    out = parity_io.export_co2net(store, annotations, tmp_path / "co2", ["training"], "validation")
    ann_dir = out.path_dataset / "Parity-Annotations"
    load = lambda name: np.load(ann_dir / f"{name}.npy", allow_pickle=True)  # noqa: E731
    names = [v.decode("utf-8") for v in load("videoname")]
    assert names == ["train_a", "train_b", "val_a", "val_b"]
    # its loader: "validation" trains, "test" tests
    assert [s.decode("utf-8") for s in load("subset")] == [
        "validation",
        "validation",
        "test",
        "test",
    ]
    assert [c.decode("utf-8") for c in load("classlist")] == ["jump", "run"]
    assert list(load("labels")[1]) == ["run", "jump"]
    assert list(load("labels_all")[1]) == ["jump", "run"]
    assert load("segments")[1] == [[0.8, 2.4], [3.2, 4.0]]
    assert load("duration").shape == (4, 1)
    feats = np.load(out.path_dataset / "Parity-I3D-JOINTFeatures.npy", allow_pickle=True)
    assert feats.dtype == object and feats.shape == (4,)
    assert feats[2].shape == ((150 - CLIP) // STRIDE + 1, 8)
    assert feats[2].dtype == np.float32
    np.testing.assert_array_equal(feats[2][:, 0], np.arange(feats[2].shape[0]) + 2000)


def test_co2net_detection_round_trip(tiny, tmp_path):
    """test.py's proposals DataFrame (feature steps [first, last + 1), classlist indices)
    made from the ground truth: the default reading gives back the seconds, AP 1 at every
    tIoU; the literal reading of its evaluator (t * stride / fps) is (clip - stride) / 2
    frames earlier."""
    pd = pytest.importorskip("pandas")
    store, annotations, ann = tiny
    out = parity_io.export_co2net(store, annotations, tmp_path / "co2", ["training"], "validation")
    proposals = pd.DataFrame(
        {
            "video-id": ["val_a", "val_b"],
            "t-start": [6, 3],
            "t-end": [21, 12],
            "label": [1.0, 0.0],  # its test.py stores labels as floats
            "score": [0.7, 0.6],
        }
    )
    detections = parity_io.co2net_to_detections(proposals, out.label_names, out.timing)
    result, back = _score(ann, detections, tmp_path)
    assert result.mAP == pytest.approx([1.0] * 4)
    assert list(back.labels) == ["run", "jump"]
    np.testing.assert_allclose(back.start, [2.0, 1.2], atol=1e-9)
    np.testing.assert_allclose(back.end, [6.0, 3.6], atol=1e-9)
    literal = parity_io.co2net_to_detections(proposals, out.label_names, out.timing, "evaluator")
    np.testing.assert_allclose(literal.start, [6 * 4 / 15, 3 * 4 / 15], atol=1e-9)
    np.testing.assert_allclose(detections.start - literal.start, (CLIP - STRIDE) / 2 / FPS)
    # THUMOS14 features (16-frame clips, stride 16, 25 fps): both readings are its t * 16 / 25
    thumos = parity_io.StoreTiming(25.0, 16, 16)
    np.testing.assert_allclose(parity_io.co2net_seconds([0, 5], thumos), [0.0, 5 * 16 / 25])


def test_bad_label_is_an_error():
    results = {"video-id": ["val_a"], "t-start": [0.0], "t-end": [1.0], "label": [5], "score": [1]}
    with pytest.raises(ValueError, match="label 5"):
        parity_io.actionformer_to_detections(results, ["jump", "run"])


def test_soft_nms_stand_in():
    """Our stand-in for ActionFormer's compiled softnms (libs/utils/csrc/nms_cpu.cpp).
    Segments [0,10] 0.9, [1,11] 0.8, [20,30] 0.7: the first keeps 0.9; the second overlaps it
    by tIoU 9/11 and decays (Gaussian, method 2) to 0.8 * exp(-(9/11)**2 / 0.5) (by hand);
    the third does not overlap and keeps 0.7, so it ranks second. The official extension,
    built with the checkout's libs/utils/setup.py outside this repository, returned the same
    order and 0.20971913635730743 (method 2), 0.14545464515686035 (method 1, linear)."""
    import torch

    segs = torch.tensor([[0.0, 10.0], [1.0, 11.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets = segs.new_empty((3, 3))
    inds = soft_nms_1d(segs, scores, dets, iou_threshold=0.1, sigma=0.5, min_score=0.001, method=2)
    assert inds.tolist() == [0, 2, 1]
    iou = (9 + 0) / (10 + 10 - 9)
    expected = [0.9, 0.7, 0.8 * np.exp(-(iou**2) / 0.5)]
    np.testing.assert_allclose(dets[:, 2].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(dets[:, :2].numpy(), [[0, 10], [20, 30], [1, 11]])
    np.testing.assert_allclose(dets[2, 2].item(), 0.20971913635730743, rtol=1e-6)
    inds = soft_nms_1d(segs, scores, dets, iou_threshold=0.1, sigma=0.5, min_score=0.001, method=1)
    assert inds.tolist() == [0, 2, 1]
    np.testing.assert_allclose(dets[2, 2].item(), 0.8 * (1 - iou), rtol=1e-6)
    np.testing.assert_allclose(dets[2, 2].item(), 0.14545464515686035, rtol=1e-6)
    # below min_score a segment is dropped (vanilla, method 0: overlap >= threshold -> 0)
    inds = soft_nms_1d(segs, scores, dets, iou_threshold=0.5, sigma=0.5, min_score=0.001, method=0)
    assert inds.tolist() == [0, 2]


def test_actionformer_crop_and_recipe():
    """The smallest legal crop for arch (2, 2, 5) and window 19: every level's stride times
    (19 // 2) * 2 = 18 divides it, so 32 * 18 = 576 (by hand); a 4000-feature video padded to
    4032 does not fit the 6 x 576 point buffer, so the crop doubles. The recipe's overrides
    are keys of our config, and its official config carries the THUMOS14 values."""
    import parity

    from tal.config import load_config

    assert parity.smallest_crop(6, 19) == 576
    assert parity.smallest_crop(5, 9) == 16 * 8
    assert parity.actionformer_crop(104, 6, 19) == 576
    assert parity.actionformer_crop(4000, 6, 19) == 1152
    settings = parity.actionformer_settings(parity.ActionFormerRecipe(width=64, epochs=30))
    ours = load_config(REPO / "configs/demo_actionformer.yaml", parity.our_overrides(settings))
    assert (ours.model.num_levels, ours.model.attention_window) == (6, 19)
    assert (ours.model.embed_dim, ours.model.max_seq_len) == (64, 576)
    assert (ours.training.epochs, ours.training.warmup_epochs) == (18, 3)  # 35 and 5 passes
    assert ours.training.batch_size == 1 and ours.pairs.per_video == 1
    export = parity_io.ExportedVideos(["a", "b"], {}, 8, parity_io.StoreTiming(15.0, 4, 16))
    theirs = parity.actionformer_yaml(
        settings, export, Path("a.json"), Path("f"), ["training"], "validation", 3, Path("o")
    )
    assert theirs["model"]["backbone_arch"] == [2, 2, 5]
    assert theirs["model"]["n_mha_win_size"] == 19
    assert theirs["dataset"]["max_seq_len"] == 576
    assert (theirs["dataset"]["feat_stride"], theirs["dataset"]["num_frames"]) == (4, 16)
    assert (theirs["opt"]["epochs"], theirs["opt"]["warmup_epochs"]) == (30, 5)
    assert theirs["train_cfg"]["init_loss_norm"] == 100
    assert theirs["init_rand_seed"] == 3 and theirs["val_split"] == ["validation"]
    assert not any(key.startswith("(") for key in theirs["model"])


def test_co2net_recipe():
    """250 passes over 48 videos in batches of 10 are 1200 iterations; ours: 125 epochs of
    5 pairs a batch, Adam at a constant rate, no EMA, partners drawn anew each epoch."""
    import parity

    from tal.config import load_config

    settings = parity.co2net_settings(parity.CO2NetRecipe(max_seqlen=112), 48)
    assert next(s.value for s in settings if s.official == "--max-iter") == 1200
    ours = load_config(REPO / "configs/demo_co2net.yaml", parity.our_overrides(settings))
    assert (ours.training.epochs, ours.training.batch_size) == (125, 5)
    assert (ours.training.optimizer, ours.training.schedule) == ("adam", "constant")
    assert ours.training.ema_decay == 0.0 and ours.model.fusion_dim is None
    assert (ours.model.max_seq_len, ours.model.topk_ratio) == (112, 7)
    # the official similar pairs are drawn afresh each step: every same-class video is listed
    # as a partner and one of them is drawn for each video in every epoch
    assert (ours.pairs.per_video, ours.training.partner_draw) == (47, "each_epoch")


def _one_prediction(tiny, tmp_path):
    """A predictions file with one detection on the tiny store's validation subset, and a
    base config that scores it there."""
    from tal.config import load_config

    store, annotations, ann = tiny
    out = parity_io.export_actionformer(store, annotations, tmp_path / "af", ["validation"])
    results = {
        "video-id": ["val_a"],
        "t-start": np.array([2.0], dtype=np.float32),
        "t-end": np.array([6.0], dtype=np.float32),
        "label": np.array([1]),
        "score": np.array([0.9], dtype=np.float32),
    }
    pred = write_predictions(
        parity_io.actionformer_to_detections(results, out.label_names), tmp_path / "p.json"
    )
    base = load_config(None, [f"data.annotations={ann}", "evaluation.subset=validation"])
    return pred, base


def test_each_finished_side_is_reused_with_its_times(tiny, tmp_path):
    """--reuse: each side of a seed is recorded when it finishes and comes back scored from its
    predictions with its recorded times; clearing one side keeps the other; without --reuse a
    recorded side is cleared and run again; a side recorded or started with other settings
    runs again from the start."""
    import argparse

    import parity

    pred, base = _one_prediction(tiny, tmp_path)
    run = tmp_path / "seed0"
    run.mkdir()
    assert parity.finished_side(run, base, "official", "A") is None
    official = parity.Score(parity.score(base, pred), 12.0, 3.0)
    parity.record_side(run, "official", pred, official, "A")
    (run / "official.log").write_text("official log\n")
    (run / "ours").mkdir()
    (run / "ours" / "partial.ckpt").write_text("half an epoch")
    assert parity.finished_side(run, base, "ours", "B") is None
    again = parity.finished_side(run, base, "official", "A")
    assert again is not None and (again.seconds, again.samples_per_second) == (12.0, 3.0)
    assert again.result.average_mAP == pytest.approx(official.result.average_mAP)
    # the unfinished side is cleared before it runs; the finished one is taken as it is
    rows = parity.Row("official"), parity.Row("ours")
    reuse = argparse.Namespace(reuse=True)
    assert parity.reused(run, base, "official", rows[0], reuse, "A")
    assert not parity.reused(run, base, "ours", rows[1], reuse, "B")
    assert not (run / "ours").exists() and (run / "official.log").is_file()
    assert [r.seconds for r in rows[0].runs] == [12.0] and rows[1].runs == []
    # an unfinished run of ours that can resume (its latest_train.json) is kept for it
    (run / "ours").mkdir()
    (run / "ours" / "latest_train.json").write_text("{}")
    assert not parity.reused(run, base, "ours", rows[1], reuse, "B")
    assert (run / "ours" / "latest_train.json").is_file()
    parity.record_side(run, "ours", pred, parity.Score(parity.score(base, pred), 7.0, 5.0), "B")
    assert parity.finished_side(run, base, "ours", "B").seconds == 7.0
    # without --reuse the official side is run again: its outputs and record go
    assert not parity.reused(
        run, base, "official", parity.Row("x"), argparse.Namespace(reuse=False), "A"
    )
    assert parity.finished_side(run, base, "official", "A") is None
    assert not (run / "official.log").exists()
    assert parity.finished_side(run, base, "ours", "B").seconds == 7.0
    # other settings: the finished side is not taken, nor is an unfinished one resumed
    assert parity.finished_side(run, base, "ours", "C") is None
    assert not parity.reused(run, base, "ours", parity.Row("x"), reuse, "C")
    assert not (run / "ours").exists() and parity.finished_side(run, base, "ours", "B") is None
    (run / "ours").mkdir()
    (run / "ours" / "latest_train.json").write_text("{}")
    assert not parity.reused(run, base, "ours", parity.Row("x"), reuse, "D")  # started as C
    assert not (run / "ours").exists()
    # a record older than the digests is taken as it is
    record = json.loads((run / parity.SEED_RECORD).read_text())
    record["ours"] = {"predictions": str(pred), "seconds": 3.0, "samples_per_second": 1.0}
    (run / parity.SEED_RECORD).write_text(json.dumps(record))
    assert parity.finished_side(run, base, "ours", "E").seconds == 3.0
    assert parity.settings_digest({"a": 1, "b": [2]}) == parity.settings_digest({"b": [2], "a": 1})
    assert parity.settings_digest(["--lr=1"]) != parity.settings_digest(["--lr=2"])


def test_a_side_left_out_never_runs_and_joins_only_when_finished(tiny, tmp_path, capsys):
    """--sides ours: the official side does not run; with --reuse its finished run (same
    settings) still joins its row; the per-seed line marks a side without a run."""
    import argparse

    import parity

    pred, base = _one_prediction(tiny, tmp_path)
    run = tmp_path / "seed0"
    (run / "official").mkdir(parents=True)
    ours_only = argparse.Namespace(reuse=True, sides=["ours"])
    official, ours = parity.Row("official"), parity.Row("ours")
    assert not parity.to_run(run, base, "official", official, ours_only, "A")
    assert official.runs == [] and (run / "official").is_dir()  # nothing cleared either
    assert parity.to_run(run, base, "ours", ours, ours_only, "B")
    parity.record_side(run, "official", pred, parity.Score(parity.score(base, pred), 9.0, 1.0), "A")
    assert not parity.to_run(run, base, "official", official, ours_only, "A")
    assert [r.seconds for r in official.runs] == [9.0]
    assert not parity.to_run(run, base, "official", parity.Row("x"), ours_only, "other")
    capsys.readouterr()
    parity.say_seed(0, (official, ours), (0, 0))
    line = capsys.readouterr().out.strip()
    assert line.startswith("seed 0: official 0.") and line.endswith("ours -")


def test_the_official_ema_row_runs_with_ours_in_its_own_folder(tiny, tmp_path):
    """ActionFormer's row with the official EMA: our recipe config with
    ``training.ema_warmup=false`` on top (the only difference from our row), run in its own
    folder, cleared and run with ``--sides ours``, left alone by ``--sides official``."""
    import argparse

    import parity

    pred, base = _one_prediction(tiny, tmp_path)
    run = tmp_path / "seed0"
    recipe = parity.ActionFormerRecipe(width=16, epochs=2, max_seq_len=576)
    settings = parity.actionformer_settings(recipe)
    args = argparse.Namespace(threads=1, out=str(tmp_path / "out"), set=[])
    ours = parity.our_config("configs/demo_actionformer.yaml", base, settings, args, 0, run)
    ema = parity.our_config(
        "configs/demo_actionformer.yaml",
        base,
        settings,
        args,
        0,
        run,
        side=parity.OFFICIAL_EMA,
        variant=["training.ema_warmup=false"],
    )
    assert ours.training.ema_warmup and not ema.training.ema_warmup
    assert Path(ema.run_dir) == run / parity.OFFICIAL_EMA and Path(ours.run_dir) == run / "ours"
    # apart from the key, the same config, its paths under the row's folder
    theirs = ema.model_dump(mode="json")
    theirs["training"]["ema_warmup"] = True
    moved = json.dumps(theirs, sort_keys=True).replace(f"/{parity.OFFICIAL_EMA}/", "/ours/")
    moved = moved.replace(f'/{parity.OFFICIAL_EMA}"', '/ours"')
    assert moved == json.dumps(ours.model_dump(mode="json"), sort_keys=True)
    # --sides ours runs it (clearing only its own folder); --sides official does not
    (run / "ours").mkdir(parents=True)
    (run / parity.OFFICIAL_EMA).mkdir()
    row = parity.Row("ema")
    ours_only = argparse.Namespace(reuse=True, sides=["ours"])
    assert parity.to_run(run, base, parity.OFFICIAL_EMA, row, ours_only, "E")
    assert not (run / parity.OFFICIAL_EMA).exists() and (run / "ours").is_dir()
    parity.record_side(
        run, parity.OFFICIAL_EMA, pred, parity.Score(parity.score(base, pred), 4.0, 2.0), "E"
    )
    official_only = argparse.Namespace(reuse=True, sides=["official"])
    assert not parity.to_run(run, base, parity.OFFICIAL_EMA, row, official_only, "E")
    assert [r.seconds for r in row.runs] == [4.0]
