"""SemanticKITTI reader on tiny sweeps the test writes in the sequences/NN/{velodyne,labels} layout."""

from __future__ import annotations

import numpy as np
import pytest

from mm3dkit.data.classes import SEMANTIC_KITTI_NAMES
from mm3dkit.data.semantic_kitti import SPLITS, SemanticKITTI, map_labels, read_sweep
from mm3dkit.data.types import IGNORE_LABEL
from mm3dkit.errors import DataError


def _sweep(root, seq, idx, points, labels=None):
    d = root / "sequences" / f"{seq:02d}"
    (d / "velodyne").mkdir(parents=True, exist_ok=True)
    np.asarray(points, np.float32).tofile(d / "velodyne" / f"{idx:06d}.bin")
    if labels is not None:
        (d / "labels").mkdir(exist_ok=True)
        np.asarray(labels, np.uint32).tofile(d / "labels" / f"{idx:06d}.label")
    return d / "velodyne" / f"{idx:06d}.bin"


def test_learning_map_hand_cases():
    # car, moving-car -> car; lane-marking -> road; outlier/other-structure -> ignore; traffic-sign last
    got = map_labels(np.array([10, 252, 60, 1, 52, 81, 259]))
    n = SEMANTIC_KITTI_NAMES.index
    assert got.tolist() == [n("car"), n("car"), n("road"), IGNORE_LABEL, IGNORE_LABEL, n("traffic-sign"),
                            n("other-vehicle")]
    assert len(SEMANTIC_KITTI_NAMES) == 19 and SPLITS["val"] == (8,) and 8 not in SPLITS["train"]


def test_sweep_semantic_and_instance_bits(tmp_path):
    pts = [[1, 2, 3, 0.5], [4, 5, 6, 1.0], [0, 0, 1, 0.0]]
    p = _sweep(tmp_path, 8, 0, pts, [(3 << 16) | 30, 40, (12 << 16) | 254])
    s = read_sweep(p)
    n = SEMANTIC_KITTI_NAMES.index
    assert s.semantic.tolist() == [n("person"), n("road"), n("person")]
    assert s.instance.tolist() == [3, 0, 12]
    assert s.points.tolist() == [[1, 2, 3], [4, 5, 6], [0, 0, 1]] and s.colors[:, 0].tolist() == [127, 255, 0]
    assert s.name == "08/000000"


def test_dataset_splits_and_unlabelled_test(tmp_path):
    _sweep(tmp_path, 0, 0, [[0, 0, 0, 0]], [10])
    _sweep(tmp_path, 0, 1, [[0, 0, 0, 0]], [10])
    _sweep(tmp_path, 8, 0, [[0, 0, 0, 0]], [40])
    _sweep(tmp_path, 11, 0, [[0, 0, 0, 0]])
    assert len(SemanticKITTI(tmp_path, "train")) == 2 and len(SemanticKITTI(tmp_path, "train", stride=2)) == 1
    assert SemanticKITTI(tmp_path, "val")[0].semantic.tolist() == [SEMANTIC_KITTI_NAMES.index("road")]
    assert SemanticKITTI(tmp_path, "test")[0].semantic.tolist() == [IGNORE_LABEL]


def test_bad_inputs(tmp_path):
    p = _sweep(tmp_path, 0, 0, [[0, 0, 0, 0], [1, 1, 1, 1]], [10, 77])
    with pytest.raises(DataError, match="000000.label.*\\[77\\].*learning map"):
        read_sweep(p)
    p = _sweep(tmp_path, 0, 1, [[0, 0, 0, 0], [1, 1, 1, 1]], [10])
    with pytest.raises(DataError, match="000001.label.*1 labels.*2 points"):
        read_sweep(p)
    p = _sweep(tmp_path, 0, 2, [[np.nan, 0, 0, 0]])
    with pytest.raises(DataError, match="000002.bin.*NaN"):
        read_sweep(p)
    p.write_bytes(b"12345")
    with pytest.raises(DataError, match="000002.bin.*multiple of 16"):
        read_sweep(p)
    with pytest.raises(DataError, match="no scans"):
        SemanticKITTI(tmp_path, "val")
