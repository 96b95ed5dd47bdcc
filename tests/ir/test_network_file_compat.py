"""A network file written before the package layout changed loads to the same network and
simulates to the same spike counts (tests/ir/data/, written by distsnn at commit 303fdfc)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import AvgPool2D, Conv2D, Dense
from distsnn.netfile import load_network
from distsnn.synapses import Exponential

DATA = Path(__file__).parent / "data"


def test_a_network_file_of_the_previous_layout_loads_and_runs_the_same(build_dir):
    expected = json.loads((DATA / "network-v2-expected.json").read_text())
    net = load_network(DATA / "network-v2.h5")
    assert net.content_hash() == expected["content_hash"]
    assert [type(c.connectivity) for c in net.connections] == [Conv2D, AvgPool2D, Dense]
    assert net.connections[-1].synapse == Exponential(tau=2.0)
    x = np.load(DATA / "network-v2-inputs.npz")["x"]
    compiled = InferenceCompiler(evaluate_timesteps=expected["timesteps"], backend="cpu",
                                 rng_seed=expected["rng_seed"], build_dir=build_dir).compile(net)
    with compiled:
        predictions, _ = compiled.predict({net.inputs[0]: x}, callbacks=[])
    np.testing.assert_array_equal(predictions[net.outputs[0]], expected["spike_counts"])
