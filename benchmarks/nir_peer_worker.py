"""One NIR peer run, in the peers' venv (torch, snntorch, sinabs, nir): build a small network
in its own tool with seeded random weights, export it to NIR, simulate seeded random rasters
with the tool itself and write the file, the rasters and the tool's spike counts per layer.

    /work/peers-venv/bin/python benchmarks/nir_peer_worker.py MODEL OUTDIR --n 64 --steps 100

MODEL: leaky, synaptic, rsynaptic (snnTorch) or iaf (Sinabs). Spike counts are per NIR node
name (the tool's module names); examples/s times the tool's simulation loop alone (batch of
all examples, torch on 2 threads).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nir
import numpy as np
import torch


def snntorch_model(kind: str):
    import snntorch as snn
    torch.manual_seed(0)
    n_in, hidden, n_out = 40, 64, 10

    def full(n, value):  # per-neuron parameters: scalar ones export with shape ()
        return torch.full((n,), value)
    if kind == "leaky":
        layers = [snn.Leaky(beta=full(hidden, 0.9), threshold=full(hidden, 1.0),
                            init_hidden=True),
                  snn.Leaky(beta=full(n_out, 0.8), threshold=full(n_out, 1.0), init_hidden=True)]
    elif kind == "synaptic":
        layers = [snn.Synaptic(alpha=full(hidden, 0.7), beta=full(hidden, 0.9),
                               threshold=full(hidden, 1.0), init_hidden=True),
                  snn.Synaptic(alpha=full(n_out, 0.6), beta=full(n_out, 0.8),
                               threshold=full(n_out, 1.0), init_hidden=True)]
    else:
        layers = [snn.RSynaptic(alpha=full(hidden, 0.7), beta=full(hidden, 0.9),
                                threshold=full(hidden, 1.0), linear_features=hidden,
                                all_to_all=True, init_hidden=True),
                  snn.Synaptic(alpha=full(n_out, 0.6), beta=full(n_out, 0.8),
                               threshold=full(n_out, 1.0), init_hidden=True)]
    model = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), layers[0],
                                torch.nn.Linear(hidden, n_out), layers[1])
    with torch.no_grad():
        model[0].weight.mul_(3.0)
        model[2].weight.mul_(2.0)
    return model, (n_in,), {"1": layers[0], "3": layers[1]}


def sinabs_model():
    import sinabs.layers as sl
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 8, 3, stride=2, padding=1), sl.IAFSqueeze(batch_size=1),
        sl.SumPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10),
        sl.IAFSqueeze(batch_size=1))
    with torch.no_grad():
        model[0].weight.mul_(4.0)
        model[4].weight.mul_(3.0)
    return model, (2, 16, 16), {"1": model[1], "5": model[5]}


def fill_types(model, graph, sample) -> None:
    """nir 1.0.4 (what Sinabs 3.1 needs) cannot write the None types Sinabs leaves on
    convolutions, pooling and Flatten: fill them from one forward pass."""
    shapes = {}

    def hook(name):
        def record(_m, inputs, output):
            shapes[name] = (tuple(inputs[0].shape[1:]), tuple(output.shape[1:]))
        return record
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_children()]
    with torch.no_grad():
        model(sample)
    for h in handles:
        h.remove()
    for name, node in graph.nodes.items():
        if name not in shapes:
            continue
        shape_in, shape_out = shapes[name]
        if getattr(node, "input_shape", 0) is None:
            node.input_shape = np.array(shape_in[1:])
        if (getattr(node, "input_type", None) or {}).get("input", 0) is None:
            node.input_type = {"input": np.array(shape_in)}
        if (getattr(node, "output_type", None) or {}).get("output", 0) is None:
            node.output_type = {"output": np.array(shape_out)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["leaky", "synaptic", "rsynaptic", "iaf"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    model, shape, spiking = (sinabs_model() if args.model == "iaf"
                             else snntorch_model(args.model))
    rng = np.random.default_rng(args.seed)
    x = rng.random((args.n, args.steps) + shape) < 0.2
    counts = {name: np.zeros(args.n, np.int64) for name in spiking}
    events = {name: np.zeros(args.n, np.int64) for name in spiking}  # non-zero outputs

    def hook(name):
        def record(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            flat = out.detach().reshape(args.n, -1)
            counts[name] += flat.sum(dim=1).long().numpy()
            events[name] += (flat != 0).sum(dim=1).long().numpy()
        return record
    if args.model == "iaf":
        import sinabs
        graph = sinabs.to_nir(model, torch.zeros((1,) + shape))
        fill_types(model, graph, torch.zeros((1,) + shape))
    else:
        from snntorch import utils
        from snntorch.export_nir import export_to_nir
        utils.reset(model)
        graph = export_to_nir(model, torch.zeros((1,) + shape), ignore_dims=[0])
    nir.write(args.out / "model.nir", graph)
    handles = [m.register_forward_hook(hook(name)) for name, m in spiking.items()]
    xt = torch.as_tensor(x, dtype=torch.float32)
    start = time.perf_counter()
    with torch.no_grad():
        if args.model == "iaf":
            for m in spiking.values():
                m.batch_size = args.n
            sinabs.reset_states(model)
            model(xt.reshape((args.n * args.steps,) + shape))  # Sinabs: batch and time folded
        else:
            utils.reset(model)
            for t in range(args.steps):
                model(xt[:, t])
    seconds = time.perf_counter() - start
    for h in handles:
        h.remove()
    out = np.zeros(args.n, np.int64)  # labels: the tool's own most active output
    np.savez(args.out / "data.npz", x=x, y=out)
    (args.out / "peer.json").write_text(json.dumps({
        "model": args.model, "examples": args.n, "steps": args.steps,
        "spikes": {name: int(c.sum()) for name, c in counts.items()},
        "events": {name: int(c.sum()) for name, c in events.items()},
        "examples_per_second": args.n / seconds}, indent=1))


if __name__ == "__main__":
    main()
