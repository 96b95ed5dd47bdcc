"""``distsnn demo``: the README's first command, end to end on scikit-learn's digits.

Trains a small CNN, converts it with few-spike and data-norm, evaluates each conversion with
``mpiexec -n RANKS distsnn evaluate`` and prints the ANN and SNN accuracies side by side.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np

NORM_EXAMPLES = 256


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH; run "
                                f"`make setup` (it installs the mpich wheel)")
    return found


def run_demo(output_dir: Path, ranks: int = 2, seed: int = 1) -> int:
    from distsnn.convert.digits import load_digits_data, train_digits_cnn

    output_dir.mkdir(parents=True, exist_ok=True)
    print(f"[demo] training a small CNN on scikit-learn's digits (seed {seed}) ...", flush=True)
    data = load_digits_data(seed=seed)
    model, ann_accuracy = train_digits_cnn(data, seed=seed)
    model_path = output_dir / "digits_cnn.keras"
    model.save(model_path)
    np.savez(output_dir / "test.npz", x=data.x_test, y=data.y_test)
    np.savez(output_dir / "norm.npz", x=data.x_train[:NORM_EXAMPLES])
    print(f"[demo] ANN test accuracy {100 * ann_accuracy:.2f}% on {len(data.y_test)} examples",
          flush=True)
    # label -> (file stem, options): distsnn's defaults, and mlGeNN's recipe for comparison
    runs = {
        "few-spike (K=8)": ("few-spike", ["--method", "few-spike", "--k", "8"]),
        "data-norm (default)": ("data-norm", ["--method", "data-norm",
                                              "--timesteps", "100,200,500"]),
        "data-norm (mlGeNN)": ("data-norm-mlgenn", [
            "--method", "data-norm", "--timesteps", "100,200,500", "--input", "poisson",
            "--readout", "spikes", "--reset", "zero"]),
    }
    results = {}
    for label, (stem, args) in runs.items():
        command = [_tool("mpiexec"), "-n", str(ranks), _tool("distsnn"), "evaluate",
                   str(model_path), "--data", str(output_dir / "test.npz"),
                   "--norm-data", str(output_dir / "norm.npz"), *args, "--seed", str(seed),
                   "--ann-accuracy", str(ann_accuracy),
                   "--output", str(output_dir / f"results-{stem}.json"),
                   "--plot", str(output_dir / f"results-{stem}.png"), "--no-progress"]
        print(f"[demo] {' '.join(command[:4])} ... {' '.join(args)}", flush=True)
        done = subprocess.run(command)
        if done.returncode != 0:
            print(f"[demo] evaluation of {label} failed (exit {done.returncode})",
                  file=sys.stderr)
            return done.returncode
        results[label] = json.loads((output_dir / f"results-{stem}.json").read_text())
    print()
    print(comparison_table(ann_accuracy, results))
    print(f"measured {date.today().isoformat()} on {ranks} MPI ranks, {_machine()}")
    print(f"\nplots and results JSON in {output_dir}/")
    return 0


def _machine() -> str:
    """The CPU model and core count (where the examples/s were measured)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def comparison_table(ann_accuracy: float, results: dict) -> str:
    lines = [f"{'model':<22} {'timesteps':>10} {'accuracy':>9} {'vs ANN':>8} {'examples/s':>11}",
             f"{'ANN (Keras)':<22} {'-':>10} {100 * ann_accuracy:>8.2f}% {'':>8} {'':>11}"]
    for label, r in results.items():
        for steps, metrics in r["metrics"].items():
            acc = metrics["sparse_categorical_accuracy"]["result"]
            lines.append(f"{label:<22} {steps:>10} {100 * acc:>8.2f}% "
                         f"{100 * (acc - ann_accuracy):>+7.2f}  {r['examples_per_second']:>10.1f}")
    return "\n".join(line.rstrip() for line in lines)
