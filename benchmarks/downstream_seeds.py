"""Scratch vs Stage-2 pre-trained fine-tuning with limited labels, over several seeds (the evidence table).

For each label budget and seed, the same saved label subset (seed = budget seed = training seed) is used to
fine-tune the quick-profile network twice: from scratch and from the given Stage-2 backbone. The evaluation split
is the dataset's fixed ``val`` split (never tuned). Prints a Markdown table of mIoU (mean +- sample std over seeds)
and writes every run's ``metrics.json`` under ``--out``; finished runs are reused, interrupted ones resume.

    python benchmarks/downstream_seeds.py --data data/synth --backbone runs/quick/stage2/backbone.pth \\
        --out runs/quick/downstream_seeds --seeds 0 1 2 --budgets points=20 points=200 scenes=20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from mm3dkit.downstream import finetune


def parse_budget(text: str) -> dict:
    """``points=50`` -> 50 labelled points per scene; ``scenes=20`` -> 20 % of the scenes; ``full`` -> all."""
    if text == "full":
        return {"scene_percent": 100, "points_per_scene": None}
    key, _, value = text.partition("=")
    if key == "points":
        return {"scene_percent": 100, "points_per_scene": int(value)}
    if key == "scenes":
        return {"scene_percent": float(value), "points_per_scene": None}
    raise SystemExit(f"bad budget {text!r}: use points=N, scenes=P or full")


def one_run(settings: dict, data: str, init: str, out: Path) -> dict:
    done = out / "metrics.json"
    if done.is_file() and (out / "done.json").is_file():
        m = json.loads(done.read_text())
        if m.get("settings") != json.loads(json.dumps(settings)):
            raise SystemExit(f"{done}: made with other settings; use another --out")
        return m
    return finetune.run(settings, data, init, out)


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/synth")
    ap.add_argument("--backbone", required=True, help="Stage-2 backbone.pth (same model as the profile's)")
    ap.add_argument("--out", default="runs/quick/downstream_seeds")
    ap.add_argument("--profile", default="quick", choices=sorted(finetune.PROFILES))
    ap.add_argument("--task", default="semseg", choices=finetune.TASKS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budgets", nargs="+", default=["points=20", "points=200", "scenes=20"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a profile setting")
    args = ap.parse_args(argv)
    if not Path(args.backbone).is_file():
        raise SystemExit(f"{args.backbone}: Stage-2 backbone not found; make one with `python -m "
                         "mm3dkit.methods.stage2 --profile quick ...` (see README)")
    import yaml

    base = dict(finetune.PROFILES[args.profile], task=args.task, progress=False)
    for item in args.set:
        k, _, v = item.partition("=")
        if k not in base:
            raise SystemExit(f"unknown setting {k!r}")
        base[k] = yaml.safe_load(v)
    out = Path(args.out)
    rows = []
    for budget in args.budgets:
        res: dict[str, list[float]] = {"scratch": [], "stage2": []}
        for seed in args.seeds:
            settings = dict(base, **parse_budget(budget), budget_seed=seed, seed=seed,
                            budget_dir=str(out / "label_budgets"))
            for tag, init in (("scratch", "scratch"), ("stage2", args.backbone)):
                m = one_run(settings, args.data, init, out / f"{budget.replace('=', '')}_seed{seed}_{tag}")
                res[tag].append(m["semseg"]["miou"])
                print(f"{budget} seed {seed} {tag}: mIoU {m['semseg']['miou']:.4f}", file=sys.stderr, flush=True)
        diffs = [b - a for a, b in zip(res["scratch"], res["stage2"])]
        rows.append(f"| {budget} | {len(args.seeds)} | {fmt(res['scratch'])} | {fmt(res['stage2'])} | "
                    f"{fmt(diffs)} |")
    subset = "" if base.get("eval_max_scenes") is None else f" (first {base['eval_max_scenes']} scenes only)"
    table = "\n".join([
        f"mIoU (%) on the `{base['eval_split']}` split{subset}, {args.task}, profile `{args.profile}` "
        f"({base['model']}, {base['max_steps']} steps), mean ± std over seeds {args.seeds}",
        "",
        "| labels | seeds | scratch | Stage-2 pre-trained | pre-trained − scratch |",
        "|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    (out / "table.md").parent.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
