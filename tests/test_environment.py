"""Packaging hygiene: pyproject.toml and environment.yml name the same dependencies; notebooks carry no outputs."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()  # type: ignore[union-attr]
    return name.lower().replace("_", "-") + spec.replace(" ", "")


def test_pyproject_and_environment_yml_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_reqs = set(map(_norm, project["dependencies"] + project["optional-dependencies"]["dev"]))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_reqs = set(map(_norm, pip_section))
    assert pip_reqs == conda_reqs, (f"only in pyproject: {sorted(pip_reqs - conda_reqs)}; "
                                    f"only in environment.yml: {sorted(conda_reqs - pip_reqs)}")
    assert any(d == "python=3.11" for d in env["dependencies"] if isinstance(d, str))


def test_notebooks_are_stored_without_outputs():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text())
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] == "code":
                assert not cell.get("outputs"), f"{nb_path.name} cell {i} has stored outputs (strip them)"
                assert cell.get("execution_count") is None, f"{nb_path.name} cell {i} has an execution count"


def test_notebooks_have_quick_cpu_parameters_cell():
    for nb_path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(nb_path.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb_path.name}: expected exactly one cell tagged 'parameters'"
        src = "".join(tagged[0]["source"])
        assert "profile" not in src or re.search(r"profile\s*=\s*[\"']quick[\"']", src), \
            f"{nb_path.name}: parameters must default to the quick profile"
        assert "cuda" not in src.lower() or re.search(r"device\s*=\s*[\"'](auto|cpu)[\"']", src), \
            f"{nb_path.name}: parameters must default to a CPU-capable device"


def test_readme_commands_are_the_ones_ci_and_make_run():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"], commands
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test" in ci, ".ci/run must call the README's test command"
