"""A file that is not a checkpoint gets one line naming it and saying what it is."""

from __future__ import annotations

import pickle
import zipfile

import pytest

from tal.engine.checkpoint import CheckpointError, load_checkpoint


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "the file is empty"),
        (b"hello world\n", "a text file of 12 bytes, not torch.save's zip format"),
        (pickle.dumps({"a": 1}), "a plain pickle, not torch.save's zip format"),
        (bytes(range(200, 256)), "56 bytes that are not torch.save's zip format"),
        (None, "a zip file that is not a complete torch checkpoint"),
    ],
)
def test_what_the_file_is_is_named_in_one_line(tmp_path, content, said):
    path = tmp_path / "model.pt"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x", "y")
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read as a checkpoint: {said}")
    assert "\n" not in message


def test_missing_file():
    with pytest.raises(CheckpointError, match=r"nope.pt: checkpoint not found"):
        load_checkpoint("nope.pt")
