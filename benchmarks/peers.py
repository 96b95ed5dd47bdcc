"""distsnn against the PyTorch ANN-to-SNN converters (SpikingJelly, Sinabs) on the same
networks, weights and data, data-norm rate coding (max activation), on this machine's cores.

Per workload: the Keras model is exported once to a PyTorch copy (BatchNorm folded; the copy
must agree with Keras on every test example before anything is timed). distsnn converts the
Keras model once per configuration (``distsnn convert``, timed) and every repeat runs
``mpiexec -n 2 distsnn evaluate NET.h5`` (a cached GeNN build), and, as the peers do, the
conversion inside the run: ``mpiexec -n 2 distsnn evaluate model.keras -m data-norm
--norm-data norm.npz`` (CLI defaults, a cached GeNN build); each peer repeat is one
process (``benchmarks/peer_worker.py``: import torch, convert with calibration, simulate,
batch 50, 2 threads, ``OMP_WAIT_POLICY=PASSIVE``). Runs are interleaved (config by config
within each repeat) and medians reported: accuracy (digits: true labels; cifar: the ANN's
predictions, i.e. agreement), examples/s of the simulation, whole-process seconds, the peak
RSS of the largest process (for distsnn: per rank) and, for distsnn, the CPU seconds of all
its processes, user + sys.

    .venv/bin/python benchmarks/peers.py --repeats 3        # needs the `peers` extra
    .venv/bin/python benchmarks/peers.py --workloads digits --only "one command"
    .venv/bin/python benchmarks/peers.py --peer-python /path/to/torch-venv/bin/python \
        --workloads digits_maxpool   # the max-pooling digits CNN (maxpool_digits.py's)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BUILD,
    DATA,
    MPIEXEC,
    PYTHON,
    REPO,
    LoadMonitor,
    machine_info,
    median,
    table,
    write_result,
)
from workloads import ensure_digits  # noqa: E402

DISTSNN = str(Path(PYTHON).parent / "distsnn")
PEERS = ("spikingjelly", "sinabs")
#: The interpreter that runs peer_worker.py (torch, spikingjelly, sinabs): --peer-python
PEER_PYTHON = os.environ.get("DISTSNN_PEER_PYTHON", PYTHON)
#: distsnn configurations: (label, --input, --readout, --reset)
CONFIGS = [("distsnn poisson+spikes, reset zero (mlGeNN)", "poisson", "spikes", "zero"),
           ("distsnn analog+analog, reset zero", "analog", "analog", "zero"),
           ("distsnn analog+analog, reset subtract", "analog", "analog", "subtract")]
WORKLOADS = {"digits": {"timesteps": 500}, "cifar": {"timesteps": 100, "examples": 200},
             "digits_maxpool": {"timesteps": 500}}
#: The run that compares with a peer's whole process: conversion inside it, CLI defaults.
ONE_COMMAND = "distsnn one command: convert + evaluate (CLI defaults)"


def export_torch(model, directory: Path) -> None:
    """Layer list + weights of a Sequential Keras CNN for peer_worker.build_ann."""
    import keras
    spec, arrays = [], {}
    for layer in model.layers:
        name = type(layer).__name__
        if name == "Conv2D":
            w, b = layer.get_weights() if layer.use_bias else (layer.get_weights()[0], None)
            b = np.zeros(w.shape[-1], np.float32) if b is None else b
            spec.append({"type": "conv", "padding": "same" if layer.padding == "same" else 0})
            arrays[f"w{len(spec) - 1}"] = w.transpose(3, 2, 0, 1).copy()
            arrays[f"b{len(spec) - 1}"] = b
        elif name == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            scale = gamma / np.sqrt(var + layer.epsilon)
            i = len(spec) - 1
            arrays[f"w{i}"] = arrays[f"w{i}"] * scale[:, None, None, None]
            arrays[f"b{i}"] = (arrays[f"b{i}"] - mean) * scale + beta
        elif name == "Dense":
            w, b = layer.get_weights()
            spec.append({"type": "dense"})
            arrays[f"w{len(spec) - 1}"], arrays[f"b{len(spec) - 1}"] = w.T.copy(), b
        elif name == "AveragePooling2D":
            spec.append({"type": "avgpool", "size": list(layer.pool_size)})
        elif name == "MaxPooling2D":
            if layer.padding != "valid" or tuple(layer.strides) != tuple(layer.pool_size):
                raise ValueError("peers.py exports only MaxPooling2D with stride = size, "
                                 "padding 'valid'")
            spec.append({"type": "maxpool", "size": list(layer.pool_size)})
        elif name == "Flatten":
            spec.append({"type": "flatten"})
        elif name == "ReLU":
            spec.append({"type": "relu"})
        else:
            raise ValueError(f"peers.py cannot export {name}")
        activation = getattr(layer, "activation", None)
        if activation is keras.activations.relu:
            spec.append({"type": "relu"})
    (directory / "torch_spec.json").write_text(json.dumps(spec))
    np.savez(directory / "torch_weights.npz",
             **{k: np.asarray(v, np.float32) for k, v in arrays.items()})


def logits_model(model):
    """The model without its output softmax (argmax is the same)."""
    import keras
    last = model.layers[-1]
    if getattr(last, "activation", None) is keras.activations.softmax:
        last.activation = keras.activations.linear
    return model


def prepare(workload: str) -> tuple[Path, dict]:
    """Model, norm/test data, ANN logits and the PyTorch export in DATA/peers/<workload>."""
    directory = DATA / "peers" / workload
    info_path = directory / "info.json"
    if info_path.exists():
        return directory, json.loads(info_path.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    if workload == "digits":
        ensure_digits()
        model = keras.models.load_model(DATA / "digits_cnn.keras")
        test = np.load(DATA / "digits_test.npz")
        x, y = test["x"], test["y"]
        norm = np.load(DATA / "digits_norm.npz")["x"]
    elif workload == "digits_maxpool":  # benchmarks/maxpool_digits.py's max-pool CNN
        from maxpool_digits import train
        model, data, _ = train("max")  # train_digits_cnn(pooling="max"), seed 1, 15 epochs
        x, y, norm = data.x_test, data.y_test, data.x_train[:256]
    else:  # CIFAR-shaped CNN with Keras' default random initialisation, random images
        keras.utils.set_random_seed(0)
        L = keras.layers
        model = keras.Sequential([
            keras.Input((32, 32, 3)), L.Conv2D(16, 3, padding="same", activation="relu"),
            L.AveragePooling2D(2), L.Conv2D(32, 3, padding="same", activation="relu"),
            L.AveragePooling2D(2), L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10)])
        rng = np.random.default_rng(0)
        x = rng.random((WORKLOADS["cifar"]["examples"], 32, 32, 3), dtype=np.float32)
        norm = rng.random((256, 32, 32, 3), dtype=np.float32)
        y = None
    model = logits_model(model)
    logits = model.predict(x, verbose=0)
    if y is None:
        y = logits.argmax(1)  # accuracy then means agreement with the ANN
    model.save(directory / "model.keras")
    np.savez(directory / "test.npz", x=x, y=y)
    np.savez(directory / "norm.npz", x=norm)
    np.savez(directory / "ann.npz", logits=logits)
    export_torch(model, directory)
    info = {"ann_accuracy": float(np.mean(logits.argmax(1) == y)), "examples": len(x),
            "labels": "ANN predictions" if workload == "cifar" else "true labels"}
    info_path.write_text(json.dumps(info, indent=2))
    return directory, info


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds of ``cmd`` and the peak RSS [MiB] of its largest process (for
    ``mpiexec``: the largest rank), from GNU time."""
    import subprocess
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "peak_rss_kib=%M", *cmd], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=REPO, timeout=1800)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                           f"\n{proc.stderr[-3000:]}")
    peak = re.findall(r"^peak_rss_kib=(\d+)$", proc.stderr, re.M)[-1]
    return seconds, int(peak) / 1024


