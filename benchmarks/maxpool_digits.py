"""Accuracy of converted max-pooling: the demo's digits CNN with MaxPooling2D in place of
AveragePooling2D, trained the same way (scikit-learn's digits, seed 1, 15 epochs), then
evaluated by ``distsnn evaluate`` with each method at its defaults (analog input and readout,
reset by subtraction for the rate methods).

    .venv/bin/python benchmarks/maxpool_digits.py [--timesteps 500] [--k 8] [--ranks 1]

Writes ``benchmarks/results/maxpool_digits.json`` and prints the table of
benchmarks/README.md (ANN accuracy, SNN accuracy per method, examples/s).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, BUILD, DATA, MPIEXEC, machine_info, run_json, table, write_result  # noqa: E402


def train(pooling: str, seed: int = 1, epochs: int = 15):
    """train_digits_cnn's model and recipe, with max-pooling (``pooling="max"``) or its
    average pooling; (model, data, ANN accuracy)."""
    from distsnn.convert.digits import load_digits_data, train_digits_cnn
    data = load_digits_data(seed=seed)
    model, accuracy = train_digits_cnn(data, seed=seed, epochs=epochs, pooling=pooling)
    return model, data, accuracy


def few_spike_windows(model, k: int, norm: np.ndarray) -> int:
    """Pipeline depth of the few-spike network: K-step windows from input to readout."""
    from distsnn.convert import FewSpike
    from distsnn.genn.builder import pipeline_depths
    net = FewSpike(k=k, norm_data=norm).convert(model)[0]
    return max(pipeline_depths(net).values()) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timesteps", type=int, default=500)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--methods", nargs="*",
                        default=["data-norm", "few-spike", "spike-norm", "simple"])
    parser.add_argument("--pooling", nargs="*", default=["max", "avg"],
                        help="max: the max-pooling CNN; avg: the demo's CNN, for comparison")
    args = parser.parse_args()
    rows = []
    for pooling in args.pooling:
        rows += evaluate(pooling, args)
    write_result("maxpool_digits", {"rows": rows, "machine": machine_info(),
                                    "args": vars(args)})
    print(table(rows, ["pooling", "method", "schedule", "ann_accuracy", "snn_accuracy",
                       "difference_points", "examples_per_s", "few_spike_windows", "ranks"]))


def evaluate(pooling: str, args) -> list[dict]:
    root = DATA / f"{pooling}pool_digits"
    root.mkdir(parents=True, exist_ok=True)
    model, data, ann = train(pooling)
    model.save(root / "cnn.keras")
    np.savez(root / "test.npz", x=data.x_test, y=data.y_test)
    np.savez(root / "norm.npz", x=data.x_train[:256])
    rows = []
    for method in args.methods:
        schedule = ["--k", str(args.k)] if method == "few-spike" else ["-t", str(args.timesteps)]
        out = root / f"{method}.json"
        cmd = [str(BIN / "distsnn"), "evaluate", str(root / "cnn.keras"), "--method", method,
               "--norm-data", str(root / "norm.npz"), "--data", str(root / "test.npz"),
               *schedule, "--build-dir", str(BUILD / "maxpool_digits"), "--no-progress",
               "-o", str(out)]
        if args.ranks > 1:
            cmd = [MPIEXEC, "-n", str(args.ranks), *cmd]
        result = run_json(cmd, out, timeout=3600)
        metrics = next(iter(result["metrics"].values()))["sparse_categorical_accuracy"]
        rows.append({"pooling": pooling, "method": method, "schedule": " ".join(schedule),
                     "ann_accuracy": ann, "snn_accuracy": metrics["result"],
                     "difference_points": 100 * (metrics["result"] - ann),
                     "examples_per_s": result["examples_per_second"],
                     "few_spike_windows": (few_spike_windows(model, args.k, data.x_train[:256])
                                           if method == "few-spike" else None),
                     "examples": metrics["total"], "ranks": result["ranks"],
                     "command": " ".join(Path(c).name if i == 0 else c
                                         for i, c in enumerate(cmd))})
    return rows


if __name__ == "__main__":
    main()
