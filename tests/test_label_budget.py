"""Label budgets: deterministic per seed, saved and reloaded, clear errors."""

import json

import numpy as np
import pytest

from mm3dkit.data.types import IGNORE_LABEL, Scene
from mm3dkit.downstream.label_budget import (budget_filename, choose_scenes, load_budget, load_or_make_budget,
                                             make_budget, save_budget)
from mm3dkit.errors import DataError


def _scenes(n=10, points=300):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        sem = rng.integers(0, 5, points)
        sem[:50] = IGNORE_LABEL
        out.append(Scene(rng.random((points, 3)).astype(np.float32), np.zeros((points, 3), np.uint8), sem,
                         name=f"scene{i:04d}_00"))
    return out


def test_budget_is_deterministic_per_seed_and_order_free(tmp_path):
    scenes = _scenes()
    a = make_budget(scenes, 20, 50, seed=3)
    b = make_budget(list(reversed(scenes)), 20, 50, seed=3)
    assert a == b
    c = make_budget(scenes, 20, 50, seed=4)
    assert (a.scenes, a.points) != (c.scenes, c.points)
    # files written twice with the same seed are byte-identical
    p1, p2 = save_budget(a, tmp_path / "a.json"), save_budget(b, tmp_path / "b.json")
    assert p1.read_bytes() == p2.read_bytes()


def test_budget_sizes_and_labelled_points_only():
    scenes = _scenes()
    for pct, k in [(1, 1), (5, 1), (10, 1), (20, 2), (100, 10)]:
        assert len(choose_scenes([s.name for s in scenes], pct, 0)) == k
    b = make_budget(scenes, 100, 20, seed=0)
    for s in scenes:
        idx = b.points[s.name]
        assert len(idx) == 20 == len(set(idx))
        assert (s.semantic[idx] != IGNORE_LABEL).all()
        mask = b.label_mask(s)
        assert mask.sum() == 20 and mask[idx].all()
    assert make_budget(scenes, 50, None, 0).label_mask(scenes[0]) is None  # full labels


def test_budget_from_names_with_lookup_matches_scenes():
    scenes = _scenes()
    by = {s.name: s for s in scenes}
    a = make_budget([s.name for s in scenes], 20, 50, 7, semantic_of=lambda n: by[n].semantic)
    assert a == make_budget(scenes, 20, 50, 7)


def test_save_load_roundtrip_and_reuse(tmp_path):
    scenes = _scenes()
    path = tmp_path / budget_filename("synthetic", 20, 50, 1)
    assert path.name == "synthetic_scenes20_points50_seed1.json"
    b = load_or_make_budget(path, scenes, 20, 50, 1, "synthetic")
    assert path.exists() and load_budget(path) == b
    assert load_or_make_budget(path, scenes, 20, 50, 1, "synthetic") == b
    with pytest.raises(DataError, match="holds a budget"):
        load_or_make_budget(path, scenes, 10, 50, 1)


def test_bad_budget_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_budget(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scenes": []}))
    with pytest.raises(DataError, match="bad.json"):
        load_budget(bad)
    scenes = _scenes(2, 30)
    b = make_budget(scenes, 100, 5, 0)
    b.points[scenes[0].name] = [1000]
    with pytest.raises(DataError, match="number of points"):
        b.label_mask(scenes[0])
