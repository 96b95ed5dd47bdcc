"""Real-size networks: convert, build and evaluate the published architectures.

For each model of ``architectures.ARCHITECTURES`` (random weights) and each method (few-spike
K=8; data-norm with IF input): convert time (rank 0, TensorFlow included), network-file size
against the model's float32 weights, then ``mpiexec -n R distsnn evaluate`` on 1 and 2 ranks
with a fresh build directory (cold) and again (cached): per-rank peak RSS (``/usr/bin/time``),
set-up before the first step (broadcast + data read + build + load), per-step time, and the
memory estimate of ``distsnn inspect`` beside the measured RSS. Writes results/scale.json and
prints a table for benchmarks/README.md.

    .venv/bin/python benchmarks/scale.py                          # all five models (~1 h)
    .venv/bin/python benchmarks/scale.py --models vgg16_cifar --ranks 1
    .venv/bin/python benchmarks/scale.py --readme   # rewrite the README table from the JSON
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from architectures import ARCHITECTURES, build, weight_bytes
from common import BIN, BUILD, DATA, MPIEXEC, RESULTS, machine_info, table, write_result

DISTSNN = str(BIN / "distsnn")
K = 8
DN_T = 20            # data-norm timesteps per example (enough to time steps, not for accuracy)
INPUT = {"cifar": (32, 32, 3), "224": (224, 224, 3)}


def _shape(name: str) -> tuple:
    return INPUT["cifar" if name.endswith("cifar") else "224"]


def prepare(name: str) -> tuple[Path, int]:
    """The .keras model and its float32 weight bytes (built once)."""
    path = DATA / f"{name}.keras"
    meta = DATA / f"{name}.json"
    if not path.exists():
        model = build(name)
        model.save(path)
        meta.write_text(json.dumps({"weight_bytes": weight_bytes(model)}))
    return path, json.loads(meta.read_text())["weight_bytes"]


def dataset(name: str, examples: int, seed: int) -> Path:
    path = DATA / f"{name}_random_{examples}_{seed}.npz"
    if not path.exists():
        rng = np.random.default_rng(seed)
        np.savez(path, x=rng.random((examples, *_shape(name))).astype(np.float32),
                 y=rng.integers(0, 10, examples))
    return path


def convert(name: str, model: Path, method: str) -> dict:
    out = DATA / f"{name}_{method}.h5"
    args = [DISTSNN, "convert", str(model), "--method", method, "--norm-data",
            str(dataset(name, 8, 0)), "-o", str(out)]
    args += ["--k", str(K)] if method == "few-spike" else ["--input", "if", "-t", str(DN_T)]
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb %M", *args], capture_output=True,
                            text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"convert {name} {method} failed:\n{result.stderr[-3000:]}")
    rss = int(re.findall(r"maxrss_kb (\d+)", result.stderr)[-1]) * 1024
    return {"path": out, "convert_s": seconds, "convert_rss": rss, "file_bytes": out.stat().st_size}


def estimate(net: Path, ranks: int) -> int:
    text = subprocess.run([DISTSNN, "inspect", str(net), "--ranks-per-node", str(ranks)],
                          capture_output=True, text=True, check=True).stdout
    value, unit = re.search(r"peak per rank ([0-9.]+) (MiB|GiB)", text).groups()
    return int(float(value) * 2 ** (20 if unit == "MiB" else 30))


def evaluate(name: str, net: Path, method: str, ranks: int, examples: int, build: Path) -> dict:
    out = build / f"result-{ranks}.json"
    args = [MPIEXEC, "-n", str(ranks), "/usr/bin/time", "-f", "maxrss_kb %M", DISTSNN,
            "evaluate", str(net), "--data", str(dataset(name, examples, 1)), "--no-progress",
            "--build-dir", str(build), "-o", str(out)]
    if method != "few-spike":
        args += ["-t", str(DN_T)]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"evaluate {name} {method} on {ranks} failed:\n{result.stderr[-3000:]}")
    report = json.loads(out.read_text())
    t = report["timings_s"]
    per_rank = -(-examples // ranks)
    depth = len(report["spikes"]["populations"]) - 1 if method == "few-spike" else 0
    steps = (per_rank + depth) * K if method == "few-spike" else per_rank * DN_T
    return {"rss_per_rank": [int(v) * 1024 for v in re.findall(r"maxrss_kb (\d+)", result.stderr)],
            "setup_s": sum(t.get(k, 0.0) for k in ("broadcast", "data_read", "build_and_load")),
            "build_s": t.get("build"), "load_s": t.get("load"),
            "evaluation_s": t["evaluation"], "steps_per_rank": steps,
            "step_ms": 1e3 * t["evaluation"] / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--methods", nargs="+", default=["few-spike", "data-norm"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--examples", type=int, default=0,
                        help="examples per run (default: 8 for CIFAR models, 2 for 224x224)")
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite benchmarks/README.md's table from results/scale.json")
    args = parser.parse_args()
    if args.readme:
        write_readme_table()
        return
    DATA.mkdir(parents=True, exist_ok=True)
    rows, runs = [], []
    for name in args.models:
        model, weights = prepare(name)
        examples = args.examples or (8 if name.endswith("cifar") else 2)
        for method in args.methods:
            conv = convert(name, model, method)
            for ranks in args.ranks:
                build = BUILD / f"scale-{name}-{method}-{ranks}"
                subprocess.run(["rm", "-rf", str(build)], check=True)
                build.mkdir(parents=True)
                cold = evaluate(name, conv["path"], method, ranks, examples, build)
                cached = evaluate(name, conv["path"], method, ranks, examples, build)
                est = estimate(conv["path"], ranks)
                run = {"model": name, "method": method, "ranks": ranks, "examples": examples,
                       "weight_bytes": weights, **{k: v for k, v in conv.items() if k != "path"},
                       "estimate_bytes": est, "cold": cold, "cached": cached}
                runs.append(run)
                rows.append({"model": name, "method": method, "ranks": ranks,
                             "convert s": conv["convert_s"],
                             "file / weights": conv["file_bytes"] / weights,
                             "peak RSS/rank GiB": max(cached["rss_per_rank"]) / 2 ** 30,
                             "estimate GiB": est / 2 ** 30,
                             "set-up cold s": cold["setup_s"], "set-up cached s": cached["setup_s"],
                             "ms/step": cached["step_ms"]})
                print(json.dumps(rows[-1]), flush=True)
    write_result("scale", {"machine": machine_info(), "runs": _merged(runs)})
    print(table(rows, list(rows[0])))


def readme_table(runs: list[dict]) -> str:
    gib = 2 ** 30
    rows = [{"model": r["model"], "method": r["method"], "ranks": r["ranks"],
             "examples": r["examples"], "convert s": r["convert_s"],
             "file MiB": r["file_bytes"] / 2 ** 20, "file / weights": r["file_bytes"] / r["weight_bytes"],
             "peak RSS/rank GiB": max(r["cached"]["rss_per_rank"]) / gib,
             "estimate GiB": r["estimate_bytes"] / gib,
             "set-up cold s": r["cold"]["setup_s"], "set-up cached s": r["cached"]["setup_s"],
             "ms/step": r["cached"]["step_ms"]} for r in runs]
    order = {name: i for i, name in enumerate(ARCHITECTURES)}
    rows.sort(key=lambda r: (order.get(r["model"], 99), r["method"], r["ranks"]))
    return table(rows, list(rows[0]))


def write_readme_table() -> None:
    data = json.loads((RESULTS / "scale.json").read_text())
    readme = Path(__file__).resolve().parent / "README.md"
    text = readme.read_text()
    begin, end = "<!-- scale:begin -->", "<!-- scale:end -->"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    machine = data["machine"]
    block = (f"{begin}\nMeasured on {machine.get('cores', '?')} cores ({machine.get('cpu_model', '?')}, {machine.get('memory_gib', '?')} GiB) "
             f"with other test jobs running beside (timings are noisy; memory is not); "
             f"`benchmarks/scale.py`, random weights, cached build for RSS and per-step time.\n\n"
             f"{readme_table(data['runs'])}\n{end}")
    readme.write_text(head + block + tail)


def _merged(runs: list[dict]) -> list[dict]:
    """These runs plus earlier ones of other (model, method, ranks) from results/scale.json."""
    key = lambda r: (r["model"], r["method"], r["ranks"])  # noqa: E731
    earlier = RESULTS / "scale.json"
    old = json.loads(earlier.read_text())["runs"] if earlier.exists() else []
    new = {key(r) for r in runs}
    return [r for r in old if key(r) not in new] + runs


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
