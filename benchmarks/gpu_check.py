"""VGG16 on one GPU (run by gpu_check.sh on the GPU machine; no TensorFlow needed).

VGG16-CIFAR few-spike (K=8) and data-norm (T=100) at batch 1/32/256 (Toeplitz lowering, and
PROCEDURAL_KERNELG for comparison), and VGG16-224 few-spike at the largest batch that fits: examples/s and GPU memory used. Networks are built from numpy
with He-normal random weights (tests/helpers/cuda_cases.py: ``vgg16``), laid out as the
converter lays them out (pooling fused into the next connection); the thresholds/alphas are fixed guesses, so this measures speed and memory,
not accuracy. Each configuration runs in its own process (an out-of-memory error cannot take
the rest with it) with its own time limit.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RATE_T = 100


def gpu_memory_mib() -> float:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True)
    return float(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else -1.0


def run_one(model: str, mode: str, batch: int, connectivity: str = "auto") -> dict:
    """One configuration, in this process."""
    from distsnn.compilers import FewSpikeCompiler, InferenceCompiler
    from helpers.cuda_cases import K, vgg16
    shape, dense, classes = ((32, 32, 3), (512,), 10) if model == "vgg16_cifar" else \
        ((224, 224, 3), (4096, 4096), 1000)
    net = vgg16(shape, dense, classes, mode)
    n = max(2 * batch, 16)
    rng = np.random.default_rng(1)
    x = rng.random((n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n)
    common = dict(batch_size=batch, rng_seed=1, backend="cuda", build_dir="benchmarks/build/gpu",
                  connectivity=connectivity)
    compiler = FewSpikeCompiler(k=K, **common) if mode == "few_spike" else \
        InferenceCompiler(RATE_T, **common)
    compiled = compiler.compile(net)
    start = time.perf_counter()
    with compiled:
        setup = time.perf_counter() - start
        memory = gpu_memory_mib()
        start = time.perf_counter()
        compiled.evaluate({net.inputs[0]: x}, {net.outputs[0]: y}, callbacks=[])
        seconds = time.perf_counter() - start
    return {"model": model, "mode": mode, "batch": batch, "connectivity": connectivity,
            "examples": n, "setup_s": setup,
            "evaluation_s": seconds, "examples_per_s": n / seconds, "gpu_memory_mib": memory}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results/gpu_check.json")
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "MODE", "BATCH", "CONNECTIVITY"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], int(args.one[2]), args.one[3])))
        return
    results = []

    def attempt(model, mode, batch, limit, connectivity="auto") -> bool:
        cmd = [sys.executable, __file__, "--one", model, mode, str(batch), connectivity]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            results.append({"model": model, "mode": mode, "batch": batch,
                            "connectivity": connectivity, "error": "timeout"})
            return False
        if done.returncode:
            results.append({"model": model, "mode": mode, "batch": batch,
                            "connectivity": connectivity,
                            "error": done.stderr.strip().splitlines()[-1:]})
            return False
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
        return True

    for mode in ("few_spike", "rate"):
        for batch in (1, 32, 256):
            attempt("vgg16_cifar", mode, batch, 60)
        attempt("vgg16_cifar", mode, 32, 60, "procedural")
    for batch in (64, 16, 4, 1):  # the largest that fits
        if attempt("vgg16_224", "few_spike", batch, 90):
            break
    Path(args.out).write_text(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    REPO = Path(__file__).resolve().parent.parent
    sys.path[:0] = [str(REPO), str(REPO / "tests")]  # distsnn; the networks of the CUDA cases
    main()
