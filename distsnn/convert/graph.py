"""Walk a Keras model's graph in topological order and plan the spiking network.

Every Keras tensor's value becomes either a population (:class:`PopulationSpec`: the model's
inputs, every ReLU and every model output) or a :class:`Virtual` value: a sum of linear
:class:`~distsnn.convert.terms.Term` s from populations plus a bias, which the consumers of
the tensor take over. So ``Conv2D(linear) -> BatchNormalization -> ReLU`` is one population
fed by one folded Conv2D connection, ``AveragePooling2D -> Flatten -> Dense`` is one
AvgPoolDense2D connection, and ``Add`` simply collects the terms of its inputs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np

from ._backend import keras, to_numpy
from .activations import LINEAR, RELU, SOFTMAX, activation_kind, relu_layer_kind
from .errors import ConversionError
from .terms import ConvOp, DenseOp, Pad, Pool, Reshape, Term, fold_padding

L = keras.layers
#: Layers that are the identity at inference time.
IDENTITY_LAYERS = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
                   L.GaussianDropout, L.GaussianNoise, L.AlphaDropout, L.ActivityRegularization)

SUPPORTED = ("InputLayer, Dense, Conv2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, "
             "Reshape to a vector, Add, ReLU, Activation (relu/softmax/linear), Softmax (output), "
             "BatchNormalization (after Dense/Conv2D), ZeroPadding2D (before Conv2D), Dropout")

_INSTEAD = {
    "MaxPooling2D": "use AveragePooling2D", "MaxPool2D": "use AveragePooling2D",
    "GlobalMaxPooling2D": "use GlobalAveragePooling2D",
    "GlobalMaxPool2D": "use GlobalAveragePooling2D",
    "Concatenate": "merge branches with Add instead",
    "Subtract": "merge branches with Add instead", "Multiply": "merge branches with Add instead",
    "Average": "merge branches with Add instead", "Maximum": "merge branches with Add instead",
    "Minimum": "merge branches with Add instead", "Dot": "merge branches with Add instead",
    "LeakyReLU": "use ReLU", "PReLU": "use ReLU", "ELU": "use ReLU",
    "DepthwiseConv2D": "use Conv2D", "SeparableConv2D": "use Conv2D",
    "Conv2DTranspose": "use Conv2D (transposed convolutions are not supported)",
    "Conv1D": "use Conv2D", "Conv3D": "use Conv2D",
    "AveragePooling1D": "use AveragePooling2D", "AveragePooling3D": "use AveragePooling2D",
    "LayerNormalization": "use BatchNormalization directly after a Dense or Conv2D",
    "GroupNormalization": "use BatchNormalization directly after a Dense or Conv2D",
    "Rescaling": "scale the data before conversion instead",
    "Normalization": "normalise the data before conversion instead",
    "Lambda": "rebuild the model from standard layers (Lambda code cannot be inspected)",
}
for _name in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM2D", "LSTMCell",
              "GRUCell", "SimpleRNNCell", "TimeDistributed"):
    _INSTEAD[_name] = "recurrent layers cannot be converted: only feed-forward networks are"


@dataclass(frozen=True, eq=False)
class Probe:
    """How to compute a value on data: a model tensor, optionally followed by ``fn``."""

    tensor: Any
    fn: Optional[Callable[[np.ndarray], np.ndarray]] = None


@dataclass(eq=False)
class PopulationSpec:
    """A population to create: its Keras owner layer, shape, incoming terms and bias.

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


@dataclass
class ConversionGraph:
    """The planned populations (in topological order) of a Keras model."""

    model: Any
    populations: list
    inputs: list
    outputs: list
    layer_pops: dict  # Keras layer -> PopulationSpec

    def spec(self, name: str) -> PopulationSpec:
        return next(p for p in self.populations if p.name == name)


def build_graph(model, validate: Optional[Callable[[Any, LayerInfo], None]] = None
                ) -> ConversionGraph:
    """Plan the spiking network of ``model``; ``validate(layer, info)`` vets every layer."""
    return _Walker(model, validate).run()


