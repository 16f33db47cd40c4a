"""ScanNet readers: SensReader frame exports and labelled scene meshes (the synthetic generator writes the same layout).

Frames (``<scene>/``): ``color/N.jpg``, ``depth/N.png`` (uint16 mm), ``pose/N.txt`` (4x4 camera-to-world; frames with
-inf/NaN poses are skipped and counted), ``intrinsic/intrinsic_color.txt`` + ``intrinsic_depth.txt``, optional
``label-filt/N.png`` (raw ScanNet ids) and ``instance-filt/N.png`` (instance + 1). Colour (and labels) are resized to
the depth resolution; the frame's intrinsics are the depth camera's (or the colour intrinsics rescaled to the depth
size when ``intrinsic_depth.txt`` is absent).

Scenes (``<scene>/``): ``<scene>_vh_clean_2.ply``, ``<scene>_vh_clean_2.labels.ply`` (vertex ``label`` = NYU40 id),
``<scene>_vh_clean_2.0.010000.segs.json``, ``<scene>.aggregation.json`` and ``scannetv2-labels.combined.tsv``
-> per-point NYU40 and ScanNet-20 labels, instance ids and axis-aligned boxes (ScanNet-20 classes except wall/floor).

Example:
    >>> from mm3dkit.synth import generate_dataset
    >>> import tempfile
    >>> root = generate_dataset(tempfile.mkdtemp(), n_scenes=1, n_frames=2, width=32, height=24, progress=False)
    >>> frames = ScanNetFrames(root)
    >>> len(frames), frames[0].color.shape
    (2, (24, 32, 3))
"""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from plyfile import PlyData
from torch.utils.data import Dataset

from mm3dkit.data.classes import SCANNET20_NAMES, nyu40_to_scannet20
from mm3dkit.data.types import IGNORE_LABEL, Frame, Scene
from mm3dkit.errors import DataError
from mm3dkit.geometry import resize_intrinsics

TSV_NAME = "scannetv2-labels.combined.tsv"
BOX_CLASSES = tuple(i for i, n in enumerate(SCANNET20_NAMES) if n not in ("wall", "floor"))


def _open_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"cannot be read as an image ({exc})") from exc
    return img


