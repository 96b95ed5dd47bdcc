"""Spike statistics: spikes per population, firing rates and synaptic operations."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distsnn.genn.lowering import synaptic_events
from distsnn.network import Network


@dataclass
class SpikeStats:
    """Spikes per neuron (summed over the examples evaluated on this rank)."""

    examples: int = 0
    timesteps: int = 0
    spikes: dict[str, np.ndarray] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        return {name: int(np.sum(counts)) for name, counts in self.spikes.items()}

    def vector(self, network: Network) -> tuple[np.ndarray, list[str]]:
        """[examples, synaptic operations, spikes of each population] and the populations."""
        totals = self.totals()
        names = list(totals)
        return (np.array([self.examples, self.synaptic_operations(network)]
                         + [totals[n] for n in names], np.int64), names)

    def synaptic_operations(self, network: Network) -> int:
        """Synaptic events delivered: each spike times its neuron's fan-out (every kernel
        tap of a convolution counts, zero weights included, as the simulation processes it)."""
        return sum(synaptic_events(c, self.spikes[c.source.name])
                   for c in network.connections if c.source.name in self.spikes)


def spike_report(network: Network, examples: int, timesteps: int, spikes: dict[str, int],
                 synops: int) -> dict:
    """Per-population totals and rates, plus synaptic operations, as a JSON-able dict."""
    pops = {}
    for pop in network.populations:
        total = int(spikes.get(pop.name, 0))
        per_example = total / (pop.size * examples) if examples else 0.0
        pops[pop.name] = {"neurons": pop.size, "spikes": total,
                          "spikes_per_neuron_per_example": per_example,
                          "rate_per_timestep": per_example / timesteps if timesteps else 0.0}
    return {"examples": examples, "timesteps_per_example": timesteps, "populations": pops,
            "synaptic_operations": synops,
            "synaptic_operations_per_example": synops / examples if examples else 0.0}