def distsnn_convert(directory: Path, timesteps: int, config: tuple) -> tuple[Path, float]:
    _, inp, readout, reset = config
    net = directory / f"net-{inp}-{readout}-{reset}.h5"
    seconds, _ = timed([DISTSNN, "convert", str(directory / "model.keras"), "-m", "data-norm",
                     "--norm-data", str(directory / "norm.npz"), "-t", str(timesteps),
                     "--input", inp, "--readout", readout, "--reset", reset, "-o", str(net)])
    return net, seconds


def distsnn_run(directory: Path, net: Path | None, timesteps: int, out: Path) -> dict:
    """``mpiexec -n 2 distsnn evaluate`` of the network file ``net``, or (None) of the Keras
    model, converted inside the run."""
    model = ([str(net)] if net is not None else
             [str(directory / "model.keras"), "-m", "data-norm", "--norm-data",
              str(directory / "norm.npz")])
    cpu = _children_cpu()
    seconds, peak = timed([MPIEXEC, "-n", "2", DISTSNN, "evaluate", *model, "--data",
                     str(directory / "test.npz"), "-t", str(timesteps), "-o", str(out),
                     "--build-dir", str(BUILD / "peers"), "--no-progress"])
    result = json.loads(out.read_text())
    accuracy = result["metrics"][str(timesteps)]["sparse_categorical_accuracy"]["result"]
    return {"accuracy": accuracy, "examples_per_second": result["examples_per_second"],
            "process_s": seconds, "cpu_s": _children_cpu() - cpu, "peak_rss_mib": peak,
            "conversion_s": result["timings_s"].get("conversion")}


