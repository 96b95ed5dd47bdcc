"""How the mlGeNN API's arguments name things: populations (or layers, or names), arrays of
examples per population, metric specs per output, and each output's readout."""
from __future__ import annotations

from typing import Any, Optional, Union

from distsnn.network import Network, Population
from distsnn.neurons import (
    FewSpikeRelu,
    IntegrateFire,
    Integrator,
    LeakyIntegrate,
    LeakyIntegrateFire,
)
from distsnn.nir_neurons import NIRNeuron
from distsnn.utils.data import as_examples

PopulationLike = Union[Population, Any]


def readout_kind(pop: Population) -> str:
    neuron = pop.neuron
    if isinstance(neuron, FewSpikeRelu):
        return "var"
    if isinstance(neuron, IntegrateFire):
        return neuron.readout or "spike_count"
    if isinstance(neuron, Integrator):
        return neuron.readout or "avg_input"
    if isinstance(neuron, NIRNeuron):
        return neuron.readout or ("spike_count" if neuron.spiking else "avg_var")
    if isinstance(neuron, (LeakyIntegrate, LeakyIntegrateFire)):
        if neuron.readout is None:
            raise ValueError(f"output population {pop.name!r} ({type(neuron).__name__}) has no "
                             f"readout: give it one, e.g. readout='avg_var' or AvgVar()")
        return neuron.readout
    raise ValueError(f"population {pop.name!r} ({type(neuron).__name__}) cannot be an output")


def population(network: Network, key) -> Population:
    key = getattr(key, "population", key)  # an InputLayer or Layer stands for its population
    if isinstance(key, Population):
        if not any(p is key for p in network.populations):
            raise ValueError(f"population {key.name!r} is not part of this network")
        return key
    if isinstance(key, str):
        return network.population(key)
    raise TypeError(f"expected a Population or its name, not {type(key).__name__}")


def populations(network, given, default, what) -> list[Population]:
    if given is None:
        return list(default)
    return [population(network, p) for p in as_list(given)]


def as_list(value) -> Optional[list]:
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def split_batch(batch, pops: list[Population]) -> dict:
    if len(pops) == 1:
        return {pops[0]: as_examples(batch)}
    if len(batch) != len(pops):
        raise ValueError(f"a batch has {len(batch)} parts but there are {len(pops)} "
                         f"populations {[p.name for p in pops]}")
    return {p: as_examples(b) for p, b in zip(pops, batch)}


def common_length(arrays: dict) -> int:
    lengths = {getattr(p, "name", p): len(v) for p, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs and labels must have the same number of examples: {lengths}")
    return next(iter(lengths.values()), 0)


def metric_specs(metrics, outputs: list[Population]) -> dict[Population, list]:
    """Metric specs per output: one spec, a list of specs, or a dict per output."""
    if isinstance(metrics, dict):
        by_name = {getattr(k, "name", k): v for k, v in metrics.items()}
        if set(by_name) != {o.name for o in outputs}:
            raise ValueError(f"metrics must have one entry per output {[o.name for o in outputs]}"
                             f", not {sorted(map(str, by_name))}")
        return {o: as_list(by_name[o.name]) for o in outputs}
    return {o: as_list(metrics) for o in outputs}


