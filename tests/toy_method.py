"""A tiny method + dataset for testing the shared training loop (also run under torchrun by test_training)."""

from __future__ import annotations

import json
import sys

import torch
from torch import nn

from mm3dkit.training import TrainableMethod, TrainConfig, fit


class ToyRegression(TrainableMethod):
    """Linear regression with random augmentation noise and a random sub-sample inside forward (exercises both RNGs)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keep = torch.randperm(batch["x"].shape[0])[: max(1, batch["x"].shape[0] - 1)]
        pred = self.net(batch["x"][keep]).squeeze(-1)
        loss = ((pred - batch["y"][keep]) ** 2).mean()
        return {"loss": loss, "pred_mean": pred.mean()}


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n: int = 24) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i] + 0.01 * torch.randn(4), "y": self.y[i]}  # augmentation noise uses the item seed


if __name__ == "__main__":  # torchrun --nproc_per_node 2 tests/toy_method.py OUT_DIR
    torch.manual_seed(0)
    method = ToyRegression()
    result = fit(method, ToyData(), TrainConfig(out_dir=sys.argv[1], max_steps=6, batch_size=4, lr=0.05, device="cpu",
                                                 progress=False, log_every=1, ckpt_every=3))
    checksum = float(sum(p.detach().double().sum() for p in method.parameters()))
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    print(json.dumps({"rank": rank, "step": result.step, "checksum": checksum}))