def _children_cpu() -> float:
    """User + sys seconds of this process's finished (waited-for) children and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peer_run(peer: str, directory: Path, timesteps: int, out: Path) -> dict:
    seconds, peak = timed([PEER_PYTHON, str(REPO / "benchmarks" / "peer_worker.py"),
                           "--peer", peer,
                     "--dir", str(directory), "--timesteps", str(timesteps), "--out", str(out)],
                    env={"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "2"})
    result = json.loads(out.read_text())
    return {"accuracy": result["accuracy"], "examples_per_second": result["examples_per_second"],
            "process_s": seconds, "peak_rss_mib": peak, "version": result.get("version"),
            "torch_vs_keras": result["torch_vs_keras"]}


def peers_installed() -> list[str]:
    """The peers importable (with torch) by PEER_PYTHON."""
    import subprocess
    probe = ("import importlib.util as u, sys\n"
             "if u.find_spec('torch'): print(*[p for p in sys.argv[1:] if u.find_spec(p)])")
    proc = subprocess.run([PEER_PYTHON, "-c", probe, *PEERS], capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode:
        raise SystemExit(f"{PEER_PYTHON} failed: {proc.stderr[-2000:]}")
    return proc.stdout.split()


def main() -> None:
    global PEER_PYTHON
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="digits,cifar")
    parser.add_argument("--only", default="", help="only the entries whose label contains "
                        "this text, e.g. 'one command'")
    parser.add_argument("--peer-python", default=PEER_PYTHON,
                        help="the Python that runs the peers (with torch, spikingjelly, "
                        "sinabs); default $DISTSNN_PEER_PYTHON or this interpreter")
    args = parser.parse_args()
    PEER_PYTHON = args.peer_python
    peers = peers_installed()
    tmp = BUILD / "peers-runs"
    tmp.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_info(), "repeats": args.repeats, "peers": peers,
               "workloads": {}}
    for workload in args.workloads.split(","):
        directory, info = prepare(workload)
        timesteps = WORKLOADS[workload]["timesteps"]
        if peers:  # the PyTorch copy must agree with Keras before anything is compared
            check = tmp / "check.json"
            timed([PEER_PYTHON, str(REPO / "benchmarks" / "peer_worker.py"), "--peer", "check",
                   "--dir", str(directory), "--timesteps", "1", "--out", str(check)])
            agreement = json.loads(check.read_text())["torch_vs_keras"]
            if agreement["argmax_agreement"] != 1.0:
                raise SystemExit(f"{workload}: the PyTorch copy disagrees with Keras: {agreement}")
            info["torch_vs_keras"] = agreement
        entries, runs = {}, {}
        for config in CONFIGS:
            if args.only not in config[0]:
                continue
            net, seconds = distsnn_convert(directory, timesteps, config)
            entries[config[0]] = ("distsnn", net)
            runs[config[0]] = {"convert_process_s": seconds, "runs": []}
            distsnn_run(directory, net, timesteps, tmp / "warm.json")  # builds the GeNN code
        if args.only in ONE_COMMAND:
            entries[ONE_COMMAND] = ("distsnn", None)
            runs[ONE_COMMAND] = {"runs": []}
            distsnn_run(directory, None, timesteps, tmp / "warm.json")
        for peer in peers:
            if args.only not in peer:
                continue
            entries[peer] = ("peer", peer)
            runs[peer] = {"runs": []}
        monitor = LoadMonitor()
        with monitor:
            for repeat in range(args.repeats):
                for label, (kind, what) in entries.items():
                    out = tmp / f"{workload}-{repeat}.json"
                    one = (distsnn_run(directory, what, timesteps, out) if kind == "distsnn"
                           else peer_run(what, directory, timesteps, out))
                    one["loadavg_1min"] = os.getloadavg()[0]
                    runs[label]["runs"].append(one)
                    print(workload, label, {k: one[k] for k in ("accuracy",
                          "examples_per_second", "process_s")}, flush=True)
        for label, entry in runs.items():
            for key in ("accuracy", "examples_per_second", "process_s", "cpu_s", "peak_rss_mib",
                        "conversion_s"):
                if entry["runs"][0].get(key) is not None:
                    entry[key] = median(r[key] for r in entry["runs"])
        results["workloads"][workload] = {"timesteps": timesteps, **info, "entries": runs,
                                          "load": monitor.as_dict()}
    path = write_result("peers", results)
    print(markdown(results))
    print(f"wrote {path}")


def markdown(results: dict) -> str:
    lines = []
    for workload, w in results["workloads"].items():
        rows = [{"method": label, "accuracy %": 100 * e["accuracy"],
                 "examples/s": e["examples_per_second"], "process s": e["process_s"],
                 "CPU s": e.get("cpu_s"), "peak RSS MiB": e.get("peak_rss_mib"),
                 "convert s": e.get("convert_process_s", e.get("conversion_s"))}
                for label, e in w["entries"].items()]
        lines.append(table(rows, ["method", "accuracy %", "examples/s", "process s", "CPU s",
                                  "peak RSS MiB", "convert s"],
                           f"**{workload}** (T={w['timesteps']}, {w['examples']} examples, "
                           f"accuracy against {w['labels']}; ANN {100 * w['ann_accuracy']:.2f}%; "
                           f"load average {w['load']['load_before'][0]:.1f} -> "
                           f"{w['load']['load_after'][0]:.1f}, other processes "
                           f"{w['load']['foreign_cores']:.2f} cores)"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
