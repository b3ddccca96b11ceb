"""Importers on the real public files in ../shared/data."""

from __future__ import annotations

import csv
import json

import pytest

from tal.data.annotations import AnnotationError
from tal.data.importers import (
    THUMOS14_CLASSES,
    detect_format,
    import_annotations,
    import_bmn_activitynet,
    import_thumos14_csv,
    import_thumos14_txt,
)


def keys(ann):
    return {
        (v.video_id, i.label, round(i.start, 3), round(i.end, 3)) for v in ann for i in v.instances
    }


def test_thumos_validation_csv(shared_data):
    ann = import_thumos14_csv(shared_data / "thumos14_gtad" / "val_Annotation.csv")
    assert ann.summary()["subsets"] == {"validation": {"videos": 200, "instances": 3007}}
    assert ann.label_map().names == sorted(THUMOS14_CLASSES)
    assert "skipped 89 Ambiguous rows" in ann.repairs[0]


def test_thumos_groundtruth_csv_labels_agree_with_named_csv(shared_data):
    folder = shared_data / "thumos14_gtad"
    gt = import_thumos14_csv(folder / "thumos14_test_groundtruth.csv")
    named = import_thumos14_csv(folder / "test_Annotation.csv")
    # label-idx 0..19 is the alphabetical class order: every kept instance has the same
    # (video, label, start, end) in the file that names its classes.
    assert keys(gt) <= keys(named)
    assert len(keys(gt)) == 3332 and len(keys(named)) == 3358
    video = gt.videos["video_test_0000004"]
    assert video.duration == pytest.approx(34.0, abs=1.0) and video.fps == 30.0
    # the 26 missing instances lie past the duration this CSV gives: dropped, and said so
    dropped = [r for r in gt.repairs if "dropped" in r]
    assert len(dropped) == 26 and "video_test_0001081" in "".join(dropped)


def test_thumos_txt_files_round_trip_the_csv(shared_data, tmp_path):
    src = shared_data / "thumos14_gtad" / "val_Annotation.csv"
    per_class: dict[str, list[str]] = {}
    with src.open() as fh:
        for row in csv.DictReader(fh):
            per_class.setdefault(row["type"], []).append(
                f"{row['video']} {row['start']} {row['end']}"
            )
    for label, lines in per_class.items():
        (tmp_path / f"{label}_val.txt").write_text("\n".join(lines) + "\n\n")
    from_txt = import_thumos14_txt([tmp_path])
    from_csv = import_thumos14_csv(src)
    assert keys(from_txt) == keys(from_csv)
    assert {v.subset for v in from_txt} == {"validation"}
    assert any("Ambiguous" in r for r in from_txt.repairs)
    assert import_annotations([tmp_path]).num_instances() == 3007  # auto-detected


def test_bmn_activitynet(shared_data):
    ann = import_bmn_activitynet(shared_data / "activitynet13_bmn" / "anet_anno_action.json")
    summary = ann.summary()
    assert summary["videos"] == 19228 and summary["labels"] == 200
    assert {k: v["videos"] for k, v in summary["subsets"].items()} == {
        "training": 9649,
        "validation": 4728,
        "test": 4851,
    }
    raw = json.loads((shared_data / "activitynet13_bmn" / "anet_anno_action.json").read_text())
    assert list(ann.videos) == [key.removeprefix("v_") for key in raw]  # official ids
    assert ann.videos["QOlSCBRmfWY"].duration == 82.73
    # 12 segments end before they start and 215 end after the video: dropped or clipped
    assert any("dropped" in r for r in ann.repairs) and any("clipped" in r for r in ann.repairs)
    names = [
        line.strip()
        for line in (shared_data / "activitynet13_bmn" / "action_name.csv")
        .read_text()
        .splitlines()[1:]
    ]
    assert set(ann.label_map().names) == set(names)


def test_actionformer_json_multithumos(shared_data):
    ann = import_annotations([shared_data / "multithumos_tridetplus" / "multithumos.json"])
    assert len(ann) == 412 and len(ann.label_map()) == 65
    assert {v.subset for v in ann} == {"validation", "test"}
    # label ids from the file define the order
    raw = json.loads((shared_data / "multithumos_tridetplus" / "multithumos.json").read_text())
    first = next(a for v in raw["database"].values() for a in v["annotations"])
    assert ann.label_map().index(first["label"]) == first["label_id"]
    assert len(ann.repairs) > 0


def test_detect_format(shared_data):
    d = shared_data
    assert (
        detect_format([d / "eval_oracle_thumos14" / "thumos14_test_gt_anetformat.json"]) == "anet"
    )
    assert detect_format([d / "activitynet13_bmn" / "anet_anno_action.json"]) == "bmn"
    assert detect_format([d / "thumos14_gtad" / "val_Annotation.csv"]) == "thumos-csv"
    with pytest.raises(AnnotationError, match="cannot tell the annotation format"):
        detect_format([d / "activitynet_official_sample" / "sample_detection_prediction.json"])


def test_merging_inputs_and_duplicate_videos(shared_data):
    folder = shared_data / "thumos14_gtad"
    both = import_annotations([folder / "val_Annotation.csv", folder / "test_Annotation.csv"])
    assert {k: v["videos"] for k, v in both.summary()["subsets"].items()} == {
        "validation": 200,
        "test": 213,
    }
    with pytest.raises(AnnotationError, match="also in another input"):
        import_annotations([folder / "val_Annotation.csv", folder / "val_Annotation.csv"])


def test_bad_inputs_name_file_row_and_field(tmp_path):
    bad_header = tmp_path / "x.csv"
    bad_header.write_text("a,b\n1,2\n")
    with pytest.raises(AnnotationError, match=r"x.csv: unknown THUMOS14 CSV header"):
        import_annotations([bad_header])
    bad_time = tmp_path / "t.csv"
    bad_time.write_text("video,type,type_idx,start,end\nvideo_test_1,Diving,26,abc,3\n")
    with pytest.raises(
        AnnotationError, match=r"t.csv: row 2: field 'start': expected a number, got 'abc'"
    ):
        import_annotations([bad_time])
    unsafe = tmp_path / "u.csv"
    unsafe.write_text("video,type,type_idx,start,end\nvideo_test_../x,Diving,26,1,3\n")
    with pytest.raises(AnnotationError, match=r"not usable as a store key"):
        import_annotations([unsafe])
    with pytest.raises(AnnotationError, match="unknown annotation format 'xml'"):
        import_annotations([unsafe], "xml")
    with pytest.raises(AnnotationError, match="annotation input not found"):
        import_annotations([tmp_path / "missing.json"])
    badname = tmp_path / "Diving.txt"
    badname.write_text("video_test_1 1 2\n")
    with pytest.raises(AnnotationError, match="expected a THUMOS14 file name"):
        import_thumos14_txt([badname])
