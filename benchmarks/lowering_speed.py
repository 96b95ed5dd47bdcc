"""Per-step time of one convolution under each GeNN lowering (single-threaded CPU backend).

distsnn's Toeplitz snippet (``distsnn.genn.toeplitz``, CPU and CUDA forms), explicit SPARSE
synapses and GeNN's built-in ``Conv2D`` Toeplitz snippet (stride 1, odd kernels only) on the
same spikes; every lowering's output is checked against SPARSE. Writes results/lowering.json.

    .venv/bin/python benchmarks/lowering_speed.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from pygenn import (
    GeNNModel,
    create_neuron_model,
    init_postsynaptic,
    init_toeplitz_connectivity,
    init_weight_update,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BUILD, machine_info, table, write_result  # noqa: E402

from distsnn.connectivity import AvgPoolConv2D, Conv2D  # noqa: E402
from distsnn.genn.lowering import kernel_geometry, kernel_values  # noqa: E402
from distsnn.genn.toeplitz import toeplitz_connectivity  # noqa: E402

STEPS = 50
SOURCE = create_neuron_model("bench_source", vars=[("r", "scalar")],
                             threshold_condition_code="r >= 1.0")
TARGET = create_neuron_model("bench_target", vars=[("x", "scalar")], sim_code="x += Isyn;")


def cases():
    rng = np.random.default_rng(1)

    def kernel(kh, cin, cout):
        return rng.normal(size=(kh, kh, cin, cout)).astype(np.float32)
    return [("conv3x3 s1 same 32x32x64->64", (32, 32, 64), Conv2D(kernel(3, 64, 64), padding="same")),
            ("conv3x3 s2 same 32x32x64->128", (32, 32, 64),
             Conv2D(kernel(3, 64, 128), strides=2, padding="same")),
            ("conv1x1 s2 16x16x128->256", (16, 16, 128), Conv2D(kernel(1, 128, 256), strides=2)),
            ("pool2+conv3x3 same 32x32x64->128", (32, 32, 64),
             AvgPoolConv2D(kernel(3, 64, 128), pool_size=(2, 2), padding="same"))]


def run(name: str, lowering: str, shape, conn, rate: float) -> tuple[np.ndarray, float]:
    model = GeNNModel("float", f"bench_{abs(hash((name, lowering))) % 10 ** 8}_{lowering}",
                      backend="single_threaded_cpu", optimize_code=True)
    out_shape = conn.output_shape(shape)
    pre = model.add_neuron_population("pre", int(np.prod(shape)), SOURCE, {}, {"r": 0.0})
    post = model.add_neuron_population("post", int(np.prod(out_shape)), TARGET, {}, {"x": 0.0})
    wu, psm = "StaticPulse", init_postsynaptic("DeltaCurr")
    if lowering in ("toeplitz", "toeplitz_cuda_form"):
        model.add_synapse_population(
            "s", "TOEPLITZ", pre, post,
            init_weight_update(wu, {}, {"g": kernel_values(conn, shape)}), psm,
            toeplitz_connectivity(kernel_geometry(conn, shape),
                                  "cuda" if lowering == "toeplitz_cuda_form" else "cpu"))
    elif lowering == "genn_builtin_toeplitz":
        kh, kw, ic, oc = conn.weight.shape
        model.add_synapse_population(
            "s", "TOEPLITZ", pre, post, init_weight_update(wu, {}, {"g": conn.weight.reshape(-1)}),
            psm, init_toeplitz_connectivity("Conv2D", {
                "conv_kh": kh, "conv_kw": kw, "conv_ih": shape[0], "conv_iw": shape[1],
                "conv_ic": ic, "conv_oh": out_shape[0], "conv_ow": out_shape[1], "conv_oc": oc}))
    else:
        a, b, g = conn.synapses(shape)
        sg = model.add_synapse_population("s", "SPARSE", pre, post,
                                          init_weight_update(wu, {}, {"g": g}), psm)
        sg.set_sparse_connections(a, b)
    BUILD.mkdir(parents=True, exist_ok=True)
    model.build(str(BUILD))
    model.load()
    x = (np.random.default_rng(0).random(pre.num_neurons) < rate).astype(np.float32)
    pre.vars["r"].view[:] = x
    pre.vars["r"].push_to_device()
    start = time.perf_counter()
    for _ in range(STEPS):
        model.step_time()
    seconds = (time.perf_counter() - start) / STEPS
    post.vars["x"].pull_from_device()
    result = np.array(post.vars["x"].view)
    model.unload()
    return result, seconds


def main() -> None:
    rows = []
    for name, shape, conn in cases():
        for rate in (0.05, 0.2):
            reference, sparse_s = run(name, "sparse", shape, conn, rate)
            row = {"layer": name, "spikes/step": rate, "sparse ms": 1e3 * sparse_s}
            lowerings = ["toeplitz", "toeplitz_cuda_form"]
            if isinstance(conn, Conv2D) and conn.strides == (1, 1):
                lowerings.append("genn_builtin_toeplitz")
            for lowering in lowerings:
                out, seconds = run(name, lowering, shape, conn, rate)
                tol = 1e-3 * max(1.0, float(np.abs(reference).max()))
                if lowering != "genn_builtin_toeplitz":  # GeNN's flips the kernel: timing only
                    assert np.allclose(out, reference, atol=tol), (name, lowering)
                row[f"{lowering} ms"] = 1e3 * seconds
            row["sparse / toeplitz"] = row["sparse ms"] / row["toeplitz ms"]
            rows.append(row)
            print(rows[-1], flush=True)
    write_result("lowering", {"machine": machine_info(), "steps": STEPS, "rows": rows})
    print(table(rows, ["layer", "spikes/step", "toeplitz ms", "toeplitz_cuda_form ms",
                       "sparse ms", "genn_builtin_toeplitz ms", "sparse / toeplitz"]))


if __name__ == "__main__":
    main()
