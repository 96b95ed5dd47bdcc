"""The spiking max-pool of hand-built networks (mlGeNN-style API) through real GeNN models.

IF inputs driven by constant currents spike at many different rates; a one-to-one IF layer
passes them on; ``MaxPool2D`` into ``SpikingMax`` must then have, at every step, a spike
count equal to the largest count of its window one step earlier (numpy reference:
``max_pool_forward`` of the recorded counts), in every lowering, with overlapping windows
and padding. The network file, the lowering plan and ``distsnn inspect`` cover it too.
"""
from __future__ import annotations

import numpy as np
import pytest

from distsnn.callbacks import SpikeRecorder
from distsnn.cli.describe import describe_network
from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense, MaxPool2D, OneToOne, max_pool_forward
from distsnn.genn.lowering import kernel_geometry, plan_lowering
from distsnn.genn.maxpool import MaxPoolError
from distsnn.netfile import load_network, network_to_bytes
from distsnn.network import Network
from distsnn.neurons import IntegrateFire, IntegrateFireInput, SpikingMax
from helpers.spike_counts import counts_by_step

T = 40
SHAPE = (5, 6, 2)
POOLS = {
    "overlap_pad1": MaxPool2D(3, strides=2, padding=((1, 1), (1, 1))),  # ResNet's stem
    "same_2x2": MaxPool2D(2, padding="same"),
    "valid_3x2_s1": MaxPool2D((3, 2), strides=1),
    "global": MaxPool2D(SHAPE[:2]),
}


