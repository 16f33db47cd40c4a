#!/usr/bin/env bash
# Build (once) and install MinkowskiEngine 0.5.4 into the Python given by $PYTHON (default: python).
#   bash scripts/build_minkowski.sh          # CPU build (OpenBLAS)
#   bash scripts/build_minkowski.sh --cuda   # CUDA build (needs nvcc; patches for CUDA 12/13 applied)
# The wheel is cached in ${MM3DKIT_CACHE:-~/.cache/mm3dkit}/wheels/<ME version>-torch<version>-<cpu|cuda>/, so a
# second run installs it in seconds, and a run where the right build already imports does nothing.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python}"
KIND=cpu
[ "${1:-}" = "--cuda" ] && KIND=cuda
ME_VERSION=0.5.4

have=$("$PY" - <<'PYEOF' 2>/dev/null || true
import warnings
warnings.filterwarnings("ignore")
import MinkowskiEngine as ME
print("cuda" if ME.is_cuda_available() else "cpu")
PYEOF
)
if [ "$have" = "$KIND" ] || { [ "$have" = "cuda" ] && [ "$KIND" = "cpu" ]; }; then
  echo "MinkowskiEngine ($have build) already imports in $PY: nothing to do"
  exit 0
fi

TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
CACHE="${MM3DKIT_CACHE:-$HOME/.cache/mm3dkit}/wheels/minkowskiengine-${ME_VERSION}-torch${TORCH}-${KIND}"
mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  echo "building MinkowskiEngine $ME_VERSION ($KIND) against torch $TORCH: takes ~3-7 minutes on 2 cores"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  sdist=$("$PY" "$HERE/minkowski/fetch_sdist.py" "$WORK")
  tar -xzf "$sdist" -C "$WORK"
  SRC="$WORK/MinkowskiEngine-$ME_VERSION"
  if [ "$KIND" = cuda ]; then
    "$PY" "$HERE/minkowski/patch_sources.py" "$SRC" --cuda
    opts=(--config-settings=--global-option=--force_cuda)
  else
    "$PY" "$HERE/minkowski/patch_sources.py" "$SRC"
    opts=(--config-settings=--global-option=--cpu_only --config-settings=--global-option=--blas=openblas)
  fi
  # setup.py runs `pip uninstall MinkowskiEngine` with the first pip on PATH: make that the target environment's
  BIN=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
  (cd "$SRC" && PATH="$BIN:$PATH" MAX_JOBS="${MAX_JOBS:-2}" CFLAGS="-g0" CXXFLAGS="-g0" \
     "$PY" -m pip wheel --no-deps --use-pep517 --no-build-isolation "${opts[@]}" -w "$WORK/wheel" . )
  cp "$WORK"/wheel/*.whl "$CACHE/"
  wheel=$(ls "$CACHE"/*.whl | head -n 1)
fi
echo "installing $wheel"
"$PY" -m pip install --quiet --no-deps --force-reinstall "$wheel"
"$PY" -c "import warnings; warnings.filterwarnings('ignore'); import MinkowskiEngine as ME; print('MinkowskiEngine', ME.__version__, 'imports')"
