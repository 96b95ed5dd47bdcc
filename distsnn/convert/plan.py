"""The framework-independent plan of a spiking network: populations, terms and their algebra.

A front-end (:mod:`~distsnn.convert.graph` for Keras, :mod:`~distsnn.convert.onnx_graph` for
ONNX) walks its model in topological order and turns every tensor's value, in distsnn's
channels-last layout, into either a population (:class:`PopulationSpec`: the model's inputs,
every ReLU and every model output) or a :class:`Virtual` value: a sum of linear
:class:`~distsnn.convert.terms.Term` s from populations plus a bias, which the consumers of
the tensor take over. So ``Conv(linear) -> BatchNormalization -> ReLU`` is one population
fed by one folded convolution, ``AveragePool -> Flatten -> Dense`` is one AvgPoolDense2D
connection, and ``Add`` simply collects the terms of its inputs. :class:`Planner` holds these
operations; the front-ends only translate their framework's layers or nodes into them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .errors import ConversionError
from .terms import ConvOp, DenseOp, Pad, Pool, Reshape, Term, fold_padding

#: Activation kinds; any other activation is described by its name.
LINEAR, RELU, SOFTMAX = "linear", "relu", "softmax"


@dataclass(frozen=True, eq=False)
class Probe:
    """How to compute a value on data: a model tensor, optionally followed by ``fn``."""

    tensor: Any
    fn: Optional[Callable[[np.ndarray], np.ndarray]] = None


@dataclass(eq=False)
class PopulationSpec:
    """A population to create: its owner layer (or node), shape, incoming terms and bias.

    ``bias`` is a per-neuron array of the population's shape in ANN units (or None);
    ``probe`` computes the ANN value the population represents (before any output softmax).
    """

    name: str
    shape: tuple
    layer: Any
    terms: list
    bias: Optional[np.ndarray]
    probe: Probe
    is_input: bool = False
    is_output: bool = False
    layers: list = field(default_factory=list)

    def __repr__(self) -> str:
        return f"PopulationSpec({self.name!r}, shape={self.shape})"


@dataclass(eq=False)
class Virtual:
    """The value of a tensor that is not a population: ``sum(terms) + bias``."""

    shape: tuple
    terms: list
    bias: Optional[np.ndarray]
    probe: Probe
    owner: Any


Value = Union[PopulationSpec, Virtual]


@dataclass
class LayerInfo:
    """What ``Converter.validate_tf_layer`` is told about a layer (mlGeNN's ``config``)."""

    shape: tuple
    is_output: bool
    activation: Optional[str]  # "linear", "relu", "softmax", another name, or None
    has_bias: bool = False


class Frontend:
    """A loaded model of one framework: its graph, its activations on data, its provenance."""

    framework = "none"
    model: Any = None

    def build_graph(self, validate: Optional[Callable[[Any, LayerInfo], None]] = None
                    ) -> "ConversionGraph":
        """Plan the spiking network; ``validate(layer, info)`` vets every layer or node."""
        raise NotImplementedError

    def example_shape(self, graph: "ConversionGraph") -> tuple:
        """The shape of one example as the model takes it."""
        return graph.inputs[0].shape

    def model_layout(self, x: np.ndarray) -> np.ndarray:
        """A batch of data in the model's layout (data may come in the network's)."""
        return x

    def probe_runner(self, graph: "ConversionGraph", specs: Sequence[PopulationSpec]
                     ) -> Callable[[np.ndarray], list]:
        """A function from a batch (model layout) to the probed value of each spec."""
        raise NotImplementedError

    def metadata(self, graph: "ConversionGraph") -> dict:
        """Where the model came from, for ``network.metadata``."""
        return {}


@dataclass
class ConversionGraph:
    """The planned populations (in topological order) of a model."""

    model: Any
    populations: list
    inputs: list
    outputs: list
    layer_pops: dict  # layer or node -> PopulationSpec
    frontend: Optional[Frontend] = None

    def spec(self, name: str) -> PopulationSpec:
        return next(p for p in self.populations if p.name == name)


def describe_owner(owner) -> str:
    """``layer 'name' (Class)`` for a Keras layer, ``node 'name' (OpType)`` for an ONNX node."""
    op_type = getattr(owner, "op_type", None)
    if op_type is not None:
        return f"node {owner.name!r} ({op_type})"
    return f"layer {owner.name!r} ({type(owner).__name__})"


def layer_error(layer, problem: str, fix: str = "") -> ConversionError:
    """An error naming ``layer`` (or node) and its class (or op type)."""
    text = f"{describe_owner(layer)}: {problem}"
    return ConversionError(text + (f"; {fix}" if fix else ""))


class Planner:
    """Builds the populations of a model from per-layer operations on values.

    Values have distsnn's layout: ``(height, width, channels)`` images and vectors.
    Kernels are Keras' (``[n_in, n_out]`` and ``[kh, kw, c_in, filters]``). Subclasses name
    their framework's layers in messages through ``WEIGHTED`` and ``POOLING``.
    """

    WEIGHTED = "Dense/Conv2D"
    POOLING = "pooling layer"

    def __init__(self):
        self.populations: list[PopulationSpec] = []
        self.layer_pops: dict = {}
        self.names: set[str] = set()

    # -- populations ----------------------------------------------------------------------
    def unique_name(self, name: str) -> str:
        base = re.sub(r"\W", "_", name) or "pop"
        if base[0].isdigit():
            base = "p_" + base
        candidate, i = base, 1
        while candidate in self.names:
            candidate, i = f"{base}_{i}", i + 1
        self.names.add(candidate)
        return candidate

    def new_population(self, owner, shape, terms, bias, probe, is_input=False) -> PopulationSpec:
        spec = PopulationSpec(self.unique_name(owner.name), tuple(shape), owner, list(terms),
                              bias, probe, is_input=is_input)
        self.populations.append(spec)
        spec.layers.append(owner)
        self.layer_pops.setdefault(owner, spec)
        return spec

    def population(self, owner, value: Value, probe: Probe) -> PopulationSpec:
        v = self.virtual(value)
        for term in v.terms:
            pads = [op for op in term.ops if isinstance(op, Pad)]
            if pads:
                raise ConversionError(f"layer {pads[0].layer_name!r} (ZeroPadding2D): zero "
                                      f"padding is only supported directly before a Conv2D")
        return self.new_population(owner, v.shape, v.terms, v.bias, probe)

    def output(self, owner, value: Value) -> PopulationSpec:
        """Make ``value`` (a model output) a population marked as an output."""
        if isinstance(value, PopulationSpec):
            if value.is_input:
                raise layer_error(owner, "passes a model input straight to an output")
            value.is_output = True
            return value
        spec = self.population(value.owner, value, value.probe)
        spec.is_output = True
        return spec

    def check_populations(self) -> None:
        for spec in self.populations:
            if not spec.is_input and not spec.terms:
                raise ConversionError(f"population {spec.name!r} has no inputs")

    @staticmethod
    def virtual(value: Value) -> Virtual:
        if isinstance(value, Virtual):
            return value
        return Virtual(value.shape, [Term(value)], None, value.probe, value.layer)

    @staticmethod
    def nonnegative(value: Value) -> bool:
        """True if the value is already rectified (so a ReLU on it is the identity)."""
        if isinstance(value, PopulationSpec):
            return not value.is_input
        return value.bias is None and all(
            not t.source.is_input and all(isinstance(op, (Pool, Reshape)) for op in t.ops)
            for t in value.terms)

    # -- operations -----------------------------------------------------------------------
    def nonlinear(self, owner, x: Value, probe: Probe, kind: str, terminal: bool,
                  pre_probe: Optional[Probe] = None) -> Value:
        """Apply an activation of ``kind`` to ``x`` (the pre-activation); ``terminal``: the
        result only reaches model outputs (so a softmax there changes no other value)."""
        if kind == LINEAR:
            if isinstance(x, Virtual):
                return Virtual(x.shape, x.terms, x.bias, probe, x.owner)
            return x
        if kind == RELU and self.nonnegative(x):
            return x
        if kind == SOFTMAX and terminal:
            # argmax-preserving: the output population reads the pre-activation
            if isinstance(x, PopulationSpec):
                return x
            return Virtual(x.shape, x.terms, x.bias, pre_probe or x.probe, owner)
        # ReLU (or, with validation switched off, any other nonlinearity): a population
        return self.population(owner, x, probe)

    def add(self, owner, ins: Sequence[Value], shape: tuple, probe: Probe) -> Virtual:
        """The sum of several values of one shape."""
        terms, bias = [], None
        for value in ins:
            v = self.virtual(value)
            terms.extend(v.terms)
            if v.bias is not None:
                bias = v.bias.copy() if bias is None else bias + v.bias
        return Virtual(tuple(shape), terms, bias, probe, owner)

    def add_bias(self, owner, x: Value, bias: np.ndarray, probe: Probe) -> Virtual:
        """``x`` plus a constant of its shape."""
        v = self.virtual(x)
        bias = np.asarray(bias, np.float32) + (0 if v.bias is None else v.bias)
        return Virtual(v.shape, v.terms, bias.astype(np.float32), probe, owner)

    def weighted_input(self, owner, x: Value) -> Virtual:
        v = self.virtual(x)
        for term in v.terms:
            if term.weighted:
                raise layer_error(owner, f"follows another weighted layer without an activation "
                                         f"in between ({term.describe()})",
                                  "add a ReLU between them or merge the two layers")
        return v

    def dense(self, owner, x: Value, kernel: np.ndarray, bias: Optional[np.ndarray],
              shape: tuple, probe: Probe) -> Virtual:
        """``x @ kernel + bias`` for a vector ``x`` (the pre-activation)."""
        v = self.weighted_input(owner, x)
        dense = DenseOp(np.asarray(kernel, np.float32))
        return Virtual(tuple(shape), [t.then(dense) for t in v.terms], bias, probe, owner)

    def conv(self, owner, x: Value, kernel: np.ndarray, strides: tuple, padding: str,
             bias: Optional[np.ndarray], shape: tuple, probe: Probe,
             pads: Optional[tuple] = None) -> Virtual:
        """A convolution with TF ``padding``, after explicit zero ``pads`` ((t, b), (l, r))
        if given; zero padding before it is folded into its padding (exactly)."""
        if len(x.shape) != 3:
            raise layer_error(owner, f"needs a (height, width, channels) input, not {x.shape}")
        v = self.weighted_input(owner, x)
        if pads is not None and any(p for axis in pads for p in axis):
            v = Virtual(v.shape, [t.then(Pad(pads, tuple(x.shape[:2]), owner.name))
                                  for t in v.terms], v.bias, v.probe, v.owner)
        kernel = np.asarray(kernel, np.float32)
        strides = tuple(int(s) for s in strides)
        terms = []
        for term in v.terms:
            ops, mode = term.ops, padding
            if ops and isinstance(ops[-1], Pad):
                mode = fold_padding(ops[-1], kernel.shape[:2], strides, padding)
                ops = ops[:-1]
            terms.append(Term(term.source, ops + (ConvOp(kernel, strides, mode),)))
        bias = None if bias is None else np.broadcast_to(bias, shape).astype(np.float32)
        return Virtual(tuple(shape), terms, bias, probe, owner)

    def batch_norm(self, owner, x: Value, scale: np.ndarray, shift: np.ndarray,
                   probe: Probe) -> Virtual:
        """Fold ``x * scale + shift`` (per channel) into the weighted layer before it."""
        if not isinstance(x, Virtual) or not all(t.last_weighted for t in x.terms):
            raise layer_error(owner, f"can only be folded into a {self.WEIGHTED} (without "
                                     f"activation) directly before it",
                              f"place BatchNormalization right after the {self.WEIGHTED}, before "
                              f"its ReLU")
        scale, shift = np.asarray(scale, np.float32), np.asarray(shift, np.float32)
        terms = [Term(t.source, t.ops[:-1] + (t.ops[-1].scaled(scale),)) for t in x.terms]
        bias = (x.bias if x.bias is not None else np.zeros(x.shape, np.float32)) * scale + shift
        return Virtual(x.shape, terms, bias.astype(np.float32), probe, owner)

    def pool(self, owner, x: Value, pool_size: tuple, strides: tuple, shape: tuple,
             probe: Probe) -> Virtual:
        """Average pooling (valid padding) of an image; ``shape`` may be a vector's if the
        pool covers the whole image (global pooling without kept dimensions)."""
        if len(x.shape) != 3:
            raise layer_error(owner, f"needs a (height, width, channels) input, not {x.shape}")
        v = self.virtual(x)
        if v.bias is not None or any(t.ops for t in v.terms):
            raise layer_error(owner, "must follow a layer with an activation (a population) or "
                                     "an Add of such layers",
                              f"add a ReLU before the {self.POOLING}")
        pool = Pool(tuple(int(s) for s in pool_size), tuple(int(s) for s in strides))
        shape = tuple(shape)
        extra = (Reshape(shape),) if len(shape) == 1 else ()
        return Virtual(shape, [Term(t.source, (pool,) + extra) for t in v.terms], None, probe,
                       owner)

    def zero_pad(self, owner, x: Value, pads: tuple, shape: tuple, probe: Probe) -> Virtual:
        """Zero padding ((top, bottom), (left, right)), to be folded into a convolution."""
        v = self.virtual(x)
        if v.bias is not None or any(t.ops and not all(isinstance(o, Pool) for o in t.ops)
                                     for t in v.terms):
            raise layer_error(owner, "must follow a population or an AveragePooling2D and come "
                                     "right before a Conv2D")
        pad = Pad(pads, tuple(x.shape[:2]), owner.name)
        return Virtual(tuple(shape), [t.then(pad) for t in v.terms], None, probe, owner)

    def flatten(self, owner, x: Value, shape: tuple, probe: Probe) -> Value:
        """``x`` in C order as a vector of ``shape``."""
        if len(x.shape) == 1:
            return x
        v = self.virtual(x)
        bias = None if v.bias is None else v.bias.reshape(-1)
        return Virtual(tuple(shape), [t.then(Reshape(tuple(shape))) for t in v.terms], bias,
                       probe, owner)
