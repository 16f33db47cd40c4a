"""Compare pre-training methods downstream (the paper's Table 1): pre-train each, fine-tune each under the same label
budgets and seeds, tabulate with the difference to training from scratch.

Methods: ``scratch`` (no pre-training), ``pointcontrast``, ``csc``, ``depthcontrast`` (this kit's baselines,
pre-trained on the same data) and ``ours`` (Stage 2's ``{run_dir}/stage2/backbone.pth``; trained here with Stage 1
first when missing). Every fine-tuning run uses :func:`mm3dkit.downstream.finetune.run` with the same settings, label
budget file and seed, so the rows differ only by the initialisation.

Metrics as in Table 1: semantic segmentation mIoU, instance segmentation mAP@0.5, object detection mAP@0.5 (all in
%). ``instance`` and ``detection`` come from one fine-tuning run (the kit's boxes are those of the predicted
instances). Results: ``{run_dir}/compare/results.csv`` (one row per run), ``table.csv`` and ``table.md`` (methods x
(dataset, task), mean over seeds, ``(+delta)`` to scratch) and a bar chart of the deltas.

Runs are resumable: finished pre-training (``done.json``) and fine-tuning (``metrics.json``) runs are reused.

Example:
    >>> records = [{"method": "scratch", "dataset": "synthetic", "task": "semseg", "budget": "s100", "seed": 0,
    ...             "value": 40.0},
    ...            {"method": "csc", "dataset": "synthetic", "task": "semseg", "budget": "s100", "seed": 0,
    ...             "value": 43.5}]
    >>> print(markdown_table(summary_table(records)))
    | Pre-training | synthetic semseg (s100) |
    |---|---|
    | Scratch | 40.0 |
    | CSC | 43.5 (+3.5) |
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METHOD_ORDER = ("scratch", "pointcontrast", "csc", "depthcontrast", "ours")
METHOD_LABELS = {"scratch": "Scratch", "pointcontrast": "PointContrast", "csc": "CSC",
                 "depthcontrast": "DepthContrast", "ours": "Ours"}
TASK_METRIC = {"semseg": ("semseg", "miou"), "instance": ("instance", "map50"), "detection": ("detection", "map50")}
TASK_RUN = {"semseg": "semseg", "instance": "detection", "detection": "detection"}  # fine-tuning task that yields it


@dataclass
class ComparePlan:
    """What to compare. ``datasets`` maps a downstream dataset name (``mm3dkit.downstream.datasets``) to its root;
    ``budgets`` are label budgets (``scene_percent``, ``points_per_scene``); ``pretrain_overrides`` /
    ``finetune_overrides`` change profile settings (e.g. ``{"max_steps": 20}``) for every run."""

    methods: list[str] = field(default_factory=lambda: list(METHOD_ORDER))
    tasks: list[str] = field(default_factory=lambda: ["semseg", "instance", "detection"])
    datasets: dict[str, str] = field(default_factory=lambda: {"synthetic": "data/synth"})
    budgets: list[dict[str, Any]] = field(default_factory=lambda: [{"scene_percent": 100, "points_per_scene": None}])
    seeds: list[int] = field(default_factory=lambda: [0])
    profile: str = "quick"
    pretrain_overrides: dict[str, Any] = field(default_factory=dict)
    finetune_overrides: dict[str, Any] = field(default_factory=dict)


QUICK_PLAN = ComparePlan(tasks=["semseg", "instance", "detection"],
                         pretrain_overrides={"max_steps": 15, "log_every": 5},
                         finetune_overrides={"max_steps": 15, "eval_max_scenes": 2, "log_every": 5})
"""CPU demo: every method, the synthetic set, full labels, one seed, tiny schedules."""


def budget_tag(budget: dict[str, Any]) -> str:
    """``s<percent>`` plus ``_p<points>`` for a points-per-scene budget."""
    tag = f"s{budget.get('scene_percent', 100):g}"
    return tag + (f"_p{budget['points_per_scene']}" if budget.get("points_per_scene") else "")


# ----------------------------------------------------------------------------------------------------------------
# pre-training


def _baseline_module(method: str):
    from mm3dkit.methods import csc, depthcontrast, pointcontrast

    return {"pointcontrast": pointcontrast, "csc": csc, "depthcontrast": depthcontrast}[method]


def pretrain(method: str, data_root: str | Path, run_dir: str | Path, profile: str = "quick",
             overrides: dict[str, Any] | None = None) -> Path | None:
    """The backbone file of ``method`` (``None`` for scratch), pre-training it into ``{run_dir}/{method}`` (or
    ``{run_dir}/stage1`` + ``stage2`` for ``ours``) unless that run is complete."""
    run_dir = Path(run_dir)
    overrides = dict(overrides or {})
    if method == "scratch":
        return None
    if method == "ours":
        backbone = run_dir / "stage2" / "backbone.pth"
        if backbone.is_file():
            return backbone
        from mm3dkit.methods import stage1, stage2

        s1 = {**stage1.PROFILES[profile], **{k: v for k, v in overrides.items() if k in stage1.PROFILES[profile]}}
        ckpt = run_dir / "stage1" / "checkpoints" / "final.pt"
        if not ckpt.is_file():
            stage1.run(s1, data_root, run_dir / "stage1")
        s2 = {**stage2.PROFILES[profile], **{k: v for k, v in overrides.items() if k in stage2.PROFILES[profile]}}
        stage2.run(s2, data_root, ckpt, run_dir / "stage2")
        return backbone
    if method not in ("pointcontrast", "csc", "depthcontrast"):
        raise KeyError(f"unknown pre-training method {method!r}; choose from {METHOD_ORDER}")
    module = _baseline_module(method)
    out = run_dir / method
    backbone = out / "backbone.pth"
    if (out / "done.json").is_file() and backbone.is_file():
        return backbone
    settings = {**module.PROFILES[profile], **{k: v for k, v in overrides.items() if k in module.PROFILES[profile]}}
    module.run(settings, data_root, out)
    return backbone


# ----------------------------------------------------------------------------------------------------------------
# fine-tuning


def finetune_one(init: Path | None, dataset: str, data_root: str | Path, run_task: str, budget: dict[str, Any],
                 seed: int, out_dir: Path, profile: str = "quick",
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One fine-tuning run (reused when ``{out_dir}/metrics.json`` exists); returns its metrics."""
    if (out_dir / "metrics.json").is_file():
        return json.loads((out_dir / "metrics.json").read_text())
    from mm3dkit.downstream import finetune

    base = finetune.PROFILES[profile]
    settings = {**base, **{k: v for k, v in (overrides or {}).items() if k in base}, "task": run_task,
                "dataset": dataset, "scene_percent": budget.get("scene_percent", 100),
                "points_per_scene": budget.get("points_per_scene"), "seed": seed, "budget_seed": seed,
                "progress": False}
    settings["budget_dir"] = str(out_dir.parents[2] / "label_budgets")
    return finetune.run(settings, data_root, init if init is not None else "scratch", out_dir)


