"""Batch runner: execute an experiment's notebooks in order with papermill, resumably.

    python -m mm3dkit.run experiments/quick.yaml            # the README's main job
    python -m mm3dkit.run experiments/quick.yaml --force 02 # redo step 02 and everything after it

An experiment file names a run folder, parameters shared by all notebooks and the ordered steps::

    name: quick
    run_dir: runs/quick
    parameters: {data_dir: data/synth, run_dir: runs/quick, figures_dir: figures, profile: quick}
    steps:
      - notebook: notebooks/00_synthetic_data.ipynb
      - notebook: notebooks/04_finetune.ipynb
        parameters: {task: semseg}

Each executed notebook is written to ``<run_dir>/notebooks/``. A step counts as finished only when its notebook ran to
the end: then ``<run_dir>/steps/<notebook>.json`` records its parameters, the notebook's hash and its duration. Re-running
the experiment skips finished steps whose notebook and parameters are unchanged (a half-finished experiment resumes
where it stopped); the first failing notebook stops the run with a report naming the notebook, the cell and the error,
and the partial executed notebook is kept beside it as ``*.failed.ipynb`` (never mistaken for a result).

Papermill does the execution (parameter injection, kernel management); this module only orders, caches and reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mm3dkit.paths import project_path, project_root


@dataclass
class Step:
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.notebook.stem


@dataclass
class Experiment:
    name: str
    run_dir: Path
    steps: list[Step]


def load_experiment(path: str | Path) -> Experiment:
    """Read and check an experiment YAML (clear errors naming the file and the problem)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: experiment file not found")
    spec = yaml.safe_load(path.read_text()) or {}
    for key in ("name", "run_dir", "steps"):
        if key not in spec:
            raise ValueError(f"{path}: missing key {key!r}")
    shared = dict(spec.get("parameters") or {})
    shared.setdefault("run_dir", spec["run_dir"])
    steps = []
    for i, raw in enumerate(spec["steps"]):
        if not isinstance(raw, dict) or "notebook" not in raw:
            raise ValueError(f"{path}: step {i} needs a 'notebook' entry")
        nb = project_path(raw["notebook"])
        if not nb.is_file():
            raise FileNotFoundError(f"{path}: step {i}: notebook {raw['notebook']} does not exist")
        steps.append(Step(nb, {**shared, **(raw.get("parameters") or {})}))
    return Experiment(spec["name"], project_path(spec["run_dir"]), steps)


def _fingerprint(step: Step, declared: dict[str, Any]) -> str:
    h = hashlib.sha256(step.notebook.read_bytes())
    h.update(json.dumps(declared, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _declared_parameters(step: Step) -> dict[str, Any]:
    """Only the parameters the notebook's ``parameters`` cell declares (papermill would inject any name)."""
    import papermill

    names = set(papermill.inspect_notebook(str(step.notebook)))
    return {k: v for k, v in step.parameters.items() if k in names}


def run_experiment(exp: Experiment, force_from: str | None = None, kernel: str = "python3",
                   log=print) -> list[dict[str, Any]]:
    """Run every unfinished step; return one record per step. Raises ``RuntimeError`` on the first failure."""
    import papermill

    nb_dir, step_dir = exp.run_dir / "notebooks", exp.run_dir / "steps"
    nb_dir.mkdir(parents=True, exist_ok=True)
    step_dir.mkdir(parents=True, exist_ok=True)
    records, forcing = [], False
    for step in exp.steps:
        forcing = forcing or (force_from is not None and step.name.startswith(force_from))
        declared = _declared_parameters(step)
        marker = step_dir / f"{step.name}.json"
        fingerprint = _fingerprint(step, declared)
        if not forcing and marker.is_file():
            done = json.loads(marker.read_text())
            if done.get("fingerprint") == fingerprint:
                log(f"[skip] {step.name}: finished earlier in {done['seconds']:.0f} s")
                records.append({**done, "skipped": True})
                continue
        marker.unlink(missing_ok=True)
        output = nb_dir / f"{step.name}.ipynb"
        partial = nb_dir / f"{step.name}.failed.ipynb"
        log(f"[run ] {step.name} with {declared}")
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(str(step.notebook), str(partial), parameters=declared, kernel_name=kernel,
                                       cwd=str(project_root()), progress_bar=False, log_output=False)
        except papermill.PapermillExecutionError as exc:
            raise RuntimeError(
                f"step {step.name} failed in cell {exc.exec_count} with {exc.ename}: {exc.evalue}\n"
                f"partial notebook kept at {partial}; finished steps stay cached, fix and re-run to resume") from None
        partial.replace(output)
        seconds = time.perf_counter() - t0
        record = {"step": step.name, "notebook": str(output), "parameters": declared,
                  "fingerprint": fingerprint, "seconds": seconds}
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        tmp.replace(marker)
        log(f"[done] {step.name} in {seconds:.0f} s")
        records.append(record)
    return records


def write_report(exp: Experiment, records: list[dict[str, Any]]) -> Path:
    """A Markdown summary: steps with durations, then the metrics JSON and figures the run produced."""
    lines = [f"# Experiment {exp.name}", "", "| step | seconds | cached |", "|---|---:|---|"]
    lines += [f"| {r['step']} | {r['seconds']:.0f} | {'yes' if r.get('skipped') else 'no'} |" for r in records]
    lines += ["", f"Total notebook time: {sum(r['seconds'] for r in records):.0f} s", "", "## Metrics files", ""]
    lines += [f"- {p.relative_to(exp.run_dir)}" for p in sorted(exp.run_dir.rglob("metrics*.json"))]
    figures = sorted({p for r in records for p in project_path(r["parameters"].get("figures_dir", "figures")).glob("*")
                      if p.suffix in {".png", ".html"}})
    lines += ["", "## Figures", ""] + [f"- {p.relative_to(project_root())}" for p in figures]
    report = exp.run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", help="experiment YAML, e.g. experiments/quick.yaml")
    parser.add_argument("--force", metavar="STEP", help="re-run this step (name prefix, e.g. 02) and all after it")
    parser.add_argument("--kernel", default="python3")
    args = parser.parse_args(argv)
    exp = load_experiment(project_path(args.experiment))
    t0 = time.perf_counter()
    try:
        records = run_experiment(exp, args.force, args.kernel)
    except RuntimeError as exc:
        print(f"\nEXPERIMENT STOPPED: {exc}", file=sys.stderr)
        return 1
    report = write_report(exp, records)
    print(f"\nExperiment {exp.name} finished in {time.perf_counter() - t0:.0f} s; report: {report}")
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
