"""Procedural room layouts: a room shell plus furniture built from boxes, placed without overlap.

Every object is a list of oriented boxes (centre, size, yaw about +z) with one category and one surface pattern,
so the renderer can colour any hit point from its coordinates in the box's own frame. World frame: z up, floor at z=0.

Example:
    >>> room = make_room(np.random.default_rng(0))
    >>> room.objects[0].category, len(room.objects) > 6
    ('floor', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# category -> (ScanNet-style raw id written to label-filt, raw category name, NYU40 id)
CATEGORIES: dict[str, tuple[int, str, int]] = {
    "wall": (1, "wall", 1), "floor": (2, "floor", 2), "cabinet": (3, "cabinet", 3), "bed": (4, "bed", 4),
    "chair": (5, "chair", 5), "sofa": (6, "couch", 6), "table": (7, "table", 7), "door": (8, "door", 8),
    "window": (9, "window", 9), "bookshelf": (10, "bookshelf", 10), "picture": (11, "picture", 11),
    "desk": (14, "desk", 14), "ceiling": (22, "ceiling", 22), "box": (29, "box", 29),
}

PATTERNS = ("plain", "stripes", "checker", "wood", "noise", "grid")


@dataclass
class Box:
    center: np.ndarray  # (3,)
    size: np.ndarray  # (3,) full extents along the box's own axes
    yaw: float = 0.0

    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class SceneObject:
    category: str
    boxes: list[Box]
    color: np.ndarray  # base RGB in [0, 1]
    pattern: str
    pattern_scale: float
    accent: np.ndarray  # second RGB of the pattern
    instance_id: int = 0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        corners = []
        for b in self.boxes:
            half = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * b.size / 2
            corners.append(half @ b.rotation().T + b.center)
        pts = np.concatenate(corners)
        return pts.min(0), pts.max(0)


@dataclass
class Room:
    size: np.ndarray  # (3,) width x, depth y, height z
    objects: list[SceneObject] = field(default_factory=list)


_PALETTE = {
    "wall": [(0.85, 0.82, 0.75), (0.75, 0.80, 0.85), (0.80, 0.75, 0.70), (0.70, 0.78, 0.70)],
    "floor": [(0.55, 0.40, 0.25), (0.45, 0.45, 0.45), (0.65, 0.55, 0.40)],
    "ceiling": [(0.93, 0.93, 0.92)],
    "door": [(0.50, 0.32, 0.20), (0.85, 0.85, 0.82)],
    "window": [(0.70, 0.85, 0.95)],
    "picture": [(0.8, 0.3, 0.2), (0.2, 0.4, 0.7), (0.9, 0.8, 0.2), (0.3, 0.6, 0.3)],
}


def _color(rng: np.random.Generator, category: str) -> np.ndarray:
    choices = _PALETTE.get(category)
    base = np.array(choices[rng.integers(len(choices))]) if choices else rng.uniform(0.15, 0.9, 3)
    return np.clip(base + rng.normal(0, 0.04, 3), 0, 1)


def _obj(rng: np.random.Generator, category: str, boxes: list[Box], pattern: str | None = None) -> SceneObject:
    return SceneObject(category=category, boxes=boxes, color=_color(rng, category),
                       pattern=pattern or str(rng.choice(PATTERNS)), pattern_scale=float(rng.uniform(0.05, 0.25)),
                       accent=np.clip(_color(rng, category) * rng.uniform(0.4, 0.8), 0, 1))


def _local(parts: list[tuple[tuple[float, float, float], tuple[float, float, float]]], x: float, y: float,
           yaw: float) -> list[Box]:
    """Boxes given as (centre, size) in the object's frame (origin on the floor), placed at (x, y) with ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return [Box(center=R @ np.array(ctr) + np.array([x, y, 0.0]), size=np.array(sz), yaw=yaw) for ctr, sz in parts]


