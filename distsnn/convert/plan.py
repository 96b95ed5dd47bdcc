"""The framework-independent plan of a spiking network: populations, terms and their algebra.

A front-end (:mod:`~distsnn.convert.keras_frontend` for Keras, :mod:`~distsnn.convert.onnx_frontend` for
ONNX) walks its model in topological order and turns every tensor's value, in distsnn's
channels-last layout, into either a population (:class:`PopulationSpec`: the model's inputs,
every ReLU and every model output) or a :class:`Virtual` value: a sum of linear
:class:`~distsnn.convert.terms.Term` s from populations plus a bias, which the consumers of
the tensor take over. So ``Conv(linear) -> BatchNormalization -> ReLU`` is one population
fed by one folded convolution, ``AveragePool -> Flatten -> Dense`` is one AvgPoolDense2D
connection, and ``Add`` simply collects the terms of its inputs. Elementwise input
preprocessing (``x * factor + offset``: Keras Rescaling and Normalization) is a
:class:`~distsnn.convert.terms.Scale` term operation plus a bias, both folded exactly into
the Dense or convolution that follows, so the network takes the raw inputs. :class:`Planner`
holds these operations; the front-ends only translate their framework's layers or nodes into
them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from distsnn import connectivity as conn
from distsnn.convert.enums import LINEAR, RELU, SOFTMAX
from distsnn.convert.errors import ConversionError
from distsnn.convert.terms import (
    ConvOp,
    ConvTransposeOp,
    DenseOp,
    Pad,
    Pool,
    Reshape,
    Scale,
    Term,
    fold_padding,
    unfolded_error,
)


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
    """What ``Converter.validate_tf_layer`` is told about a layer (mlGeNN's ``config``).

    mlGeNN's fields: ``shape``, ``is_output``, ``has_activation`` (the layer applies a
    non-linear activation: Dense/Conv2D with a non-linear ``activation``, Activation, ReLU
    and Softmax layers; not pooling or linear layers), ``is_input`` (False: input layers are
    not validated) and ``tf_layer`` (the layer, or ONNX node); distsnn adds ``activation``
    (its kind) and ``has_bias``.
    """

    shape: tuple
    is_output: bool
    activation: Optional[str]  # "linear", "relu", "softmax", another name, or None
    has_bias: bool = False
    is_input: bool = False
    tf_layer: Any = None
    has_activation: bool = field(init=False)

    def __post_init__(self) -> None:
        self.has_activation = self.activation not in (None, LINEAR)


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
            unfolded = unfolded_error(term)
            if unfolded is not None:
                raise unfolded
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
        """``x @ kernel + bias`` for a vector ``x`` (the pre-activation); input scales and
        offsets in ``x`` are folded into the kernel and the bias."""
        v = self.weighted_input(owner, x)
        kernel = np.asarray(kernel, np.float32)
        terms = []
        for term in v.terms:
            ops, scales = _without_scales(term.ops)
            scaled = kernel
            for scale in scales:
                scaled = scaled * scale.factor.reshape(-1, 1)
            terms.append(Term(term.source, ops + (DenseOp(scaled),)))
        if v.bias is not None:
            offset = (v.bias.reshape(-1).astype(np.float64) @ kernel).astype(np.float32)
            bias = offset if bias is None else bias + offset
        return Virtual(tuple(shape), terms, bias, probe, owner)

    def conv(self, owner, x: Value, kernel: np.ndarray, strides: tuple, padding: str,
             bias: Optional[np.ndarray], shape: tuple, probe: Probe,
             pads: Optional[tuple] = None) -> Virtual:
        """A convolution with TF ``padding``, after explicit zero ``pads`` ((t, b), (l, r))
        if given; zero padding before it is folded into its padding (exactly), per-channel
        input scales into its kernel and input offsets into its bias."""
        if len(x.shape) != 3:
            raise layer_error(owner, f"needs a (height, width, channels) input, not {x.shape}")
        v = self.weighted_input(owner, x)
        if pads is not None and any(p for axis in pads for p in axis):
            padded = None if v.bias is None else np.pad(v.bias, tuple(pads) + ((0, 0),))
            v = Virtual(v.shape, [t.then(Pad(pads, tuple(x.shape[:2]), owner.name))
                                  for t in v.terms], padded, v.probe, v.owner)
        kernel = np.asarray(kernel, np.float32)
        strides = tuple(int(s) for s in strides)
        terms = []
        for term in v.terms:
            ops, mode = term.ops, padding
            if ops and isinstance(ops[-1], Pad):
                mode = fold_padding(ops[-1], kernel.shape[:2], strides, padding)
                ops = ops[:-1]
            ops, scales = _without_scales(ops)
            scaled = kernel * _channel_scale(owner, scales, kernel.shape[2])[:, None]
            terms.append(Term(term.source, ops + (ConvOp(scaled, strides, mode),)))
        bias = None if bias is None else np.broadcast_to(bias, shape).astype(np.float32)
        if v.bias is not None:
            # The input offset, convolved as the model does: the zeros of the padding are not
            # offset, so at the borders of a 'same' or zero-padded convolution this varies.
            offset = _convolved(v.bias, kernel, strides, padding)
            bias = offset if bias is None else bias + offset
        return Virtual(tuple(shape), terms, bias, probe, owner)

    def conv_transpose(self, owner, x: Value, kernel: np.ndarray, strides: tuple, padding,
                       bias: Optional[np.ndarray], shape: tuple, probe: Probe) -> Virtual:
        """A transposed convolution (kernel ``[kh, kw, filters, c_in]``, TF ``padding`` or
        explicit cropping); per-channel input scales are folded into its kernel and input
        offsets, transposed-convolved, into its bias."""
        if len(x.shape) != 3:
            raise layer_error(owner, f"needs a (height, width, channels) input, not {x.shape}")
        v = self.weighted_input(owner, x)
        kernel = np.asarray(kernel, np.float32)
        strides = tuple(int(s) for s in strides)
        c = conn.Conv2DTranspose(kernel, kernel.shape[2], kernel.shape[:2], conv_strides=strides,
                                 conv_padding=padding)
        try:
            computed = c.output_shape(v.shape)
        except conn.ShapeError as err:
            raise layer_error(owner, str(err)) from None
        if computed != tuple(shape):
            raise layer_error(owner, f"outputs {tuple(shape)} but its kernel, strides and "
                                     f"padding give {computed}")
        terms = []
        for term in v.terms:
            ops, scales = _without_scales(term.ops)
            scaled = kernel * _channel_scale(owner, scales, kernel.shape[3])
            terms.append(Term(term.source, ops + (ConvTransposeOp(scaled, strides, padding),)))
        bias = None if bias is None else np.broadcast_to(bias, shape).astype(np.float32)
        if v.bias is not None:
            offset = conn.forward(c, v.bias.reshape(1, -1), v.shape).reshape(shape)
            offset = offset.astype(np.float32)
            bias = offset if bias is None else bias + offset
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
        pooled = all(all(isinstance(o, Pool) for o in t.ops) for t in v.terms)
        if not (pooled and v.bias is None or all(_input_scaled(t) for t in v.terms)):
            raise layer_error(owner, "must follow a population, an AveragePooling2D or input "
                                     "preprocessing and come right before a Conv2D")
        pad = Pad(pads, tuple(x.shape[:2]), owner.name)
        bias = None if v.bias is None else np.pad(v.bias, tuple(pads) + ((0, 0),))
        return Virtual(tuple(shape), [t.then(pad) for t in v.terms], bias, probe, owner)

    def scale(self, owner, x: Value, factor: np.ndarray, offset: np.ndarray,
              probe: Probe) -> Virtual:
        """``x * factor + offset`` elementwise (input preprocessing), ``factor`` and ``offset``
        broadcastable to ``x``'s shape; folded into the following Dense or convolution."""
        v = self.virtual(x)
        if not all(_input_scaled(t) for t in v.terms):
            raise layer_error(owner, f"is only supported on a model input (after other input "
                                     f"preprocessing at most), before the first {self.WEIGHTED}",
                              "move it there, or scale the data instead (--scale/--mean/--std "
                              "of distsnn evaluate)")
        factor = np.broadcast_to(factor, v.shape).astype(np.float32)
        terms = []
        for t in v.terms:
            if t.ops and isinstance(t.ops[-1], Scale):
                last = t.ops[-1]
                terms.append(Term(t.source, t.ops[:-1] + (Scale(last.factor * factor,
                                                                last.owner),)))
            else:
                terms.append(t.then(Scale(factor, describe_owner(owner))))
        bias = np.broadcast_to(offset, v.shape).astype(np.float32)
        if v.bias is not None:
            bias = v.bias * factor + bias
        return Virtual(v.shape, terms, bias if np.any(bias) else None, probe, owner)

    def flatten(self, owner, x: Value, shape: tuple, probe: Probe) -> Value:
        """``x`` in C order as a vector of ``shape``."""
        if len(x.shape) == 1:
            return x
        v = self.virtual(x)
        bias = None if v.bias is None else v.bias.reshape(-1)
        return Virtual(tuple(shape), [t.then(Reshape(tuple(shape))) for t in v.terms], bias,
                       probe, owner)


