"""Render a :class:`~mm3dkit.synth.layout.Room` into RGB-D frames with Open3D's ``RaycastingScene`` (CPU).

Colour = procedural pattern in each box's own frame x Lambertian shading (sun-like directional light + ambient + a
camera headlight); depth = ray length along the optical axis with Kinect-like noise (sigma grows with z^2), millimetre
quantisation, and missing depth at grazing angles, beyond the sensor range and in random holes.

Example:
    >>> from mm3dkit.synth.layout import make_room
    >>> rng = np.random.default_rng(0)
    >>> room = make_room(rng)
    >>> renderer = RoomRenderer(room)
    >>> K = intrinsics_for(64, 48)
    >>> out = renderer.render(camera_path(room, 1, rng)[0], K, 64, 48, rng)
    >>> out["color"].shape, out["depth"].dtype
    ((48, 64, 3), dtype('float32'))
"""

from __future__ import annotations

import numpy as np
import open3d as o3d

from mm3dkit.synth.layout import CATEGORIES, PATTERNS, Room

_LIGHT = np.array([0.35, 0.55, 1.0]) / np.linalg.norm([0.35, 0.55, 1.0])


def intrinsics_for(width: int, height: int, fov_scale: float = 0.9) -> np.ndarray:
    """A realistic pinhole matrix (fx = fy = ``fov_scale`` x width, principal point at the image centre)."""
    f = fov_scale * width
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """4x4 camera-to-world pose of an OpenCV camera at ``position`` looking at ``target`` with world +z up."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = position
    return pose


def camera_path(room: Room, n_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A smooth trajectory: an elliptic arc around the room centre at eye height, gaze moving between furniture."""
    W, D, _ = room.size
    start, sweep = rng.uniform(0, 2 * np.pi), rng.uniform(np.pi / 3, np.pi) * rng.choice([-1, 1])
    height = rng.uniform(1.2, 1.6)
    furniture = [o for o in room.objects if o.category not in ("floor", "wall", "ceiling", "door", "window", "picture")]
    anchors = [np.mean(o.bounds(), axis=0) for o in furniture] or [np.array([W / 2, D / 2, 0.5])]
    gaze = [anchors[i] for i in rng.choice(len(anchors), size=3)]
    poses = []
    for i in range(n_frames):
        s = i / max(1, n_frames - 1)
        angle = start + sweep * s
        pos = np.array([W / 2 + 0.28 * W * np.cos(angle), D / 2 + 0.28 * D * np.sin(angle),
                        height + 0.05 * np.sin(3 * np.pi * s)])
        seg = min(int(s * 2), 1)
        target = gaze[seg] + (gaze[seg + 1] - gaze[seg]) * (s * 2 - seg)
        target = target + np.array([0.0, 0.0, 0.1])
        if np.linalg.norm(target[:2] - pos[:2]) < 0.5:  # too close to look at: look across the room instead
            target = np.array([W - pos[0], D - pos[1], 0.8])
        poses.append(look_at(pos, target))
    return poses


