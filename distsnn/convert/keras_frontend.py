"""The Keras front-end: walk a Keras model's graph in topological order and plan its network.

Each Keras layer is translated into the operations of :class:`~distsnn.convert.plan.Planner`
(shared with the ONNX front-end): ``Conv2D(linear) -> BatchNormalization -> ReLU`` becomes
one population fed by one folded Conv2D connection, ``AveragePooling2D -> Flatten -> Dense``
one AvgPoolDense2D connection, and ``Add`` collects the terms of its inputs. A
``SeparableConv2D`` is one Conv2D (its depthwise and pointwise kernels composed). ``Rescaling``
and ``Normalization`` on a model input are input preprocessing, folded exactly into the
Dense or Conv2D that follows. ``Conv2DTranspose`` is a weighted layer like Conv2D (its
connection a :class:`~distsnn.connectivity.Conv2DTranspose`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from distsnn.convert._backend import keras, to_numpy
from distsnn.convert.activations import activation_kind, relu_layer_kind
from distsnn.convert.enums import LINEAR, RELU, SOFTMAX, clip_value
from distsnn.convert.errors import ConversionError
from distsnn.convert.maxpool import max_pool
from distsnn.convert.model_io import LoadedModel
from distsnn.convert.plan import (
    ConversionGraph,
    Frontend,
    LayerInfo,
    Planner,
    PopulationSpec,
    Probe,
    Value,
    Virtual,
    layer_error,
)

L = keras.layers
#: Layers that are the identity at inference time.
IDENTITY_LAYERS = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
                   L.GaussianDropout, L.GaussianNoise, L.AlphaDropout, L.ActivityRegularization)

SUPPORTED = ("InputLayer, Dense, Conv2D (groups too), DepthwiseConv2D, SeparableConv2D, "
             "Conv2DTranspose, AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D and "
             "GlobalMaxPooling2D (after a ReLU), Flatten, Reshape to a vector, Add, "
             "ReLU (max_value too), Activation (relu/relu6/softmax/linear), Softmax (output), "
             "BatchNormalization (after Dense/Conv2D), ZeroPadding2D (before Conv2D), "
             "Rescaling and Normalization (on an input, before Dense/Conv2D), Dropout")

_INSTEAD = {
    "Concatenate": "merge branches with Add instead",
    "Subtract": "merge branches with Add instead", "Multiply": "merge branches with Add instead",
    "Average": "merge branches with Add instead", "Maximum": "merge branches with Add instead",
    "Minimum": "merge branches with Add instead", "Dot": "merge branches with Add instead",
    "LeakyReLU": "use ReLU", "PReLU": "use ReLU", "ELU": "use ReLU",
    "Conv1D": "use Conv2D", "Conv3D": "use Conv2D",
    "AveragePooling1D": "use AveragePooling2D", "AveragePooling3D": "use AveragePooling2D",
    "LayerNormalization": "use BatchNormalization directly after a Dense or Conv2D",
    "GroupNormalization": "use BatchNormalization directly after a Dense or Conv2D",
    "Lambda": "rebuild the model from standard layers (Lambda code cannot be inspected)",
}
for _name in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM2D", "LSTMCell",
              "GRUCell", "SimpleRNNCell", "TimeDistributed"):
    _INSTEAD[_name] = "recurrent layers cannot be converted: only feed-forward networks are"


def build_graph(model, validate: Optional[Callable[[Any, LayerInfo], None]] = None
                ) -> ConversionGraph:
    """Plan the spiking network of ``model``; ``validate(layer, info)`` vets every layer."""
    return _Walker(model, validate).run()


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


#: Dense and the convolutions: layers with a kernel, a bias and a built-in activation.
_WEIGHTED = (L.Dense, L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D, L.Conv2DTranspose)
_SINGLE_INPUT = _WEIGHTED + (L.BatchNormalization, L.AveragePooling2D, L.GlobalAveragePooling2D,
                             L.Flatten, L.Reshape, L.ZeroPadding2D, L.ReLU, L.Activation,
                             L.Softmax, L.Rescaling, L.Normalization, L.MaxPooling2D,
                             L.GlobalMaxPooling2D)


class KerasFrontend(Frontend):
    """A Keras 3 model: planned by :class:`_Walker`, probed with a multi-output Keras model."""

    framework = "keras"

    def __init__(self, loaded: LoadedModel):
        self.loaded, self.model = loaded, loaded.model

    def build_graph(self, validate=None) -> ConversionGraph:
        graph = build_graph(self.model, validate)
        graph.frontend = self
        return graph

    def probe_runner(self, graph: ConversionGraph, specs: Sequence[PopulationSpec]):
        tensors, index = [], {}
        for spec in specs:
            key = id(spec.probe.tensor)
            if key not in index:
                index[key] = len(tensors)
                tensors.append(spec.probe.tensor)
        model_inputs = list(self.model.inputs)
        probe_model = keras.Model(model_inputs[0] if len(model_inputs) == 1 else model_inputs,
                                  tensors)

        def run(x: np.ndarray) -> list[np.ndarray]:
            outs = probe_model(x, training=False)
            outs = [to_numpy(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
            return [spec.probe.fn(outs[index[id(spec.probe.tensor)]]) if spec.probe.fn
                    else outs[index[id(spec.probe.tensor)]] for spec in specs]

        return run

    def metadata(self, graph: ConversionGraph) -> dict:
        return {
            "keras_model_sha256": self.loaded.sha256,
            "keras_model_hash_of": self.loaded.hash_of,
            "keras_model_path": self.loaded.path,
            "keras_version": keras.__version__,
            "keras_layers": {spec.name: [layer.name for layer in spec.layers]
                             for spec in graph.populations},
        }


class _Walker(Planner):
    def __init__(self, model, validate):
        super().__init__()
        self.model = model
        self.validate = validate
        try:
            self.model_inputs = list(model.inputs)
            self.model_outputs = list(model.outputs)
        except (AttributeError, ValueError) as err:
            raise ConversionError(f"model {getattr(model, 'name', model)!r} has no defined "
                                  f"inputs ({err}); build it with keras.Input first") from None
        self.values: dict[int, Value] = {}
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
                spec = self.new_population(op, _shape(out), [], None, Probe(out), is_input=True)
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
                output_pops[id(out)] = self.output(op, value)
        for t in self.model_inputs:
            if not isinstance(self.values.get(id(t)), PopulationSpec):
                raise ConversionError(f"model input {t.name!r} does not reach any output")
        outputs = []
        for t in self.model_outputs:
            if output_pops[id(t)] not in outputs:
                outputs.append(output_pops[id(t)])
        self.check_populations()
        return ConversionGraph(self.model, self.populations, inputs, outputs, self.layer_pops)

    def _validate(self, op, node, out) -> None:
        if self.validate is None:
            return
        activation, has_bias = None, False
        if type(op) in _WEIGHTED:
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
        if cls in (L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D):
            return self._conv(op, x, in_tensor, out)
        if cls is L.Conv2DTranspose:
            return self._conv_transpose(op, x, in_tensor, out)
        if cls is L.BatchNormalization:
            return self._batch_norm(op, x, out)
        if cls in (L.AveragePooling2D, L.GlobalAveragePooling2D):
            return self._pool(op, x, out)
        if cls in (L.MaxPooling2D, L.GlobalMaxPooling2D):
            return self._max_pool(op, x, out)
        if cls in (L.Flatten, L.Reshape):
            return self._flatten(op, x, out)
        if cls is L.ZeroPadding2D:
            self._channels_last(op)
            pads = tuple(tuple(int(p) for p in axis) for axis in op.padding)
            return self.zero_pad(op, x, pads, _shape(out), Probe(out))
        if cls is L.Rescaling:
            return self.scale(op, x, to_numpy(op.scale), to_numpy(op.offset), Probe(out))
        if cls is L.Normalization:
            return self._normalization(op, x, out)
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
        return self.nonlinear(op, x, Probe(out), kind, self._terminal(out), pre_probe)

    def _add(self, op, node, ins, out) -> Value:
        shape = _shape(out)
        if len(ins) < 2:
            raise layer_error(op, "needs at least two tensor inputs (constants are not supported)")
        for t in node.input_tensors:
            if _shape(t) != shape:
                raise layer_error(op, f"adds shapes {[_shape(t) for t in node.input_tensors]}; "
                                      f"broadcasting is not supported")
        return self.add(op, ins, shape, Probe(out))

    def _dense(self, op, x: Value, in_tensor, out) -> Value:
        if len(x.shape) != 1:
            raise layer_error(op, f"is applied to an input of shape {x.shape} (Keras then acts on "
                                  f"the last axis only)", "add a Flatten layer before it")
        bias = to_numpy(op.bias) if op.use_bias else None
        pre = self.dense(op, x, to_numpy(op.kernel), bias, _shape(out), Probe(out))
        return self._activate(op, pre, in_tensor, out)

    def _conv(self, op, x: Value, in_tensor, out) -> Value:
        self._channels_last(op)
        if tuple(op.dilation_rate) != (1, 1):
            raise layer_error(op, "dilated convolutions are not supported",
                              "use dilation_rate=1")
        if op.padding not in ("valid", "same"):
            raise layer_error(op, f"padding {op.padding!r} is not supported",
                              "use 'valid' or 'same'")
        bias = to_numpy(op.bias) if op.use_bias else None
        if type(op) is L.DepthwiseConv2D:  # [kh, kw, c, m] -> groups=c, output c * m + j
            kernel = to_numpy(op.kernel)
            kh, kw, c, m = kernel.shape
            kernel, groups = kernel.reshape(kh, kw, 1, c * m), c
        elif type(op) is L.SeparableConv2D:
            kernel, groups = _separable_kernel(to_numpy(op.depthwise_kernel),
                                               to_numpy(op.pointwise_kernel)), 1
        else:
            kernel, groups = to_numpy(op.kernel), op.groups
        pre = self.conv(op, x, kernel, op.strides, op.padding, bias, _shape(out), Probe(out),
                        groups=groups)
        return self._activate(op, pre, in_tensor, out)

    def _conv_transpose(self, op, x: Value, in_tensor, out) -> Value:
        self._channels_last(op)
        if tuple(op.dilation_rate) != (1, 1):
            raise layer_error(op, "dilated transposed convolutions are not supported",
                              "use dilation_rate=1")
        if op.output_padding is not None:
            raise layer_error(op, f"output_padding={op.output_padding} is not supported",
                              "use output_padding=None")
        if op.padding not in ("valid", "same"):
            raise layer_error(op, f"padding {op.padding!r} is not supported",
                              "use 'valid' or 'same'")
        bias = to_numpy(op.bias) if op.use_bias else None
        pre = self.conv_transpose(op, x, to_numpy(op.kernel), op.strides, op.padding, bias,
                                  _shape(out), Probe(out))
        return self._activate(op, pre, in_tensor, out)

    def _activate(self, op, pre: Virtual, in_tensor, out) -> Value:
        """The built-in activation of a Dense/Conv2D/Conv2DTranspose ``op`` applied to its
        pre-activation."""
        kind = activation_kind(op.activation)
        if kind in (LINEAR, RELU) or clip_value(kind) is not None:
            return self._nonlinear(op, pre, out, kind)
        linear = Probe(in_tensor, _LinearClone(op, in_tensor))
        if kind == SOFTMAX and self._terminal(out):
            return self._nonlinear(op, pre, out, kind, pre_probe=linear)
        return self.population(op, pre, Probe(out))

    def _batch_norm(self, op, x: Value, out) -> Value:
        rank = len(x.shape)
        axis = op.axis if isinstance(op.axis, int) else (op.axis[0] if len(op.axis) == 1 else None)
        if axis not in (-1, rank):
            raise layer_error(op, f"normalises axis {op.axis}; only the channel (last) axis is "
                                  f"supported")
        mean, var = to_numpy(op.moving_mean), to_numpy(op.moving_variance)
        gamma = to_numpy(op.gamma) if op.scale else np.ones_like(mean)
        beta = to_numpy(op.beta) if op.center else np.zeros_like(mean)
        scale = (gamma / np.sqrt(var + np.float32(op.epsilon))).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        return self.batch_norm(op, x, scale, shift, Probe(out))

    def _pool(self, op, x: Value, out) -> Value:
        self._channels_last(op)
        if len(x.shape) != 3:
            raise layer_error(op, f"needs a (height, width, channels) input, not {x.shape}")
        if type(op) is L.GlobalAveragePooling2D:
            size = strides = x.shape[:2]
        else:
            if op.padding != "valid":
                raise layer_error(op, f"padding {op.padding!r} is not supported",
                                  "use padding='valid'")
            size, strides = op.pool_size, op.strides
        return self.pool(op, x, size, strides, _shape(out), Probe(out))

    def _max_pool(self, op, x: Value, out) -> Value:
        self._channels_last(op)
        if len(x.shape) != 3:
            raise layer_error(op, f"needs a (height, width, channels) input, not {x.shape}")
        if type(op) is L.GlobalMaxPooling2D:
            size, strides, padding = x.shape[:2], x.shape[:2], "valid"
        else:
            size, strides, padding = op.pool_size, op.strides, op.padding
        return max_pool(self, op, x, size, strides, padding, _shape(out), Probe(out))

    def _normalization(self, op, x: Value, out) -> Value:
        mean, variance = to_numpy(op.mean)[0], to_numpy(op.variance)[0]
        std = np.maximum(np.sqrt(variance), np.float32(keras.config.epsilon()))
        if op.invert:
            return self.scale(op, x, std, mean, Probe(out))
        return self.scale(op, x, 1.0 / std, -mean / std, Probe(out))

    def _flatten(self, op, x: Value, out) -> Value:
        shape = _shape(out)
        if len(shape) != 1:
            raise layer_error(op, f"reshapes to {shape}; only reshaping to a vector is supported",
                              "use Flatten")
        if type(op) is L.Flatten:
            self._channels_last(op)
        return self.flatten(op, x, shape, Probe(out))

    @staticmethod
    def _channels_last(op) -> None:
        if getattr(op, "data_format", "channels_last") != "channels_last":
            raise layer_error(op, f"uses data_format={op.data_format!r}",
                              "use channels_last (the Keras default)")


def _separable_kernel(depthwise: np.ndarray, pointwise: np.ndarray) -> np.ndarray:
    """The Conv2D kernel ``[kh, kw, c, filters]`` equal to a SeparableConv2D's depthwise kernel
    ``[kh, kw, c, m]`` (input channel i's j-th output is channel ``i * m + j``, as in
    DepthwiseConv2D) followed by its pointwise kernel ``[1, 1, c * m, filters]``: nothing
    non-linear lies between the two, so they compose exactly."""
    _, _, c, m = depthwise.shape
    pointwise = pointwise.reshape(c, m, pointwise.shape[-1]).astype(np.float64)
    return np.einsum("hwcm,cmf->hwcf", depthwise.astype(np.float64), pointwise).astype(np.float32)


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
