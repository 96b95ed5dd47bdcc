"""Every kind of network distsnn builds, for GeNN's CUDA backend.

``compile`` generates and nvcc-compiles each case's CUDA model (at GeNN batch sizes 1 and 64,
VGG16-CIFAR few-spike at 256) without running it: on a machine without a GPU, run it in a
process that preloads launch/cuda/stub_driver.c (see :func:`stub_environment`), which answers
GeNN's device query. ``run`` (a GPU machine, benchmarks/gpu_check.sh) simulates each case on
identical inputs at CUDA batch 64, CUDA batch 1 and on the CPU and compares them.

    python tests/helpers/cuda_cases.py compile OUT.json BUILD_DIR
    python tests/helpers/cuda_cases.py run OUT.json BUILD_DIR
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
K = 8            # few-spike window
T = 20           # rate-coded timesteps
#: nvcc flags every compile adds: code for the A100 (sm_80) beside the stub's H100 (sm_90)
EXTRA_ARCH = "-gencode arch=compute_80,code=sm_80"


@dataclass(frozen=True)
class Case:
    """One network to build: ``make()`` returns it; its schedule and lowering."""

    name: str
    make: Callable[[], "object"]
    mode: str = "rate"              # "rate" or "few_spike"
    connectivity: str = "auto"      # "auto", "sparse" or "procedural"
    batches: tuple[int, ...] = (1, 64)


def _weights(rng, *shape, scale: float = 0.5) -> np.ndarray:
    return rng.normal(0, scale, shape).astype(np.float32)


def _image_net(connect, input_neuron=None, output_neuron=None, shape=(8, 8, 2)):
    """input (8x8x2) -> connect(...) -> output; ``connect(net, inp, rng)`` returns the last
    hidden population."""
    from distsnn.network import Network
    from distsnn.neurons import IntegrateFire, PoissonInput
    rng = np.random.default_rng(7)
    net = Network(metadata={"case": "cuda"})
    inp = net.add_population("input", shape, input_neuron or PoissonInput())
    last = connect(net, inp, rng)
    out = net.add_population("output", (4,), output_neuron or
                             IntegrateFire(readout="spike_count"))
    from distsnn.connectivity import Dense
    net.connect(last, out, Dense(_weights(rng, last.size, 4)))
    net.outputs = [out]
    return net


def _conv(filters=3, kernel=3, hidden=None, **options):
    """A connect function: one Conv2D (``options``: strides, padding) into ``hidden``."""
    from distsnn.connectivity import Conv2D
    from distsnn.neurons import IntegrateFire

    def connect(net, inp, rng):
        c = Conv2D(_weights(rng, kernel, kernel, inp.shape[-1], filters), **options)
        shape = c.output_shape(inp.shape)
        pop = net.add_population("hidden", shape, hidden or IntegrateFire())
        net.connect(inp, pop, c)
        return pop
    return connect


def _grouped(groups: int, filters: int, **options):
    """A connect function: one grouped Conv2D (``groups == channels``: depthwise)."""
    from distsnn.connectivity import Conv2D
    from distsnn.neurons import IntegrateFire

    def connect(net, inp, rng):
        c = Conv2D(_weights(rng, 3, 3, inp.shape[-1] // groups, filters), groups=groups,
                   **options)
        pop = net.add_population("hidden", c.output_shape(inp.shape), IntegrateFire())
        net.connect(inp, pop, c)
        return pop
    return connect


def _pool_conv(net, inp, rng):
    from distsnn.connectivity import AvgPoolConv2D
    from distsnn.neurons import IntegrateFire
    c = AvgPoolConv2D(_weights(rng, 3, 3, inp.shape[-1], 3), pool_size=(2, 2), padding="same")
    pop = net.add_population("hidden", c.output_shape(inp.shape), IntegrateFire())
    net.connect(inp, pop, c)
    return pop


def _conv_transpose(net, inp, rng):
    from distsnn.connectivity import Conv2DTranspose
    from distsnn.neurons import IntegrateFire
    c = Conv2DTranspose(_weights(rng, 3, 3, 2, inp.shape[-1]), 2, 3, conv_strides=2,
                        conv_padding="same")
    pop = net.add_population("hidden", c.output_shape(inp.shape), IntegrateFire())
    net.connect(inp, pop, c)
    return pop


def _residual(net, inp, rng):
    """conv -> conv, plus a skip connection from the input into the second conv's target."""
    from distsnn.connectivity import Conv2D
    from distsnn.neurons import IntegrateFire
    a = net.add_population("conv_a", (8, 8, 2), IntegrateFire())
    b = net.add_population("conv_b", (8, 8, 2), IntegrateFire())
    net.connect(inp, a, Conv2D(_weights(rng, 3, 3, 2, 2), padding="same"))
    net.connect(a, b, Conv2D(_weights(rng, 3, 3, 2, 2), padding="same"))
    net.connect(inp, b, Conv2D(_weights(rng, 1, 1, 2, 2), padding="same"))
    return b


