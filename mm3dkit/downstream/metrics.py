"""Downstream metrics: confusion matrix and IoU, average precision, 3D box IoU, instance and detection mAP.

* semantic segmentation: :func:`confusion_matrix` (rows = ground truth, columns = prediction; points with
  :data:`IGNORE_LABEL` ground truth are left out) -> :func:`iou_per_class` / :func:`mean_iou`;
* :func:`average_precision` from ranked hits with VOC 11-point (``"voc07"``), VOC all-point (``"voc"``) or ScanNet
  (``"scannet"``) interpolation;
* :func:`box_iou_axis_aligned` and :func:`box_iou_oriented` (bird's-eye-view polygon intersection x height overlap);
* :func:`evaluate_instances` (ScanNet rules) and :func:`evaluate_detection` (VoteNet/VOC rules) -> mAP.

Example:
    >>> conf = confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], num_classes=2)
    >>> conf.tolist(), [round(float(v), 3) for v in iou_per_class(conf)]
    ([[1, 1], [0, 2]], [0.5, 0.667])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mm3dkit.data.types import IGNORE_LABEL

# ----------------------------------------------------------------------------------------------------------------
# semantic segmentation


def confusion_matrix(target, pred, num_classes: int, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """``(C, C)`` int64 counts: row = ground-truth class, column = predicted class; ignored targets are skipped.

    Computed with one ``torch.bincount`` (on the inputs' device) instead of sklearn so GPU predictions need no copy.
    Targets outside ``0..C-1`` other than ``ignore_label`` raise ``ValueError``.
    """
    t = torch.as_tensor(target).long().reshape(-1)
    p = torch.as_tensor(pred).long().reshape(-1).to(t.device)
    if t.shape != p.shape:
        raise ValueError(f"target has {t.numel()} entries but pred has {p.numel()}")
    keep = t != ignore_label
    t, p = t[keep], p[keep]
    if t.numel() and (t.min() < 0 or t.max() >= num_classes or p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1} (or {ignore_label} for ignored targets)")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; ``nan`` for classes absent from both ground truth and prediction."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1e-12), np.nan)


def mean_iou(conf: np.ndarray, present_only: bool = True) -> float:
    """Mean IoU over classes present in the ground truth (``present_only``, the ScanNet benchmark's rule for a
    subset of scenes) or over all classes that appear in ground truth or prediction."""
    conf = np.asarray(conf)
    iou = iou_per_class(conf)
    if present_only:
        iou = iou[conf.sum(1) > 0]
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def semseg_report(conf: np.ndarray, class_names: Sequence[str]) -> dict:
    """JSON-ready summary: ``miou``, overall accuracy, per-class IoU (``None`` where undefined) and the matrix."""
    conf = np.asarray(conf)
    iou = iou_per_class(conf)
    return {"miou": mean_iou(conf), "accuracy": float(np.trace(conf) / max(conf.sum(), 1)),
            "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(class_names, iou)},
            "confusion": conf.tolist(), "class_names": list(class_names)}


# ----------------------------------------------------------------------------------------------------------------
# average precision


def precision_recall(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each prediction, ranked by decreasing score (stable for ties)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(is_tp, dtype=np.float64)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    return ctp / np.maximum(ctp + cfp, 1e-12), ctp / max(num_gt, 1)


def average_precision(scores, is_tp, num_gt: int, method: str = "voc") -> float:
    """AP of ranked predictions (``is_tp`` marks matches); ``nan`` when ``num_gt == 0``.

    * ``"voc"``: area under the monotone precision envelope at every recall step (VOC 2010+, VoteNet);
    * ``"voc07"``: mean of the envelope's precision at recall 0, 0.1, ..., 1 (VOC 2007 11-point);
    * ``"scannet"``: ScanNet's instance benchmark: precision/recall at each distinct score threshold plus the point
      (recall 0, precision 1), each precision weighted by half the recall gap between its two neighbours
      (no envelope).

    Example:
        >>> round(average_precision([0.9, 0.8, 0.7], [1, 0, 1], num_gt=2, method="voc"), 4)
        0.8333
    """
    if num_gt == 0:
        return float("nan")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return 0.0
    prec, rec = precision_recall(scores, is_tp, num_gt)
    if method in ("voc", "voc07"):
        env = np.maximum.accumulate(np.concatenate([prec, [0.0]])[::-1])[::-1]  # max precision at recall >= r
        if method == "voc07":
            return float(np.mean([env[np.searchsorted(rec, t, "left")] if t <= rec[-1] else 0.0
                                  for t in np.linspace(0, 1, 11)]))
        r = np.concatenate([[0.0], rec])
        return float(np.sum((r[1:] - r[:-1]) * env[:-1]))
    if method == "scannet":
        order = np.argsort(-scores, kind="stable")
        s = scores[order]
        last = np.r_[s[1:] != s[:-1], True]  # the last prediction of each distinct score: one threshold each
        p, r = prec[last][::-1], rec[last][::-1]  # from the lowest threshold (highest recall) upwards
        p, r = np.r_[p, 1.0], np.r_[r, 0.0]
        padded = np.r_[r[0], r, 0.0]
        widths = (padded[:-2] - padded[2:]) / 2.0
        return float(np.dot(p, widths))
    raise ValueError(f"unknown AP method {method!r}; use 'voc', 'voc07' or 'scannet'")


# ----------------------------------------------------------------------------------------------------------------
# 3D boxes ([cx, cy, cz, dx, dy, dz, heading])


def box_iou_axis_aligned(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of axis-aligned boxes (headings ignored).

    Example:
        >>> box_iou_axis_aligned(np.array([[0, 0, 0, 2, 2, 2, 0.]]), np.array([[1, 0, 0, 2, 2, 2, 0.]])).round(4)
        array([[0.3333]])
    """
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    lo_a, hi_a = a[:, None, :3] - a[:, None, 3:6] / 2, a[:, None, :3] + a[:, None, 3:6] / 2
    lo_b, hi_b = b[None, :, :3] - b[None, :, 3:6] / 2, b[None, :, :3] + b[None, :, 3:6] / 2
    inter = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None).prod(-1)
    union = a[:, None, 3:6].prod(-1) + b[None, :, 3:6].prod(-1) - inter
    return inter / np.maximum(union, 1e-12)