def read_matrix(path: Path, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    """A whitespace-separated matrix file (ScanNet poses and intrinsics)."""
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        M = np.loadtxt(path, dtype=np.float64)
    except ValueError as exc:
        raise DataError(path, f"is not a numeric matrix ({exc})") from exc
    if M.shape != shape:
        raise DataError(path, f"expected a {shape[0]}x{shape[1]} matrix, got shape {M.shape}")
    return M


def read_depth_png(path: Path, scale: float = 1000.0) -> np.ndarray:
    """uint16 depth PNG in 1/``scale`` metres -> float32 metres (0 = missing)."""
    img = _open_image(path)
    arr = np.asarray(img)
    if arr.dtype != np.uint16 and img.mode not in ("I;16", "I"):
        raise DataError(path, f"depth must be a 16-bit PNG in millimetres, got mode {img.mode} ({arr.dtype})")
    return arr.astype(np.float32) / scale


@lru_cache(maxsize=8)
def read_label_map(tsv_path: str) -> tuple[dict[int, int], dict[str, int]]:
    """``scannetv2-labels.combined.tsv`` -> (raw id -> NYU40 id, raw category name -> NYU40 id)."""
    path = Path(tsv_path)
    if not path.is_file():
        raise DataError(path, f"label map {TSV_NAME} is missing (put it at the dataset root)")
    by_id, by_name = {}, {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if not reader.fieldnames or not {"id", "raw_category", "nyu40id"} <= set(reader.fieldnames):
            raise DataError(path, "is not a ScanNet label tsv (needs columns id, raw_category, nyu40id)")
        for row in reader:
            nyu = int(row["nyu40id"]) if row["nyu40id"] else 0
            by_id[int(row["id"])] = nyu
            by_name[row["raw_category"]] = nyu
    return by_id, by_name


def _find_tsv(start: Path, explicit: str | Path | None) -> Path:
    if explicit is not None:
        return Path(explicit)
    for folder in (start, *start.parents[:3]):
        if (folder / TSV_NAME).is_file():
            return folder / TSV_NAME
    return start / TSV_NAME  # missing: read_label_map raises a clear error


def scene_dirs(root: str | Path, split: str | None = None) -> list[Path]:
    """Scene folders under ``root`` (a dataset root with ``scans/``, a folder of scenes, or one scene).

    ``split`` ("train"/"val") keeps the scenes listed in ``scannetv2_<split>.txt`` at the root.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(root, "dataset folder does not exist")
    if (root / "color").is_dir() or any(root.glob("*_vh_clean_2.ply")):
        return [root]
    base = root / "scans" if (root / "scans").is_dir() else root
    dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if split is not None:
        listing = root / f"scannetv2_{split}.txt"
        if not listing.is_file():
            raise DataError(listing, f"split file for {split!r} is missing")
        keep = set(listing.read_text().split())
        dirs = [d for d in dirs if d.name in keep]
    if not dirs:
        raise DataError(root, "no scene folders found (expected scans/<scene>/ or <scene>/)")
    return dirs


def read_frame(scene_dir: str | Path, index: int, tsv_path: str | Path | None = None, with_labels: bool = True,
               depth_scale: float = 1000.0) -> Frame:
    """One frame of a SensReader export as a :class:`Frame` (semantic = ScanNet-20 indices, instance = id or -1)."""
    d = Path(scene_dir)
    depth = read_depth_png(d / "depth" / f"{index}.png", depth_scale)
    if not np.any(depth > 0):
        raise DataError(d / "depth" / f"{index}.png", "depth has no valid pixel (all zero)")
    h, w = depth.shape
    color_img = _open_image(d / "color" / f"{index}.jpg").convert("RGB")
    color_size = (color_img.height, color_img.width)
    if color_size != (h, w):
        color_img = color_img.resize((w, h), Image.BILINEAR)
    if (d / "intrinsic" / "intrinsic_depth.txt").is_file():
        K = read_matrix(d / "intrinsic" / "intrinsic_depth.txt")[:3, :3]
    else:
        K = resize_intrinsics(read_matrix(d / "intrinsic" / "intrinsic_color.txt")[:3, :3], color_size, (h, w)).numpy()
    pose = read_matrix(d / "pose" / f"{index}.txt")
    semantic = instance = None
    label_path = d / "label-filt" / f"{index}.png"
    if with_labels and label_path.is_file():
        raw = np.asarray(_open_image(label_path).resize((w, h), Image.NEAREST)).astype(np.int64)
        by_id, _ = read_label_map(str(_find_tsv(d, tsv_path)))
        lut = np.zeros(max(max(by_id), int(raw.max())) + 1, dtype=np.int64)
        known = np.zeros_like(lut, dtype=bool)
        known[0] = True
        for rid, nyu in by_id.items():
            lut[rid], known[rid] = nyu, True
        if not known[raw].all():
            bad = sorted(set(np.unique(raw[~known[raw]]).tolist()))[:5]
            raise DataError(label_path, f"label ids {bad} are not in {TSV_NAME}")
        semantic = nyu40_to_scannet20(lut[raw])
        inst_path = d / "instance-filt" / f"{index}.png"
        if inst_path.is_file():
            instance = np.asarray(_open_image(inst_path).resize((w, h), Image.NEAREST)).astype(np.int64) - 1
    return Frame(color=np.asarray(color_img), depth=depth, intrinsics=K, pose=pose, semantic=semantic,
                 instance=instance, name=f"{d.name}/{index}")


def _pose_is_valid(path: Path) -> bool:
    try:
        return bool(np.isfinite(np.loadtxt(path)).all())
    except ValueError:
        return False


class ScanNetFrames(Dataset):
    """All frames of one or more SensReader scene exports, as :class:`Frame` objects.

    ``frame_stride`` keeps every k-th frame (ScanNet runs at 30 fps; 25 is common for pre-training);
    frames with invalid poses are skipped and counted in ``skipped_invalid_pose``.
    """

    def __init__(self, root: str | Path, split: str | None = None, frame_stride: int = 1, with_labels: bool = True,
                 tsv_path: str | Path | None = None, max_scenes: int | None = None):
        self.root = Path(root)
        self.with_labels, self.tsv_path = with_labels, tsv_path
        self.items: list[tuple[Path, int]] = []
        self.skipped_invalid_pose = 0
        for d in scene_dirs(root, split)[:max_scenes]:
            if not (d / "color").is_dir():
                continue
            ids = sorted(int(p.stem) for p in (d / "color").glob("*.jpg"))
            for i in ids[::frame_stride]:
                if _pose_is_valid(d / "pose" / f"{i}.txt"):
                    self.items.append((d, i))
                else:
                    self.skipped_invalid_pose += 1
        if not self.items:
            raise DataError(self.root, "no frames with valid poses found (expected <scene>/color/N.jpg and pose/N.txt)")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Frame:
        d, idx = self.items[i]
        return read_frame(d, idx, self.tsv_path, self.with_labels)


def _read_ply_vertices(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        return PlyData.read(str(path))["vertex"].data
    except Exception as exc:  # plyfile raises several types for bad files
        raise DataError(path, f"cannot be read as a PLY mesh ({exc})") from exc


def boxes_from_instances(points: np.ndarray, semantic: np.ndarray, instance: np.ndarray,
                         classes: tuple[int, ...] = BOX_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned boxes ``[cx, cy, cz, dx, dy, dz, 0]`` of the instances whose class is in ``classes``."""
    boxes, labels = [], []
    for inst in np.unique(instance[instance >= 0]):
        m = instance == inst
        cls = np.bincount(semantic[m][semantic[m] >= 0], minlength=1).argmax() if (semantic[m] >= 0).any() else -1
        if cls not in classes:
            continue
        lo, hi = points[m].min(0), points[m].max(0)
        boxes.append([*((lo + hi) / 2), *(hi - lo), 0.0])
        labels.append(cls)
    return np.array(boxes, dtype=np.float32).reshape(-1, 7), np.array(labels, dtype=np.int64)


def read_scene(scene_dir: str | Path, tsv_path: str | Path | None = None) -> Scene:
    """A labelled ScanNet scene (points = mesh vertices) with ScanNet-20 semantics, instances and boxes."""
    d = Path(scene_dir)
    name = d.name
    verts = _read_ply_vertices(d / f"{name}_vh_clean_2.ply")
    points = np.stack([verts["x"], verts["y"], verts["z"]], axis=1).astype(np.float32)
    if not np.isfinite(points).all():
        raise DataError(d / f"{name}_vh_clean_2.ply", "vertex coordinates contain NaN or infinity")
    colors = np.stack([verts["red"], verts["green"], verts["blue"]], axis=1).astype(np.uint8)
    n = len(points)
    semantic = np.full(n, IGNORE_LABEL, dtype=np.int64)
    instance = np.full(n, -1, dtype=np.int64)
    labels_path = d / f"{name}_vh_clean_2.labels.ply"
    if labels_path.is_file():
        lab = _read_ply_vertices(labels_path)
        if len(lab) != n:
            raise DataError(labels_path, f"has {len(lab)} vertices but the mesh has {n}")
        nyu = np.asarray(lab["label"]).astype(np.int64)
        if nyu.min() < 0 or nyu.max() > 40:
            raise DataError(labels_path, f"labels must be NYU40 ids 0..40, found {nyu.min()}..{nyu.max()}")
        semantic = nyu40_to_scannet20(nyu)
    agg_path, seg_path = d / f"{name}.aggregation.json", d / f"{name}_vh_clean_2.0.010000.segs.json"
    if agg_path.is_file():
        try:
            seg = np.asarray(json.loads(seg_path.read_text())["segIndices"]) if seg_path.is_file() else None
            groups = json.loads(agg_path.read_text())["segGroups"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise DataError(agg_path if seg_path.is_file() else seg_path, f"malformed annotation json ({exc})") from exc
        if seg is None:
            raise DataError(seg_path, "file is missing (needed with the aggregation file)")
        if len(seg) != n:
            raise DataError(seg_path, f"has {len(seg)} segment indices but the mesh has {n} vertices")
        for g in groups:
            instance[np.isin(seg, g["segments"])] = int(g["objectId"])
        if not labels_path.is_file():  # semantics from the aggregation's raw categories
            _, by_name = read_label_map(str(_find_tsv(d, tsv_path)))
            for g in groups:
                semantic[np.isin(seg, g["segments"])] = nyu40_to_scannet20([by_name.get(g["label"], 0)])[0]
    boxes, box_labels = boxes_from_instances(points, semantic, instance)
    return Scene(points=points, colors=colors, semantic=semantic, instance=instance, boxes=boxes,
                 box_labels=box_labels, class_names=list(SCANNET20_NAMES), name=name)


class ScanNetScenes(Dataset):
    """Labelled scenes of a ScanNet-layout dataset (real or synthetic), optionally one split."""

    def __init__(self, root: str | Path, split: str | None = None, tsv_path: str | Path | None = None):
        self.dirs = [d for d in scene_dirs(root, split) if (d / f"{d.name}_vh_clean_2.ply").is_file()]
        if not self.dirs:
            raise DataError(root, "no scene meshes found (expected <scene>/<scene>_vh_clean_2.ply)")
        self.tsv_path = tsv_path
        self.class_names = list(SCANNET20_NAMES)

    def __len__(self) -> int:
        return len(self.dirs)

    def __getitem__(self, i: int) -> Scene:
        return read_scene(self.dirs[i], self.tsv_path)