def _pool_dense_net():
    """input -> conv -> (average pool fused into) dense output."""
    from distsnn.connectivity import AvgPoolDense2D, Conv2D
    from distsnn.network import Network
    from distsnn.neurons import IntegrateFire, PoissonInput
    rng = np.random.default_rng(7)
    net = Network(metadata={"case": "cuda"})
    inp = net.add_population("input", (8, 8, 2), PoissonInput())
    hid = net.add_population("hidden", (8, 8, 3), IntegrateFire())
    out = net.add_population("output", (4,), IntegrateFire(readout="spike_count"))
    net.connect(inp, hid, Conv2D(_weights(rng, 3, 3, 2, 3), padding="same"))
    net.connect(hid, out, AvgPoolDense2D(_weights(rng, 48, 4), (2, 2)))
    net.outputs = [out]
    return net


def _max_pool(net, inp, rng):
    """conv -> IF -> max-pool (ResNet's stem window: 3x3, stride 2, pad 1) -> SpikingMax:
    the synapse code reads the source's count and the pool's held maximum, both batched."""
    from distsnn.connectivity import MaxPool2D
    from distsnn.neurons import SpikingMax
    hidden = _conv(padding="same")(net, inp, rng)
    pool = MaxPool2D(3, strides=2, padding=((1, 1), (1, 1)))
    pop = net.add_population("max_pool", pool.output_shape(hidden.shape), SpikingMax())
    net.connect(hidden, pop, pool)
    return pop


def _few_spike_max_pool_net():
    """Few-spike: input -> conv -> max-pool as the converter builds it (a tree of ReLUs)."""
    from distsnn.connectivity import Conv2D, Dense
    from distsnn.convert.maxpool import few_spike_tree
    from distsnn.convert.terms import MaxPool
    from distsnn.network import Network
    from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput
    rng = np.random.default_rng(7)
    net = Network(metadata={"case": "cuda"})
    inp = net.add_population("input", (8, 8, 2), FewSpikeReluInput(k=K, alpha=1.0))
    conv = net.add_population("conv", (8, 8, 3), FewSpikeRelu(k=K, alpha=2.0))
    pool = net.add_population("pool", (4, 4, 3), FewSpikeRelu(k=K, alpha=2.0))
    out = net.add_population("output", (4,), FewSpikeRelu(k=K, alpha=4.0, readout="var"))
    net.connect(inp, conv, Conv2D(_weights(rng, 3, 3, 2, 3), padding="same"))
    few_spike_tree(net, conv, pool, MaxPool((3, 3), (2, 2), ((1, 1), (1, 1))),
                   lambda: FewSpikeRelu(k=K, alpha=2.0))
    net.connect(pool, out, Dense(_weights(rng, 48, 4)))
    net.outputs = [out]
    return net


def _few_spike_net(signed: bool = True, rounding: str = "floor"):
    """Few-spike K=8, signed input: input -> conv -> pool+conv -> dense output."""
    from distsnn.connectivity import AvgPoolConv2D, Conv2D, Dense
    from distsnn.network import Network
    from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput
    rng = np.random.default_rng(7)
    net = Network(metadata={"case": "cuda"})
    inp = net.add_population("input", (8, 8, 2), FewSpikeReluInput(
        k=K, alpha=1.0, signed_input=signed, rounding=rounding))
    a = net.add_population("conv_a", (8, 8, 3), FewSpikeRelu(k=K, alpha=2.0, rounding=rounding))
    b = net.add_population("conv_b", (4, 4, 3), FewSpikeRelu(k=K, alpha=2.0, rounding=rounding))
    out = net.add_population("output", (4,), FewSpikeRelu(k=K, alpha=4.0, readout="var",
                                                          rounding=rounding))
    net.connect(inp, a, Conv2D(_weights(rng, 3, 3, 2, 3), padding="same"))
    net.connect(a, b, AvgPoolConv2D(_weights(rng, 3, 3, 3, 3), pool_size=(2, 2),
                                    padding="same"))
    net.connect(b, out, Dense(_weights(rng, 48, 4)))
    net.outputs = [out]
    return net


