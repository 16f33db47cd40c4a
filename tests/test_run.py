"""The papermill batch runner: order, caching of finished steps, resume, clear failure report."""

from __future__ import annotations

import json

import nbformat
import pytest

from mm3dkit.run import load_experiment, main, run_experiment


def _notebook(path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("out_file = 'x.txt'\nvalue = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture()
def experiment(tmp_path):
    _notebook(tmp_path / "00_a.ipynb", "open(out_file, 'a').write(f'a{value}\\n')")
    _notebook(tmp_path / "01_b.ipynb", "open(out_file, 'a').write(f'b{value}\\n')")
    log = tmp_path / "log.txt"
    spec = {"name": "t", "run_dir": str(tmp_path / "run"), "parameters": {"out_file": str(log), "value": 7, "unused": 3},
            "steps": [{"notebook": str(tmp_path / "00_a.ipynb")},
                      {"notebook": str(tmp_path / "01_b.ipynb"), "parameters": {"value": 8}}]}
    (tmp_path / "exp.yaml").write_text(json.dumps(spec))
    return tmp_path, log


def test_runs_in_order_then_skips_finished_steps(experiment):
    tmp_path, log = experiment
    assert main([str(tmp_path / "exp.yaml")]) == 0
    assert log.read_text() == "a7\nb8\n"
    assert (tmp_path / "run" / "notebooks" / "00_a.ipynb").exists()
    assert "| 00_a |" in (tmp_path / "run" / "report.md").read_text()
    assert main([str(tmp_path / "exp.yaml")]) == 0
    assert log.read_text() == "a7\nb8\n", "finished steps must not run again"
    assert main([str(tmp_path / "exp.yaml"), "--force", "01"]) == 0
    assert log.read_text() == "a7\nb8\nb8\n"


def test_failure_stops_with_report_and_resume_skips_done_steps(experiment, capsys):
    tmp_path, log = experiment
    _notebook(tmp_path / "01_b.ipynb", "raise ValueError('broken on purpose')")
    assert main([str(tmp_path / "exp.yaml")]) == 1
    err = capsys.readouterr().err
    assert "01_b" in err and "broken on purpose" in err
    assert (tmp_path / "run" / "notebooks" / "01_b.failed.ipynb").exists()
    assert not (tmp_path / "run" / "notebooks" / "01_b.ipynb").exists(), "a failed notebook is not a result"
    _notebook(tmp_path / "01_b.ipynb", "open(out_file, 'a').write('fixed\\n')")
    records = run_experiment(load_experiment(tmp_path / "exp.yaml"), log=lambda *_: None)
    assert [r.get("skipped", False) for r in records] == [True, False]
    assert log.read_text() == "a7\nfixed\n"


def test_bad_experiment_files_are_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nsteps: []\n")
    with pytest.raises(ValueError, match="bad.yaml: missing key 'run_dir'"):
        load_experiment(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("name: x\nrun_dir: r\nsteps:\n  - notebook: nope.ipynb\n")
    with pytest.raises(FileNotFoundError, match="nope.ipynb"):
        load_experiment(tmp_path / "bad2.yaml")
