"""S3DIS reader on tiny rooms the test writes in the Area_N/<room>/Annotations layout."""

from __future__ import annotations

import numpy as np
import pytest

from mm3dkit.data.classes import S3DIS_NAMES
from mm3dkit.data.s3dis import S3DISRooms, read_s3dis_room
from mm3dkit.data.types import IGNORE_LABEL
from mm3dkit.errors import DataError


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(str(v) for v in r) for r in rows) + "\n")


def _room(root, area, room, objects):
    d = root / f"Area_{area}" / room
    allrows = []
    for fname, rows in objects.items():
        _write(d / "Annotations" / fname, rows)
        allrows += rows
    _write(d / f"{room}.txt", allrows)
    return d


def test_room_labels_and_instances(tmp_path):
    d = _room(tmp_path, 1, "office_1", {
        "chair_1.txt": [[0, 0, 0, 255, 0, 0], [0.1, 0, 0, 255, 0, 0]],
        "floor_1.txt": [[0, 0, -1, 0, 0, 9]],
        "stairs_1.txt": [[5, 5, 5, 1, 2, 3]],
    })
    s = read_s3dis_room(d)
    assert len(s) == 4 and s.points.dtype == np.float32 and s.colors.dtype == np.uint8
    c = S3DIS_NAMES.index
    assert s.semantic.tolist() == [c("chair"), c("chair"), c("floor"), c("clutter")]
    assert s.instance.tolist() == [0, 0, 1, 2]
    assert s.colors[0].tolist() == [255, 0, 0] and s.name == "Area_1/office_1"


def test_unlabelled_room_uses_room_file(tmp_path):
    d = tmp_path / "Area_2" / "hall_1"
    _write(d / "hall_1.txt", [[1, 2, 3, 4, 5, 6]])
    s = read_s3dis_room(d)
    assert s.points.tolist() == [[1, 2, 3]] and s.semantic.tolist() == [IGNORE_LABEL]


def test_area5_is_test_split(tmp_path):
    for a in (1, 5, 6):
        _room(tmp_path, a, "office_1", {"wall_1.txt": [[0, 0, 0, 0, 0, 0]]})
    assert [r.parent.name for r in S3DISRooms(tmp_path, "test").rooms] == ["Area_5"]
    assert [r.parent.name for r in S3DISRooms(tmp_path, "train").rooms] == ["Area_1", "Area_6"]
    assert len(S3DISRooms(tmp_path)) == 3 and S3DISRooms(tmp_path, "train")[0].semantic.tolist() == [2]


def test_bad_inputs(tmp_path):
    d = _room(tmp_path, 1, "a", {"unicorn_1.txt": [[0, 0, 0, 0, 0, 0]]})
    with pytest.raises(DataError, match="unicorn_1.txt.*not one of the 13"):
        read_s3dis_room(d)
    d = _room(tmp_path, 1, "b", {"chair_1.txt": [[0, 0, 0, 0, 0]]})
    with pytest.raises(DataError, match="chair_1.txt.*6 columns"):
        read_s3dis_room(d)
    d = _room(tmp_path, 1, "c", {"chair_1.txt": [["nan", 0, 0, 0, 0, 0]]})
    with pytest.raises(DataError, match="chair_1.txt.*NaN"):
        read_s3dis_room(d)
    d = _room(tmp_path, 1, "e", {"chair_1.txt": [["1\x10", 0, 0, 0, 0, 0]]})
    with pytest.raises(DataError, match="chair_1.txt.*not a table"):
        read_s3dis_room(d)
    with pytest.raises(DataError, match="missing"):
        read_s3dis_room(tmp_path / "Area_1" / "nothing")
    with pytest.raises(DataError, match="no rooms"):
        S3DISRooms(tmp_path / "Area_1")


def test_empty_annotation_file(tmp_path):
    d = tmp_path / "Area_1" / "empty"
    (d / "Annotations").mkdir(parents=True)
    (d / "Annotations" / "chair_1.txt").write_text("")
    with pytest.raises(DataError, match="chair_1.txt.*no points"):
        read_s3dis_room(d)