def box_corners_bev(box: np.ndarray) -> np.ndarray:
    """The 4 bird's-eye-view corners (counter-clockwise) of a box rotated by ``heading`` about +z."""
    cx, cy, _, dx, dy, _, h = np.asarray(box, np.float64)
    local = np.array([[dx, dy], [-dx, dy], [-dx, -dy], [dx, -dy]]) / 2
    c, s = np.cos(h), np.sin(h)
    return local @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])


def _polygon_area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def convex_intersection(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection polygon of two convex counter-clockwise polygons (Sutherland-Hodgman clipping).

    Hand-written because shapely is not a dependency of the kit; boxes are few, so a short loop per box pair
    is not a hot path.
    """
    out = [tuple(p) for p in subject]
    n = len(clip)
    for i in range(n):
        if not out:
            break
        a, b = clip[i], clip[(i + 1) % n]
        edge = b - a

        def inside(p, a=a, edge=edge) -> bool:
            return edge[0] * (p[1] - a[1]) - edge[1] * (p[0] - a[0]) >= -1e-12

        def cross_point(p, q, a=a, edge=edge):
            d = np.subtract(q, p)
            denom = edge[0] * d[1] - edge[1] * d[0]
            t = (edge[1] * (p[0] - a[0]) - edge[0] * (p[1] - a[1])) / denom
            return (p[0] + t * d[0], p[1] + t * d[1])

        src, out = out, []
        for j, cur in enumerate(src):
            prev = src[j - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cross_point(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross_point(prev, cur))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def box_iou_oriented(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of boxes rotated about +z: BEV polygon intersection area x vertical overlap.

    Example:
        >>> r = np.array([[0, 0, 0, 2, 2, 2, np.pi / 4]])
        >>> round(float(box_iou_oriented(r, r)[0, 0]), 6)
        1.0
    """
    a, b = np.asarray(a, np.float64).reshape(-1, 7), np.asarray(b, np.float64).reshape(-1, 7)
    out = np.zeros((len(a), len(b)))
    ca, cb = [box_corners_bev(x) for x in a], [box_corners_bev(x) for x in b]
    for i, bi in enumerate(a):
        for j, bj in enumerate(b):
            dz = min(bi[2] + bi[5] / 2, bj[2] + bj[5] / 2) - max(bi[2] - bi[5] / 2, bj[2] - bj[5] / 2)
            if dz <= 0:
                continue
            inter = _polygon_area(convex_intersection(ca[i], cb[j])) * dz
            union = bi[3:6].prod() + bj[3:6].prod() - inter
            out[i, j] = inter / max(union, 1e-12)
    return out


# ----------------------------------------------------------------------------------------------------------------
# instance segmentation (ScanNet rules) and detection


@dataclass
class Instances:
    """Instances of one scene: boolean ``masks (K, N)`` over the scene's points, ``labels (K,)``, ``scores (K,)``."""

    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    @classmethod
    def from_ids(cls, instance: np.ndarray, semantic: np.ndarray, scores: np.ndarray | None = None) -> Instances:
        """Ground-truth-style instances from per-point ids (``-1`` = none); label = majority semantic class."""
        ids = np.unique(instance[instance >= 0])
        masks = instance[None, :] == ids[:, None]
        labels = np.array([np.bincount(semantic[m][semantic[m] >= 0]).argmax() if (semantic[m] >= 0).any()
                           else IGNORE_LABEL for m in masks], dtype=np.int64)
        return cls(masks, labels, np.ones(len(ids)) if scores is None else np.asarray(scores, np.float64))


INSTANCE_IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2)) + (0.25,)