def _chain(*layers, synapse=None):
    """Dense layers ``(name, size, neuron)``, the first the input, the last the output;
    ``synapse``: of the last connection (default delta)."""
    from distsnn.connectivity import Dense
    from distsnn.network import Network
    rng = np.random.default_rng(7)
    net = Network(metadata={"case": "cuda"})
    pops = [net.add_population(name, (size,), neuron) for name, size, neuron in layers]
    for source, target in zip(pops, pops[1:]):
        conn = net.connect(source, target, Dense(_weights(rng, source.size, target.size)))
    if synapse is not None:
        conn.synapse = synapse
    net.outputs = [pops[-1]]
    return net


def _chain_net(kind: str):
    """The dense networks: Poisson -> IF (bias) -> IF; spike trains; an exponential
    synapse; LIF -> leaky integrator readout."""
    from distsnn.neurons import (
        IntegrateFire,
        LeakyIntegrate,
        LeakyIntegrateFire,
        PoissonInput,
        SpikeInput,
    )
    from distsnn.synapses import Exponential
    counts = ("output", 4, IntegrateFire(readout="spike_count"))
    return {
        "dense": lambda: _chain(("input", 16, PoissonInput()),
                                ("hidden", 8, IntegrateFire(bias=0.05, reset="subtract")),
                                counts),
        "spike_train": lambda: _chain(("input", 16, SpikeInput(max_spikes=4096)), counts),
        "exponential": lambda: _chain(("input", 16, PoissonInput()), counts,
                                      synapse=Exponential(tau=5.0)),
        "lif": lambda: _chain(("input", 16, PoissonInput()),
                              ("hidden", 8, LeakyIntegrateFire(v_thresh=0.5, tau_refrac=2.0)),
                              ("output", 4, LeakyIntegrate(readout="avg_var"))),
    }[kind]()


def _analog_ends():
    """Analog input (held current W x + b) -> Toeplitz conv -> IF -> analog readout."""
    from distsnn.neurons import AnalogInput, IntegrateFire, Integrator
    return _image_net(_conv(padding="same", hidden=IntegrateFire(reset="subtract")),
                      AnalogInput(), Integrator())


