"""The `tal-pipeline` Prefect flow end to end on a tiny synthetic dataset (real Prefect API,
Ray, Ray Train, MLflow, decord and Zarr), then again: the second run reuses the work done."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def test_pipeline_runs_end_to_end_and_reuses_work(
    prefect_api, tmp_path, ray_local, tiny_pipeline_config
):
    from prefect.client.orchestration import get_client

    from flows.pipeline import tal_pipeline
    from pipelines.tracking import client

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_pipeline_config(tmp_path / "run")))
    first = tal_pipeline(str(config))
    run = tmp_path / "run"
    assert first["extracted"]["done"] == 8 and first["extracted"]["failed"] == 0
    trained = first["trained"]
    assert trained["registered"]["name"] == "tiny-i2net" and trained["registered"]["promoted"]
    assert first["evaluated"]["subset"] == "test" and first["evaluated"]["videos"] >= 1
    predicted = first["predicted"]
    assert predicted["videos"] == first["evaluated"]["videos"] and not predicted["failed"]
    assert (run / "timeline_test_videos.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run / "predictions_test_videos.json").read_text())["results"]
    assert "| average |" in first["summary"] and trained["run_id"] in first["summary"]
    c = client(trained["tracking_uri"])
    assert c.get_run(trained["run_id"]).info.status == "FINISHED"
    assert "test_average_mAP" in c.get_run(trained["run_id"]).data.metrics

    second = tal_pipeline(str(config))
    assert second["extracted"]["done"] == 0 and second["extracted"]["skipped"] == 8
    assert first["pairs"]["skipped"] is False and second["pairs"]["skipped"] is True
    assert second["trained"]["registered"]["version"] == "2"
    assert (
        json.loads((run / "pipeline_summary.json").read_text())["trained"]["run_id"]
        == (second["trained"]["run_id"])
    )

    async def summary_artifacts():
        async with get_client() as api:
            return await api.read_artifacts()

    import asyncio

    artifacts = [a for a in asyncio.run(summary_artifacts()) if a.key == "tal-pipeline-summary"]
    assert len(artifacts) == 2 and "| tIoU | validation mAP |" in artifacts[0].data
