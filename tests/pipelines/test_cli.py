"""The `tal` command: outputs, and exit status 2 with a clear message on bad input."""

from __future__ import annotations

import json

import pytest

from pipelines.cli import _expand_multi_value
from pipelines.cli import exit_status as run


def test_expand_multi_value_tiou():
    argv = ["eval", "--tiou", "0.3", "0.5", "--subset", "test"]
    assert _expand_multi_value(argv) == [
        "eval",
        "--tiou",
        "0.3",
        "--tiou",
        "0.5",
        "--subset",
        "test",
    ]


def test_expand_multi_value_stops_before_a_positional_argument():
    argv = ["import-features", "--modalities", "rgb", "flow", "feats/", "--store", "s.zarr"]
    expanded = ["import-features", "--modalities", "rgb", "--modalities", "flow", "feats/"]
    assert _expand_multi_value(argv) == [*expanded, "--store", "s.zarr"]
    # a wrong first value is still handed to the option, which then names it
    assert _expand_multi_value(["extract", "--modalities", "depth"])[1:] == [
        "--modalities",
        "depth",
    ]


def test_eval_reproduces_official_numbers(shared_data, tmp_path, capsys):
    folder = shared_data / "eval_oracle_thumos14"
    out = tmp_path / "result.json"
    code = run(
        [
            "eval",
            "--ground-truth",
            str(folder / "thumos14_test_gt_anetformat.json"),
            "--predictions",
            str(folder / "thumos14_test_synthetic_pred.json"),
            "--subset",
            "test",
            "--tiou",
            "0.3",
            "0.4",
            "0.5",
            "0.6",
            "0.7",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    official = json.loads((folder / "official_eval_result.json").read_text())
    assert set(result) == {"tiou", "mAP", "average_mAP", "per_class_ap"}
    assert result["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert result["mAP"] == pytest.approx(official["mAP"], abs=1e-9)
    assert result["average_mAP"] == pytest.approx(official["average_mAP"], abs=1e-9)
    table = capsys.readouterr().out
    assert "mAP %" in table and "42.45" in table


def test_eval_bad_predictions_file_exits_2_naming_it(shared_data, tmp_path, capsys):
    bad = tmp_path / "pred.json"
    bad.write_text(
        json.dumps(
            {
                "results": {
                    "video_test_0000004": [{"label": "X", "score": "high", "segment": [1, 2]}]
                }
            }
        )
    )
    gt = shared_data / "eval_oracle_thumos14" / "thumos14_test_gt_anetformat.json"
    code = run(["eval", "--ground-truth", str(gt), "--predictions", str(bad), "--subset", "test"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and "video_test_0000004" in err and "score" in err


def test_eval_unknown_subset_exits_2(shared_data, capsys):
    folder = shared_data / "eval_oracle_thumos14"
    code = run(
        [
            "eval",
            "--ground-truth",
            str(folder / "thumos14_test_gt_anetformat.json"),
            "--predictions",
            str(folder / "thumos14_test_synthetic_pred.json"),
            "--subset",
            "validation",
        ]
    )
    assert code == 2
    assert "subset 'validation' has no annotated instances" in capsys.readouterr().err


def test_malformed_annotation_file_exits_2_naming_video_and_field(tmp_path, capsys):
    path = tmp_path / "gt.json"
    path.write_text(
        json.dumps(
            {
                "database": {
                    "v1": {
                        "subset": "training",
                        "duration": 10,
                        "annotations": [{"label": "a", "segment": [5, 3]}],
                    }
                }
            }
        )
    )
    code = run(["annotations", "validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err and "'v1'" in err and "annotations[0].segment" in err


def test_config_show_with_overrides(capsys):
    code = run(["config", "show", "--config", "configs/demo.yaml", "--set", "training.epochs=3"])
    assert code == 0
    assert "epochs: 3" in capsys.readouterr().out


def test_bad_override_exits_2_naming_key(capsys):
    code = run(["config", "show", "--config", "configs/demo.yaml", "--set", "training.epocs=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "configs/demo.yaml" in err and "training.epocs" in err


def test_synth_command_writes_decodable_dataset(tmp_path, capsys):
    from features.video import probe_video
    from tal.data.annotations import load_annotations

    out = tmp_path / "synth"
    code = run(
        [
            "synth",
            str(out),
            "--videos",
            "3",
            "--classes",
            "2",
            "--size",
            "64",
            "--min-duration",
            "6",
            "--max-duration",
            "7",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    assert "wrote 3 videos" in capsys.readouterr().out
    ann = load_annotations(out / "annotations.json")
    meta = json.loads((out / "synth.json").read_text())
    for video in ann:
        info = probe_video(out / "videos" / f"{video.video_id}.mp4")
        assert (info.width, info.height) == (64, 64)
        assert info.num_frames == round(video.duration * video.fps)
        assert all(0 <= i.start < i.end <= video.duration for i in video.instances)
    assert meta["params"]["videos"] == 3


def test_synth_bad_argument_exits_2(tmp_path, capsys):
    code = run(["synth", str(tmp_path / "s"), "--classes", "99"])
    assert code == 2
    assert "classes" in capsys.readouterr().err


def test_synth_preset_fills_the_options_not_given(tmp_path, capsys):
    from tal.synth.presets import get_preset

    out = tmp_path / "weak"
    argv = ["synth", str(out), "--preset", "weak", "--videos", "3", "--classes", "4"]
    code = run([*argv, "--size", "64", "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    assert "wrote 3 videos" in capsys.readouterr().out
    params = json.loads((out / "synth.json").read_text())["params"]
    weak = get_preset("weak")
    assert params["preset"] == "weak" and (params["videos"], params["classes"]) == (3, 4)
    assert (params["min_duration"], params["max_duration"]) == (3.5, 4.5)
    assert params["size"] == 64 and params["fps"] == weak.fps


def test_synth_unknown_preset_exits_2_naming_the_known_ones(tmp_path, capsys):
    code = run(["synth", str(tmp_path / "s"), "--preset", "cinema"])
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())  # rich wraps in a box
    assert code == 2
    assert "preset must be one of standard, context, variation, keyframes, weak, camera" in err
    assert not (tmp_path / "s").exists()


def test_synth_list_presets_describes_each_without_an_out_dir(capsys):
    from tal.synth.presets import PRESETS

    assert run(["synth", "--list-presets"]) == 0
    out = capsys.readouterr().out
    for name, preset in PRESETS.items():
        assert f"{name}: {preset.summary}" in out
        assert f"{preset.videos} videos, {preset.classes} classes" in out
