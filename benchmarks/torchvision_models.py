"""torchvision's classifiers through distsnn: export, convert, run on 2 ranks, compare with ONNX.

Each model (random weights; BatchNorm running statistics and affine parameters randomised, so
folding matters) is exported to ONNX by this script run in the torch venv
(``/work/peers-venv``, never distsnn's; the classifier's bias is centred on the mean logit of
64 calibration inputs, so that random weights do not predict one class for every input),
then converted with few-spike and data-norm by ``distsnn convert`` and evaluated by
``mpiexec -n 2 distsnn evaluate`` (distsnn's .venv) on random inputs in [0, 1) (half uniform
noise, half a random colour per example), labelled with the ONNX model's own top-1
(onnxruntime): the accuracy is the SNN's top-1 agreement with the ANN. Agreement is counted
over the examples whose ANN top-1 margin exceeds 5% of its logit range ("clear") and over the
others. Recorded: how many
distinct classes the ANN predicts, distsnn's memory estimate per rank (``distsnn inspect``),
the peak RSS of the largest rank (GNU time), ms per simulated step; anything refused is
listed with its node, op and why (distsnn's one-line error).

    PYTHONPATH=$PWD nice .venv/bin/python benchmarks/torchvision_models.py [--models ...]
        [--sizes 32 224] [--examples 64] [--examples-224 2]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TORCH_PYTHON = "/work/peers-venv/bin/python"
MODELS = ("mobilenet_v2", "resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg16")
SMALL_OK = ("mobilenet_v2", "resnet18", "resnet34", "resnet50")  # VGG's classifier needs 224
#: (label, method, K, rounding, headroom): few-spike at distsnn's default K = 8 and at K = 16
#: (a random network's logits differ little between classes, and K-bit floor errors add up
#: over ~36-50 layers), rounded to the nearest step (``--rounding nearest``) at K = 8 and 12,
#: and with α twice the normalisation data's maxima (``--headroom 2``) at K = 12 and 16
METHODS = (("few-spike K=8", "few-spike", 8, "floor", 1),
           ("few-spike K=16", "few-spike", 16, "floor", 1),
           ("few-spike K=8 nearest", "few-spike", 8, "nearest", 1),
           ("few-spike K=12 nearest", "few-spike", 12, "nearest", 1),
           ("few-spike K=12 nearest x2", "few-spike", 12, "nearest", 2),
           ("few-spike K=16 nearest x2", "few-spike", 16, "nearest", 2),
           ("data-norm", "data-norm", None, None, None))
RATE_T = {32: 256, 224: 64}
#: normalisation examples (few-spike's α, data-norm's λ: maxima over them; with 16 at 32x32,
#: test activations above the maximum saturated and cost ResNet-34 1 in 19 clear examples)
NORM_EXAMPLES = {32: 256, 224: 16}


def export(name: str, size: int, path: str, seed: int = 0) -> None:
    """(torch venv) Random-weight ``name`` with randomised BatchNorm, exported to ONNX.

    BatchNorm's affine parameters are random; its running statistics are those of a
    calibration batch, then perturbed (±10% of the std on the mean, x0.8-1.25 on the
    variance): with made-up statistics, random weights saturate every ReLU6 and the output no
    longer depends on the input."""
    import torch
    import torchvision
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    calibration = 0.5 * torch.rand(64, 3, size, size) + 0.5 * torch.rand(64, 3, 1, 1)
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch gives its statistics
        model.train()
        model(calibration)
        for m in norms:
            m.running_mean += 0.1 * m.running_var.sqrt() * (2 * torch.rand_like(m.running_mean)
                                                             - 1)
            m.running_var *= 0.8 + 0.45 * torch.rand_like(m.running_var)
        model.eval()
        classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        classifier.bias -= model(calibration).mean(dim=0)
    torch.onnx.export(model, torch.rand(1, 3, size, size), path, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                      opset_version=17, do_constant_folding=False, dynamo=False)


# ---------------------------------------------------------------------------------------------
# distsnn's side (.venv)
def _run(cmd: list, timeout: float, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("distsnn: error:")]
    return lines[-1][len("distsnn: error: "):] if lines else stderr.strip().splitlines()[-1]


def ann_reference(onnx_path: Path, x):
    import numpy as np
    import onnxruntime as ort
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(["logits"], {"x": x[i:i + 8]})[0]
                             for i in range(0, len(x), 8)])
    top2 = np.sort(logits, axis=1)[:, -2:]
    span = logits.max(axis=1) - logits.min(axis=1)
    return logits, top2[:, 1] - top2[:, 0] > 0.05 * span


def evaluate(net: Path, data: Path, out: Path, build: Path, timesteps, timeout: float):
    """``mpiexec -n 2 distsnn evaluate`` (``timesteps``: rate methods only) under GNU time."""
    from common import BIN, MPIEXEC
    cmd = ["/usr/bin/time", "-f", "peak_rss_kib=%M", MPIEXEC, "-n", "2", BIN / "distsnn",
           "evaluate", net, "--data", data, "-o", out, "--build-dir", build, "--no-progress"]
    if timesteps is not None:
        cmd += ["-t", str(timesteps)]
    started = time.perf_counter()
    proc = _run(cmd, timeout)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": _error_line(proc.stderr)}
    rss = re.findall(r"peak_rss_kib=(\d+)", proc.stderr)
    result = json.loads(out.read_text())
    metric = next(iter(result["metrics"].values()))
    accuracy = next(iter(metric.values())) if isinstance(metric, dict) else metric
    return {"agreement": accuracy.get("result"), "examples": accuracy.get("total"),
            "seconds": result["timings_s"], "wall_s": round(wall, 1),
            "peak_rss_mib_largest_rank": round(int(rss[-1]) / 1024, 1) if rss else None,
            "result": result}


def run_model(name: str, size: int, n_examples: int, work: Path, timeout: float,
              methods: tuple = METHODS) -> dict:
    import numpy as np
    entry: dict = {"model": name, "size": size}
    onnx_path = work / f"{name}_{size}.onnx"
    if not onnx_path.exists():
        proc = _run([TORCH_PYTHON, __file__, "export", name, str(size), onnx_path], 900)
        if proc.returncode != 0:
            entry["refused"] = {"stage": "export", "why": proc.stderr.strip().splitlines()[-1]}
            return entry
    import onnx
    ops = {}
    for node in onnx.load(str(onnx_path)).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    entry["onnx_ops"] = ops
    rng = np.random.default_rng(size)
    x, norm = (0.5 * rng.random((n, 3, size, size), dtype=np.float32)
               + 0.5 * rng.random((n, 3, 1, 1), dtype=np.float32)
               for n in (n_examples, NORM_EXAMPLES[size]))
    logits, clear = ann_reference(onnx_path, x)
    top1 = logits.argmax(axis=1)
    entry.update(examples=n_examples, clear_examples=int(clear.sum()),
                 ann_distinct_classes=int(len(set(top1.tolist()))))
    np.savez(work / f"norm_{size}.npz", x=norm)
    # agreement over the clear examples and the others; at 224 (a couple of examples, each
    # rank needs one) over all of them
    subsets = ((("clear", clear), ("other", ~clear)) if size == 32
               else (("all", np.ones_like(clear)),))
    for subset, mask in subsets:
        if mask.sum() >= 2:
            np.savez(work / f"{name}_{size}_{subset}.npz", x=x[mask], y=top1[mask])
    for label, method, k, rounding, headroom in methods:
        tag = (f"{name}_{size}_{method}{k or ''}" + ("_nearest" if rounding == "nearest" else "")
               + (f"_x{headroom}" if headroom and headroom != 1 else ""))
        net = work / f"{tag}.h5"
        cmd = [Path(sys.executable).parent / "distsnn", "convert", onnx_path, "-o", net,
               "--method", method, "--norm-data", work / f"norm_{size}.npz", "--k", str(k or 8),
               "-t", str(RATE_T[size])]
        if method == "few-spike":
            cmd += ["--rounding", rounding, "--headroom", str(headroom)]
        started = time.perf_counter()
        proc = _run(cmd, timeout)
        record: dict = {"convert_s": round(time.perf_counter() - started, 1)}
        entry[label] = record
        if proc.returncode != 0:
            record["refused"] = _error_line(proc.stderr)
            continue
        inspect = _run([Path(sys.executable).parent / "distsnn", "inspect", net], 600)
        peak = re.search(r"peak per rank ([0-9.]+ \w+)", inspect.stdout)
        record["estimated_peak_per_rank"] = peak.group(1) if peak else None
        depth = _depth(net)
        for subset, mask in subsets:
            if mask.sum() < 2:
                continue
            out = work / f"{tag}_{subset}.json"
            res = evaluate(net, work / f"{name}_{size}_{subset}.npz", out, work / "build" / tag,
                           None if method == "few-spike" else RATE_T[size], timeout)
            full = res.pop("result", None)
            if full is not None:
                per_rank = -(-int(mask.sum()) // 2)
                steps = k * (per_rank + depth) if k else RATE_T[size] * per_rank
                res["ms_per_step"] = round(1000 * full["timings_s"]["evaluation"] / steps, 2)
                res["steps_per_rank"] = steps
            record[subset] = res
            print(name, size, label, subset, {k: v for k, v in res.items()
                                               if k != "seconds"}, flush=True)
    return entry


def _depth(net_path: Path) -> int:
    from distsnn.genn import pipeline_depths
    from distsnn.netfile import load_network
    net = load_network(net_path)
    depths = pipeline_depths(net)
    return max(depths[p.name] for p in net.outputs)


def rows(runs: list) -> list[dict]:
    """One table row per model, size and method (or one per refused model)."""
    out = []
    for run in runs:
        base = {"model": run["model"], "size": run["size"],
                "ANN classes": run.get("ann_distinct_classes"),
                "clear/all": f"{run.get('clear_examples')}/{run.get('examples')}"}
        for label, *_ in METHODS:
            if label not in run and "refused" not in run:
                continue  # not run
            record = run.get(label, {})
            if "refused" in record or "refused" in run:
                why = record.get("refused") or run["refused"]["why"]
                out.append({**base, "method": label, "refused": why})
                continue
            clear, other, every = (record.get(s, {}) for s in ("clear", "other", "all"))
            out.append({**base, "method": label, "agree clear": clear.get("agreement"),
                        "agree other": other.get("agreement"),
                        "agree all": every.get("agreement"),
                        "est. peak/rank": record.get("estimated_peak_per_rank"),
                        "peak RSS MiB": max(r.get("peak_rss_mib_largest_rank") or 0
                                            for r in (clear, other, every)) or None,
                        "ms/step": (clear or other or every).get("ms_per_step")})
    return out


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import BENCH, machine_info, table, write_result
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--sizes", nargs="*", type=int, default=[32, 224])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--examples-224", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3000)
    parser.add_argument("--methods", nargs="*", default=[m[0] for m in METHODS],
                        help="labels of METHODS to run (default: all)")
    parser.add_argument("--table", action="store_true", help="print the table of the results")
    args = parser.parse_args()
    work = BENCH / "data" / "torchvision"
    work.mkdir(parents=True, exist_ok=True)
    path = BENCH / "results" / "torchvision_models.json"
    previous = json.loads(path.read_text())["runs"] if path.exists() else []
    runs = {(r["model"], r["size"]): r for r in previous}
    if args.table:
        print(table(rows(previous), ["model", "size", "ANN classes", "clear/all", "method",
                                     "agree clear", "agree other", "agree all",
                                     "est. peak/rank",
                                     "peak RSS MiB", "ms/step", "refused"]))
        return
    for size in args.sizes:
        for name in args.models:
            if size == 32 and name not in SMALL_OK:
                continue
            n = args.examples if size == 32 else args.examples_224
            entry = run_model(name, size, n, work, args.timeout,
                              tuple(m for m in METHODS if m[0] in args.methods))
            runs[name, size] = {**runs.get((name, size), {}), **entry}
            write_result("torchvision_models", {"machine": machine_info(),
                                                "rate_timesteps": RATE_T, "ranks": 2,
                                                "runs": list(runs.values())})


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "export":
        export(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
