"""The lowering plan: memory model against measured RSS, the budget, ``distsnn inspect``."""
from __future__ import annotations

import re

import numpy as np
import pytest

from distsnn.connectivity import AvgPool2D, AvgPoolConv2D, AvgPoolDense2D, Conv2D, Dense, OneToOne
from distsnn.genn.lowering import (
    UserError,
    kernel_geometry,
    memory_budget,
    parse_bytes,
    plan_lowering,
)
from distsnn.netfile import save_network
from distsnn.network import Network
from distsnn.neurons import IntegrateFire, IntegrateFireInput
from helpers.processes import DISTSNN, run, run_mpi


def _conv_net(size: int = 32, channels: int = 32, seed: int = 0) -> Network:
    """A mid-size network whose explicit synapses dominate its memory (9.0 M synapses: 94 row and 94 column taps x 32 x 32)."""
    rng = np.random.default_rng(seed)
    net = Network(metadata={"method": "test"})
    inp = net.add_population("in", (size, size, channels), IntegrateFireInput())
    hid = net.add_population("conv", (size, size, channels), IntegrateFire())
    out = net.add_population("out", (10,), IntegrateFire(readout="spike_count"))
    net.connect(inp, hid, Conv2D(rng.normal(0, 0.1, (3, 3, channels, channels))
                                 .astype(np.float32), padding="same"))
    net.connect(hid, out, Dense(rng.normal(0, 0.1, (size * size * channels, 10))
                                .astype(np.float32)))
    net.outputs = [out]
    return net


@pytest.fixture(scope="module")
def conv_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lowering")
    save_network(_conv_net(), root / "net.h5")
    rng = np.random.default_rng(1)
    np.savez(root / "data.npz", x=rng.random((2, 32, 32, 32)).astype(np.float32),
             y=np.arange(2))
    return root


@pytest.mark.parametrize("connectivity", ["toeplitz", "sparse"])
def test_memory_estimate_is_within_20_percent_of_measured_rss(conv_files, connectivity,
                                                              tmp_path):
    """Peak RSS of a real `distsnn evaluate` (network file: no TensorFlow) vs the plan."""
    script = (f"import resource, subprocess, sys; "
              f"r = subprocess.run([{DISTSNN!r}, 'evaluate', '{conv_files / 'net.h5'}', "
              f"'--data', '{conv_files / 'data.npz'}', '-t', '3', '--no-progress', "
              f"'--connectivity', '{connectivity}', '--build-dir', '{tmp_path}']); "
              f"print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); "
              f"sys.exit(r.returncode)")
    import sys
    result = run([sys.executable, "-c", script], timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = int(result.stdout.strip().splitlines()[-1])
    from distsnn.netfile import load_network
    estimate = plan_lowering(load_network(conv_files / "net.h5"), connectivity).peak_bytes
    assert abs(estimate - measured) <= 0.2 * measured, (connectivity, estimate, measured)


def test_network_over_the_budget_fails_before_building(conv_files, tmp_path):
    result = run_mpi(2, [DISTSNN, "evaluate", str(conv_files / "net.h5"), "--data",
                         str(conv_files / "data.npz"), "-t", "3", "--connectivity", "sparse",
                         "--memory-budget", "200MiB", "--build-dir", str(tmp_path)])
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("distsnn: error:")]
    assert len(lines) == 1, result.stderr  # rank 0 only
    assert re.search(r"needs an estimated [0-9.]+ MiB per rank but the budget is 200\.0 MiB",
                     lines[0]), lines[0]
    assert "'in_to_conv' (SPARSE, 9,048,064 synapses" in lines[0]
    assert "--connectivity toeplitz" in lines[0]
    assert not list(tmp_path.glob("*_CODE")), "nothing may be generated or built"


def test_inspect_shows_each_connections_lowering_and_the_total(conv_files):
    result = run([DISTSNN, "inspect", str(conv_files / "net.h5"), "--memory-budget", "1GiB"])
    assert result.returncode == 0, result.stderr
    assert re.search(r"in_to_conv\s+TOEPLITZ\s+9,048,064\s+36\.0 KiB", result.stdout)
    assert re.search(r"conv_to_out\s+DENSE\s+327,680\s+1\.2 MiB", result.stdout)
    assert re.search(r"peak per rank [0-9.]+ MiB", result.stdout)
    assert "budget 1.0 GiB (--memory-budget): fits" in result.stdout
    sparse = run([DISTSNN, "inspect", str(conv_files / "net.h5"), "--connectivity", "sparse"])
    assert re.search(r"in_to_conv\s+SPARSE\s+9,048,064\s+[0-9.]+ MiB", sparse.stdout)


def test_budget_defaults_to_node_memory_over_ranks_and_can_be_overridden(monkeypatch):
    monkeypatch.delenv("DISTSNN_MEMORY_BUDGET", raising=False)
    one, source = memory_budget(None, 1)
    four, _ = memory_budget(None, 4)
    assert four == pytest.approx(one / 4, rel=1e-6) and "node memory" in source
    assert memory_budget("3GiB", 4) == (3 * 2 ** 30, "--memory-budget")
    monkeypatch.setenv("DISTSNN_MEMORY_BUDGET", "500MB")
    assert memory_budget(None, 4)[0] == 500 * 10 ** 6
    assert parse_bytes("2.5 GB") == 2_500_000_000 and parse_bytes("1024") == 1024
    with pytest.raises(UserError, match="not a size"):
        parse_bytes("lots")


