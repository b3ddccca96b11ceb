"""Importers on the real public files in ../shared/data (and small broken files in tmp_path)."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tal.data.annotations import AnnotationError, AnnotationSet, load_annotations
from tal.data.importers import (
    FORMATS,
    THUMOS14_CLASSES,
    detect_format,
    import_annotations,
    import_bmn_activitynet,
    import_thumos14_csv,
    import_thumos14_txt,
)


def keys(ann: AnnotationSet) -> set[tuple[str, str, float, float]]:
    return {(v.video_id, i.label, i.start, i.end) for v in ann for i in v.instances}


def part(ann: AnnotationSet, subset: str) -> AnnotationSet:
    return AnnotationSet({v.video_id: v for v in ann.subset(subset)})


@pytest.fixture(scope="module")
def thumos(shared_data: Path) -> Path:
    return shared_data / "thumos14_gtad"


@pytest.fixture(scope="module")
def csv_val(thumos: Path) -> AnnotationSet:
    return import_thumos14_csv(thumos / "val_Annotation.csv")


@pytest.fixture(scope="module")
def csv_test(thumos: Path) -> AnnotationSet:
    return import_thumos14_csv(thumos / "test_Annotation.csv")


@pytest.fixture(scope="module")
def csv_groundtruth(thumos: Path) -> AnnotationSet:
    return import_thumos14_csv(thumos / "thumos14_test_groundtruth.csv")


@pytest.fixture(scope="module")
def bmn(shared_data: Path) -> AnnotationSet:
    return import_bmn_activitynet(shared_data / "activitynet13_bmn" / "anet_anno_action.json")


# --- THUMOS14 CSVs ---------------------------------------------------------------------------


def test_thumos_validation_csv(csv_val, thumos):
    assert csv_val.summary()["subsets"] == {"validation": {"videos": 200, "instances": 3007}}
    assert csv_val.label_map().names == list(THUMOS14_CLASSES)
    assert "Ambiguous" not in csv_val.label_map()
    assert csv_val.repairs == [
        f"{thumos / 'val_Annotation.csv'}: skipped 89 Ambiguous rows in 35 videos "
        "(THUMOS marks them as not to be evaluated)"
    ]
    # the same instances as G-TAD's own JSON (whose 'train' is THUMOS14 validation)
    gtad = load_annotations(thumos / "thumos_gt.json")
    assert keys(csv_val) == keys(part(gtad, "training"))


def test_thumos_label_order_is_type_idx_order(csv_val, thumos):
    # type_idx (UCF101 index, Ambiguous = 0) is not kept as label_id: sorted names give the
    # same order, which is also the 0..19 label-idx order of thumos14_test_groundtruth.csv.
    with (thumos / "val_Annotation.csv").open() as fh:
        idx = {row["type"]: int(row["type_idx"]) for row in csv.DictReader(fh)}
    assert idx.pop("Ambiguous") == 0
    assert sorted(idx, key=idx.__getitem__) == csv_val.label_map().names
    assert all(i.label_id is None for v in csv_val for i in v.instances)


def test_thumos_test_csv(csv_test, thumos):
    assert csv_test.summary()["subsets"] == {"test": {"videos": 213, "instances": 3358}}
    assert len(csv_test.label_map()) == 20
    # a video whose only rows are Ambiguous stays (it is an annotated test video), empty
    assert csv_test.videos["video_test_0001292"].instances == []
    assert any("'video_test_0001292': all 3 rows are Ambiguous" in r for r in csv_test.repairs)
    # G-TAD's JSON is this file minus the two test videos it drops
    gtad_test = part(load_annotations(thumos / "thumos_gt.json"), "test")
    extra = keys(csv_test) - keys(gtad_test)
    assert keys(gtad_test) <= keys(csv_test)
    assert {k[0] for k in extra} == {"video_test_0000270", "video_test_0001496"}
    assert len(extra) == 47


def test_groundtruth_csv_agrees_with_named_csv(csv_groundtruth, csv_test):
    gt = csv_groundtruth
    assert set(gt.videos) == set(csv_test.videos)
    assert gt.label_map().names == list(THUMOS14_CLASSES)
    video = gt.videos["video_test_0000278"]
    assert (video.duration, video.fps, video.subset) == (215.166667, 30.0, "test")
    assert Counter(v.fps for v in gt) == {30.0: 196, 29.97002997: 11, 25.0: 5, 24.0: 1}
    # label-idx 0..19 are the names in alphabetical order: every instance of the ground
    # truth CSV is in test_Annotation.csv with the same (video, label, start, end) ...
    assert keys(gt) <= keys(csv_test)
    # ... and the 26 it lacks start after the duration this CSV gives: dropped, and said so
    missing = keys(csv_test) - keys(gt)
    assert Counter(k[0] for k in missing) == {
        "video_test_0000270": 22,
        "video_test_0000814": 3,
        "video_test_0001081": 1,
    }
    assert all(gt.videos[k[0]].duration <= k[2] for k in missing)
    dropped = [r for r in gt.repairs if "dropped" in r]
    assert len(dropped) == 26
    assert "video 'video_test_0001081': field 'annotations[2].segment': dropped" in dropped[0]
    assert "skipped 99 Ambiguous rows in 37 videos" in gt.repairs[0]


# --- THUMOS14 per-class txt files --------------------------------------------------------------


def write_txt(src: Path, folder: Path, split: str) -> None:
    """Per-class files as THUMOS14 publishes them, made from a G-TAD annotation CSV."""
    folder.mkdir(exist_ok=True)
    per_class: dict[str, list[str]] = {}
    with src.open() as fh:
        for row in csv.DictReader(fh):
            line = f"{row['video']}  {row['start']} {row['end']} "
            per_class.setdefault(row["type"], []).append(line)
    for label, lines in per_class.items():
        (folder / f"{label}_{split}.txt").write_text("\n".join(lines) + "\n\n")


def test_txt_files_import_like_the_csv(thumos, tmp_path, csv_val, csv_test):
    write_txt(thumos / "val_Annotation.csv", tmp_path, "val")
    write_txt(thumos / "test_Annotation.csv", tmp_path, "test")
    assert len(list(tmp_path.glob("*.txt"))) == 42  # 20 classes + Ambiguous, twice
    from_txt = import_thumos14_txt(tmp_path)  # a folder, not in a list
    assert keys(part(from_txt, "validation")) == keys(csv_val)
    assert keys(part(from_txt, "test")) == keys(csv_test)
    assert set(from_txt.videos) == set(csv_val.videos) | set(csv_test.videos)  # 1292 too
    assert from_txt.label_map().names == list(THUMOS14_CLASSES)
    assert any("skipped 188 Ambiguous rows" in r for r in from_txt.repairs)
    # a list of files works too, and auto detection finds the format
    val_files = sorted(tmp_path.glob("*_val.txt"))
    assert keys(import_thumos14_txt(val_files)) == keys(csv_val)
    assert keys(import_annotations([tmp_path])) == keys(from_txt)
    assert detect_format(val_files[0]) == "thumos-txt"


def test_txt_with_durations_matches_groundtruth_csv(thumos, tmp_path, csv_groundtruth):
    write_txt(thumos / "test_Annotation.csv", tmp_path, "test")
    durations = {v.video_id: v.duration for v in csv_groundtruth}
    fps = {v.video_id: v.fps for v in csv_groundtruth}
    ann = import_annotations([tmp_path], "thumos-txt", durations=durations, fps=fps)
    assert keys(ann) == keys(csv_groundtruth)  # the same 26 segments past the end dropped
    assert sum("dropped" in r for r in ann.repairs) == 26
    assert ann.videos["video_test_0000278"].fps == 30.0
    one_fps = import_thumos14_txt(tmp_path, fps=30.0)
    assert {v.fps for v in one_fps} == {30.0} and {v.duration for v in one_fps} == {None}


# --- ActivityNet 1.3 in BMN form -------------------------------------------------------------


def test_bmn_activitynet(bmn, shared_data):
    folder = shared_data / "activitynet13_bmn"
    summary = bmn.summary()
    assert (summary["videos"], summary["instances"], summary["labels"]) == (19228, 22140, 200)
    assert {k: v["videos"] for k, v in summary["subsets"].items()} == {
        "training": 9649,
        "validation": 4728,
        "test": 4851,
    }
    assert summary["subsets"]["test"]["instances"] == 0
    raw = json.loads((folder / "anet_anno_action.json").read_text())
    assert list(bmn.videos) == [key.removeprefix("v_") for key in raw]  # official ids, in order
    # every key has the prefix; two YouTube ids themselves start with "v_" and keep it
    assert all(key.startswith("v_") for key in raw)
    assert [vid for vid in bmn.videos if vid.startswith("v_")] == ["v_UmAH95xls", "v_Vg4a8igc0"]
    video = bmn.videos["QOlSCBRmfWY"]
    assert (video.duration, video.fps, video.subset) == (82.73, 25.0, "training")
    names = (folder / "action_name.csv").read_text().splitlines()[1:]
    assert bmn.label_map().names == sorted(names)
    # 12 segments are empty ([0, 0] and the like) and 215 end after the video
    kinds = Counter(r.split("segment': ")[1].split()[0] for r in bmn.repairs)
    assert kinds == {"clipped": 215, "dropped": 12}
    note = "video 'H-yBxySDyTw': field 'annotations[0].segment': dropped [0.0, 0.0]"
    assert f"{folder / 'anet_anno_action.json'}: {note} (end <= start)" in bmn.repairs


def test_bmn_video_info_csv_explicit_or_as_input(shared_data, tmp_path, bmn):
    folder = shared_data / "activitynet13_bmn"
    lone = tmp_path / "anet_anno_action.json"
    shutil.copy(folder / "anet_anno_action.json", lone)
    pattern = r"anet_anno_action.json: field 'subset': .*video_info_new.csv, not found"
    with pytest.raises(AnnotationError, match=pattern):
        import_bmn_activitynet(lone)
    with pytest.raises(AnnotationError, match="video_info_new.csv, not found"):
        import_annotations([lone])  # auto-detected as bmn, still no subsets
    given = import_annotations([lone, folder / "video_info_new.csv"])
    assert keys(given) == keys(bmn) and len(given) == 19228
    info = tmp_path / "info.csv"
    lines = (folder / "video_info_new.csv").read_text().splitlines()
    info.write_text("\n".join(lines[:-1]) + "\n")  # one video left out
    last = lines[-1].split(",")[0]
    with pytest.raises(AnnotationError, match=rf"video '{last}': field 'subset': .*not listed"):
        import_annotations([lone], "bmn", video_info_csv=info)


def test_bmn_small_errors(tmp_path):
    anno = tmp_path / "a.json"
    anno.write_text(json.dumps({"v_abc": {"duration_second": 5.0, "annotations": []}}))
    info = tmp_path / "video_info_new.csv"
    info.write_text("video,fps,subset\nv_abc,30,dev\n")
    with pytest.raises(AnnotationError, match=r"row 2: video 'v_abc': field 'subset'"):
        import_bmn_activitynet(anno)
    info.write_text("video,fps\nv_abc,30\n")
    with pytest.raises(AnnotationError, match=r"missing column\(s\) 'subset'"):
        import_bmn_activitynet(anno)
    info.write_text("video,fps,subset\nv_abc,30,testing\nv_a/b,30,testing\n")
    assert import_bmn_activitynet(anno).videos["abc"].subset == "test"
    anno.write_text(json.dumps({"v_a/b": {"duration_second": 5.0, "annotations": []}}))
    with pytest.raises(AnnotationError, match="'a/b' is not usable as a store key"):
        import_bmn_activitynet(anno)


# --- ActionFormer JSON ---------------------------------------------------------------------


def test_actionformer_json_multithumos(shared_data):
    path = shared_data / "multithumos_tridetplus" / "multithumos.json"
    ann = import_annotations([path])
    assert (len(ann), ann.num_instances(), len(ann.label_map())) == (412, 38601, 65)
    assert {v.subset for v in ann} == {"validation", "test"}
    # label ids from the file define the order
    raw = json.loads(path.read_text())
    first = next(a for v in raw["database"].values() for a in v["annotations"])
    assert ann.label_map().index(first["label"]) == first["label_id"]
    kinds = Counter(r.split("segment': ")[1].split()[0] for r in ann.repairs)
    assert kinds == {"dropped": 67, "clipped": 5}
    assert ann.num_instances() + 67 == sum(len(v["annotations"]) for v in raw["database"].values())


# --- format detection and dispatch ------------------------------------------------------------


def test_detect_format(shared_data, tmp_path):
    d = shared_data
    expected = {
        "eval_oracle_thumos14/thumos14_test_gt_anetformat.json": "anet",
        "thumos14_gtad/thumos_gt.json": "anet",
        "multithumos_tridetplus/multithumos.json": "anet",
        "activitynet13_bmn/anet_anno_action.json": "bmn",
        "activitynet13_bmn/video_info_new.csv": "bmn",
        "thumos14_gtad/val_Annotation.csv": "thumos-csv",
        "thumos14_gtad/thumos14_test_groundtruth.csv": "thumos-csv",
    }
    assert {name: detect_format(d / name) for name in expected} == expected
    for name in [
        "activitynet_official_sample/sample_detection_prediction.json",  # predictions
        "thumos14_gtad/uNet_test.npy",  # binary
        "activitynet13_bmn/action_name.csv",
        "README.md",
    ]:
        with pytest.raises(AnnotationError, match="cannot tell the annotation format") as err:
            detect_format(d / name)
        assert str(err.value).startswith(str(d / name))
        assert "anet, bmn, thumos-csv, thumos-txt" in str(err.value)
    with pytest.raises(AnnotationError, match="a folder without .txt files"):
        detect_format(tmp_path)


def test_import_annotations_dispatch(shared_data, thumos, csv_val):
    oracle = shared_data / "eval_oracle_thumos14" / "thumos14_test_gt_anetformat.json"
    assert import_annotations(oracle, "anet").num_instances() == 3311  # one path, not a list
    assert keys(import_annotations([thumos / "val_Annotation.csv"], "thumos-csv")) == keys(csv_val)
    both = import_annotations([thumos / "val_Annotation.csv", thumos / "test_Annotation.csv"])
    assert {k: v["videos"] for k, v in both.summary()["subsets"].items()} == {
        "validation": 200,
        "test": 213,
    }
    assert len(both.repairs) == 3  # two Ambiguous counts and the all-Ambiguous video
    with pytest.raises(AnnotationError, match="'video_validation_0000051' is also in another"):
        import_annotations([thumos / "val_Annotation.csv", thumos / "val_Annotation.csv"])
    with pytest.raises(AnnotationError, match="inputs are in different formats"):
        import_annotations([thumos / "val_Annotation.csv", oracle])
    with pytest.raises(AnnotationError, match=r"option\(s\) durations do not apply to format"):
        import_annotations([oracle], durations={})
    assert len(import_annotations([oracle], video_info_csv=None)) == 210  # None = not given
    assert FORMATS == ("anet", "bmn", "thumos-csv", "thumos-txt")


# --- errors name the file, the row or video, and the field --------------------------------------

GTAD_HEADER = "video,type,type_idx,start,end,startFrame,endFrame\n"
GT_HEADER = (
    "video-name,t-init,t-end,f-init,f-end,video-duration,frame-rate,video-frames,label-idx\n"
)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("a,b\n1,2\n", r"x.csv: unknown THUMOS14 CSV header \(a,b\)"),
        ("video,type,start\nvideo_test_1,Diving,1\n", r"x.csv: missing column\(s\) 'end'"),
        (
            "video-name,t-init,t-end,label-idx\nvideo_test_1,1,2,3\n",
            r"x.csv: missing column\(s\) 'video-duration', 'frame-rate'",
        ),
        (
            GTAD_HEADER + "video_test_1,Diving,26,abc,3,0,1\n",
            r"x.csv: row 2: video 'video_test_1': field 'start': expected a number, got 'abc'",
        ),
        (
            GTAD_HEADER + "\nvideo_test_1,Diving,26,1,nan,0,1\n",
            r"x.csv: row 3: video 'video_test_1': field 'end': expected a number, got 'nan'",
        ),
        (
            GTAD_HEADER + "video_test_../x,Diving,26,1,3,0,1\n",
            r"x.csv: row 2: video id 'video_test_../x' is not usable as a store key",
        ),
        (
            GTAD_HEADER + "clip_7,Diving,26,1,3,0,1\n",
            r"x.csv: row 2: video 'clip_7': field 'subset': cannot tell the THUMOS14 subset",
        ),
        (GTAD_HEADER + "video_test_1,Diving,26,1,3\n", r"x.csv: row 2: expected 7 fields"),
        (
            GT_HEADER + "video_test_1,1,2,30,60,10,30,300,20\n",
            r"x.csv: row 2: video 'video_test_1': field 'label-idx': expected -1 "
            r"\(Ambiguous\) or 0..19, got '20'",
        ),
        (
            GT_HEADER + "video_test_1,1,2,30,60,long,30,300,2\n",
            r"row 2: video 'video_test_1': field 'video-duration': expected a number",
        ),
        ("", r"x.csv: THUMOS14 CSV is empty"),
    ],
)
def test_thumos_csv_errors(tmp_path, text, pattern):
    path = tmp_path / "x.csv"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=pattern):
        import_thumos14_csv(path)


def test_txt_errors(tmp_path):
    bad_name = tmp_path / "Diving.txt"
    bad_name.write_text("video_test_1 1 2\n")
    with pytest.raises(AnnotationError, match=r"Diving.txt: expected a THUMOS14 file name"):
        import_thumos14_txt([bad_name])
    bad_name.unlink()
    (tmp_path / "Diving_test.txt").write_text("video_test_1 1 2\nvideo_test_2 1\n")
    with pytest.raises(AnnotationError, match=r"Diving_test.txt: line 2: expected 'video_name"):
        import_thumos14_txt(tmp_path)
    (tmp_path / "Diving_test.txt").write_text("a/b 1 2\n")
    with pytest.raises(AnnotationError, match=r"line 1: video id 'a/b' is not usable"):
        import_thumos14_txt(tmp_path)
    (tmp_path / "Diving_test.txt").write_text("video_test_1 1 x\n")
    with pytest.raises(AnnotationError, match=r"line 1: video 'video_test_1': field 'end'"):
        import_thumos14_txt(tmp_path)
    (tmp_path / "Diving_test.txt").write_text("video_test_1 1 2\n")
    (tmp_path / "Diving_val.txt").write_text("video_test_1 3 4\n")
    with pytest.raises(AnnotationError, match=r"field 'subset': 'validation' here but 'test'"):
        import_thumos14_txt(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="empty: no .txt annotation files found"):
        import_thumos14_txt(tmp_path / "empty")


def test_bad_segments_are_repaired_not_errors(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        GTAD_HEADER + "video_test_1,Diving,26,5,3,0,1\nvideo_test_1,Diving,26,-1,3,0,1\n"
    )
    ann = import_thumos14_csv(path)
    assert [(i.start, i.end) for i in ann.videos["video_test_1"].instances] == [(0.0, 3.0)]
    assert ann.repairs == [
        f"{path}: video 'video_test_1': field 'annotations[0].segment': dropped [5.0, 3.0] "
        "(end <= start)",
        f"{path}: video 'video_test_1': field 'annotations[1].segment': clipped [-1.0, 3.0] "
        "to [0.0, 3.0]",
    ]


def test_input_errors(tmp_path):
    with pytest.raises(AnnotationError, match=r"missing.csv: annotation input not found"):
        import_annotations([tmp_path / "missing.csv"])
    with pytest.raises(AnnotationError, match=r"missing.csv: THUMOS14 CSV not found"):
        import_thumos14_csv(tmp_path / "missing.csv")
    with pytest.raises(AnnotationError, match="no annotation input given"):
        import_annotations([])
    path = tmp_path / "x.csv"
    path.write_text(GTAD_HEADER)
    pattern = r"x.csv: unknown annotation format 'xml'; .*anet, bmn, thumos-csv, thumos-txt"
    with pytest.raises(AnnotationError, match=pattern):
        import_annotations([path], "xml")
    with pytest.raises(AnnotationError, match=r"x.csv: no annotation rows found"):
        import_annotations([path])
    path.write_bytes(b"video,type\n\xff\xfe,x\n")
    with pytest.raises(AnnotationError, match=r"x.csv: not UTF-8 text"):
        import_thumos14_csv(path)