def furniture_parts(category: str, rng: np.random.Generator) -> tuple[list, tuple[float, float]]:
    """Box parts of one piece of furniture in its own frame and its footprint (width x, depth y)."""
    u = rng.uniform
    if category in ("table", "desk"):
        w, d, h = u(0.8, 1.6), u(0.6, 0.9), u(0.7, 0.78)
        t, leg = 0.04, 0.05
        parts = [((0, 0, h - t / 2), (w, d, t))]
        if category == "table":
            parts += [((sx * (w / 2 - leg), sy * (d / 2 - leg), (h - t) / 2), (leg, leg, h - t))
                      for sx in (-1, 1) for sy in (-1, 1)]
        else:  # desk: two side panels and a drawer block
            parts += [((sx * (w / 2 - 0.02), 0, (h - t) / 2), (0.04, d, h - t)) for sx in (-1, 1)]
            parts += [((w / 4, 0, h - 0.2), (w / 2 - 0.04, d - 0.02, 0.25))]
        return parts, (w, d)
    if category == "chair":
        w, d, seat = u(0.42, 0.55), u(0.42, 0.55), u(0.42, 0.48)
        leg = 0.04
        parts = [((0, 0, seat), (w, d, 0.05)), ((0, d / 2 - 0.03, seat + 0.25), (w, 0.05, 0.45))]
        parts += [((sx * (w / 2 - leg), sy * (d / 2 - leg), seat / 2), (leg, leg, seat)) for sx in (-1, 1) for sy in (-1, 1)]
        return parts, (w, d)
    if category == "sofa":
        w, d = u(1.6, 2.2), u(0.8, 0.95)
        parts = [((0, 0, 0.22), (w, d, 0.44)), ((0, d / 2 - 0.1, 0.6), (w, 0.2, 0.5)),
                 ((-w / 2 + 0.1, 0, 0.55), (0.2, d, 0.3)), ((w / 2 - 0.1, 0, 0.55), (0.2, d, 0.3))]
        return parts, (w, d)
    if category == "bed":
        w, d = u(1.0, 1.8), u(1.9, 2.1)
        parts = [((0, 0, 0.25), (w, d, 0.5)), ((0, d / 2 - 0.04, 0.55), (w, 0.08, 1.1)),
                 ((0, d / 2 - 0.35, 0.56), (w * 0.7, 0.35, 0.12))]
        return parts, (w, d)
    if category == "cabinet":
        w, d, h = u(0.5, 1.2), u(0.4, 0.6), u(0.6, 1.2)
        return [((0, 0, h / 2), (w, d, h))], (w, d)
    if category == "bookshelf":
        w, d, h = u(0.7, 1.2), u(0.3, 0.4), u(1.5, 2.1)
        parts = [((sx * (w / 2 - 0.02), 0, h / 2), (0.04, d, h)) for sx in (-1, 1)]
        parts += [((0, d / 2 - 0.01, h / 2), (w, 0.02, h))]
        shelves = int(rng.integers(4, 6))
        parts += [((0, 0, z), (w - 0.08, d, 0.03)) for z in np.linspace(0.02, h - 0.02, shelves)]
        return parts, (w, d)
    if category == "box":
        s = u(0.25, 0.5)
        return [((0, 0, s / 2), (s, s * u(0.8, 1.2), s))], (s, s)
    raise ValueError(f"unknown furniture category {category!r}")


FLOOR_FURNITURE = ("table", "chair", "sofa", "bed", "cabinet", "bookshelf", "desk", "box")


def _overlaps(a: tuple[np.ndarray, np.ndarray], others: list[tuple[np.ndarray, np.ndarray]], margin: float) -> bool:
    return any(np.all(a[0][:2] < o[1][:2] + margin) and np.all(o[0][:2] < a[1][:2] + margin) for o in others)