def metric_value(metrics: dict[str, Any], task: str) -> float:
    """Table-1 metric of ``task`` from a fine-tuning run's metrics, in % (NaN when undefined)."""
    group, key = TASK_METRIC[task]
    v = metrics.get(group, {}).get(key)
    return float("nan") if v is None or not math.isfinite(float(v)) else 100.0 * float(v)


def run_comparison(plan: ComparePlan, run_dir: str | Path, pretrain_data: str | Path | None = None,
                   figures_dir: str | Path | None = "figures") -> dict[str, Any]:
    """Pre-train every method of ``plan``, fine-tune each on every dataset/task/budget/seed, write the tables.

    ``pretrain_data``: the ScanNet-layout frames for pre-training (default: the first dataset's root). Returns
    ``{"records", "table", "markdown", "files"}``.
    """
    run_dir = Path(run_dir)
    out = run_dir / "compare"
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(asdict(plan), indent=2))
    pre_root = pretrain_data or next(iter(plan.datasets.values()))
    backbones = {m: pretrain(m, pre_root, run_dir, plan.profile, plan.pretrain_overrides) for m in plan.methods}
    records: list[dict[str, Any]] = []
    run_tasks = sorted({TASK_RUN[t] for t in plan.tasks})
    for dataset, root in plan.datasets.items():
        for budget in plan.budgets:
            for seed in plan.seeds:
                for method in plan.methods:
                    for run_task in run_tasks:
                        folder = out / dataset / budget_tag(budget) / f"seed{seed}" / f"{method}_{run_task}"
                        metrics = finetune_one(backbones[method], dataset, root, run_task, budget, seed, folder,
                                               plan.profile, plan.finetune_overrides)
                        for task in plan.tasks:
                            if TASK_RUN[task] == run_task:
                                records.append({"method": method, "dataset": dataset, "task": task,
                                                "budget": budget_tag(budget), "seed": seed,
                                                "value": metric_value(metrics, task), "run": str(folder)})
    table = summary_table(records)
    files = write_results(records, table, out)
    if figures_dir is not None:
        files["figure"] = str(plot_deltas(table, Path(figures_dir) / "compare_pretraining.png"))
    return {"records": records, "table": table, "markdown": markdown_table(table), "files": files}