def vgg16(shape: tuple, dense: tuple, classes: int, mode: str, seed: int = 0):
    """VGG16 with average pooling as a distsnn Network (few-spike or IF rate neurons), laid
    out as the converter lays it out (pooling fused into the next connection)."""
    from distsnn.connectivity import AvgPoolConv2D, AvgPoolDense2D, Conv2D, Dense
    from distsnn.network import Network
    from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput, IntegrateFire, IntegrateFireInput
    rng = np.random.default_rng(seed)
    hidden = ((lambda out=False: FewSpikeRelu(k=K, alpha=4.0, readout="var" if out else None))
              if mode == "few_spike" else
              (lambda out=False: IntegrateFire(v_thresh=1.0, reset="subtract",
                                               readout="spike_count" if out else None)))
    net = Network(metadata={"benchmark": f"vgg16_{shape[0]}_{mode}"})
    pop = net.add_population("input", shape, FewSpikeReluInput(k=K, alpha=1.0)
                             if mode == "few_spike" else IntegrateFireInput())
    h, w, c = shape
    pooled = False
    for b, (filters, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        for i in range(convs):
            kernel = rng.normal(0, np.sqrt(2 / (9 * c)), (3, 3, c, filters)).astype(np.float32)
            conn = AvgPoolConv2D(kernel, pool_size=(2, 2), padding="same") if pooled else \
                Conv2D(kernel, padding="same")
            if pooled:
                h, w, pooled = h // 2, w // 2, False
            nxt = net.add_population(f"conv{b + 1}_{i + 1}", (h, w, filters), hidden())
            net.connect(pop, nxt, conn)
            pop, c = nxt, filters
        pooled = True
    n_in = (h // 2) * (w // 2) * c
    for i, units in enumerate((*dense, classes)):
        out = i == len(dense)
        weight = rng.normal(0, np.sqrt(2 / n_in), (n_in, units)).astype(np.float32)
        nxt = net.add_population("output" if out else f"dense{i + 1}", (units,), hidden(out))
        net.connect(pop, nxt, AvgPoolDense2D(weight, (2, 2)) if i == 0 else Dense(weight))
        pop, n_in = nxt, units
    net.outputs = [pop]
    return net


def _signed_poisson():
    from distsnn.neurons import PoissonInput
    return PoissonInput(signed_input=True)


def _nir_net():
    """A NIR graph (converted): raster input -> strided conv -> Sinabs IF (graded events) ->
    sum pool + dense -> CubaLIF with a recurrent Affine (snnTorch's delayed reset)."""
    import nir

    from distsnn.convert.nir_frontend import convert_nir
    from distsnn.convert.nir_presets import make_preset
    rng = np.random.default_rng(11)
    cuba = nir.CubaLIF(tau_syn=np.full(6, 5.0), tau_mem=np.full(6, 10.0), r=np.ones(6),
                       v_leak=np.zeros(6), v_threshold=np.ones(6), v_reset=np.zeros(6),
                       w_in=np.ones(6))
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([2, 8, 8])}),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0.2, 0.5, (3, 2, 3, 3)),
                           stride=2, padding=1, dilation=1, groups=1, bias=np.zeros(3)),
        "if1": nir.IF(r=np.ones((3, 4, 4)), v_threshold=np.ones((3, 4, 4)),
                      v_reset=np.zeros((3, 4, 4))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "flat": nir.Flatten(start_dim=0, input_type={"input": np.array([3, 2, 2])}),
        "fc": nir.Affine(rng.normal(0.2, 0.6, (6, 12)), np.zeros(6)), "lif": cuba,
        "rec": nir.Affine(rng.normal(0, 0.3, (6, 6)), np.zeros(6)),
        "output": nir.Output(output_type={"output": np.array([6])})},
        edges=[("input", "conv"), ("conv", "if1"), ("if1", "pool"), ("pool", "flat"),
               ("flat", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"),
               ("lif", "output")])
    return convert_nir(graph, make_preset("sinabs", reset="subtract_late"))


CASES = [
    Case("dense_poisson", lambda: _chain_net("dense")),
    Case("toeplitz_strided", lambda: _image_net(_conv(strides=2, padding="valid"))),
    Case("toeplitz_padded", lambda: _image_net(_conv(padding="same"))),
    Case("toeplitz_1x1", lambda: _image_net(_conv(kernel=1))),
    Case("toeplitz_pool_conv", lambda: _image_net(_pool_conv)),
    Case("toeplitz_pool_dense", _pool_dense_net),
    Case("toeplitz_conv_transpose", lambda: _image_net(_conv_transpose)),
    Case("sparse", lambda: _image_net(_conv(strides=2, padding="same")), connectivity="sparse"),
    Case("procedural", lambda: _image_net(_conv(strides=2, padding="same")),
         connectivity="procedural"),
    Case("toeplitz_depthwise", lambda: _image_net(_grouped(4, 8, strides=2, padding="same"),
                                                  shape=(8, 8, 4))),
    Case("toeplitz_grouped", lambda: _image_net(_grouped(2, 6, padding="valid"),
                                                shape=(8, 8, 4))),
    Case("sparse_depthwise", lambda: _image_net(_grouped(4, 4, padding="same"), shape=(8, 8, 4)),
         connectivity="sparse"),
    Case("procedural_grouped", lambda: _image_net(_grouped(2, 4, strides=2, padding="same"),
                                                  shape=(8, 8, 4)), connectivity="procedural"),
    Case("few_spike_signed", _few_spike_net, mode="few_spike"),
    Case("few_spike_nearest", lambda: _few_spike_net(rounding="nearest"), mode="few_spike"),
    Case("analog_ends", _analog_ends),
    Case("signed_poisson_toeplitz", lambda: _image_net(_conv(padding="same"), _signed_poisson())),
    Case("spike_train_input", lambda: _chain_net("spike_train")),
    Case("exponential_synapses", lambda: _chain_net("exponential")),
    Case("lif", lambda: _chain_net("lif")),
    Case("residual", lambda: _image_net(_residual)),
    Case("max_pool_toeplitz", lambda: _image_net(_max_pool)),
    Case("max_pool_sparse", lambda: _image_net(_max_pool), connectivity="sparse"),
    Case("max_pool_procedural", lambda: _image_net(_max_pool), connectivity="procedural"),
    Case("max_pool_few_spike", _few_spike_max_pool_net, mode="few_spike"),
    Case("nir_raster", _nir_net),
    Case("vgg16_cifar_few_spike",
         lambda: vgg16((32, 32, 3), (512,), 10, "few_spike"), mode="few_spike", batches=(256,)),
]