def make_room(rng: np.random.Generator, n_furniture: tuple[int, int] = (6, 11)) -> Room:
    """A random room: floor, four walls, ceiling, doors/windows/pictures on walls, furniture on the floor.

    Furniture footprints (axis-aligned bounds of the rotated parts) never overlap each other or the walls.
    """
    W, D, H = rng.uniform(3.5, 6.0), rng.uniform(3.5, 6.5), rng.uniform(2.5, 2.9)
    room = Room(size=np.array([W, D, H]))
    t = 0.1
    room.objects.append(_obj(rng, "floor", [Box(np.array([W / 2, D / 2, -t / 2]), np.array([W, D, t]))],
                             str(rng.choice(["wood", "checker", "noise", "grid"]))))
    walls = [Box(np.array([W / 2, -t / 2, H / 2]), np.array([W + 2 * t, t, H])),
             Box(np.array([W / 2, D + t / 2, H / 2]), np.array([W + 2 * t, t, H])),
             Box(np.array([-t / 2, D / 2, H / 2]), np.array([t, D, H])),
             Box(np.array([W + t / 2, D / 2, H / 2]), np.array([t, D, H]))]
    wall_color, wall_pattern = _color(rng, "wall"), str(rng.choice(["plain", "noise", "stripes"]))
    for wall in walls:
        obj = _obj(rng, "wall", [wall], wall_pattern)
        obj.color = wall_color
        room.objects.append(obj)
    room.objects.append(_obj(rng, "ceiling", [Box(np.array([W / 2, D / 2, H + t / 2]), np.array([W, D, t]))], "plain"))

    # wall-mounted objects: thin boxes slightly proud of each wall, non-overlapping along the wall
    for wall_idx in range(4):
        length = W if wall_idx < 2 else D
        used: list[tuple[float, float]] = []
        for category in rng.choice(["door", "window", "picture", "picture", "window"], size=int(rng.integers(1, 3))):
            w = {"door": 0.9, "window": rng.uniform(0.8, 1.6), "picture": rng.uniform(0.4, 0.9)}[str(category)]
            h = {"door": 2.05, "window": rng.uniform(0.9, 1.3), "picture": rng.uniform(0.3, 0.7)}[str(category)]
            z0 = {"door": 0.0, "window": 0.9, "picture": 1.3}[str(category)]
            for _ in range(20):
                s = rng.uniform(0.2 + w / 2, length - 0.2 - w / 2)
                if all(abs(s - o) > (w + ow) / 2 + 0.1 for o, ow in used):
                    used.append((s, w))
                    break
            else:
                continue
            depth = 0.04
            if wall_idx == 0:
                center, size = [s, depth / 2, z0 + h / 2], [w, depth, h]
            elif wall_idx == 1:
                center, size = [s, D - depth / 2, z0 + h / 2], [w, depth, h]
            elif wall_idx == 2:
                center, size = [depth / 2, s, z0 + h / 2], [depth, w, h]
            else:
                center, size = [W - depth / 2, s, z0 + h / 2], [depth, w, h]
            pattern = {"door": "grid", "window": "grid", "picture": str(rng.choice(["stripes", "checker", "noise"]))}
            room.objects.append(_obj(rng, str(category), [Box(np.array(center), np.array(size))], pattern[str(category)]))

    placed: list[tuple[np.ndarray, np.ndarray]] = []
    target = int(rng.integers(*n_furniture))
    for _ in range(target * 15):
        if len(placed) >= target:
            break
        category = str(rng.choice(FLOOR_FURNITURE, p=[0.2, 0.25, 0.08, 0.07, 0.12, 0.1, 0.1, 0.08]))
        parts, (fw, fd) = furniture_parts(category, rng)
        yaw = float(rng.integers(4) * np.pi / 2 + rng.normal(0, 0.12))
        x, y = rng.uniform(0.3, W - 0.3), rng.uniform(0.3, D - 0.3)
        obj = _obj(rng, category, _local(parts, x, y, yaw))
        lo, hi = obj.bounds()
        if lo[0] < 0.05 or lo[1] < 0.05 or hi[0] > W - 0.05 or hi[1] > D - 0.05 or _overlaps((lo, hi), placed, 0.1):
            continue
        placed.append((lo, hi))
        room.objects.append(obj)
    for i, obj in enumerate(room.objects):
        obj.instance_id = i
    return room
