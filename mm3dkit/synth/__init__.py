"""Procedural synthetic indoor RGB-D scenes: the kit's embedded default dataset (ScanNet layout on disk).

Example:
    >>> from mm3dkit.synth import generate_scene
    >>> generate_scene(seed=1, n_frames=1, width=32, height=24).frames[0].depth.shape
    (24, 32)
"""

from mm3dkit.synth.generate import QUICK, SynthScene, ensure_dataset, generate_dataset, generate_scene, write_scene

__all__ = ["QUICK", "SynthScene", "ensure_dataset", "generate_dataset", "generate_scene", "write_scene"]
