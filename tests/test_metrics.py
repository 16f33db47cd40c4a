"""Downstream metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from mm3dkit.data.types import IGNORE_LABEL
from mm3dkit.downstream.metrics import (Instances, average_precision, box_iou_axis_aligned, box_iou_oriented,
                                        confusion_matrix, convex_intersection, evaluate_detection,
                                        evaluate_instances, iou_per_class, mean_iou, semseg_report)


def test_confusion_and_iou_by_hand():
    target = [0, 0, 1, 1, 2, IGNORE_LABEL, IGNORE_LABEL]
    pred = [0, 1, 1, 1, 1, 2, 0]
    conf = confusion_matrix(target, pred, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]  # ignored targets left out
    iou = iou_per_class(conf)
    # class 0: TP 1 / (1 + 0 FP + 1 FN); class 1: 2 / (2 + 2 FP + 0 FN); class 2: 0 / (0 + 0 + 1)
    assert iou == pytest.approx([0.5, 0.5, 0.0])
    assert mean_iou(conf) == pytest.approx(1 / 3)
    rep = semseg_report(conf, ["a", "b", "c"])
    assert rep["per_class_iou"] == {"a": 0.5, "b": 0.5, "c": 0.0}
    assert rep["accuracy"] == pytest.approx(3 / 5)


def test_iou_absent_class_is_nan_and_excluded():
    conf = confusion_matrix([0, 0, 1], [0, 0, 1], 3)
    assert math.isnan(iou_per_class(conf)[2])
    assert mean_iou(conf) == 1.0


def test_confusion_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="labels must be in"):
        confusion_matrix([0, 5], [0, 0], 3)


def test_average_precision_by_hand():
    scores, tp = [0.9, 0.8, 0.7], [1, 0, 1]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: all-point envelope 1 on [0, .5], 2/3 on (.5, 1]
    assert average_precision(scores, tp, 2, "voc") == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11-point: recall 0..0.5 (6 points) -> 1, 0.6..1 (5 points) -> 2/3
    assert average_precision(scores, tp, 2, "voc07") == pytest.approx((6 + 5 * 2 / 3) / 11)
    # ScanNet: (p, r) from the lowest threshold = (2/3, 1), (1/2, 1/2), (1, 1/2), then (1, 0); widths 1/4 each
    assert average_precision(scores, tp, 2, "scannet") == pytest.approx((2 / 3 + 0.5 + 1 + 1) / 4)
    assert math.isnan(average_precision([], [], 0))
    assert average_precision([], [], 3) == 0.0
    assert average_precision([0.5], [1], 4, "voc") == pytest.approx(0.25)  # missed ground truth lowers recall


def test_box_iou_axis_aligned_by_hand():
    a = np.array([[0, 0, 0, 2, 2, 2, 0.0]])
    b = np.array([[1, 0, 0, 2, 2, 2, 0.0], [0, 0, 0, 1, 1, 1, 0.0], [5, 5, 5, 1, 1, 1, 0.0]])
    assert box_iou_axis_aligned(a, b)[0] == pytest.approx([4 / 12, 1 / 8, 0.0])


def test_box_iou_oriented_by_hand():
    square = np.array([[0, 0, 0, 1, 1, 1, 0.0]])
    diamond = np.array([[0, 0, 0, 1, 1, 1, np.pi / 4]])
    # the diamond cuts four corner triangles with legs 1 - sqrt(2)/2 off the unit square
    inter = 1 - 2 * (1 - np.sqrt(2) / 2) ** 2
    assert box_iou_oriented(square, diamond)[0, 0] == pytest.approx(inter / (2 - inter))
    # a 2 x 1 box turned by 90 degrees is the axis-aligned 1 x 2 box; half-height overlap halves the volume
    turned = np.array([[0, 0, 0, 2, 1, 1, np.pi / 2]])
    assert box_iou_oriented(turned, np.array([[0, 0, 0, 1, 2, 1, 0.0]]))[0, 0] == pytest.approx(1.0)
    assert box_iou_oriented(turned, np.array([[0, 0, 0.5, 1, 2, 1, 0.0]]))[0, 0] == pytest.approx(1 / 3)
    # heading 0 agrees with the axis-aligned IoU
    b = np.array([[0.3, -0.2, 0.1, 1.5, 0.7, 2.0, 0.0]])
    assert box_iou_oriented(square, b) == pytest.approx(box_iou_axis_aligned(square, b))


def test_convex_intersection_of_disjoint_is_empty():
    sq = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    assert len(convex_intersection(sq, sq + 5)) == 0


def _masks(n, *index_lists):
    m = np.zeros((len(index_lists), n), bool)
    for k, idx in enumerate(index_lists):
        m[k, idx] = True
    return m


def test_instance_map_by_hand():
    n = 10
    instance = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1, -1])
    semantic = np.array([1, 1, 1, 1, 1, 1, 1, 1, IGNORE_LABEL, IGNORE_LABEL])
    gt = Instances.from_ids(instance, semantic)
    assert gt.labels.tolist() == [1, 1]
    pred = Instances(_masks(n, [0, 1, 2, 3], [4, 5], [8, 9]), np.array([1, 1, 1]), np.array([0.9, 0.8, 0.95]))
    valid = semantic != IGNORE_LABEL
    res = evaluate_instances([pred], [gt], classes=[1], class_names=["thing"], min_region_size=1,
                             valid_masks=[valid])
    # IoU 1 and 1/2: at 0.5 both match (AP 1); above 0.5 the second is a false positive (ScanNet AP 1/2);
    # the prediction on unlabelled points is ignored, not a false positive
    assert res["map50"] == pytest.approx(1.0)
    assert res["map25"] == pytest.approx(1.0)
    assert res["map"] == pytest.approx((1 + 9 * 0.5) / 10)
    assert res["per_class"]["thing"]["ap50"] == pytest.approx(1.0)
    # without the valid mask the top-scored prediction on unlabelled points is a false positive
    res2 = evaluate_instances([pred], [gt], classes=[1], min_region_size=1)
    assert res2["map50"] < 1.0


def test_instance_min_region_size_drops_small_ground_truth():
    instance = np.array([0, 0, 0, 0, 1, 1, -1, -1])
    semantic = np.array([1, 1, 1, 1, 1, 1, 0, 0])
    gt = Instances.from_ids(instance, semantic)
    pred = Instances(_masks(8, [0, 1, 2, 3]), np.array([1]), np.array([0.5]))
    # the 2-point instance is below min_region_size=3: one ground truth left, found -> AP 1
    assert evaluate_instances([pred], [gt], [1], min_region_size=3)["map50"] == pytest.approx(1.0)
    assert evaluate_instances([pred], [gt], [1], min_region_size=1)["map50"] < 1.0


def test_detection_map_by_hand():
    gt_boxes = [np.array([[0, 0, 0, 2, 2, 2, 0.0], [10, 0, 0, 2, 2, 2, 0.0]])]
    gt_labels = [np.array([0, 0])]
    pred_boxes = [np.array([[0, 0, 0, 2, 2, 2, 0.0], [11, 0, 0, 2, 2, 2, 0.0]])]  # IoU 1 and 1/3
    res = evaluate_detection(pred_boxes, [np.array([0, 0])], [np.array([0.9, 0.8])], gt_boxes, gt_labels,
                             classes=[0, 1], class_names=["box", "absent"])
    assert res["map25"] == pytest.approx(1.0)
    assert res["map50"] == pytest.approx(0.5)  # recall 1/2 at precision 1, then a false positive
    assert res["per_class"]["absent"]["ap50"] is None  # no ground truth: left out of the mean