class RoomRenderer:
    """Holds the ray-casting scene and per-box surface parameters of one room."""

    def __init__(self, room: Room):
        self.room = room
        self.scene = o3d.t.geometry.RaycastingScene()
        rot, ctr, size, pattern, scale, color, accent, obj = [], [], [], [], [], [], [], []
        self.box_object: list[int] = []
        for oi, o in enumerate(room.objects):
            for b in o.boxes:
                mesh = o3d.geometry.TriangleMesh.create_box(*b.size)
                mesh.translate(-b.size / 2)
                mesh.rotate(b.rotation(), center=np.zeros(3))
                mesh.translate(b.center)
                self.scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
                rot.append(b.rotation())
                ctr.append(b.center)
                size.append(b.size)
                pattern.append(PATTERNS.index(o.pattern))
                scale.append(o.pattern_scale)
                color.append(o.color)
                accent.append(o.accent)
                obj.append(oi)
        self.rot, self.ctr, self.size = np.array(rot), np.array(ctr), np.array(size)
        self.pattern, self.scale = np.array(pattern), np.array(scale)
        self.color, self.accent, self.obj = np.array(color), np.array(accent), np.array(obj)
        self.raw_id = np.array([CATEGORIES[o.category][0] for o in room.objects])
        self.emissive = np.array([o.category == "window" for o in room.objects])
        # per-box phases for the "noise" pattern, fixed per room so a surface looks the same from every view
        self.phase = np.random.default_rng(len(self.obj)).uniform(0, 2 * np.pi, size=(len(self.obj), 4))

    def surface_color(self, points: np.ndarray, normals: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Albedo of hit points (N, 3) on boxes ``box`` (N,) from the box's pattern in its own frame."""
        local = np.einsum("nji,nj->ni", self.rot[box], points - self.ctr[box]) + self.size[box] / 2
        n_local = np.abs(np.einsum("nji,nj->ni", self.rot[box], normals))
        axis = np.argmax(n_local, axis=1)  # the face's normal axis; the pattern lives on the other two
        other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        a = np.take_along_axis(local, other[:, :1], 1)[:, 0] / self.scale[box]
        b = np.take_along_axis(local, other[:, 1:], 1)[:, 0] / self.scale[box]
        ph = self.phase[box]
        kind = self.pattern[box]
        m = np.zeros_like(a)
        m = np.where(kind == PATTERNS.index("stripes"), np.floor(a) % 2, m)
        m = np.where(kind == PATTERNS.index("checker"), (np.floor(a) + np.floor(b)) % 2, m)
        wood = 0.5 + 0.5 * np.sin(6 * a + 1.5 * np.sin(0.7 * b + ph[:, 0]) + ph[:, 1])
        m = np.where(kind == PATTERNS.index("wood"), wood ** 3, m)
        noise = 0.5 + 0.25 * (np.sin(1.7 * a + ph[:, 0]) * np.sin(2.3 * b + ph[:, 1])
                              + np.sin(4.1 * a + 3.1 * b + ph[:, 2]))
        m = np.where(kind == PATTERNS.index("noise"), np.clip(noise, 0, 1), m)
        grid = ((a % 1) < 0.12) | ((b % 1) < 0.12)
        m = np.where(kind == PATTERNS.index("grid"), grid.astype(float), m)
        return self.color[box] * (1 - m[:, None]) + self.accent[box] * m[:, None]

    def shade(self, albedo: np.ndarray, normals: np.ndarray, view_dirs: np.ndarray, box: np.ndarray) -> np.ndarray:
        sun = np.clip(normals @ _LIGHT, 0, None)
        head = np.abs(np.sum(normals * view_dirs, axis=1))
        rgb = albedo * (0.35 + 0.45 * sun + 0.3 * head)[:, None]
        return np.where(self.emissive[self.obj[box]][:, None], np.clip(albedo * 1.15, 0, 1), rgb)

    def render(self, pose: np.ndarray, K: np.ndarray, width: int, height: int, rng: np.random.Generator,
               noise: bool = True) -> dict[str, np.ndarray]:
        """Colour (uint8), depth (float32 metres, 0 = missing), raw category ids and instance ids (-1 = none)."""
        rows, cols = np.mgrid[0:height, 0:width]
        pix = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=1)
        # einsum rather than `@`: OpenBLAS's threaded GEMM on tall (N, 3) x (3, 3) products fights Open3D's thread
        # pool and was measured 10-50x slower here (benchmarks/bench_synth.py)
        dirs_cam = np.einsum("nj,ij->ni", pix, np.linalg.inv(K))  # z component 1: ray length t equals depth z
        dirs = np.einsum("nj,ij->ni", dirs_cam, pose[:3, :3])
        origins = np.broadcast_to(pose[:3, 3], dirs.shape)
        rays = o3d.core.Tensor(np.concatenate([origins, dirs], axis=1).astype(np.float32))
        ans = self.scene.cast_rays(rays)
        t = ans["t_hit"].numpy().astype(np.float64)
        gid = ans["geometry_ids"].numpy().astype(np.int64)
        normals = ans["primitive_normals"].numpy().astype(np.float64)
        hit = np.isfinite(t)
        box = np.where(hit, gid, 0)
        points = origins + dirs * np.where(hit, t, 0)[:, None]
        unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        normals = np.where((np.sum(normals * unit, axis=1) > 0)[:, None], -normals, normals)  # face the camera
        rgb = self.shade(self.surface_color(points, normals, box), normals, unit, box)
        if noise:
            rgb = rgb + rng.normal(0, 0.012, rgb.shape)
        color = (np.clip(np.where(hit[:, None], rgb, 0), 0, 1) * 255 + 0.5).astype(np.uint8)

        depth = np.where(hit, t, 0.0)
        if noise:
            sigma = 0.0012 + 0.0019 * np.square(np.maximum(depth - 0.4, 0))
            depth = depth + rng.normal(0, 1, depth.shape) * sigma
            grazing = np.abs(np.sum(normals * unit, axis=1)) < 0.12
            depth[grazing | (depth > 5.5)] = 0
            depth[rng.random(depth.shape) < 0.003] = 0
            depth = depth.reshape(height, width)
            for _ in range(int(rng.integers(0, 4))):  # sensor holes (shiny/dark surfaces)
                cy, cx = rng.uniform(0, height), rng.uniform(0, width)
                ry, rx = rng.uniform(2, height / 10), rng.uniform(2, width / 10)
                depth[((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < 1] = 0
            depth = np.round(depth * 1000) / 1000  # millimetre quantisation
        depth = depth.reshape(height, width).astype(np.float32)
        obj = np.where(hit, self.obj[box], -1)
        raw = np.where(hit, self.raw_id[np.maximum(obj, 0)], 0)
        return {"color": color.reshape(height, width, 3), "depth": depth,
                "raw_label": raw.reshape(height, width).astype(np.uint16),
                "instance": obj.reshape(height, width).astype(np.int64)}

    def sample_surface(self, density: float, rng: np.random.Generator,
                       skip: tuple[str, ...] = ("ceiling",)) -> dict[str, np.ndarray]:
        """Points on all box faces inside the room (``density`` points per m^2), with colour, labels, box ids.

        Like a ScanNet reconstruction, the ceiling is left out by default.
        """
        faces = np.array([[ax, sgn] for ax in range(3) for sgn in (-1, 1)])
        pts_all, box_all, nrm_all = [], [], []
        for bi in range(len(self.obj)):
            if self.room.objects[self.obj[bi]].category in skip:
                continue
            size = self.size[bi]
            for ax, sgn in faces:
                u_ax, v_ax = [a for a in range(3) if a != ax]
                area = size[u_ax] * size[v_ax]
                n = rng.poisson(area * density)
                if n == 0:
                    continue
                local = np.zeros((n, 3))
                local[:, u_ax] = rng.uniform(-0.5, 0.5, n) * size[u_ax]
                local[:, v_ax] = rng.uniform(-0.5, 0.5, n) * size[v_ax]
                local[:, ax] = sgn * size[ax] / 2
                normal = np.zeros(3)
                normal[ax] = sgn
                pts_all.append(np.einsum("nj,ij->ni", local, self.rot[bi]) + self.ctr[bi])  # einsum: see render
                nrm_all.append(np.broadcast_to(self.rot[bi] @ normal, (n, 3)))
                box_all.append(np.full(n, bi))
        pts, box, nrm = np.concatenate(pts_all), np.concatenate(box_all), np.concatenate(nrm_all)
        W, D, H = self.room.size
        inside = np.all((pts >= -1e-6) & (pts <= np.array([W, D, H]) + 1e-6), axis=1)
        pts, box, nrm = pts[inside], box[inside], nrm[inside]
        rgb = self.shade(self.surface_color(pts, nrm, box), nrm, np.broadcast_to(_LIGHT, nrm.shape), box)
        return {"points": pts.astype(np.float32), "colors": (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8),
                "object": self.obj[box], "box": box}