def stub_environment(sm: int = 90) -> dict:
    """Environment of a process in which GeNN's CUDA backend, asking for device 0, finds the
    stub driver's sm_``sm`` device (set-up builds the stub into the venv; never on a GPU)."""
    stub = Path(sys.prefix) / "lib" / "distsnn-cuda-stub" / "libcuda.so.1"
    flags = os.environ.get("NVCC_APPEND_FLAGS")
    return {"LD_LIBRARY_PATH": f"{stub.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
            "LD_PRELOAD": str(stub), "DISTSNN_STUB_SM": str(sm),
            "NVCC_APPEND_FLAGS": f"{flags} {EXTRA_ARCH}" if flags else EXTRA_ARCH}


def compile_options(case: Case, batch: int, backend: str = "cuda"):
    from distsnn.genn import CompileOptions
    kwargs = {}
    if backend == "cuda":
        from pygenn.cuda_backend import BlockSizeSelect
        # no device: GeNN's occupancy-based block sizes would load kernels on it
        kwargs["block_size_select_method"] = BlockSizeSelect.MANUAL
    return CompileOptions(mode=case.mode, example_timesteps=K if case.mode == "few_spike" else T,
                          backend=backend, batch_size=batch, connectivity=case.connectivity,
                          genn_kwargs=kwargs)


_ACCESS = re.compile(r"group->(\w+)\[([^\[\]]*)\]")


def unbatched_accesses(neuron_code: str, synapse_code: str) -> list[str]:
    """Accesses in the synapse kernels to a batched array without a batch offset.

    An array is batched when some kernel indexes it with a batch offset (GeNN's
    ``batchOffset``, ``preBatchOffset``, ``preBatchDelayOffset`` of delayed sources, ...); every access to it in the synapse update code
    must carry one too, else each batch lane reads lane 0 (the bug of GeNN PR #757)."""
    def offset(index: str) -> bool:  # batch offsets, with the delay slot or without
        return re.search(r"batch(delay)?offset", index.lower()) is not None
    batched = {name for code in (neuron_code, synapse_code)
               for name, index in _ACCESS.findall(code) if offset(index)}
    return [f"group->{name}[{index}]" for name, index in _ACCESS.findall(synapse_code)
            if name in batched and not offset(index)]


def compile_case(case: Case, batch: int, build_dir: Path) -> dict:
    """Generate and compile one case; what happened, with GeNN's or nvcc's message."""
    from distsnn.genn import GeNNNetwork
    start = time.perf_counter()
    result = {"case": case.name, "batch": batch, "ok": False, "error": None}
    try:
        genn = GeNNNetwork(case.make(), compile_options(case, batch))
        genn.build(build_dir)
        code_dir = build_dir / f"{genn.model_name}_CODE"
        result.update(ok=(code_dir / "librunner.so").exists(), code_dir=str(code_dir))
    except Exception as err:  # noqa: BLE001 - reported per case
        result["error"] = f"{type(err).__name__}: {err}\n{_cause(err)}{traceback.format_exc()}"
    result["seconds"] = time.perf_counter() - start
    return result


def _cause(err: BaseException) -> str:
    """The compiler's output, when GeNN's build failed in make/nvcc."""
    cause = err.__cause__ or err.__context__
    output = getattr(cause, "output", None) or getattr(cause, "stderr", None)
    return output if isinstance(output, str) else ""


