"""PointGroup-style instances from a segmentation prediction: shift points by their predicted offsets towards the
instance centre, then group shifted points of the same predicted class that lie within ``radius`` of each other
(connected components of the radius graph: scipy's ``cKDTree.query_pairs`` + ``csgraph.connected_components``).

Example:
    >>> import numpy as np
    >>> pts = np.array([[0, 0, 0], [0.05, 0, 0], [2, 0, 0], [2.05, 0, 0]], np.float32)
    >>> inst = cluster_instances(pts, np.zeros((4, 3)), np.array([1, 1, 1, 1]), np.ones(4), classes=[1],
    ...                          radius=0.1, min_points=1)
    >>> inst.masks.astype(int).tolist(), inst.labels.tolist()
    ([[1, 1, 0, 0], [0, 0, 1, 1]], [1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from mm3dkit.downstream.metrics import Instances
from mm3dkit.geometry import voxelize


def cluster_instances(points: np.ndarray, offsets: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                      classes: Sequence[int], radius: float = 0.03, min_points: int = 50,
                      grid: float | None = None) -> Instances:
    """Instances of ``points (N, 3)`` from per-point ``offsets``, predicted ``labels`` and their probabilities
    ``scores``; only ``classes`` (things, e.g. not wall/floor) are grouped.

    ``grid`` (e.g. the voxel size) clusters one representative per cell of shifted points, which makes large scenes
    cheap; the whole cell joins the representative's cluster. An instance's score is the mean class probability of
    its points; clusters under ``min_points`` points are dropped (PointGroup's defaults: radius 0.03 m at 2 cm
    voxels, 50 points).
    """
    shifted = np.asarray(points, np.float64) + np.asarray(offsets, np.float64)
    labels = np.asarray(labels)
    masks, out_labels, out_scores = [], [], []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < min_points:
            continue
        p = shifted[idx]
        if grid:
            vox = voxelize(p.astype(np.float32), grid)
            rep, inverse = vox.index.numpy(), vox.inverse.numpy()
        else:
            rep, inverse = np.arange(len(idx)), np.arange(len(idx))
        pairs = cKDTree(p[rep]).query_pairs(radius, output_type="ndarray")
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(rep), len(rep)))
        _, comp = connected_components(graph, directed=False)
        comp = comp[inverse]
        sizes = np.bincount(comp)
        for k in np.flatnonzero(sizes >= min_points):
            m = np.zeros(len(points), bool)
            m[idx[comp == k]] = True
            masks.append(m)
            out_labels.append(c)
            out_scores.append(float(np.asarray(scores)[m].mean()))
    if not masks:
        return Instances(np.zeros((0, len(points)), bool), np.zeros(0, np.int64), np.zeros(0))
    return Instances(np.stack(masks), np.array(out_labels, np.int64), np.array(out_scores))
