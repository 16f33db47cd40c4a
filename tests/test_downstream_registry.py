"""The downstream dataset registry is wired to the kit's real readers (each one's missing-folder error comes through)."""

from __future__ import annotations

import pytest

from mm3dkit.downstream.datasets import dataset_info, get_dataset
from mm3dkit.errors import DataError
from mm3dkit.synth import generate_dataset


@pytest.mark.parametrize("name", ["synthetic", "scannet", "s3dis", "semantickitti", "sunrgbd"])
def test_every_dataset_reaches_its_reader(name, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        get_dataset(name, tmp_path / "missing", "val")
    assert dataset_info(name).num_classes in (20, 13, 19, 10)


def test_synthetic_scenes_through_the_registry(tmp_path):
    root = generate_dataset(tmp_path, n_scenes=2, n_frames=1, width=32, height=24, progress=False)
    scenes = get_dataset("synthetic", root, "train")
    assert len(scenes) == 1 and len(scenes[0]) > 1000