def test_geometry_fan_out_counts_every_kernel_tap():
    """Fan-out from the geometry equals the explicit synapse count per source neuron (all
    kernel taps non-zero), for strided, padded, pooled and overlapping-pool connections."""
    rng = np.random.default_rng(5)
    cases = [((9, 7, 2), Conv2D(rng.uniform(0.1, 1, (4, 3, 2, 3)).astype(np.float32),
                                strides=(2, 1), padding="same")),
             ((10, 10, 2), AvgPool2D((3, 3), pool_strides=(2, 2))),
             ((10, 10, 2), AvgPoolConv2D(rng.uniform(0.1, 1, (3, 3, 2, 2)).astype(np.float32),
                                         pool_size=(2, 2), padding="same")),
             ((10, 10, 1), AvgPoolDense2D(rng.uniform(0.1, 1, (25, 4)).astype(np.float32),
                                          (2, 2)))]
    for shape, conn in cases:
        geometry = kernel_geometry(conn, shape)
        pre, _, _ = conn.synapses(shape)
        explicit = np.bincount(pre, minlength=int(np.prod(shape)))
        np.testing.assert_array_equal(geometry.fan_out(), explicit, err_msg=type(conn).__name__)
        spikes = rng.integers(0, 5, explicit.size)
        assert geometry.synaptic_events(spikes) == int(spikes @ explicit)
        assert geometry.synapse_count() == explicit.sum()
        assert geometry.longest_row() == explicit.max()
        assert geometry.explicit_synapses()[0] == len(pre)
    one_to_one = plan_lowering(_one_to_one_net(), "auto").connections["a_to_b"]
    assert (one_to_one.matrix, one_to_one.synapses) == ("SPARSE", 6)


def _one_to_one_net() -> Network:
    net = Network()
    a = net.add_population("a", 6, IntegrateFireInput())
    b = net.add_population("b", 6, IntegrateFire())
    net.connect(a, b, OneToOne(0.5))
    return net


def test_procedural_row_code_generates_the_paths_of_the_geometry(tmp_path):
    """The PROCEDURAL_KERNELG row-build code (CUDA) is checked on the CPU: GeNN's own
    initialisation of SPARSE connectivity from the same snippet must give, for every
    (source, target) pair, as many synapses as the geometry has routes (overlapping pooling
    windows included), and rows no longer than the snippet's maximum."""
    from pygenn import GeNNModel, create_neuron_model, init_postsynaptic, init_weight_update

    from distsnn.genn.toeplitz import _max_paths, procedural_connectivity
    rng = np.random.default_rng(3)
    cases = [((9, 7, 2), Conv2D(rng.normal(size=(4, 3, 2, 3)).astype(np.float32),
                                strides=(2, 1), padding="same")),
             ((8, 8, 2), Conv2D(rng.normal(size=(3, 3, 2, 2)).astype(np.float32), strides=2,
                                padding=((1, 0), (0, 1)))),
             ((10, 10, 2), AvgPool2D((3, 3), pool_strides=(2, 2))),
             ((10, 9, 2), AvgPoolConv2D(rng.normal(size=(2, 2, 2, 3)).astype(np.float32),
                                        pool_size=(3, 3), pool_strides=(2, 2), padding="same")),
             ((10, 10, 1), AvgPoolDense2D(rng.normal(size=(25, 4)).astype(np.float32), (2, 2)))]
    neuron = create_neuron_model("lowering_probe", vars=[("x", "scalar")])
    for i, (shape, conn) in enumerate(cases):
        geometry = kernel_geometry(conn, shape)
        out_shape = conn.output_shape(shape)
        model = GeNNModel("float", f"rows{i}", backend="single_threaded_cpu")
        pre = model.add_neuron_population("pre", int(np.prod(shape)), neuron, {}, {"x": 0.0})
        post = model.add_neuron_population("post", int(np.prod(out_shape)), neuron, {},
                                           {"x": 0.0})
        sg = model.add_synapse_population("s", "SPARSE", pre, post,
                                          init_weight_update("StaticPulse", {}, {"g": 1.0}),
                                          init_postsynaptic("DeltaCurr"),
                                          procedural_connectivity(geometry))
        model.build(str(tmp_path))
        model.load()
        sg.pull_connectivity_from_device()
        counts = np.zeros((pre.num_neurons, post.num_neurons), np.int64)
        np.add.at(counts, (sg.get_sparse_pre_inds(), sg.get_sparse_post_inds()), 1)
        model.unload()
        rows, cols = geometry.axis_paths(0), geometry.axis_paths(1)
        per_pixel = np.einsum("ro,cp->rcop", rows, cols)  # (ih, iw, oh, ow) routes
        channels = (np.eye(shape[2], dtype=np.int64) if geometry.depthwise
                    else np.ones((shape[2], geometry.oc), np.int64))
        expected = np.einsum("rcop,ij->rciopj", per_pixel, channels).reshape(counts.shape)
        np.testing.assert_array_equal(counts, expected, err_msg=type(conn).__name__)
        assert counts.sum(axis=1).max() <= _max_paths(geometry.params(), geometry.depthwise)


def test_procedural_connectivity_needs_the_cuda_backend(conv_files, tmp_path):
    result = run([DISTSNN, "evaluate", str(conv_files / "net.h5"), "--data",
                  str(conv_files / "data.npz"), "-t", "3", "--connectivity", "procedural",
                  "--build-dir", str(tmp_path)])
    assert result.returncode == 2
    assert "procedural connectivity needs the CUDA backend" in result.stderr
