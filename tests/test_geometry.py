"""Camera geometry: hand-computed cases and round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mm3dkit.geometry import (back_project, crop_intrinsics, project, resize_intrinsics, transform_points, voxelize)

K = torch.tensor([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])


def test_back_project_hand_computed():
    depth = torch.zeros(48, 64)
    depth[23, 31] = 2.0   # close to the principal point
    depth[0, 0] = 1.0
    pts, pix = back_project(depth, K)
    assert pix.tolist() == [[0, 0], [23, 31]]
    torch.testing.assert_close(pts[0], torch.tensor([(0 - 31.5) / 100, (0 - 23.5) / 100, 1.0]))
    torch.testing.assert_close(pts[1], torch.tensor([-0.5 * 2 / 100, -0.5 * 2 / 100, 2.0]))


def test_round_trip_recovers_pixels_with_pose():
    g = torch.Generator().manual_seed(0)
    depth = 1 + 3 * torch.rand(48, 64, generator=g)
    depth[::7, ::5] = 0  # missing depth
    angle = 0.3
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    pose[:3, 3] = torch.tensor([1.0, -2.0, 0.5])
    pts, pix = back_project(depth, K, pose)
    uv, ok = project(pts, K, pose, image_size=(48, 64), depth_map=depth)
    assert ok.all()
    torch.testing.assert_close(uv, pix[:, [1, 0]].float(), atol=1e-3, rtol=0)


def test_project_validity_and_occlusion():
    pts = torch.tensor([[0.0, 0, 1], [0, 0, -1], [10, 0, 1], [0, 0, 3]])
    depth = torch.full((48, 64), 1.0)
    uv, ok = project(pts, K, image_size=(48, 64))
    assert ok.tolist() == [True, False, False, True]
    _, ok_occ = project(pts, K, depth_map=depth)
    assert ok_occ.tolist() == [True, False, False, False], "the point behind the surface at z=1 is occluded"


def test_resize_and_crop_intrinsics():
    K2 = resize_intrinsics(K, (48, 64), (24, 32))
    assert K2[0, 0] == 50 and K2[0, 2] == pytest.approx(15.5) and K2[1, 2] == pytest.approx(11.5)
    # a point projects to the same place (scaled) in the resized image
    p = torch.tensor([[0.3, -0.2, 2.0]])
    uv1, _ = project(p, K)
    uv2, _ = project(p, K2.float())
    torch.testing.assert_close((uv1 + 0.5) / 2 - 0.5, uv2)
    K3 = crop_intrinsics(K, top=4, left=10)
    uv3, _ = project(p, K3.float())
    torch.testing.assert_close(uv3, uv1 - torch.tensor([[10.0, 4.0]]))


def test_voxelize_carries_labels_back():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(500, 3, generator=g)
    v = voxelize(pts, 0.25)
    assert v.coords.shape[0] <= 64 and v.inverse.shape == (500,)
    torch.testing.assert_close(v.coords[v.inverse], torch.floor(pts / 0.25).long())
    assert (v.inverse[v.index] == torch.arange(len(v.index))).all(), "kept point lies in its own voxel"
    with pytest.raises(ValueError, match="NaN"):
        voxelize(torch.tensor([[0.0, float("nan"), 0]]), 0.1)


def test_transform_points_inverse():
    T = torch.eye(4)
    T[:3, 3] = torch.tensor([1.0, 2, 3])
    p = torch.randn(5, 3)
    torch.testing.assert_close(transform_points(transform_points(p, T), torch.linalg.inv(T)), p)
