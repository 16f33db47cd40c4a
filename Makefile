# mm3dkit developer entry points. The README's two commands are `make demo` and `make test`.
# Set-up is idempotent and cached: the venv is rebuilt only when pyproject.toml changes, and MinkowskiEngine's
# wheel is built once per (ME version, torch version, build kind) and cached in ~/.cache/mm3dkit/wheels.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mm3dkit-installed
EXPERIMENT ?= experiments/quick.yaml
export MPLBACKEND := Agg
export PYTHONUNBUFFERED := 1

.PHONY: setup sysdeps minkowski test test-fast demo lab benchmarks clean-runs

sysdeps:
	@bash scripts/install_system_deps.sh

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

minkowski: $(STAMP)
	PYTHON=$(abspath $(PY)) bash scripts/build_minkowski.sh

setup: sysdeps $(STAMP) minkowski

# Whole suite: unit tests (CPU, tiny models) + every notebook executed by nbval in the quick profile.
test: setup
	$(PY) -m pytest tests notebooks --nbval-lax --current-env --nbval-cell-timeout=1800 -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest tests -p no:cacheprovider

# Main job: the numbered notebooks end to end on synthetic data (quick profile), outputs in runs/quick.
demo: setup
	$(PY) -m mm3dkit.run $(EXPERIMENT)

lab: setup
	$(VENV)/bin/jupyter lab notebooks

benchmarks: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-runs:
	rm -rf runs
