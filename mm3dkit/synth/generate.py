"""Generate synthetic scenes in memory or on disk in ScanNet's layout (so one reader serves synthetic and real data).

On disk, per scene ``<out>/scans/<scene>/`` (ScanNet SensReader export + ScanNet scene files)::

    color/N.jpg  depth/N.png (uint16 mm)  pose/N.txt (4x4 camera-to-world)  label-filt/N.png (uint16 raw ids)
    instance-filt/N.png (uint8, instance + 1, 0 = none)  intrinsic/intrinsic_{color,depth}.txt (4x4)
    <scene>_vh_clean_2.ply  <scene>_vh_clean_2.labels.ply (vertex 'label' = NYU40 id)
    <scene>_vh_clean_2.0.010000.segs.json  <scene>.aggregation.json

and at ``<out>/``: ``scannetv2-labels.combined.tsv``, ``scannetv2_train.txt``, ``scannetv2_val.txt``, ``synth_meta.json``.
Each scene is written into a temporary folder and renamed when complete, so a partial scene is never mistaken for a
finished one, and an interrupted run resumes by skipping finished scenes. Same seed -> byte-identical files.

Example:
    >>> s = generate_scene(seed=0, n_frames=2, width=64, height=48)
    >>> len(s.frames), s.frames[0].color.shape, len(s.scene) > 1000
    (2, (48, 64, 3), True)
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from plyfile import PlyData, PlyElement
from tqdm.auto import tqdm

from mm3dkit.data.classes import NYU40_NAMES, nyu40_to_scannet20
from mm3dkit.data.types import Frame, Scene
from mm3dkit.errors import DataError
from mm3dkit.synth.layout import CATEGORIES, make_room
from mm3dkit.synth.render import RoomRenderer, camera_path, intrinsics_for

GENERATOR_VERSION = 1
TSV_HEADER = ["id", "raw_category", "category", "count", "nyu40id", "eigen13id", "nyuClass", "nyu40class",
              "eigen13class", "ModelNet40", "ModelNet10", "ShapeNetCore55", "synsetoffset", "wnsynsetid",
              "wnsynsetkey", "mpcat40index", "mpcat40"]


@dataclass(frozen=True)
class SynthParams:
    n_frames: int = 20
    width: int = 320
    height: int = 240
    surface_density: float = 400.0  # scene point-cloud points per m^2
    noise: bool = True


@dataclass
class SynthScene:
    name: str
    frames: list[Frame]
    scene: Scene
    raw_labels: list[np.ndarray]  # per frame, raw category ids as written to label-filt
    nyu40: np.ndarray  # per scene point
    segments: np.ndarray  # per scene point
    objects: list[tuple[int, str, list[int]]]  # (object id, raw category, segment ids)


_RAW_TO_NYU40 = np.zeros(max(v[0] for v in CATEGORIES.values()) + 1, dtype=np.int64)
for _raw, _name, _nyu in CATEGORIES.values():
    _RAW_TO_NYU40[_raw] = _nyu


def scene_name(index: int) -> str:
    return f"scene{index:04d}_00"


def generate_scene(seed: int, n_frames: int = 20, width: int = 320, height: int = 240, name: str = "scene0000_00",
                   surface_density: float = 400.0, noise: bool = True) -> SynthScene:
    """One procedural room rendered along a camera path, plus its labelled surface point cloud."""
    rng = np.random.default_rng(seed)
    room = make_room(rng)
    renderer = RoomRenderer(room)
    K = intrinsics_for(width, height)
    frames, raws = [], []
    for i, pose in enumerate(camera_path(room, n_frames, rng)):
        out = renderer.render(pose, K, width, height, rng, noise=noise)
        nyu = _RAW_TO_NYU40[out["raw_label"]]
        frames.append(Frame(color=out["color"], depth=out["depth"], intrinsics=K.copy(), pose=pose,
                            semantic=nyu40_to_scannet20(nyu), instance=out["instance"], name=f"{name}/{i}"))
        raws.append(out["raw_label"])
    surf = renderer.sample_surface(surface_density, rng)
    nyu40 = _RAW_TO_NYU40[renderer.raw_id[surf["object"]]]
    objects = []
    for oi, o in enumerate(room.objects):
        boxes = sorted({int(b) for b in np.unique(surf["box"][surf["object"] == oi])})
        if boxes:
            objects.append((oi, CATEGORIES[o.category][1], boxes))
    scene = Scene(points=surf["points"], colors=surf["colors"], semantic=nyu40_to_scannet20(nyu40),
                  instance=surf["object"].astype(np.int64), name=name)
    return SynthScene(name=name, frames=frames, scene=scene, raw_labels=raws, nyu40=nyu40,
                      segments=surf["box"].astype(np.int64), objects=objects)


def _write_matrix(path: Path, M: np.ndarray) -> None:
    path.write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in M) + "\n")


def write_scene(s: SynthScene, folder: Path) -> None:
    """Write one :class:`SynthScene` in ScanNet's frame + scene layout into ``folder``."""
    for sub in ("color", "depth", "pose", "label-filt", "instance-filt", "intrinsic"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    K4 = np.eye(4)
    K4[:3, :3] = s.frames[0].intrinsics
    _write_matrix(folder / "intrinsic" / "intrinsic_color.txt", K4)
    _write_matrix(folder / "intrinsic" / "intrinsic_depth.txt", K4)
    for i, (f, raw) in enumerate(zip(s.frames, s.raw_labels)):
        Image.fromarray(f.color).save(folder / "color" / f"{i}.jpg", quality=92)
        Image.fromarray(np.round(f.depth * 1000).astype(np.uint16)).save(folder / "depth" / f"{i}.png")
        _write_matrix(folder / "pose" / f"{i}.txt", f.pose)
        Image.fromarray(raw.astype(np.uint16)).save(folder / "label-filt" / f"{i}.png")
        Image.fromarray((f.instance + 1).clip(0, 255).astype(np.uint8)).save(folder / "instance-filt" / f"{i}.png")
    sc = s.scene
    n = len(sc)
    base = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    verts = np.empty(n, dtype=base)
    for k, axis in enumerate("xyz"):
        verts[axis] = sc.points[:, k]
    for k, ch in enumerate(("red", "green", "blue")):
        verts[ch] = sc.colors[:, k]
    verts["alpha"] = 255
    PlyData([PlyElement.describe(verts, "vertex")], byte_order="<").write(str(folder / f"{s.name}_vh_clean_2.ply"))
    labelled = np.empty(n, dtype=base + [("label", "u2")])
    for key, _ in base:
        labelled[key] = verts[key]
    labelled["label"] = s.nyu40
    PlyData([PlyElement.describe(labelled, "vertex")], byte_order="<").write(
        str(folder / f"{s.name}_vh_clean_2.labels.ply"))
    (folder / f"{s.name}_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"sceneId": s.name, "segIndices": s.segments.tolist()}))
    groups = [{"id": k, "objectId": oid, "segments": segs, "label": raw} for k, (oid, raw, segs) in enumerate(s.objects)]
    (folder / f"{s.name}.aggregation.json").write_text(
        json.dumps({"sceneId": s.name, "appId": "mm3dkit.synth", "segGroups": groups,
                    "segmentsFile": f"{s.name}_vh_clean_2.0.010000.segs.json"}))


def write_label_tsv(path: Path) -> None:
    """``scannetv2-labels.combined.tsv`` in ScanNet's column layout for the generator's categories."""
    lines = ["\t".join(TSV_HEADER)]
    for raw_id, raw_name, nyu in sorted(CATEGORIES.values()):
        row = {"id": raw_id, "raw_category": raw_name, "category": raw_name, "count": 1, "nyu40id": nyu,
               "nyuClass": NYU40_NAMES[nyu - 1], "nyu40class": NYU40_NAMES[nyu - 1]}
        lines.append("\t".join(str(row.get(col, "")) for col in TSV_HEADER))
    path.write_text("\n".join(lines) + "\n")


def _generate_one(args: tuple[Path, int, int, SynthParams]) -> str:
    out, index, seed, params = args
    name = scene_name(index)
    final = out / "scans" / name
    if final.is_dir():
        return name
    tmp = out / "scans" / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    s = generate_scene(seed * 100_003 + index, params.n_frames, params.width, params.height, name,
                       params.surface_density, params.noise)
    write_scene(s, tmp)
    tmp.rename(final)
    return name


def generate_dataset(out: str | Path, n_scenes: int = 6, n_frames: int = 20, seed: int = 0, width: int = 320,
                     height: int = 240, val_fraction: float = 0.34, workers: int = 1, surface_density: float = 400.0,
                     noise: bool = True, progress: bool = True) -> Path:
    """Write ``n_scenes`` synthetic scenes under ``out`` in ScanNet's layout; finished scenes are skipped."""
    out = Path(out)
    (out / "scans").mkdir(parents=True, exist_ok=True)
    params = SynthParams(n_frames, width, height, surface_density, noise)
    meta = {"generator": "mm3dkit.synth", "version": GENERATOR_VERSION, "seed": seed, "n_scenes": n_scenes, **asdict(params)}
    meta_path = out / "synth_meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if {k: v for k, v in old.items() if k != "n_scenes"} != {k: v for k, v in meta.items() if k != "n_scenes"}:
            raise DataError(meta_path, f"holds a synthetic set made with other settings ({old}); use another folder")
    meta_path.write_text(json.dumps(meta, indent=2))  # first: an interrupted run resumes only with these settings
    jobs = [(out, i, seed, params) for i in range(n_scenes)]
    bar = tqdm(total=n_scenes, desc="synthetic scenes", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_generate_one, jobs):
                bar.update(1)
    else:
        for job in jobs:
            _generate_one(job)
            bar.update(1)
    bar.close()
    write_label_tsv(out / "scannetv2-labels.combined.tsv")
    names = [scene_name(i) for i in range(n_scenes)]
    n_val = max(1, int(round(val_fraction * n_scenes))) if n_scenes > 1 else 0
    order = np.random.default_rng(seed).permutation(n_scenes)
    val = sorted(names[i] for i in order[:n_val])
    train = sorted(set(names) - set(val))
    (out / "scannetv2_train.txt").write_text("\n".join(train) + "\n")
    (out / "scannetv2_val.txt").write_text("\n".join(val) + "\n")
    return out


QUICK = {"n_scenes": 8, "n_frames": 16, "width": 320, "height": 240}
"""The quick-demo set used by the notebooks' default (quick) profile."""


def ensure_dataset(out: str | Path, preset: dict | None = None, seed: int = 0, progress: bool = True) -> Path:
    """Generate the synthetic set at ``out`` unless it is already complete (notebooks call this first)."""
    return generate_dataset(out, seed=seed, progress=progress, **(preset or QUICK))