# ----------------------------------------------------------------------------------------------------------------
# tables and figure


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def summary_table(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"columns": [(dataset, task, budget)], "rows": {method: {column: (mean, delta_to_scratch, n_seeds)}}}``."""
    columns = sorted({(r["dataset"], r["task"], r["budget"]) for r in records},
                     key=lambda c: (c[0], list(TASK_METRIC).index(c[1]), c[2]))
    methods = [m for m in METHOD_ORDER if any(r["method"] == m for r in records)]
    methods += sorted({r["method"] for r in records} - set(methods))
    rows: dict[str, dict[tuple, tuple[float, float, int]]] = {}
    for m in methods:
        rows[m] = {}
        for c in columns:
            vals = [r["value"] for r in records if r["method"] == m and (r["dataset"], r["task"], r["budget"]) == c]
            base = [r["value"] for r in records if r["method"] == "scratch"
                    and (r["dataset"], r["task"], r["budget"]) == c]
            mean = _mean(vals)
            delta = mean - _mean(base) if base else float("nan")
            rows[m][c] = (mean, delta, len(vals))
    return {"columns": columns, "rows": rows}


def _fmt(mean: float, delta: float, method: str) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if method == "scratch" or not math.isfinite(delta):
        return f"{mean:.1f}"
    return f"{mean:.1f} ({delta:+.1f})"


def markdown_table(table: dict[str, Any]) -> str:
    """Table 1 layout: one row per method, one column per (dataset, task[, budget]), ``mean (+delta)``."""
    head = [f"{d} {t} ({b})" for d, t, b in table["columns"]]
    lines = ["| Pre-training | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for m, cells in table["rows"].items():
        lines.append(f"| {METHOD_LABELS.get(m, m)} | "
                     + " | ".join(_fmt(*cells[c][:2], m) for c in table["columns"]) + " |")
    return "\n".join(lines)


def write_results(records: Sequence[dict[str, Any]], table: dict[str, Any], out: Path) -> dict[str, str]:
    """``results.csv`` (per run), ``table.csv`` (mean, delta, seeds per cell) and ``table.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["method", "dataset", "task", "budget", "seed", "value", "run"])
        w.writeheader()
        w.writerows(records)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "dataset", "task", "budget", "mean", "delta_to_scratch", "seeds"])
        for m, cells in table["rows"].items():
            for (d, t, b), (mean, delta, n) in cells.items():
                w.writerow([m, d, t, b, f"{mean:.4f}", f"{delta:.4f}", n])
    (out / "table.md").write_text(markdown_table(table) + "\n")
    return {"results": str(out / "results.csv"), "table_csv": str(out / "table.csv"), "table_md": str(out / "table.md")}


def plot_deltas(table: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars: difference to scratch (percentage points) per method and (dataset, task) column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mm3dkit.viz import save_figure

    cols = table["columns"]
    methods = [m for m in table["rows"] if m != "scratch"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(cols) + 2), 3.6))
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        ys = [table["rows"][m][c][1] for c in cols]
        xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(cols))]
        ax.bar(xs, [y if math.isfinite(y) else 0.0 for y in ys], width, label=METHOD_LABELS.get(m, m))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([f"{d}\n{t} ({b})" for d, t, b in cols], fontsize=8)
    ax.set_ylabel("difference to scratch (points)")
    ax.set_title("Downstream gain of pre-training (mIoU / mAP@0.5)")
    ax.legend(fontsize=8, ncol=2)
    return save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m mm3dkit.compare --data data/synth --run-dir runs/quick [--profile quick|paper]``."""
    import argparse

    p = argparse.ArgumentParser(description="Pre-train every method, fine-tune each, print Table 1")
    p.add_argument("--data", default="data/synth", help="ScanNet-layout data (pre-training and 'synthetic')")
    p.add_argument("--run-dir", default="runs/quick")
    p.add_argument("--profile", default="quick", choices=["quick", "paper"])
    p.add_argument("--figures", default="figures")
    a = p.parse_args(argv)
    plan = QUICK_PLAN if a.profile == "quick" else ComparePlan(profile="paper", datasets={"scannet": a.data})
    if a.profile == "quick":
        plan = ComparePlan(**{**asdict(QUICK_PLAN), "datasets": {"synthetic": a.data}})
    result = run_comparison(plan, a.run_dir, a.data, a.figures)
    print(result["markdown"])
    return result


if __name__ == "__main__":
    main()