def layer_error(layer, problem: str, fix: str = "") -> ConversionError:
    """An error naming ``layer`` and its class."""
    text = f"layer {layer.name!r} ({type(layer).__name__}): {problem}"
    return ConversionError(text + (f"; {fix}" if fix else ""))


def _shape(tensor) -> tuple:
    if any(d is None for d in tensor.shape[1:]):
        raise ConversionError(f"tensor {tensor.name!r} has shape {tuple(tensor.shape)}; "
                              f"every dimension but the batch must be known (give keras.Input "
                              f"a complete shape)")
    return tuple(int(d) for d in tensor.shape[1:])


def _is_ops_op(op, name: str) -> bool:
    cls = type(op)
    return (cls.__name__ == name and cls.__module__.startswith("keras.src.ops")
            and not isinstance(op, keras.layers.Layer))


_SINGLE_INPUT = (L.Dense, L.Conv2D, L.BatchNormalization, L.AveragePooling2D,
                 L.GlobalAveragePooling2D, L.Flatten, L.Reshape, L.ZeroPadding2D, L.ReLU,
                 L.Activation, L.Softmax)


class _Walker:
    def __init__(self, model, validate):
        self.model = model
        self.validate = validate
        try:
            self.model_inputs = list(model.inputs)
            self.model_outputs = list(model.outputs)
        except (AttributeError, ValueError) as err:
            raise ConversionError(f"model {getattr(model, 'name', model)!r} has no defined "
                                  f"inputs ({err}); build it with keras.Input first") from None
        self.values: dict[int, Value] = {}
        self.populations: list[PopulationSpec] = []
        self.layer_pops: dict = {}
        self.names: set[str] = set()
        self.output_ids = {id(t) for t in self.model_outputs}

    # -- graph discovery ------------------------------------------------------------------
    def _discover(self):
        nodes, parents, order_seen = {}, {}, {}
        stack = list(self.model_outputs)
        while stack:
            tensor = stack.pop()
            history = tensor._keras_history
            op, index = history.operation, history.node_index
            key = id(op)
            if key in nodes:
                if order_seen[key] != index:
                    raise ConversionError(f"layer {op.name!r} ({type(op).__name__}) is used "
                                          f"more than once (shared layers are not supported)")
                continue
            node = op._inbound_nodes[index]
            nodes[key], order_seen[key] = (op, node), index
            parents[key] = [id(t._keras_history.operation) for t in node.input_tensors]
            stack.extend(node.input_tensors)
        consumers: dict[int, list] = {}
        for key, (op, node) in nodes.items():
            for t in node.input_tensors:
                consumers.setdefault(id(t), []).append(op)
        # Kahn's algorithm; ties broken by the model's own layer order
        rank = {id(op): i for i, op in enumerate(getattr(self.model, "operations", []))}
        pending = {k: len(set(p)) for k, p in parents.items()}
        children: dict[int, set] = {}
        for k, ps in parents.items():
            for p in set(ps):
                children.setdefault(p, set()).add(k)
        ready = sorted((k for k, n in pending.items() if n == 0), key=lambda k: rank.get(k, 0))
        order = []
        while ready:
            k = ready.pop(0)
            order.append(nodes[k])
            for c in sorted(children.get(k, ()), key=lambda k: rank.get(k, 0)):
                pending[c] -= 1
                if pending[c] == 0:
                    ready.append(c)
        return order, consumers

    def _terminal(self, tensor) -> bool:
        """True if ``tensor`` only reaches model outputs, through identity layers at most
        (so a softmax on it changes no value that another layer uses)."""
        users = self.consumers.get(id(tensor), [])
        if not users:
            return id(tensor) in self.output_ids
        for op in users:
            identity = isinstance(op, IDENTITY_LAYERS) or (
                type(op) is L.Activation and activation_kind(op.activation) == LINEAR)
            if not identity or not self._terminal(op._inbound_nodes[0].output_tensors[0]):
                return False
        return True

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> ConversionGraph:
        order, self.consumers = self._discover()
        inputs, output_pops = [], {}
        for op, node in order:
            if isinstance(op, keras.Model):
                raise ConversionError(f"layer {op.name!r} ({type(op).__name__}) is a nested model;"
                                      f" build the model from its layers directly")
            if len(node.output_tensors) != 1:
                raise layer_error(op, "layers with several outputs are not supported")
            out = node.output_tensors[0]
            if type(op) is L.InputLayer:
                if id(out) in self.output_ids:
                    raise layer_error(op, "an input cannot be a model output")
                spec = self._new_population(op, _shape(out), [], None, Probe(out), is_input=True)
                inputs.append(spec)
                self.values[id(out)] = spec
                continue
            in_values = [self.values[id(t)] for t in node.input_tensors]
            self._validate(op, node, out)
            value = self._convert(op, node, in_values, out)
            self.values[id(out)] = value
            if isinstance(value, PopulationSpec) and op not in self.layer_pops:
                self.layer_pops[op] = value
                value.layers.append(op)
            if id(out) in self.output_ids:
                output_pops[id(out)] = self._output(op, value)
        for t in self.model_inputs:
            if not isinstance(self.values.get(id(t)), PopulationSpec):
                raise ConversionError(f"model input {t.name!r} does not reach any output")
        outputs = []
        for t in self.model_outputs:
            if output_pops[id(t)] not in outputs:
                outputs.append(output_pops[id(t)])
        for spec in self.populations:
            if not spec.is_input and not spec.terms:
                raise ConversionError(f"population {spec.name!r} has no inputs")
        return ConversionGraph(self.model, self.populations, inputs, outputs, self.layer_pops)

    def _output(self, op, value: Value) -> PopulationSpec:
        if isinstance(value, PopulationSpec):
            if value.is_input:
                raise layer_error(op, "passes a model input straight to an output")
            value.is_output = True
            return value
        spec = self._population(value.owner, value, value.probe)
        spec.is_output = True
        return spec

    def _validate(self, op, node, out) -> None:
        if self.validate is None:
            return
        activation, has_bias = None, False
        if type(op) in (L.Dense, L.Conv2D):
            activation, has_bias = activation_kind(op.activation), bool(op.use_bias)
        elif type(op) is L.Activation:
            activation = activation_kind(op.activation)
        elif type(op) is L.ReLU:
            activation = relu_layer_kind(op)
        elif type(op) is L.Softmax or _is_ops_op(op, "Softmax"):
            activation = SOFTMAX
        elif _is_ops_op(op, "Relu"):
            activation = RELU
        self.validate(op, LayerInfo(_shape(out), self._terminal(out), activation, has_bias))

    # -- populations ----------------------------------------------------------------------
    def _unique_name(self, name: str) -> str:
        base = re.sub(r"\W", "_", name) or "pop"
        if base[0].isdigit():
            base = "p_" + base
        candidate, i = base, 1
        while candidate in self.names:
            candidate, i = f"{base}_{i}", i + 1
        self.names.add(candidate)
        return candidate

    def _new_population(self, owner, shape, terms, bias, probe, is_input=False):
        spec = PopulationSpec(self._unique_name(owner.name), tuple(shape), owner, list(terms),
                              bias, probe, is_input=is_input)
        self.populations.append(spec)
        spec.layers.append(owner)
        self.layer_pops.setdefault(owner, spec)
        return spec

    def _population(self, owner, value: Value, probe: Probe) -> PopulationSpec:
        v = self._virtual(value)
        for term in v.terms:
            pads = [op for op in term.ops if isinstance(op, Pad)]
            if pads:
                raise ConversionError(f"layer {pads[0].layer_name!r} (ZeroPadding2D): zero "
                                      f"padding is only supported directly before a Conv2D")
        return self._new_population(owner, v.shape, v.terms, v.bias, probe)

    @staticmethod
    def _virtual(value: Value) -> Virtual:
        if isinstance(value, Virtual):
            return value
        return Virtual(value.shape, [Term(value)], None, value.probe, value.layer)

    @staticmethod
    def _nonnegative(value: Value) -> bool:
        """True if the value is already rectified (so a ReLU on it is the identity)."""
        if isinstance(value, PopulationSpec):
            return not value.is_input
        return value.bias is None and all(
            not t.source.is_input and all(isinstance(op, (Pool, Reshape)) for op in t.ops)
            for t in value.terms)

    # -- layers ---------------------------------------------------------------------------
    def _convert(self, op, node, ins: list, out) -> Value:
        cls = type(op)
        if cls in (L.Add,) or _is_ops_op(op, "Add"):
            return self._add(op, node, ins, out)
        if not (cls in _SINGLE_INPUT or isinstance(op, IDENTITY_LAYERS)
                or _is_ops_op(op, "Relu") or _is_ops_op(op, "Softmax")):
            self._unsupported(op)
        if len(ins) != 1:
            raise layer_error(op, f"takes {len(ins)} inputs; only Add may merge branches")
        x, in_tensor = ins[0], node.input_tensors[0]
        if isinstance(op, IDENTITY_LAYERS):
            return x
        if cls is L.Dense:
            return self._dense(op, x, in_tensor, out)
        if cls is L.Conv2D:
            return self._conv(op, x, in_tensor, out)
        if cls is L.BatchNormalization:
            return self._batch_norm(op, x, out)
        if cls in (L.AveragePooling2D, L.GlobalAveragePooling2D):
            return self._pool(op, x, out)
        if cls in (L.Flatten, L.Reshape):
            return self._flatten(op, x, out)
        if cls is L.ZeroPadding2D:
            return self._zero_pad(op, x, out)
        if cls is L.ReLU:
            return self._nonlinear(op, x, out, relu_layer_kind(op))
        if cls is L.Activation:
            return self._nonlinear(op, x, out, activation_kind(op.activation))
        if cls is L.Softmax or _is_ops_op(op, "Softmax"):
            return self._nonlinear(op, x, out, SOFTMAX)
        if _is_ops_op(op, "Relu"):
            return self._nonlinear(op, x, out, RELU)
        self._unsupported(op)

    @staticmethod
    def _unsupported(op):
        cls = type(op)
        name = cls.__name__
        fix = _INSTEAD.get(name, f"supported layers are {SUPPORTED}")
        if not isinstance(op, keras.layers.Layer):
            name = f"keras.ops.{name}"
        raise ConversionError(f"layer {op.name!r} ({name}) is not supported; {fix}")

    def _nonlinear(self, op, x: Value, out, kind: str, pre_probe: Optional[Probe] = None
                   ) -> Value:
        """Apply an activation of ``kind`` to ``x`` (the pre-activation)."""
        if kind == LINEAR:
            if isinstance(x, Virtual):
                return Virtual(x.shape, x.terms, x.bias, Probe(out), x.owner)
            return x
        if kind == RELU and self._nonnegative(x):
            return x
        if kind == SOFTMAX and self._terminal(out):
            # argmax-preserving: the output population reads the pre-activation
            if isinstance(x, PopulationSpec):
                return x
            probe = pre_probe or x.probe
            return Virtual(x.shape, x.terms, x.bias, probe, op)
        # ReLU (or, with validation switched off, any other nonlinearity): a population
        return self._population(op, x, Probe(out))

    def _add(self, op, node, ins, out) -> Value:
        shape = _shape(out)
        if len(ins) < 2:
            raise layer_error(op, "needs at least two tensor inputs (constants are not supported)")
        for t in node.input_tensors:
            if _shape(t) != shape:
                raise layer_error(op, f"adds shapes {[_shape(t) for t in node.input_tensors]}; "
                                      f"broadcasting is not supported")
        terms, bias = [], None
        for value in ins:
            v = self._virtual(value)
            terms.extend(v.terms)
            if v.bias is not None:
                bias = v.bias.copy() if bias is None else bias + v.bias
        return Virtual(shape, terms, bias, Probe(out), op)

    def _weighted_input(self, op, x: Value) -> Virtual:
        v = self._virtual(x)
        for term in v.terms:
            if term.weighted:
                raise layer_error(op, f"follows another weighted layer without an activation "
                                      f"in between ({term.describe()})",
                                  "add a ReLU between them or merge the two layers")
        return v

    def _dense(self, op, x: Value, in_tensor, out) -> Value:
        if len(x.shape) != 1:
            raise layer_error(op, f"is applied to an input of shape {x.shape} (Keras then acts on "
                                  f"the last axis only)", "add a Flatten layer before it")
        v = self._weighted_input(op, x)
        dense = DenseOp(to_numpy(op.kernel))
        bias = to_numpy(op.bias) if op.use_bias else None
        pre = Virtual(_shape(out), [t.then(dense) for t in v.terms], bias, Probe(out), op)
        return self._activate(op, pre, in_tensor, out)

    def _conv(self, op, x: Value, in_tensor, out) -> Value:
        self._channels_last(op)
        if tuple(op.dilation_rate) != (1, 1) or op.groups != 1:
            raise layer_error(op, "dilated or grouped convolutions are not supported",
                              "use dilation_rate=1 and groups=1")
        if op.padding not in ("valid", "same"):
            raise layer_error(op, f"padding {op.padding!r} is not supported",
                              "use 'valid' or 'same'")
        if len(x.shape) != 3:
            raise layer_error(op, f"needs a (height, width, channels) input, not {x.shape}")
        v = self._weighted_input(op, x)
        kernel = to_numpy(op.kernel)
        strides = tuple(int(s) for s in op.strides)
        terms = []
        for term in v.terms:
            ops, padding = term.ops, op.padding
            if ops and isinstance(ops[-1], Pad):
                padding = fold_padding(ops[-1], kernel.shape[:2], strides, op.padding)
                if padding is None:
                    raise ConversionError(
                        f"layer {ops[-1].layer_name!r} (ZeroPadding2D) followed by "
                        f"{op.name!r} (Conv2D, kernel {kernel.shape[:2]}, strides {strides}, "
                        f"padding {op.padding!r}) is not the same as TF 'same' or 'valid' "
                        f"padding; use padding='same' in the Conv2D instead")
                ops = ops[:-1]
            terms.append(Term(term.source, ops + (ConvOp(kernel, strides, padding),)))
        shape = _shape(out)
        bias = (np.broadcast_to(to_numpy(op.bias), shape).copy() if op.use_bias else None)
        pre = Virtual(shape, terms, bias, Probe(out), op)
        return self._activate(op, pre, in_tensor, out)

    def _activate(self, op, pre: Virtual, in_tensor, out) -> Value:
        """The built-in activation of a Dense/Conv2D ``op`` applied to its pre-activation."""
        kind = activation_kind(op.activation)
        if kind in (LINEAR, RELU):
            return self._nonlinear(op, pre, out, kind)
        linear = Probe(in_tensor, _LinearClone(op, in_tensor))
        if kind == SOFTMAX and self._terminal(out):
            return self._nonlinear(op, pre, out, kind, pre_probe=linear)
        return self._population(op, pre, Probe(out))

    def _batch_norm(self, op, x: Value, out) -> Value:
        rank = len(x.shape)
        axis = op.axis if isinstance(op.axis, int) else (op.axis[0] if len(op.axis) == 1 else None)
        if axis not in (-1, rank):
            raise layer_error(op, f"normalises axis {op.axis}; only the channel (last) axis is "
                                  f"supported")
        if not isinstance(x, Virtual) or not all(t.last_weighted for t in x.terms):
            raise layer_error(op, "can only be folded into a Dense or Conv2D (without "
                                  "activation) directly before it",
                              "place BatchNormalization right after the Dense/Conv2D, before "
                              "its ReLU")
        mean, var = to_numpy(op.moving_mean), to_numpy(op.moving_variance)
        gamma = to_numpy(op.gamma) if op.scale else np.ones_like(mean)
        beta = to_numpy(op.beta) if op.center else np.zeros_like(mean)
        scale = (gamma / np.sqrt(var + np.float32(op.epsilon))).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        terms = [Term(t.source, t.ops[:-1] + (t.ops[-1].scaled(scale),)) for t in x.terms]
        bias = (x.bias if x.bias is not None else np.zeros(x.shape, np.float32)) * scale + shift
        return Virtual(x.shape, terms, bias.astype(np.float32), Probe(out), op)

    def _pooled_input(self, op, x: Value) -> Virtual:
        v = self._virtual(x)
        if v.bias is not None or any(t.ops for t in v.terms):
            raise layer_error(op, "must follow a layer with an activation (a population) or an "
                                  "Add of such layers", "add a ReLU before the pooling layer")
        return v

    def _pool(self, op, x: Value, out) -> Value:
        self._channels_last(op)
        if len(x.shape) != 3:
            raise layer_error(op, f"needs a (height, width, channels) input, not {x.shape}")
        if type(op) is L.GlobalAveragePooling2D:
            pool = Pool(x.shape[:2], x.shape[:2])
            extra = () if op.keepdims else (Reshape(_shape(out)),)
        else:
            if op.padding != "valid":
                raise layer_error(op, f"padding {op.padding!r} is not supported",
                                  "use padding='valid'")
            pool = Pool(tuple(int(s) for s in op.pool_size), tuple(int(s) for s in op.strides))
            extra = ()
        v = self._pooled_input(op, x)
        terms = [Term(t.source, (pool,) + extra) for t in v.terms]
        return Virtual(_shape(out), terms, None, Probe(out), op)

    def _zero_pad(self, op, x: Value, out) -> Value:
        self._channels_last(op)
        v = self._virtual(x)
        if v.bias is not None or any(t.ops and not all(isinstance(o, Pool) for o in t.ops)
                                     for t in v.terms):
            raise layer_error(op, "must follow a population or an AveragePooling2D and come "
                                  "right before a Conv2D")
        pads = tuple(tuple(int(p) for p in axis) for axis in op.padding)
        pad = Pad(pads, tuple(x.shape[:2]), op.name)
        return Virtual(_shape(out), [t.then(pad) for t in v.terms], None, Probe(out), op)

    def _flatten(self, op, x: Value, out) -> Value:
        shape = _shape(out)
        if len(shape) != 1:
            raise layer_error(op, f"reshapes to {shape}; only reshaping to a vector is supported",
                              "use Flatten")
        if type(op) is L.Flatten:
            self._channels_last(op)
        if len(x.shape) == 1:
            return x
        v = self._virtual(x)
        bias = None if v.bias is None else v.bias.reshape(-1)
        return Virtual(shape, [t.then(Reshape(shape)) for t in v.terms], bias, Probe(out), op)

    @staticmethod
    def _channels_last(op) -> None:
        if getattr(op, "data_format", "channels_last") != "channels_last":
            raise layer_error(op, f"uses data_format={op.data_format!r}",
                              "use channels_last (the Keras default)")


class _LinearClone:
    """Computes a Dense/Conv2D layer's pre-activation (a copy with a linear activation)."""

    def __init__(self, layer, in_tensor):
        self.layer, self.input_shape, self.clone = layer, in_tensor.shape, None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.clone is None:
            config = dict(self.layer.get_config(), activation="linear",
                          name=f"{self.layer.name}_pre_activation")
            self.clone = type(self.layer).from_config(config)
            self.clone.build(self.input_shape)
            self.clone.set_weights(self.layer.get_weights())
        return to_numpy(self.clone(x))
