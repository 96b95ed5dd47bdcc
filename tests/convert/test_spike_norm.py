"""Distributed spike-norm threshold search against a numpy reference and across ranks."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from distsnn.network import Network
from distsnn.neurons import IntegrateFire
from distsnn.spike_norm import spike_normalise
from helpers.processes import run, run_mpi
from helpers.spike_norm_network import T, small_network

SCRIPT = Path(__file__).parents[1] / "mpi_scripts" / "spike_norm_small.py"


def reference_thresholds(net: Network, x: np.ndarray, steps: int) -> dict[str, float]:
    """The same procedure in plain numpy: IF neurons, reset to zero, one step per hop."""
    order = [p for p in net.topological_order()]
    layers = [p for p in order if isinstance(p.neuron, IntegrateFire)]
    weights = {c.name: np.asarray(c.connectivity.weight, np.float64) for c in net.connections}
    biases = {p.name: np.zeros(p.size) if p.neuron.bias is None
              else np.asarray(p.neuron.bias, np.float64) for p in layers}
    scale = {p.name: 1.0 for p in order if p not in layers}
    theta: dict[str, float] = {}
    for layer in layers:
        sources = net.incoming(layer)
        ref = scale[sources[0].source.name]
        for c in sources[1:]:
            weights[c.name] = weights[c.name] * scale[c.source.name] / ref
        biases[layer.name] = biases[layer.name] / ref
        peak = -np.inf
        for example in x:
            spikes = {p.name: np.zeros(p.size) for p in order}
            v = {p.name: np.zeros(p.size) for p in layers}
            for t in range(steps):
                new = {}
                for p in order:
                    if p not in layers:
                        new[p.name] = (example > 0).astype(float)
                        continue
                    current = biases[p.name].copy()
                    if t > 0:  # spikes of step t-1 arrive at step t
                        for c in net.incoming(p):
                            current += spikes[c.source.name] @ weights[c.name]
                    if p is layer:
                        peak = max(peak, current.max())
                    v[p.name] += current
                    fired = v[p.name] >= theta.get(p.name, np.inf)
                    v[p.name][fired] = 0.0
                    new[p.name] = fired.astype(float)
                spikes = new
        theta[layer.name] = peak
        scale[layer.name] = peak * ref
    return theta


def test_thresholds_equal_numpy_reference(build_dir):
    net, x = small_network()
    expected = reference_thresholds(net, x, T)
    found = spike_normalise(net, norm_data=x, evaluate_timesteps=T, rng_seed=3,
                            build_dir=str(build_dir))
    assert set(found) == {"h1", "h2", "out"}
    for name, value in expected.items():
        assert found[name] == pytest.approx(value, rel=1e-5), name
    # written back into the network, with the method's parameters
    assert net.population("h2").neuron.v_thresh == pytest.approx(expected["h2"], rel=1e-5)
    meta = net.metadata["spike_norm"]
    assert meta["timesteps"] == T and meta["norm_examples"] == 9 and meta["percentile"] == 100
    assert meta["seed"] == 3


def test_analog_ends_give_the_same_thresholds_and_rescale_the_readout(build_dir):
    expected = reference_thresholds(*small_network(), T)
    net, x = small_network(analog=True)
    skip = np.array(net.connections[3].connectivity.weight)
    found = spike_normalise(net, norm_data=x, evaluate_timesteps=T, rng_seed=3,
                            build_dir=str(build_dir))
    assert set(found) == {"h1", "h2"}  # the analog readout has no threshold
    for name in found:
        assert found[name] == pytest.approx(expected[name], rel=1e-5), name
    # the readout's skip input is put on the scale of its main input, h2's (theta_h1 theta_h2)
    np.testing.assert_allclose(net.connections[3].connectivity.weight,
                               skip / (found["h1"] * found["h2"]), rtol=1e-5)


def test_percentile_is_below_maximum_and_positive(build_dir):
    net, x = small_network()
    maximum = reference_thresholds(net, x, T)
    found = spike_normalise(net, norm_data=x, evaluate_timesteps=T, rng_seed=3,
                            build_dir=str(build_dir), percentile=50.0)
    assert 0 < found["h1"] < maximum["h1"]


@pytest.mark.mpi
@pytest.mark.parametrize("percentile, mode", [(100.0, "binary"), (90.0, "binary"),
                                              (100.0, "poisson-sharded")])
def test_thresholds_identical_for_one_and_two_ranks(tmp_path, build_dir, percentile, mode):
    """Poisson draws follow the global example index, also when each rank holds its shard."""
    results = []
    for ranks in (1, 2):
        out = tmp_path / f"sn{ranks}.json"
        args = [sys.executable, str(SCRIPT), str(out), str(build_dir), str(percentile), mode]
        proc = run_mpi(ranks, args, timeout=240) if ranks > 1 else run(args, timeout=240)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(out.read_text()))
    assert results[1]["ranks"] == 2
    assert results[0]["thresholds"] == results[1]["thresholds"]
    assert results[1]["metadata"]["norm_examples"] == 9
