"""The small network of the spike-norm tests (a branch and a merge) and its timesteps."""
from __future__ import annotations

import numpy as np

from distsnn.connectivity import Dense
from distsnn.network import Network
from distsnn.neurons import AnalogInput, BinarySpikeInput, IntegrateFire, Integrator

#: Timesteps per normalisation example.
T = 12


def small_network(analog: bool = False):
    """Binary input -> h1 (bias) -> h2 -> out, plus a skip input -> out (a merge); 9 examples.

    ``analog``: analog input (its held current equals the binary spikes' input every step)
    and a non-spiking analog readout."""
    rng = np.random.default_rng(5)
    net = Network()
    inp = net.add_population("in", (6,), AnalogInput() if analog else BinarySpikeInput())
    h1 = net.add_population("h1", (5,), IntegrateFire(bias=rng.normal(0, 0.2, 5).astype(np.float32)))
    h2 = net.add_population("h2", (4,), IntegrateFire())
    out = net.add_population("out", (3,), Integrator() if analog
                             else IntegrateFire(readout="spike_count"))
    net.connect(inp, h1, Dense(rng.normal(0, 1, (6, 5)).astype(np.float32)))
    net.connect(h1, h2, Dense(rng.normal(0.3, 1, (5, 4)).astype(np.float32)))
    net.connect(h2, out, Dense(rng.normal(0.3, 1, (4, 3)).astype(np.float32)))
    net.connect(inp, out, Dense(rng.normal(0, 0.5, (6, 3)).astype(np.float32)))
    net.outputs = [out]
    x = (rng.random((9, 6)) > 0.4).astype(np.float32)
    return net, x
