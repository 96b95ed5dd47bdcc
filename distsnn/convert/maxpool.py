"""Max pooling: how the front-ends plan it and how each conversion method builds it.

A max-pool (Keras MaxPooling2D/GlobalMaxPooling2D, ONNX MaxPool/GlobalMaxPool) is planned as
a population of its own whose one term is a :class:`~distsnn.convert.terms.MaxPool` from a
rectified population (a ReLU's): the maximum of signed values has no spiking equivalent, so
anything else is refused. Since the pooled values are non-negative, padding with zeros is the
same as the framework's padding with -inf. The methods build it differently:

* rate methods: a :class:`~distsnn.neurons.SpikingMax` population behind one
  :class:`~distsnn.connectivity.MaxPool2D` connection, whose spike count equals at every step
  the largest spike count of its window (one step later), so it fires at the largest rate. It
  keeps its source's units: data-norm gives it the source's scale and no threshold.
* few-spike: ``max(a, b) = b + relu(a - b)`` applied as a balanced tree over the window's taps
  (:func:`few_spike_tree`): ``ceil(log2(taps))`` levels of FewSpikeRelu populations fed by
  one-hot convolutions, then the pool population itself, all on the source's alpha, so the
  K-bit codes are pooled exactly.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from distsnn import connectivity as conn
from distsnn.convert.plan import Planner, PopulationSpec, Probe, Value, layer_error
from distsnn.convert.terms import MaxPool, Term
from distsnn.network import Network, Population
from distsnn.neurons import Neuron

_SIGNED_FIX = "put the ReLU before the max-pool (the two commute)"


def max_pool(planner: Planner, owner, x: Value, pool_size, strides, padding: conn.Padding,
             shape: tuple, probe: Probe) -> Value:
    """The max-pool population of ``x`` (an image of rectified values). ``shape``: the
    framework's output shape, a vector's for global pooling without kept dimensions."""
    if len(x.shape) != 3:
        raise layer_error(owner, f"needs a (height, width, channels) input, not {x.shape}")
    if not planner.nonnegative(x):
        raise layer_error(owner, "max-pools signed values (its input is not the output of a "
                                 "ReLU); only the maximum of rectified values can be converted",
                          _SIGNED_FIX)
    source = x if isinstance(x, PopulationSpec) else planner.population(x.owner, x, x.probe)
    pool = MaxPool(tuple(int(k) for k in pool_size), tuple(int(s) for s in strides),
                   _padding(padding))
    try:
        pooled = pool.connectivity().output_shape(source.shape)
    except conn.ShapeError as err:
        raise layer_error(owner, str(err)) from None
    shape = tuple(int(s) for s in shape)
    if pooled != shape and not (len(shape) == 1 and pooled == (1, 1, shape[0])):
        raise layer_error(owner, f"outputs {shape}, but its window, strides and padding give "
                                 f"{pooled}")
    spec = planner.new_population(owner, pooled, [Term(source, (pool,))], None, probe)
    return spec if len(shape) == 3 else planner.flatten(owner, spec, shape, probe)


def _padding(padding: conn.Padding) -> conn.Padding:
    padding = conn.normalise_padding(padding)
    if not isinstance(padding, str) and not any(p for axis in padding for p in axis):
        return "valid"
    return padding


def max_pool_op(spec: PopulationSpec) -> Optional[MaxPool]:
    """The max-pool of a max-pool population (None for every other population)."""
    return term_max_pool(spec.terms[0]) if len(spec.terms) == 1 else None


def term_max_pool(term: Term) -> Optional[MaxPool]:
    """The max-pool of a max-pool population's term (None for every other term)."""
    if len(term.ops) == 1 and isinstance(term.ops[0], MaxPool):
        return term.ops[0]
    return None


def check_not_output(spec: PopulationSpec) -> None:
    """A max-pool cannot be a model output (it holds no readout)."""
    if spec.is_output:
        raise layer_error(spec.layer, "is a model output", "follow the max-pool with a "
                                                           "Dense/Gemm output layer")


def few_spike_tree(network: Network, source: Population, target: Population, pool: MaxPool,
                   make_neuron: Callable[[], Neuron]) -> list[Population]:
    """Connect ``target`` to the maximum of each window of ``source`` through a balanced tree
    of ``relu(a - b)`` populations (``make_neuron()`` gives each one's neuron); returns them.

    Every value of the tree is a linear expression: tap coefficients on the source (one
    convolution) plus coefficients on earlier tree populations (one-to-one)."""
    kh, kw = pool.pool_size
    shape = pool.connectivity().output_shape(source.shape)
    channels = source.shape[2]
    leaves = []
    for tap in range(kh * kw):
        taps = np.zeros(kh * kw)
        taps[tap] = 1.0
        leaves.append((taps, {}))
    level, created = leaves, []
    while len(level) > 1:
        merged = []
        for left, right in zip(level[::2], level[1::2]):
            diff = (left[0] - right[0], {p: left[1].get(p, 0.0) - right[1].get(p, 0.0)
                                          for p in {**left[1], **right[1]}})
            relu = network.add_population(f"{target.name}_max{len(created)}", shape,
                                          make_neuron())
            _connect(network, source, relu, diff, pool, channels)
            created.append(relu)
            merged.append((right[0], {**right[1], relu: right[1].get(relu, 0.0) + 1.0}))
        level = merged + level[len(merged) * 2:]
    _connect(network, source, target, level[0], pool, channels)
    return created


def _connect(network: Network, source: Population, target: Population, expr, pool: MaxPool,
             channels: int) -> None:
    taps, pops = expr
    kh, kw = pool.pool_size
    if np.any(taps):
        kernel = np.zeros((kh, kw, channels, channels), np.float32)
        kernel[:, :, np.arange(channels), np.arange(channels)] = taps.reshape(kh, kw, 1)
        network.connect(source, target, conn.Conv2D(weight=kernel, strides=pool.strides,
                                                    padding=pool.padding))
    for pop, coefficient in pops.items():
        if coefficient:
            network.connect(pop, target, conn.OneToOne(float(coefficient)))


def settle_trees(trees: list[tuple[Population, Population, list]]) -> None:
    """Few-spike, once the network is complete: every max-pool population and its tree
    (``(pool, source, tree)``, in the order they were built, sources first) take the alpha of
    their source (a window's maximum stays in its range), and round their codes to the nearest
    step. Their pre-activations are exact multiples of the step, which float rounding may leave
    a hair below: a floor would lose a step, the nearest step is the multiple itself."""
    for pool, source, tree in trees:
        for pop in (*tree, pool):
            pop.neuron.alpha = float(source.neuron.alpha)
            pop.neuron.rounding = "nearest"
