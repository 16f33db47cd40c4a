"""The project's own source patches for MinkowskiEngine 0.5.4 (PyPI sdist), applied before building.

    python scripts/minkowski/patch_sources.py SRC_DIR [--cuda]

Always (Python >= 3.10): ``from collections import Sequence`` -> ``collections.abc``.
With ``--cuda`` (CUDA 12/13 toolkits; written against the 0.5.4 sources, NOT yet verified on a GPU build here):
thrust headers that newer CCCL no longer pulls in transitively, the removed ``thrust::unary_function`` base class,
the bundled cuDF NVTX ranges header (clashes with the NVTX3 that torch includes; only one profiling range used it),
CUDA 13's ``cudaMemPrefetchAsync(ptr, n, cudaMemLocation, flags, stream)`` signature, and ATen/torch headers
included before cuSPARSE in ``spmm.cu``.

Each patch is idempotent and reports whether it changed something; a patch whose anchor is missing is an error
(the sources are not the expected 0.5.4).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PY_FILES = ["MinkowskiCoordinateManager.py", "MinkowskiKernelGenerator.py", "MinkowskiTensorField.py",
            "MinkowskiCommon.py", "utils/quantization.py"]
THRUST_INCLUDES = ("#include <thrust/execution_policy.h>\n#include <thrust/sort.h>\n#include <thrust/unique.h>\n"
                   "#include <thrust/remove.h>\n#include <thrust/reduce.h>\n#include <thrust/functional.h>\n")
PREFETCH_COMPAT = """
// mm3dkit patch: CUDA 13 changed cudaMemPrefetchAsync to take a cudaMemLocation and flags
#if defined(CUDART_VERSION) && CUDART_VERSION >= 13000
#define MM3DKIT_PREFETCH(ptr, n, dev, stream) \\
  cudaMemPrefetchAsync(ptr, n, cudaMemLocation{cudaMemLocationTypeDevice, dev}, 0, stream)
#else
#define MM3DKIT_PREFETCH(ptr, n, dev, stream) cudaMemPrefetchAsync(ptr, n, dev, stream)
#endif
"""


def _edit(path: Path, fn, label: str) -> None:
    text = path.read_text()
    new = fn(text)
    if new is None:
        sys.exit(f"patch '{label}': anchor not found in {path} (not the expected MinkowskiEngine 0.5.4 sources?)")
    state = "applied" if new != text else "already applied"
    path.write_text(new)
    print(f"  [{state}] {label}: {path.name}")


def _collections(text: str) -> str | None:
    text = re.sub(r"^from collections import Sequence, namedtuple$",
                  "from collections import namedtuple\nfrom collections.abc import Sequence", text, flags=re.M)
    text = re.sub(r"^from collections import Sequence$", "from collections.abc import Sequence", text, flags=re.M)
    return text if "from collections.abc import Sequence" in text else None


def patch_python(src: Path) -> None:
    for rel in PY_FILES:
        _edit(src / "MinkowskiEngine" / rel, _collections, "collections.abc.Sequence")


def patch_cuda(src: Path) -> None:
    s = src / "src"

    def thrust(text: str) -> str | None:
        if "mm3dkit patch: thrust" in text:
            return text
        anchor = "#include <driver_types.h>"
        return text.replace(anchor, anchor + "\n// mm3dkit patch: thrust headers\n" + THRUST_INCLUDES, 1) \
            if anchor in text else None

    _edit(s / "gpu.cuh", thrust, "thrust includes")

    def helper_thrust(text: str) -> str | None:
        anchor = "#include <thrust/pair.h>"
        if "#include <thrust/execution_policy.h>" in text:
            return text
        return text.replace(anchor, anchor + "\n#include <thrust/execution_policy.h>", 1) if anchor in text else None

    _edit(s / "3rdparty" / "hash" / "helper_functions.cuh", helper_thrust, "thrust includes")

    def unary(text: str) -> str | None:
        pattern = r":\s*public\s+thrust::(?:unary|binary)_function<[^{}]*?>\s*\{"
        if not re.search(pattern, text):
            return text if "find_coordinate" in text else None
        return re.sub(pattern, "{", text)

    _edit(s / "coordinate_map_functors.cuh", unary, "drop thrust::unary_function base")

    def nvtx_and_prefetch(text: str) -> str | None:
        if "cudaMemPrefetchAsync" not in text and "MM3DKIT_PREFETCH" not in text:
            return None
        text = text.replace("#include <cudf/detail/nvtx/ranges.hpp>\n", "")
        text = text.replace("    CUDF_FUNC_RANGE();\n", "")
        if "MM3DKIT_PREFETCH(ptr" not in text:
            text = text.replace("#define CONCURRENT_UNORDERED_MAP_CUH\n",
                                "#define CONCURRENT_UNORDERED_MAP_CUH\n" + PREFETCH_COMPAT, 1)
        return re.sub(r"\bcudaMemPrefetchAsync\((?=m_hashtbl_values|this)", "MM3DKIT_PREFETCH(", text)

    _edit(s / "3rdparty" / "concurrent_unordered_map.cuh", nvtx_and_prefetch, "NVTX ranges + cudaMemPrefetchAsync")

    def spmm(text: str) -> str | None:
        aten = ("#include <ATen/cuda/CUDAContext.h>\n#include <ATen/cuda/CUDAUtils.h>\n"
                "#include <c10/cuda/CUDACachingAllocator.h>\n#include <torch/extension.h>\n#include <torch/script.h>\n")
        if text.find(aten) != -1 and text.find(aten) < text.find('#include "gpu.cuh"'):
            return text
        if aten not in text:
            return None
        return text.replace(aten, "").replace('#include "gpu.cuh"', aten + '#include "gpu.cuh"', 1)

    _edit(s / "spmm.cu", spmm, "ATen before cuSPARSE")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("--cuda", action="store_true")
    a = p.parse_args()
    print(f"patching {a.src}")
    patch_python(a.src)
    if a.cuda:
        patch_cuda(a.src)


if __name__ == "__main__":
    main()
