"""NIR graphs exported by snnTorch (Leaky, Synaptic, RSynaptic) and Sinabs (IAF), simulated by
their own tool and by distsnn on the same seeded random rasters: events per layer side by
side (non-zero outputs per step; Sinabs' several spikes in one step are one event), and
examples/s of each simulation loop.

The export and the peer simulation run in the peers' venv (``--peer-python``, torch,
snntorch, sinabs; ``benchmarks/nir_peer_worker.py``); snnTorch 1.0 needs nir >= 1.0.6 and
Sinabs 3.1 nir 1.0.4, so snnTorch runs with nir 1.0.6 put in front of that venv's. distsnn
converts each file with the tool's preset (``distsnn convert --nir-source``) and evaluates
it with ``mpiexec -n R distsnn evaluate`` on 1 and 2 ranks (CPU backend, a cached build).

    .venv/bin/python benchmarks/nir_peers.py --examples 64 --steps 100 --repeats 3

Timings are medians of ``--repeats`` runs (examples/s of each simulation loop alone: the
tool on a batch of all examples with 2 torch threads, distsnn per the results JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BUILD, DATA, MPIEXEC, PYTHON, machine_info, table, write_result

DISTSNN = str(Path(PYTHON).parent / "distsnn")
WORKER = Path(__file__).resolve().parent / "nir_peer_worker.py"
MODELS = {"leaky": "snntorch", "synaptic": "snntorch", "rsynaptic": "snntorch",
          "iaf": "sinabs"}


def run(args: list[str], env: dict | None = None, timeout: float = 900) -> None:
    proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")


def nir_overlay(root: Path) -> Path:
    """nir 1.0.6 in a folder of its own, for snnTorch in the peers' venv."""
    target = root / "nir-1.0.6"
    if not (target / "nir").is_dir():
        run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
             "nir==1.0.6"])
    return target


def one_model(model: str, args, root: Path) -> dict:
    out = root / model
    env = {"PYTHONPATH": str(nir_overlay(root))} if MODELS[model] == "snntorch" else {}
    peer_rates = []
    for _ in range(args.repeats):  # the same seeds every time: only the timing varies
        run([args.peer_python, str(WORKER), model, str(out), "--n", str(args.examples),
             "--steps", str(args.steps)], env)
        peer = json.loads((out / "peer.json").read_text())
        peer_rates.append(peer["examples_per_second"])
    run([DISTSNN, "convert", str(out / "model.nir"), "-o", str(out / "net.h5"),
         "--nir-source", MODELS[model]])
    row = {"model": model, "tool": MODELS[model], "peer_events": peer["events"],
           "peer_spikes": peer["spikes"], "peer_examples_per_s": statistics.median(peer_rates),
           "peer_examples_per_s_runs": peer_rates}
    for ranks in (1, 2):
        res = out / f"distsnn-{ranks}.json"
        rates = []
        for _ in range(args.repeats):
            run([MPIEXEC, "-n", str(ranks), DISTSNN, "evaluate", str(out / "net.h5"), "--data",
                 str(out / "data.npz"), "-t", str(args.steps), "--no-progress", "-o",
                 str(res), "--build-dir", str(BUILD / "nir")])
            result = json.loads(res.read_text())
            rates.append(result["examples_per_second"])
        pops = result["spikes"]["populations"]
        row[f"distsnn_examples_per_s_{ranks}"] = statistics.median(rates)
        row[f"distsnn_examples_per_s_{ranks}_runs"] = rates
        row[f"distsnn_events_{ranks}"] = {
            layer: next(v["spikes"] for k, v in pops.items()
                        if k == layer or k.startswith(layer + "_"))
            for layer in peer["events"]}
    row["events_equal"] = row["distsnn_events_1"] == row["peer_events"] == row["distsnn_events_2"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="runs per timing (median)")
    ap.add_argument("--peer-python", default="/work/peers-venv/bin/python")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    root = DATA / "nir_peers"
    rows = [one_model(m, args, root) for m in args.models.split(",")]
    write_result("nir_peers", {"machine": machine_info(), "examples": args.examples,
                               "steps": args.steps, "repeats": args.repeats, "rows": rows})
    shown = [{"model": r["model"], "tool": r["tool"],
              "events per layer (tool)": " / ".join(map(str, r["peer_events"].values())),
              "events per layer (distsnn)": " / ".join(map(str, r["distsnn_events_1"].values())),
              "equal (1 and 2 ranks)": r["events_equal"],
              "tool ex/s": r["peer_examples_per_s"],
              "distsnn ex/s, 1 rank": r["distsnn_examples_per_s_1"],
              "distsnn ex/s, 2 ranks": r["distsnn_examples_per_s_2"]} for r in rows]
    print(table(shown, list(shown[0])))


if __name__ == "__main__":
    main()