def run_case(case: Case, build_dir: Path) -> dict:
    """Simulate one case on identical inputs: CUDA batch 64 and 1, and the CPU (GPU only)."""
    from distsnn.compilers import FewSpikeCompiler, InferenceCompiler
    net = case.make()
    inp, out = net.inputs[0], net.outputs[0]
    rng = np.random.default_rng(3)
    n = 96
    if case.name == "spike_train_input":
        from distsnn.utils.data import preprocess_spikes
        x = [preprocess_spikes(np.sort(rng.uniform(0, T, 12)), rng.integers(0, 16, 12), 16)
             for _ in range(n)]
    elif case.name == "nir_raster":  # rasters of the T - depth input steps, counts 0-2
        steps = T - net.metadata["nir"]["span"]
        x = rng.integers(0, 3, (n, steps, *inp.shape)) * (rng.random((n, steps, *inp.shape))
                                                            < 0.2)
        x = x.astype(np.float32)
    else:
        x = rng.random((n, *inp.shape)).astype(np.float32)
        if case.mode == "few_spike":
            x = 2 * x - 1
    y = rng.integers(0, out.size, n)
    results = {}
    for label, backend, batch in (("cuda_b64", "cuda", 64), ("cuda_b1", "cuda", 1),
                                  ("cpu", "cpu", 1)):
        common = dict(batch_size=batch, rng_seed=1, backend=backend,
                      build_dir=str(build_dir), connectivity=None if case.connectivity == "auto"
                      else case.connectivity)
        if backend == "cpu" and case.connectivity == "procedural":
            common["connectivity"] = "toeplitz"
        compiler = FewSpikeCompiler(k=K, **common) if case.mode == "few_spike" else \
            InferenceCompiler(T, **common)
        compiled = compiler.compile(net)
        with compiled:
            predictions, _ = compiled.predict({inp: x}, callbacks=[])
            spikes = compiled.last_report.spikes["populations"]
        readout = predictions[out].reshape(n, -1)
        results[label] = {"accuracy": float(np.mean(readout.argmax(1) == y)),
                          "readout": readout.tolist(),
                          "spikes": {p: s["spikes"] for p, s in spikes.items()}}
    return {"case": case.name, **compare_runs(results), "runs": results}


def compare_runs(results: dict) -> dict:
    """CUDA batch 64 against batch 1 and the CPU: accuracy within 0.5 points, spike counts per
    population within 0.5 % (float atomics reorder sums), readouts within 1e-4 relative."""
    base = results["cpu"]
    problems = []
    for label in ("cuda_b64", "cuda_b1"):
        r = results[label]
        if abs(r["accuracy"] - base["accuracy"]) > 0.005:
            problems.append(f"{label} accuracy {r['accuracy']:.4f} vs cpu {base['accuracy']:.4f}")
        for pop, count in base["spikes"].items():
            if abs(r["spikes"][pop] - count) > 0.005 * max(count, 1):
                problems.append(f"{label} spikes of {pop}: {r['spikes'][pop]} vs cpu {count}")
        a, b = np.asarray(r["readout"]), np.asarray(base["readout"])
        if not np.allclose(a, b, rtol=1e-4, atol=1e-4 * max(float(np.abs(b).max()), 1e-6)):
            problems.append(f"{label} readouts differ from cpu by up to "
                            f"{float(np.abs(a - b).max()):.3g}")
    return {"ok": not problems, "problems": problems}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["compile", "run"])
    parser.add_argument("out", type=Path)
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--cases", nargs="*", help="case names (default: all)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    cases = [c for c in CASES if not args.cases or c.name in args.cases]
    args.build_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for case in cases:
        if args.action == "compile":
            results += [compile_case(case, b, args.build_dir) for b in case.batches]
        elif case.name != "vgg16_cifar_few_spike":
            try:
                results.append(run_case(case, args.build_dir))
            except Exception as err:  # noqa: BLE001 - reported per case
                results.append({"case": case.name, "ok": False, "problems": [repr(err)]})
        print(json.dumps({k: v for k, v in results[-1].items() if k != "runs"})[:300],
              flush=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
