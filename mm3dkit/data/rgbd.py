"""Generic RGB-D readers: depth encodings of common datasets, Open3D ``.log`` trajectories and camera JSON.

Depth encodings (all decode to ``float32`` metres, ``0`` = no depth), matching Open3D's ``RGBDImage.create_from_*``:

* ``"mm"``: 16-bit PNG in millimetres (ScanNet, Redwood, Open3D test frames).
* ``"tum"``: 16-bit PNG, 5000 units per metre (TUM RGB-D).
* ``"sun"``: 16-bit PNG of millimetres rotated by 3 bits (SUN RGB-D): ``d = (v >> 3) | (v << 13)`` in 16 bits.
* ``"nyu"``: NYU Depth v2 raw 16-bit PGM of Kinect disparity. The files' pixel bytes are swapped relative to the
  PGM standard (Open3D reads them big-endian and then swaps), so the disparity is the byte-swapped PGM value;
  depth = ``351.3 / (1092.5 - disparity)``, with non-positive results (e.g. the invalid marker 2047) set to 0.

Open3D additionally truncates far depth (TUM 4 m, SUN and NYU 7 m: :data:`OPEN3D_MAX_DEPTH`); here truncation is
the ``max_depth`` parameter (default ``None``: keep everything), so pass ``OPEN3D_MAX_DEPTH[enc]`` to match Open3D.

Example:
    >>> import numpy as np
    >>> decode_depth(np.array([[0, 5000, 10000]], np.uint16), "tum").tolist()
    [[0.0, 1.0, 2.0]]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from mm3dkit.data.types import Frame
from mm3dkit.errors import DataError
from mm3dkit.geometry import resize_intrinsics

ENCODINGS: tuple[str, ...] = ("mm", "tum", "sun", "nyu")
OPEN3D_MAX_DEPTH: dict[str, float | None] = {"mm": 3.0, "tum": 4.0, "sun": 7.0, "nyu": 7.0}
"""Open3D's default truncation per encoding (``create_from_color_and_depth`` uses 3 m for plain mm depth)."""


def open_image(path: str | Path) -> Image.Image:
    """Open and decode an image, raising :class:`DataError` naming the file when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(path, f"cannot be read as an image ({exc})") from exc
    return img


def read_color(path: str | Path) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB."""
    return np.asarray(open_image(path).convert("RGB"))


