"""One peer run for benchmarks/peers.py: a PyTorch copy of the Keras network, converted by
SpikingJelly or Sinabs and simulated on the test set. Imports only torch (never Keras), so
its whole-process time is the peer's own. Writes a JSON summary.

    python benchmarks/peer_worker.py --peer sinabs --dir DATA_DIR --timesteps 500 --out r.json
"""
from __future__ import annotations

import argparse
import json
import time

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


class FlattenNHWC(nn.Module):
    """Keras' Flatten order (channels last) on an NCHW tensor."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1)


def build_ann(spec: list[dict], arrays) -> nn.Sequential:
    """The Keras network as ``nn.Sequential`` (BatchNorm already folded by the exporter)."""
    layers = []
    for i, layer in enumerate(spec):
        kind = layer["type"]
        if kind == "conv":
            w = torch.from_numpy(arrays[f"w{i}"])
            conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), padding=layer["padding"])
            conv.weight.data, conv.bias.data = w, torch.from_numpy(arrays[f"b{i}"])
            layers.append(conv)
        elif kind == "dense":
            w = torch.from_numpy(arrays[f"w{i}"])
            dense = nn.Linear(w.shape[1], w.shape[0])
            dense.weight.data, dense.bias.data = w, torch.from_numpy(arrays[f"b{i}"])
            layers.append(dense)
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "avgpool":
            layers.append(nn.AvgPool2d(layer["size"]))
        elif kind == "maxpool":
            layers.append(nn.MaxPool2d(layer["size"]))
        elif kind == "flatten":
            layers.append(FlattenNHWC())
        else:
            raise ValueError(f"unknown layer {kind}")
    return nn.Sequential(*layers).eval()


def batches(x: np.ndarray, size: int):
    for start in range(0, len(x), size):
        yield torch.from_numpy(x[start:start + size])


def spikingjelly(ann, norm, x, timesteps, batch_size):
    from spikingjelly.activation_based import ann2snn, functional
    start = time.perf_counter()
    recipe = ann2snn.RateCodingRecipe(list(batches(norm, 64)), mode="Max")
    snn = ann2snn.Converter(recipe).convert(ann).eval()
    convert_s = time.perf_counter() - start
    start = time.perf_counter()
    preds = []
    with torch.no_grad():
        for xb in batches(x, batch_size):
            functional.reset_net(snn)
            out = 0
            for _ in range(timesteps):
                out = out + snn(xb)
            preds.append(out.argmax(1).numpy())
    return np.concatenate(preds), convert_s, time.perf_counter() - start


def sinabs_run(ann, norm, x, timesteps, batch_size):
    import sinabs
    from sinabs.utils import normalize_weights
    start = time.perf_counter()
    names = [name for name, _ in ann.named_children()]
    relus = [n for n, m in ann.named_children() if isinstance(m, nn.ReLU)]
    params = [next(p for p in reversed(names[:names.index(r)])
                   if isinstance(getattr(ann, p), (nn.Conv2d, nn.Linear))) for r in relus]
    normalize_weights(ann, torch.from_numpy(norm), relus, params, percentile=100)
    snn = sinabs.from_model(ann, input_shape=tuple(x.shape[1:]), num_timesteps=timesteps,
                            add_spiking_output=False)
    convert_s = time.perf_counter() - start
    start = time.perf_counter()
    preds = []
    with torch.no_grad():
        for xb in batches(x, batch_size):
            snn.reset_states()
            xt = xb.unsqueeze(1).expand(-1, timesteps, *xb.shape[1:]).reshape(-1, *xb.shape[1:])
            out = snn(xt).reshape(len(xb), timesteps, -1).sum(1)
            preds.append(out.argmax(1).numpy())
    return np.concatenate(preds), convert_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer", choices=["spikingjelly", "sinabs", "check"], required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--timesteps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import_s = time.perf_counter() - T0
    spec = json.loads(open(f"{args.dir}/torch_spec.json").read())
    arrays = np.load(f"{args.dir}/torch_weights.npz")
    test, norm = np.load(f"{args.dir}/test.npz"), np.load(f"{args.dir}/norm.npz")
    x = np.ascontiguousarray(test["x"].transpose(0, 3, 1, 2), np.float32)
    xn = np.ascontiguousarray(norm["x"].transpose(0, 3, 1, 2), np.float32)
    ann = build_ann(spec, arrays)
    keras_logits = np.load(f"{args.dir}/ann.npz")["logits"]
    with torch.no_grad():
        logits = ann(torch.from_numpy(x)).numpy()
    result = {"peer": args.peer, "torch": torch.__version__, "threads": args.threads,
              "import_s": import_s,
              "torch_vs_keras": {"argmax_agreement": float(np.mean(logits.argmax(1)
                                                                  == keras_logits.argmax(1))),
                                 "max_abs_diff": float(np.abs(logits - keras_logits).max())}}
    if args.peer != "check":
        run = spikingjelly if args.peer == "spikingjelly" else sinabs_run
        preds, convert_s, sim_s = run(ann, xn, x, args.timesteps, args.batch_size)
        result.update(convert_s=convert_s, simulate_s=sim_s, examples=len(x),
                      examples_per_second=len(x) / sim_s,
                      accuracy=float(np.mean(preds == test["y"])),
                      agreement=float(np.mean(preds == keras_logits.argmax(1))))
    if args.peer == "sinabs":
        import sinabs
        result["version"] = sinabs.__version__
    elif args.peer == "spikingjelly":
        from importlib.metadata import version
        result["version"] = version("spikingjelly")
    result["process_s"] = time.perf_counter() - T0
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
