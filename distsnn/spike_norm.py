"""Distributed Spike-Norm threshold search (Sengupta et al. 2019).

Layer by layer in topological order, every rank simulates its shard of the normalisation
data with the thresholds found so far and every later layer silent (infinite threshold),
recording the largest input (``Isyn + bias``) each neuron of the current layer receives in
one timestep, including steps in which it spikes. The layer's threshold is the maximum over
neurons, timesteps, examples and ranks (all-reduce MAX), or a percentile of the positive
per-step inputs, combined exactly across ranks by all-reducing a fixed-bin histogram.
Branches and merges are handled like any other layer. mlGeNN's version does not build on
GeNN 5, writes nothing back and stops at the first branch (spec §8.6, §15 item 24).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from distsnn.callbacks import Callback
from distsnn.compilers import CompiledInferenceNetwork, InferenceCompiler
from distsnn.compilers.arguments import populations
from distsnn.network import Network, Population
from distsnn.neurons import IntegrateFire, Integrator, SpikingMax
from distsnn.parallel.communicator import Communicator, SerialCommunicator

log = logging.getLogger("distsnn")

SILENT = 1e30
HISTOGRAM_BINS = 65536


class _NormCompiledNetwork(CompiledInferenceNetwork):
    """Compiled with settable thresholds and per-neuron input maxima."""

    def _extra_options(self) -> dict:
        return {"dynamic_thresholds": True, "record_max_input": True}


class _InputHistogram(Callback):
    """Accumulates a fixed-bin histogram of one population's positive per-step inputs."""

    def __init__(self, pop: Population, upper: float):
        self.pop = pop
        self.edges = np.linspace(0.0, upper, HISTOGRAM_BINS + 1)
        self.counts = np.zeros(HISTOGRAM_BINS, np.int64)

    def on_timestep_end(self, timestep):
        lanes = len(self.batch_info.example_indices)
        inputs = self.compiled_network.pull_var(self.pop, "LastIn")[:lanes].reshape(-1)
        positive = inputs[inputs > 0]
        self.counts += np.histogram(np.minimum(positive, self.edges[-1]), self.edges)[0]