def _input_scaled(term: Term) -> bool:
    """True if ``term`` is a model input, at most scaled and reshaped."""
    return term.source.is_input and all(isinstance(o, (Scale, Reshape)) for o in term.ops)


def _without_scales(ops: tuple) -> tuple[tuple, list]:
    """``ops`` without their Scale operations, and those."""
    return (tuple(o for o in ops if not isinstance(o, Scale)),
            [o for o in ops if isinstance(o, Scale)])


def _channel_scale(owner, scales: list, channels: int) -> np.ndarray:
    """The per-input-channel product of ``scales``, which must not vary across positions."""
    total = np.ones(channels, np.float32)
    for scale in scales:
        per_channel = scale.factor.reshape(-1, channels)
        if np.any(per_channel != per_channel[0]):
            raise ConversionError(
                f"{scale.owner}: its scale varies across image positions, so it cannot be "
                f"folded into the convolution {describe_owner(owner)}; normalise per channel "
                f"(axis=-1) or scale the data instead (--scale/--mean/--std of distsnn evaluate)")
        total = total * per_channel[0]
    return total


def _convolved(image: np.ndarray, kernel: np.ndarray, strides: tuple, padding: str
               ) -> np.ndarray:
    """The TF convolution (zero ``padding``) of one ``(height, width, channels)`` image."""
    pads, window, outs = [], [], []
    for axis in (0, 1):
        n, k, s = image.shape[axis], kernel.shape[axis], strides[axis]
        out = conn.conv_output_size(n, k, s, padding)
        before = conn.conv_pad_before(n, k, s, padding)
        extent = (out - 1) * s + k
        pads.append((before, max(extent - n - before, 0)))
        window.append(extent)
        outs.append(out)
    padded = np.pad(image.astype(np.float64), tuple(pads) + ((0, 0),))[:window[0], :window[1]]
    result = np.zeros((outs[0], outs[1], kernel.shape[3]))
    for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
            patch = padded[i:i + (outs[0] - 1) * strides[0] + 1:strides[0],
                           j:j + (outs[1] - 1) * strides[1] + 1:strides[1]]
            result += patch @ kernel[i, j].astype(np.float64)
    return result.astype(np.float32)
