"""Named settings profiles (``quick`` for a CPU demo, ``paper`` for the paper's scale) and their command line.

Every trainable entry point of the kit (``python -m mm3dkit.methods.stage1``, ``...stage2``, baselines, fine-tuning)
declares ``PROFILES = {"quick": {...}, "paper": {...}}`` of flat settings and calls :func:`parse_args`, so all share:

    python -m mm3dkit.methods.stage1 --profile quick --data data/synth --out runs/stage1 --set lr=0.01 --set max_steps=50

Example:
    >>> profiles = {"quick": {"lr": 0.1, "max_steps": 10, "encoder": "resnet18"}}
    >>> args = parse_args(["--profile", "quick", "--out", "o", "--set", "max_steps=3", "--set", "encoder=resnet34"], profiles)
    >>> args.settings["max_steps"], args.settings["encoder"], args.settings["lr"]
    (3, 'resnet34', 0.1)
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from mm3dkit.training.trainer import TrainConfig


@dataclass
class CliArgs:
    profile: str
    data: str | None
    out: str
    settings: dict[str, Any]


def resolve_profile(profiles: dict[str, dict[str, Any]], name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile's settings with ``overrides`` applied; unknown profile or setting names are errors."""
    if name not in profiles:
        raise KeyError(f"unknown profile {name!r}; choose one of {sorted(profiles)}")
    settings = dict(profiles[name])
    for key, value in (overrides or {}).items():
        if key not in settings:
            raise KeyError(f"unknown setting {key!r} for profile {name!r}; known settings: {sorted(settings)}")
        settings[key] = value
    return settings


def parse_args(argv: list[str] | None, profiles: dict[str, dict[str, Any]], description: str = "") -> CliArgs:
    """Parse ``--profile/--data/--out/--set key=value`` (values are parsed as YAML scalars: 3, 0.1, true, resnet34)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", default="quick", choices=sorted(profiles))
    parser.add_argument("--data", default=None, help="dataset root (default: the profile's)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, metrics.csv, done.json")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting")
    ns = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in ns.set:
        if "=" not in item:
            parser.error(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    try:
        settings = resolve_profile(profiles, ns.profile, overrides)
    except KeyError as exc:
        parser.error(str(exc))
    return CliArgs(profile=ns.profile, data=ns.data, out=ns.out, settings=settings)


def train_config(settings: dict[str, Any], out_dir: str) -> TrainConfig:
    """Pick the :class:`TrainConfig` fields out of a flat settings dict (the rest belongs to the method)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"out_dir"}
    return TrainConfig(out_dir=out_dir, **{k: v for k, v in settings.items() if k in names})