def evaluate_instances(preds: Sequence[Instances], gts: Sequence[Instances], classes: Sequence[int],
                       class_names: Sequence[str] | None = None, min_region_size: int = 100,
                       ignore_overlap: float = 0.5, method: str = "scannet",
                       valid_masks: Sequence[np.ndarray] | None = None) -> dict:
    """ScanNet-style instance mAP over the scenes: ``map`` (mean of AP at IoU 0.5:0.05:0.95), ``map50``, ``map25``.

    Rules (as the ScanNet benchmark): only ``classes`` are evaluated (ScanNet leaves out wall and floor); ground
    truth and predicted instances with fewer than ``min_region_size`` points are dropped (the paper's/ScanNet's
    100); predictions are matched greedily by decreasing score to the unmatched ground truth of the same class with
    the highest IoU >= threshold; an unmatched prediction is not a false positive when more than ``ignore_overlap``
    of it lies on points outside ``valid_masks`` (unlabelled points or dropped small ground-truth instances).
    Classes without ground truth are left out of the means.
    """
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    per_thr: dict[float, dict[int, float]] = {}
    for thr in INSTANCE_IOU_THRESHOLDS:
        per_class: dict[int, float] = {}
        for c in classes:
            scores, hits, num_gt = [], [], 0
            for s, (p, g) in enumerate(zip(preds, gts)):
                gm = g.masks[(g.labels == c) & (g.masks.sum(1) >= min_region_size)]
                small = g.masks[(g.labels == c) & (g.masks.sum(1) < min_region_size)].any(0)
                valid = np.ones(g.masks.shape[1], bool) if valid_masks is None else valid_masks[s].copy()
                if small.ndim:
                    valid &= ~small
                pm = (p.labels == c) & (p.masks.sum(1) >= min_region_size)
                pmask, pscore = p.masks[pm], p.scores[pm]
                num_gt += len(gm)
                if len(pmask) == 0:
                    continue
                inter = pmask.astype(np.float32) @ gm.T.astype(np.float32) if len(gm) else np.zeros((len(pmask), 0))
                union = pmask.sum(1)[:, None] + gm.sum(1)[None, :] - inter
                iou = inter / np.maximum(union, 1)
                taken = np.zeros(len(gm), bool)
                for k in np.argsort(-pscore, kind="stable"):
                    cand = np.where(~taken & (iou[k] >= thr))[0] if len(gm) else []
                    if len(cand):
                        taken[cand[np.argmax(iou[k, cand])]] = True
                        scores.append(pscore[k])
                        hits.append(1)
                    elif (~valid[pmask[k]]).mean() > ignore_overlap:
                        continue  # mostly on unlabelled points: neither true nor false positive
                    else:
                        scores.append(pscore[k])
                        hits.append(0)
            per_class[c] = average_precision(np.array(scores), np.array(hits), num_gt, method)
        per_thr[float(thr)] = per_class
    main = [t for t in per_thr if t >= 0.5]
    ap_all = {c: float(np.nanmean([per_thr[t][c] for t in main])) if any(np.isfinite(per_thr[t][c]) for t in main)
              else float("nan") for c in classes}

    def mean(d: dict[int, float]) -> float:
        v = [x for x in d.values() if np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")

    def js(v: float) -> float | None:
        return None if not np.isfinite(v) else float(v)

    return {"map": mean(ap_all), "map50": mean(per_thr[0.5]), "map25": mean(per_thr[0.25]),
            "per_class": {names[i]: {"ap": js(ap_all[c]), "ap50": js(per_thr[0.5][c]), "ap25": js(per_thr[0.25][c])}
                          for i, c in enumerate(classes)}}


def evaluate_detection(pred_boxes: Sequence[np.ndarray], pred_labels: Sequence[np.ndarray],
                       pred_scores: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray],
                       gt_labels: Sequence[np.ndarray], classes: Sequence[int],
                       class_names: Sequence[str] | None = None, iou_thresholds: Sequence[float] = (0.25, 0.5),
                       oriented: bool = False, method: str = "voc") -> dict:
    """3D detection mAP per IoU threshold (``map25``, ``map50``), VoteNet's protocol: per class, predictions of all
    scenes ranked by score, each matched to the unmatched ground-truth box of its scene with the highest 3D IoU
    >= threshold, VOC all-point AP; classes without ground truth are left out of the mean."""
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    iou_fn = box_iou_oriented if oriented else box_iou_axis_aligned
    out: dict = {"per_class": {n: {} for n in names}}
    for thr in iou_thresholds:
        aps = []
        for i, c in enumerate(classes):
            entries, num_gt = [], 0
            for pb, pl, ps, gb, gl in zip(pred_boxes, pred_labels, pred_scores, gt_boxes, gt_labels):
                g = np.asarray(gb).reshape(-1, 7)[np.asarray(gl) == c]
                p = np.asarray(pb).reshape(-1, 7)[np.asarray(pl) == c]
                s = np.asarray(ps)[np.asarray(pl) == c]
                num_gt += len(g)
                iou = iou_fn(p, g) if len(p) and len(g) else np.zeros((len(p), len(g)))
                taken = np.zeros(len(g), bool)
                for k in np.argsort(-s, kind="stable"):
                    cand = np.where(~taken & (iou[k] >= thr))[0]
                    if len(cand):
                        taken[cand[np.argmax(iou[k, cand])]] = True
                    entries.append((s[k], int(len(cand) > 0)))
            # per-scene greedy matching, then one ranking over all scenes (as VoteNet's eval_det_cls)
            sc = np.array([e[0] for e in entries])
            hit = np.array([e[1] for e in entries])
            ap = average_precision(sc, hit, num_gt, method)
            out["per_class"][names[i]][f"ap{int(round(thr * 100))}"] = None if not np.isfinite(ap) else ap
            aps.append(ap)
        finite = [a for a in aps if np.isfinite(a)]
        out[f"map{int(round(thr * 100))}"] = float(np.mean(finite)) if finite else float("nan")
    return out