def spike_normalise(net: Network, net_inputs: Optional[Sequence] = None,
                    net_outputs: Optional[Sequence] = None, norm_data=None,
                    evaluate_timesteps: int = 500, num_batches: Optional[int] = None,
                    dt: float = 1.0, batch_size: int = 1, rng_seed: int = 0,
                    kernel_profiling: bool = False, prefer_in_memory_connect: bool = True,
                    reset_time_between_batches: bool = True,
                    communicator: Optional[Communicator] = None, *, percentile: float = 100.0,
                    sharded: bool = False, backend: str = "auto",
                    build_dir: Optional[str] = None, **genn_kwargs) -> dict[str, float]:
    """Find Spike-Norm thresholds, write them into ``net`` and return ``{population: θ}``.

    ``norm_data`` is an array ``(N, ...)`` for the (single) input population, a dict of
    arrays per input, or mlGeNN's ``[iterable of (x, y) batches]``. With a communicator the
    arrays are the full set and each rank simulates its contiguous shard (``sharded=True``:
    already this rank's shard, the shards contiguous in rank order, so each example keeps its
    global index and Poisson stream). ``num_batches`` limits mlGeNN-style iterators.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], not {percentile}")
    comm = communicator or SerialCommunicator()
    inputs = populations(net, net_inputs, net.inputs, "inputs")
    if len(inputs) != 1 and not isinstance(norm_data, dict):
        raise ValueError("give norm_data as a dict {input population: array} for networks with "
                         "several inputs")
    data = _norm_arrays(norm_data, inputs, num_batches)
    layers = [p for p in net.topological_order() if isinstance(p.neuron, IntegrateFire)]
    if not layers:
        raise ValueError("spike-norm needs integrate-and-fire populations; this network has none")
    compiler = InferenceCompiler(
        evaluate_timesteps, dt=dt, batch_size=batch_size, rng_seed=rng_seed,
        kernel_profiling=kernel_profiling, prefer_in_memory_connect=prefer_in_memory_connect,
        reset_time_between_batches=reset_time_between_batches, communicator=comm,
        backend=backend, build_dir=build_dir, **genn_kwargs)
    outputs = populations(net, net_outputs, net.outputs, "outputs")
    compiled = _NormCompiledNetwork(compiler, net, inputs, outputs, None)
    thresholds: dict[str, float] = {}
    scale = {p.name: 1.0 for p in net.populations if not isinstance(p.neuron, IntegrateFire)}
    factors: dict[str, float] = {}
    with compiled:
        genn = compiled._genn
        n = len(next(iter(data.values())))
        start, stop, total, offset = compiled._shard(n, sharded)
        for layer in layers:
            reference = _rescale_inputs(net, genn, layer, scale, factors)
            for pop in layers:
                genn.set_threshold(pop, thresholds.get(pop.name, SILENT))
            genn.push(layer, "MaxIn", np.finfo(np.float32).min)
            _simulate(compiled, data, start, stop, total, offset)
            peak = float(comm.allreduce_max(np.array([genn.pull(layer, "MaxIn").max()]))[0])
            theta = peak
            if percentile < 100.0 and peak > 0.0:
                histogram = _InputHistogram(layer, peak)
                _simulate(compiled, data, start, stop, total, offset, [histogram])
                theta = _percentile(comm.allreduce_sum(histogram.counts), histogram.edges,
                                    percentile)
            if not theta > 0.0:
                log.warning("spike-norm: population %r never receives a positive input; "
                            "keeping threshold 1.0", layer.name)
                theta = 1.0
            thresholds[layer.name] = theta
            scale[layer.name] = theta * reference
            _pass_scale_to_max_pools(net, layer, scale)
            log.info("spike-norm: %s threshold %.6g", layer.name, theta)
        readouts = [p for p in net.populations if isinstance(p.neuron, Integrator)]
        for pop in readouts:  # non-spiking outputs: their inputs on one scale, no threshold
            _rescale_inputs(net, genn, pop, scale, factors)
    for layer in layers:
        layer.neuron.v_thresh = thresholds[layer.name]
    for layer in layers + readouts:
        sources = net.incoming(layer)
        if layer.neuron.bias is not None and sources:
            layer.neuron.bias = np.asarray(layer.neuron.bias, np.float32) / np.float32(
                scale[sources[0].source.name])
    for conn in net.connections:
        if factors.get(conn.name, 1.0) != 1.0:
            conn.connectivity.weight = np.asarray(conn.connectivity.weight, np.float32) \
                * np.float32(factors[conn.name])
    net.metadata.update({
        "method": "spike-norm",
        "spike_norm": {"status": "done", "timesteps": evaluate_timesteps, "norm_examples": total,
                       "percentile": percentile, "seed": compiled.base_seed,
                       "ranks": comm.size, "thresholds": thresholds}})
    return thresholds


def _rescale_inputs(net: Network, genn, layer: Population, scale: dict[str, float],
                    factors: dict[str, float]) -> float:
    """Put ``layer``'s inputs on its first source's scale; returns that scale."""
    sources = net.incoming(layer)
    if not sources:
        return 1.0
    reference = scale[sources[0].source.name]
    for conn in sources[1:]:
        factor = scale[conn.source.name] / reference
        if factor != 1.0:
            if not hasattr(conn.connectivity, "weight"):
                raise ValueError(f"spike-norm: connection {conn.name!r} ({conn.connectivity.kind})"
                                 f" merges a branch of another scale but has no weights to "
                                 f"rescale")
            genn.scale_weights(conn, factor)
            factors[conn.name] = factor
    if layer.neuron.bias is not None:
        bias = np.broadcast_to(np.asarray(layer.neuron.bias, np.float32).reshape(-1),
                               (layer.size,))
        genn.push(layer, "Bias", bias / np.float32(reference))
    return reference


def _pass_scale_to_max_pools(net: Network, pop: Population, scale: dict[str, float]) -> None:
    """Max-pools fed by ``pop`` keep its units (they have no threshold)."""
    for conn in net.outgoing(pop):
        if isinstance(conn.target.neuron, SpikingMax):
            scale[conn.target.name] = scale[pop.name]
            _pass_scale_to_max_pools(net, conn.target, scale)


def _simulate(compiled: CompiledInferenceNetwork, data: dict, start: int, stop: int,
              total: int, offset: int, callbacks: Sequence = ()) -> None:
    compiled._run(compiled._slices(data, start, stop, offset), total, [], lambda *a: None,
                  list(callbacks))


def _percentile(counts: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """Upper edge of the bin where the cumulative count reaches ``percentile``."""
    cumulative = np.cumsum(counts)
    if cumulative[-1] == 0:
        return 0.0
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return float(edges[min(index, len(counts) - 1) + 1])


def _norm_arrays(norm_data, inputs: list[Population], num_batches: Optional[int]) -> dict:
    """Normalisation data as ``{input population: array}``."""
    if norm_data is None:
        raise ValueError("spike-norm needs normalisation data (norm_data=...)")
    if isinstance(norm_data, dict):
        return {_find(inputs, k): np.asarray(v) for k, v in norm_data.items()}
    if isinstance(norm_data, np.ndarray):
        return {inputs[0]: norm_data}
    if isinstance(norm_data, (list, tuple)) and len(norm_data) == 1:
        norm_data = norm_data[0]  # mlGeNN passes [dataset]
    batches = []
    for i, batch in enumerate(norm_data):
        if num_batches is not None and i >= num_batches:
            break
        batches.append(np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch))
    if not batches:
        raise ValueError("the normalisation data is empty")
    return {inputs[0]: np.concatenate(batches)}


def _find(inputs: list[Population], key) -> Population:
    for pop in inputs:
        if pop is key or pop.name == key:
            return pop
    raise ValueError(f"{key!r} is not an input population ({[p.name for p in inputs]})")