def _network(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    net = Network(metadata={"method": "test"})
    inp = net.add_population("in", SHAPE, IntegrateFireInput(reset="subtract"))
    hid = net.add_population("hid", SHAPE, IntegrateFire(reset="subtract"), record_spikes=True)
    net.connect(inp, hid, OneToOne(1.0))
    outputs = []
    for name, pool in POOLS.items():
        p = net.add_population(name, pool.output_shape(SHAPE), SpikingMax(), record_spikes=True)
        net.connect(hid, p, pool)
        out = net.add_population(f"out_{name}", (3,), IntegrateFire(readout="spike_count"))
        net.connect(p, out, Dense(rng.normal(0, 0.3, (p.size, 3)).astype(np.float32)))
        outputs.append(out)
    net.outputs = outputs
    return net


@pytest.mark.parametrize("connectivity", ["toeplitz", "sparse"])
def test_pool_count_is_the_window_maximum_at_every_step(connectivity, tmp_path):
    net = load_network(network_to_bytes(_network()))  # through the network file
    hid = net.population("hid")
    x = np.random.default_rng(1).uniform(0, 1, (3,) + SHAPE).astype(np.float32)
    recorders = [SpikeRecorder(p, key=p.name) for p in net.populations if p.record_spikes]
    compiled = InferenceCompiler(evaluate_timesteps=T, rng_seed=1, build_dir=str(tmp_path),
                                 connectivity=connectivity).compile(net)
    with compiled:
        _, data = compiled.predict({net.inputs[0]: x}, net.outputs, callbacks=recorders)
    for example in range(len(x)):
        hidden = counts_by_step(data["hid"][0][example], data["hid"][1][example], hid.size, T)
        assert len(np.unique(hidden[-1])) > 10  # many different rates
        for name, pool in POOLS.items():
            pop = net.population(name)
            got = counts_by_step(data[name][0][example], data[name][1][example], pop.size, T)
            expected = max_pool_forward(pool, hidden[:-1].astype(np.float64), SHAPE)
            np.testing.assert_array_equal(got[1:], expected, err_msg=name)
            assert got[-1].max() > T // 2, name


def test_file_plan_and_description():
    net = _network()
    loaded = load_network(network_to_bytes(net))
    assert loaded.content_hash() == net.content_hash()
    conn = next(c for c in loaded.connections if c.name == "hid_to_overlap_pad1")
    assert isinstance(conn.connectivity, MaxPool2D)
    assert conn.connectivity.padding == ((1, 1), (1, 1))
    pre, post, _ = conn.connectivity.synapses(SHAPE)
    for connectivity, matrix in (("auto", "TOEPLITZ"), ("sparse", "SPARSE")):
        plan = plan_lowering(loaded, connectivity)
        assert plan.connections[conn.name].matrix == matrix
        assert plan.connections[conn.name].synapses == len(pre)
    geometry = kernel_geometry(conn.connectivity, SHAPE)
    assert geometry.explicit_synapses()[0] == len(pre)
    assert int(geometry.fan_out().max()) == np.bincount(pre).max()
    text = describe_network(loaded, plan_lowering(loaded))
    assert "spiking_max" in text and "max_pool2d" in text


@pytest.mark.parametrize("build, message", [
    (lambda net, a, b: net.connect(a, net.add_population("p", (3, 3, 2), IntegrateFire()),
                                   MaxPool2D(2)), "must target a SpikingMax population"),
    (lambda net, a, b: net.connect(b, net.add_population("p", (3, 3, 2), SpikingMax()),
                                   MaxPool2D(2)), "must come from an IntegrateFire or SpikingMax"),
    (lambda net, a, b: net.connect(a, net.add_population("p", (3, 3, 2), SpikingMax()),
                                   MaxPool2D(2, delay=2)), "takes no delay"),
])
def test_bad_max_pool_networks_are_refused_in_one_line(build, message, tmp_path):
    net = Network()
    b = net.add_population("in", (6, 6, 2), IntegrateFireInput())
    a = net.add_population("hid", (6, 6, 2), IntegrateFire())
    net.connect(b, a, OneToOne(1.0))
    build(net, a, b)
    net.outputs = [a]
    with pytest.raises(MaxPoolError, match=message) as err:
        compiled = InferenceCompiler(evaluate_timesteps=2, build_dir=str(tmp_path)).compile(net)
        with compiled:
            pass
    assert "\n" not in str(err.value)


def test_spike_norm_gives_a_max_pool_its_sources_scale(tmp_path):
    """Spike-norm: a max-pool has no threshold and keeps its source's scale, so where it
    merges with another branch (into ``out``) its weights are rescaled by
    scale(h1) / scale(h2) = theta_h1 / (theta_h1 theta_h2) = 1 / theta_h2."""
    from distsnn.connectivity import Conv2D
    from distsnn.neurons import BinarySpikeInput, Integrator
    from distsnn.spike_norm import spike_normalise
    rng = np.random.default_rng(4)
    net = Network()
    inp = net.add_population("in", (4, 4, 2), BinarySpikeInput())
    h1 = net.add_population("h1", (4, 4, 2), IntegrateFire())
    h2 = net.add_population("h2", (3,), IntegrateFire())
    pool = net.add_population("pool", (2, 2, 2), SpikingMax())
    out = net.add_population("out", (3,), Integrator())
    net.connect(inp, h1, Conv2D(rng.normal(0.2, 0.5, (3, 3, 2, 2)).astype(np.float32),
                                padding="same"))
    net.connect(h1, h2, Dense(rng.normal(0.3, 0.5, (32, 3)).astype(np.float32)))
    net.connect(h1, pool, MaxPool2D(2))
    net.connect(h2, out, Dense(rng.normal(0, 1, (3, 3)).astype(np.float32)))
    merge = net.connect(pool, out, Dense(rng.normal(0, 1, (8, 3)).astype(np.float32)))
    net.outputs = [out]
    before = np.array(merge.connectivity.weight, copy=True)
    x = (rng.random((6, 4, 4, 2)) > 0.3).astype(np.float32)
    found = spike_normalise(net, norm_data=x, evaluate_timesteps=12, rng_seed=3,
                            build_dir=str(tmp_path))
    assert set(found) == {"h1", "h2"} and found["h2"] != 1.0
    np.testing.assert_allclose(merge.connectivity.weight, before / found["h2"], rtol=1e-5)


def test_mlgenn_style_construction_infers_the_pool_shape():
    """``Population(SpikingMax())`` without a shape gets the MaxPool2D's output shape, and
    mlGeNN's argument spellings (``pool_strides``, ``flatten``) work as for AvgPool2D."""
    from distsnn.network import Connection, Population
    with Network() as net:
        a = Population(IntegrateFireInput(), (7, 6, 2))
        b = Population(IntegrateFire(), (7, 6, 2))
        p = Population(SpikingMax())
        q = Population("spiking_max")
        Connection(a, b, OneToOne(1.0))
        Connection(b, p, MaxPool2D(3, pool_strides=2, padding="same"))
        Connection(p, q, MaxPool2D((4, 3), flatten=False))
    assert p.shape == (4, 3, 2) and q.shape == (1, 1, 2)
    assert len(net.connections) == 3
