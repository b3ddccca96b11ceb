"""Random ground truth and predictions for checking and timing the evaluator.

The cases look like real detector output: jittered copies of the ground truth (some with the
wrong label), duplicates, missed instances, background false positives and predictions on
videos outside the evaluated subset. ``quantize`` rounds scores and times so that ties of
score and of tIoU occur often.
"""

from __future__ import annotations

import numpy as np

from tal.data.annotations import AnnotationSet, Instance, Video
from tal.data.predictions import Detections


def random_case(
    num_videos: int,
    num_classes: int,
    detections_per_video: float,
    seed: int = 0,
    quantize: bool = False,
    subset: str = "validation",
) -> tuple[AnnotationSet, Detections]:
    """A ground truth of ``num_videos`` videos in ``subset`` (plus 5% in another subset)
    and about ``num_videos * detections_per_video`` predictions."""
    rng = np.random.default_rng(seed)
    labels = [f"class_{i:03d}" for i in range(num_classes)]
    videos: dict[str, Video] = {}
    rows: list[tuple[str, str, float, float, float]] = []
    n_other = max(1, num_videos // 20)
    for v in range(num_videos + n_other):
        vid = f"vid_{v:06d}"
        duration = float(rng.uniform(20, 200))
        in_subset = v < num_videos
        n_gt = int(rng.integers(1, 12))
        video_classes = rng.choice(num_classes, size=min(num_classes, 3), replace=False)
        instances = []
        for _ in range(n_gt):
            length = float(rng.uniform(1, 0.3 * duration))
            start = float(rng.uniform(0, duration - length))
            end = start + length
            if quantize:
                start, end = round(start), round(end) + 1.0
            cls = labels[int(rng.choice(video_classes))]
            instances.append(Instance(cls, start, end))
        videos[vid] = Video(vid, subset if in_subset else "test", duration, None, instances)
        target = rng.poisson(detections_per_video)
        made = 0
        while made < target:
            if instances and rng.random() < 0.7:
                inst = instances[int(rng.integers(len(instances)))]
                jitter = rng.normal(0, 0.2 * inst.length, size=2)
                # a detection starts at 0 at the earliest, as decoders clip it
                s, e = max(0.0, inst.start + jitter[0]), inst.end + jitter[1]
                label = (
                    inst.label if rng.random() < 0.85 else labels[int(rng.integers(num_classes))]
                )
            else:
                length = rng.uniform(1, 0.3 * duration)
                s = rng.uniform(0, duration - length)
                e = s + length
                label = labels[int(rng.choice(video_classes))]
            if e <= s:
                continue
            score = float(rng.random())
            if quantize:
                s, e, score = round(s), round(e), round(score, 1)
                if e <= s:
                    e = s + 1
            rows.append((vid, label, float(s), float(e), score))
            made += 1
    perm = rng.permutation(len(rows))  # file order independent of the generation order
    det = Detections.from_rows([rows[i] for i in perm])
    return AnnotationSet(videos=videos, source=f"<random case seed={seed}>"), det
