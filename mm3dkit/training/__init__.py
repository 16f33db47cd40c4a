"""Shared training loop: checkpoints, resume, DDP, AMP, metrics log, reproducible batches."""

from mm3dkit.training.checkpoint import load_checkpoint, save_atomic
from mm3dkit.training.distributed import DistInfo, init_distributed, resolve_device
from mm3dkit.training.trainer import Interrupted, TrainableMethod, TrainConfig, TrainResult, fit, move_to_device

__all__ = ["DistInfo", "Interrupted", "TrainConfig", "TrainResult", "TrainableMethod", "fit", "init_distributed",
           "load_checkpoint", "move_to_device", "resolve_device", "save_atomic"]