def decode_depth(raw: np.ndarray, encoding: str = "mm", max_depth: float | None = None,
                 source: str | Path = "<array>") -> np.ndarray:
    """Raw 16-bit depth values (as stored in the file) -> ``float32`` metres, 0 = invalid. See the module doc."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown depth encoding {encoding!r}; expected one of {ENCODINGS}")
    raw = np.asarray(raw)
    if raw.dtype != np.uint16:
        raise DataError(source, f"depth must be 16-bit unsigned, got {raw.dtype}")
    if encoding == "mm":
        depth = raw.astype(np.float32) / 1000.0
    elif encoding == "tum":
        depth = raw.astype(np.float32) / 5000.0
    elif encoding == "sun":
        depth = ((raw >> 3) | (raw << 13)).astype(np.float32) / 1000.0
    else:  # nyu
        disparity = raw.byteswap().astype(np.float64)
        with np.errstate(divide="ignore"):
            depth = 351.3 / (1092.5 - disparity)
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    if max_depth is not None:
        depth[depth >= max_depth] = 0.0
    return depth


def read_depth(path: str | Path, encoding: str = "mm", max_depth: float | None = None) -> np.ndarray:
    """Read a depth image (16-bit PNG, or NYU's 16-bit PGM) and decode it with :func:`decode_depth`."""
    img = open_image(path)
    arr = np.asarray(img)
    if img.mode in ("I;16", "I;16B", "I;16L") or (img.mode == "I" and arr.size and arr.min() >= 0
                                                  and arr.max() <= 65535):
        arr = arr.astype(np.uint16)
    elif arr.dtype != np.uint16:
        raise DataError(path, f"depth must be a 16-bit single-channel image, got mode {img.mode} ({arr.dtype})")
    return decode_depth(arr, encoding, max_depth, source=path)


def read_rgbd_frame(color_path: str | Path, depth_path: str | Path, intrinsics: np.ndarray, encoding: str = "mm",
                    pose: np.ndarray | None = None, max_depth: float | None = None, name: str = "") -> Frame:
    """A colour + depth pair as a :class:`Frame`; ``intrinsics`` are the depth camera's.

    Colour of another size is resized to the depth resolution when the aspect ratios agree (registered sensors
    such as Kinect/PrimeSense at half/full resolution); otherwise it is a :class:`DataError`. All-invalid depth
    is a :class:`DataError` too.
    """
    depth = read_depth(depth_path, encoding, max_depth)
    if not np.any(depth > 0):
        raise DataError(depth_path, "depth has no valid pixel (all zero or out of range)")
    img = open_image(color_path).convert("RGB")
    h, w = depth.shape
    if (img.height, img.width) != (h, w):
        if abs(img.width / img.height - w / h) > 0.01:
            raise DataError(color_path, f"colour size {img.width}x{img.height} does not match depth size {w}x{h} "
                                        "(different aspect ratio, cannot resize)")
        img = img.resize((w, h), Image.BILINEAR)
    K = np.asarray(intrinsics, dtype=np.float64)
    if K.shape != (3, 3):
        raise DataError(name or depth_path, f"intrinsics must be 3x3, got {K.shape}")
    return Frame(color=np.asarray(img), depth=depth, intrinsics=K, pose=pose, name=name or Path(depth_path).stem)


def read_trajectory_log(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Open3D/Redwood ``.log`` trajectory: blocks of a line ``i j n`` and a 4x4 camera-to-world matrix.

    Returns ``(ids (N, 3) int64, poses (N, 4, 4) float64)``. Poses may contain NaN/inf; callers skip those.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "t.log")
        >>> _ = open(p, "w").write("0 0 1\\n1 0 0 0\\n0 1 0 0\\n0 0 1 0\\n0 0 0 1\\n")
        >>> ids, poses = read_trajectory_log(p)
        >>> ids.tolist(), poses.shape
        ([[0, 0, 1]], (1, 4, 4))
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file is missing")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or len(lines) % 5:
        raise DataError(path, f"expected blocks of 5 lines (ids + 4x4 matrix), got {len(lines)} non-empty lines")
    try:
        ids = np.array([lines[k] for k in range(0, len(lines), 5)], dtype=np.int64)
        mats = np.array([lines[k + 1:k + 5] for k in range(0, len(lines), 5)], dtype=np.float64)
    except ValueError as exc:
        raise DataError(path, f"not a trajectory log: {exc}") from exc
    if ids.shape[1:] != (3,) or mats.shape[1:] != (4, 4):
        raise DataError(path, f"malformed blocks: ids {ids.shape[1:]}, matrices {mats.shape[1:]}")
    return ids, mats


def read_camera_json(path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
    """Open3D ``PinholeCameraIntrinsic`` JSON -> ``(K 3x3, (height, width))``; ``intrinsic_matrix`` is column-major."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        data = json.loads(path.read_text())
        K = np.asarray(data["intrinsic_matrix"], dtype=np.float64).reshape(3, 3).T
        size = (int(data["height"]), int(data["width"]))
    except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise DataError(path, f"not an Open3D camera JSON (needs width, height, 9-value intrinsic_matrix): {exc}") \
            from exc
    return K, size


def _sorted_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".ppm", ".pgm"))


class RGBDSequence(Dataset):
    """An RGB-D sequence folder: ``color/``, ``depth/`` (paired in sorted order), a camera JSON, an optional ``.log``.

    Frames whose pose is not finite are skipped and counted in ``skipped_invalid_pose``.

    Example (Open3D's test frames, when present):
        >>> seq = RGBDSequence("../shared/data/open3d_rgbd", camera="camera_primesense.json",
        ...                    trajectory="trajectory.log")  # doctest: +SKIP
        >>> len(seq), seq[0].depth.shape  # doctest: +SKIP
        (5, (480, 640))
    """

    def __init__(self, root: str | Path, camera: str | Path = "camera_intrinsic.json",
                 trajectory: str | Path | None = None, encoding: str = "mm", max_depth: float | None = None):
        self.root = Path(root)
        for sub in ("color", "depth"):
            if not (self.root / sub).is_dir():
                raise DataError(self.root / sub, "folder is missing (expected color/ and depth/)")
        colors, depths = _sorted_images(self.root / "color"), _sorted_images(self.root / "depth")
        if len(colors) != len(depths) or not colors:
            raise DataError(self.root, f"{len(colors)} colour and {len(depths)} depth images; need equal, non-zero")
        self.K, self.size = read_camera_json(self.root / camera)
        self.encoding, self.max_depth = encoding, max_depth
        poses: list[np.ndarray | None] = [None] * len(colors)
        if trajectory is not None:
            _, mats = read_trajectory_log(self.root / trajectory)
            if len(mats) != len(colors):
                raise DataError(self.root / trajectory, f"has {len(mats)} poses for {len(colors)} frames")
            poses = list(mats)
        self.items = [(c, d, p) for c, d, p in zip(colors, depths, poses) if p is None or np.isfinite(p).all()]
        self.skipped_invalid_pose = len(colors) - len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Frame:
        c, d, pose = self.items[i]
        frame = read_rgbd_frame(c, d, self.K, self.encoding, pose, self.max_depth, name=d.stem)
        if frame.depth.shape != self.size:  # camera JSON describes another resolution: rescale
            frame.intrinsics = resize_intrinsics(self.K, self.size, frame.depth.shape).numpy()
        return frame
