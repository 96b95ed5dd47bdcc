#!/usr/bin/env bash
# GPU check: one command, < 10 minutes on one NVIDIA GPU with no network.
#
#   bash benchmarks/gpu_check.sh --prepare   # here (network + ../shared): fills .gpu-carry/
#   bash benchmarks/gpu_check.sh [OUT_DIR]   # on the GPU machine, from the repository root
#
# On the GPU machine it (1) builds pygenn with the CUDA backend from the carried GeNN source
# with launch/genn-patches/ applied (pybind11==3.0.4, --no-build-isolation) into .site/,
# (2) runs the CUDA tests and the cases of tests/helpers/cuda_cases.py for real (CUDA batch
# 64 and 1 against the CPU on identical inputs; CI only compiles them), (3) runs
# benchmarks/gpu_check.py: VGG16-CIFAR few-spike (K=8) and data-norm at batch 1/32/256
# (examples/s, GPU memory) and VGG16-224 few-spike at the largest batch that fits. Networks are
# built from numpy (no TensorFlow there). Every step has its own time limit; results go to
# OUT_DIR/gpu_check.json (default: $OUT, else benchmarks/results).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CARRY=.gpu-carry
GENN_TARBALL=genn-5.4.0-30-ga3f45d241.tar.gz

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$CARRY"
    grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
    cp "../shared/vendor/$GENN_TARBALL" "$CARRY/"
    python3 -m pip download --quiet --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_17_x86_64 --no-deps -d "$CARRY" "pybind11==3.0.4" pkgconfig
    echo "prepared $CARRY/; run on the GPU machine with carry=[\"$CARRY\"]"
    exit 0
fi

OUT_DIR="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$OUT_DIR" .site
export PYTHONPATH="$PWD/.site:$PWD" PYTHONUNBUFFERED=1
PY=python3
step() { echo "[gpu_check] $(date +%T) $*"; }

step "machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" --version

step "building pygenn with CUDA (limit 300 s)"
"$PY" -m pip install --quiet --no-index --no-deps --target .site "$CARRY"/*.whl
SRC=$(mktemp -d); tar -xzf "$CARRY/$GENN_TARBALL" -C "$SRC" --strip-components=1
for patch in launch/genn-patches/*.patch; do patch -d "$SRC" -p1 --quiet --forward <"$patch"; done
export CUDA_PATH="${CUDA_PATH:-$(dirname "$(dirname "$(command -v nvcc)")")}"
(cd "$SRC" && CXXFLAGS=-O2 timeout 300 "$PY" -m pip wheel --quiet --no-build-isolation --no-deps -w "$SRC/dist" .)
"$PY" -m pip install --quiet --no-index --no-deps --target .site "$SRC"/dist/pygenn-*.whl
"$PY" -c "import pygenn.cuda_backend; print('pygenn CUDA backend OK')"

step "CUDA tests (limit 180 s): batched runs; Toeplitz convolutions on CUDA vs numpy"
{ timeout 60 "$PY" -m pytest -q -p no:cacheprovider tests/compilers/test_evaluation.py -k cuda
  timeout 120 "$PY" -m pytest -q -p no:cacheprovider tests/genn/test_connectivity.py \
      -k "(conv2d or avg_pool_dense2d) and toeplitz and not cuda_form"; } 2>&1 \
    | tee "$OUT_DIR/gpu_tests.log" | grep -E "passed|failed|error" || true

step "every network kind on the GPU vs the CPU (limit 240 s)"
timeout 240 "$PY" tests/helpers/cuda_cases.py run "$OUT_DIR/cuda_cases.json" benchmarks/build/cases \
    2>&1 | tail -n 20 | tee "$OUT_DIR/cuda_cases.log" || true

step "VGG16 benchmarks (limit 240 s)"
timeout 240 "$PY" benchmarks/gpu_check.py --out "$OUT_DIR/gpu_check.json"
step "done"
