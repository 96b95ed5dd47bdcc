"""The ONNX front-end: plan the spiking network of an ONNX model (e.g. exported by PyTorch).

ONNX images are channels-first (NCHW); distsnn's networks stay channels-last. Each image
tensor becomes an ``(H, W, C)`` value of the :class:`~distsnn.convert.plan.Planner`, with
convolution kernels transposed from ``(O, I, kh, kw)`` to ``(kh, kw, I, O)``. Flattening an
NCHW tensor orders its features ``(c, h, w)`` while distsnn's vector is ``(h, w, c)``; the
walker remembers that permutation and applies it to the rows of the next Gemm/MatMul (and to
per-feature constants), so values are exact. Explicit convolution pads become a zero-padding
step folded into the convolution's padding: TF ``valid``/``same`` where equal, else explicit.
Only rank 0 imports onnx (and onnxruntime, for the activations of data-based methods).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from distsnn.convert.enums import LINEAR, RELU, SOFTMAX
from distsnn.convert.errors import ConversionError, ModelFileError
from distsnn.convert.maxpool import max_pool
from distsnn.convert.plan import (
    ConversionGraph,
    Frontend,
    LayerInfo,
    Planner,
    PopulationSpec,
    Probe,
    Value,
    layer_error,
)
from distsnn.layout import CHANNELS_FIRST, channels_first_shape
from distsnn.utils.files import file_sha256

try:
    import onnx
    from onnx import numpy_helper, shape_inference
except ImportError:  # pragma: no cover - reported when an ONNX model is given
    onnx = None

SUPPORTED = ("Conv (group 1, dilation 1), ConvTranspose (group 1, dilation 1, explicit pads), "
             "Gemm, MatMul (by a constant), Add, Relu, Clip(min 0, no max), AveragePool (no "
             "padding), GlobalAveragePool, MaxPool and GlobalMaxPool (after a Relu; dilation 1), "
             "BatchNormalization (after Conv/Gemm/MatMul), "
             "Flatten, Reshape to (batch, features), Identity, Dropout, Softmax (output), "
             "Constant")
_ELEMENTWISE = "merge branches with Add; other arithmetic cannot be converted"
_INSTEAD = {
    "Concat": _ELEMENTWISE, "Sub": _ELEMENTWISE, "Mul": _ELEMENTWISE, "Div": _ELEMENTWISE,
    "Max": _ELEMENTWISE, "Min": _ELEMENTWISE, "Sum": _ELEMENTWISE, "Mean": _ELEMENTWISE,
    "Pad": "use the Conv's own padding (pads) instead of a separate Pad",
    "Transpose": "export the model in NCHW (PyTorch's layout) without explicit transposes",
    "Shape": "export with static shapes and flatten with torch.flatten(x, 1) or nn.Flatten "
             "(not x.view(x.size(0), -1))",
    "Gather": "export with static shapes and flatten with torch.flatten(x, 1) or nn.Flatten",
    "LRN": "use BatchNormalization directly after a Conv or Gemm",
    "LayerNormalization": "use BatchNormalization directly after a Conv or Gemm",
    "InstanceNormalization": "use BatchNormalization directly after a Conv or Gemm",
}
for _op in ("LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "Tanh", "HardSigmoid",
            "HardSwish", "Gelu", "Softplus", "Softsign", "Mish", "ThresholdedRelu"):
    _INSTEAD[_op] = "use Relu (a spiking neuron approximates a plain ReLU)"
for _op in ("LSTM", "GRU", "RNN", "Loop", "Scan", "If"):
    _INSTEAD[_op] = "only feed-forward networks without control flow can be converted"
_IDENTITY = ("Identity", "Dropout")


@dataclass(eq=False)
class Node:
    """An ONNX node as the converters see it, in place of a Keras layer."""

    name: str
    op_type: str
    proto: Any = field(repr=False, default=None)


def _require_onnx() -> None:
    if onnx is None:
        raise ModelFileError("reading ONNX models needs the onnx package; install it with "
                             "pip install 'distsnn[onnx]'")


class OnnxFrontend(Frontend):
    """An ONNX model, its hash and where it came from."""

    framework = "onnx"

    def __init__(self, model, sha256: str, hash_of: str, path: Optional[str]):
        self.model, self.sha256, self.hash_of, self.path = model, sha256, hash_of, path
        try:
            self.inferred = shape_inference.infer_shapes(model)
        except Exception as err:  # noqa: BLE001 - any inference failure names the model
            raise ModelFileError(f"{path or 'ONNX model'}: shape inference failed "
                                 f"({type(err).__name__}: {err})") from None
        self.channels_first = False
        self.input_hwc: Optional[tuple] = None

    @classmethod
    def load(cls, source: Union[str, Path, Any]) -> "OnnxFrontend":
        """Read an ``.onnx`` file or wrap an ``onnx.ModelProto``."""
        _require_onnx()
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise ModelFileError(f"{path}: no such model file")
            try:
                model = onnx.load(str(path))
                onnx.checker.check_model(model)
            except Exception as err:  # noqa: BLE001 - any loader failure names the file
                raise ModelFileError(f"{path}: cannot be read as an ONNX model "
                                     f"({type(err).__name__}: {err})") from None
            return cls(model, file_sha256(path), "file", str(path))
        data = source.SerializeToString()
        return cls(source, hashlib.sha256(data).hexdigest(), "model", None)

    def build_graph(self, validate=None) -> ConversionGraph:
        graph = _Walker(self, validate).run()
        graph.frontend = self
        return graph

    def example_shape(self, graph: ConversionGraph) -> tuple:
        shape = graph.inputs[0].shape
        return channels_first_shape(shape) if self.channels_first else shape

    def model_layout(self, x: np.ndarray) -> np.ndarray:
        """Examples in the network's ``(H, W, C)`` layout transposed to the model's NCHW."""
        hwc = self.input_hwc
        if (self.channels_first and x.ndim == 4 and tuple(x.shape[1:]) == hwc
                and channels_first_shape(hwc) != hwc):
            return np.ascontiguousarray(np.moveaxis(x, -1, 1))
        return x

    def probe_runner(self, graph: ConversionGraph, specs: Sequence[PopulationSpec]):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConversionError("computing activations of an ONNX model needs onnxruntime; "
                                  "install it with pip install 'distsnn[onnx]'") from None
        names = list(dict.fromkeys(spec.probe.tensor for spec in specs))
        model = onnx.ModelProto()
        model.CopyFrom(self.inferred)
        known = {o.name for o in model.graph.output}
        infos = {vi.name: vi for vi in model.graph.value_info}
        for name in names:
            if name not in known:
                model.graph.output.append(infos[name])
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        batch = session.get_inputs()[0].shape[0]
        fixed = batch if isinstance(batch, int) and batch > 0 else None

        def run(x: np.ndarray) -> list:
            x = np.ascontiguousarray(x, np.float32)
            step = fixed or len(x)
            chunks = []
            for start in range(0, len(x), step):
                part = x[start:start + step]
                n = len(part)
                if fixed and n < fixed:
                    part = np.concatenate([part, np.zeros((fixed - n,) + part.shape[1:],
                                                          np.float32)])
                chunks.append([o[:n] for o in session.run(names, {input_name: part})])
            outs = {name: np.concatenate([c[i] for c in chunks]) for i, name in enumerate(names)}
            return [outs[spec.probe.tensor] for spec in specs]

        return run

    def metadata(self, graph: ConversionGraph) -> dict:
        meta = {
            "onnx_model_sha256": self.sha256,
            "onnx_model_hash_of": self.hash_of,
            "onnx_model_path": self.path,
            "onnx_producer": " ".join(p for p in (self.model.producer_name,
                                                  self.model.producer_version) if p) or None,
            "onnx_opset": _opset(self.model),
            "onnx_nodes": {spec.name: [node.name for node in spec.layers]
                           for spec in graph.populations},
        }
        if self.channels_first:
            meta["input_layout"] = CHANNELS_FIRST
        return meta


def _opset(model) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _chw_permutation(shape: tuple) -> Optional[np.ndarray]:
    """For an ``(H, W, C)`` value flattened as distsnn does, the index each feature has in
    the NCHW flattening; None when both orders are the same."""
    h, w, c = shape
    if c == 1 or h * w == 1:
        return None
    return np.arange(h * w * c).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


class _Walker(Planner):
    WEIGHTED = "Conv/Gemm/MatMul"
    POOLING = "AveragePool"

    def __init__(self, frontend: OnnxFrontend, validate):
        super().__init__()
        self.frontend, self.validate = frontend, validate
        graph = frontend.inferred.graph
        self.graph = graph
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.shapes = {vi.name: vi for vi in (*graph.output, *graph.input, *graph.value_info)
                       if vi.type.tensor_type.HasField("shape")}
        self.values: dict[str, Value] = {}
        self.perms: dict[str, Optional[np.ndarray]] = {}  # vectors flattened from NCHW
        self.consumers: dict[str, list] = {}
        for proto in graph.node:
            for name in proto.input:
                self.consumers.setdefault(name, []).append(proto)
        self.outputs = [o.name for o in graph.output]

    # -- shapes and layouts ---------------------------------------------------------------
    def _onnx_shape(self, name: str, owner=None) -> tuple:
        """The ONNX shape of tensor ``name`` without its batch dimension."""
        info = self.shapes.get(name)
        dims = None
        if info is not None and info.type.HasField("tensor_type") \
                and info.type.tensor_type.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None
                    for d in info.type.tensor_type.shape.dim]
        if not dims or any(d is None for d in dims[1:]):
            where = f" ({owner.op_type} node {owner.name!r})" if owner is not None else ""
            raise ConversionError(f"tensor {name!r}{where} has shape {dims}; every dimension but "
                                  f"the batch must be known (export with a fixed input size)")
        return tuple(int(d) for d in dims[1:])

    @staticmethod
    def _to_planner(shape: tuple) -> tuple:
        if len(shape) == 3:
            return tuple(shape[1:]) + (shape[0],)
        if len(shape) == 1:
            return tuple(shape)
        raise ConversionError(f"tensors of shape (batch, {', '.join(map(str, shape))}) are not "
                              f"supported; only (batch, channels, height, width) images and "
                              f"(batch, features) vectors are")

    def _planner_constant(self, value: np.ndarray, name: str, owner,
                          perm: Optional[np.ndarray] = None) -> np.ndarray:
        """A constant broadcast to the (ONNX) shape of tensor ``name``, in planner layout
        (``perm``: the feature order of a vector flattened from NCHW)."""
        shape = self._onnx_shape(name, owner)
        try:
            full = np.broadcast_to(np.asarray(value, np.float32), (1,) + shape)[0]
        except ValueError:
            raise layer_error(owner, f"a constant of shape {np.shape(value)} does not broadcast "
                                     f"to {shape}") from None
        if full.ndim == 3:
            return np.ascontiguousarray(full.transpose(1, 2, 0))
        return np.ascontiguousarray(full if perm is None else full[perm])

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> ConversionGraph:
        inputs = []
        for info in self.graph.input:
            if info.name in self.constants:
                continue  # old exporters list initializers as inputs
            owner = Node(info.name, "Input")
            shape = self._onnx_shape(info.name, owner)
            if len(shape) == 3:
                self.frontend.channels_first = True
                self.frontend.input_hwc = self._to_planner(shape)
            spec = self.new_population(owner, self._to_planner(shape), [], None,
                                       Probe(info.name), is_input=True)
            inputs.append(spec)
            self.values[info.name] = spec
            self.perms[info.name] = None
        if len(inputs) > 1:
            self.frontend.channels_first = False  # layouts of several inputs are not recorded
        used = self._reaching_outputs()
        for index, proto in enumerate(self.graph.node):
            if index in used:
                self._node(Node(proto.name or f"{proto.op_type}_{index}", proto.op_type, proto))
        outputs = []
        for name in self.outputs:
            if name not in self.values:
                raise ConversionError(f"model output {name!r} is not computed from an input")
            if self.perms.get(name) is not None:
                raise ConversionError(f"model output {name!r} is a flattened feature map, whose "
                                      f"feature order distsnn's layout changes; end the model "
                                      f"with a Gemm/Linear layer")
            value = self.values[name]
            owner = value.layer if isinstance(value, PopulationSpec) else value.owner
            spec = self.output(owner, value)
            if spec not in outputs:
                outputs.append(spec)
        self.check_populations()
        return ConversionGraph(self.frontend.model, self.populations, inputs, outputs,
                               self.layer_pops)

    def _reaching_outputs(self) -> set:
        """Indices of the nodes that the model's outputs depend on."""
        producer = {name: i for i, p in enumerate(self.graph.node) for name in p.output}
        used, stack = set(), list(self.outputs)
        while stack:
            i = producer.get(stack.pop())
            if i is not None and i not in used:
                used.add(i)
                stack.extend(self.graph.node[i].input)
        return used

    def _node(self, node: Node) -> None:
        proto = node.proto
        if proto.op_type == "Constant":
            self.constants[proto.output[0]] = self._constant_attribute(node)
            return
        if proto.domain not in ("", "ai.onnx"):
            raise layer_error(node, f"is in the custom domain {proto.domain!r} and is not "
                                    f"supported", f"supported operators are {SUPPORTED}")
        handler = getattr(self, f"_op_{proto.op_type}", None)
        if handler is None:
            fix = _INSTEAD.get(proto.op_type, f"supported operators are {SUPPORTED}")
            raise ConversionError(f"node {node.name!r} ({proto.op_type}) is not supported; {fix}")
        out = proto.output[0]
        self._validate(node, out)
        value, perm = handler(node, out)
        self.values[out], self.perms[out] = value, perm
        if isinstance(value, PopulationSpec) and node not in self.layer_pops:
            self.layer_pops[node] = value
            value.layers.append(node)

    def _validate(self, node: Node, out: str) -> None:
        if self.validate is None:
            return
        op, activation, has_bias = node.op_type, None, False
        if op in ("Conv", "ConvTranspose", "Gemm"):
            activation = LINEAR
            has_bias = len(node.proto.input) > 2 and bool(node.proto.input[2])
        elif op == "Relu":
            activation = RELU
        elif op == "Clip":
            activation = self._clip_kind(node)
        elif op == "Softmax":
            activation = SOFTMAX
        shape = self._to_planner(self._onnx_shape(out, node))
        self.validate(node, LayerInfo(shape, self._terminal(out), activation, has_bias))

    def _terminal(self, name: str) -> bool:
        """True if tensor ``name`` only reaches model outputs, through identities at most."""
        users = self.consumers.get(name, [])
        if not users:
            return name in self.outputs
        return all(p.op_type in _IDENTITY and self._terminal(p.output[0]) for p in users)

    # -- inputs of a node -----------------------------------------------------------------
    def _value(self, node: Node, i: int = 0) -> Value:
        name = node.proto.input[i]
        if name not in self.values:
            if name in self.constants:
                raise layer_error(node, f"input {i} ({name!r}) is a constant; only its weights "
                                        f"may be constants")
            raise layer_error(node, f"input {name!r} is not computed before it")
        return self.values[name]

    def _const(self, node: Node, i: int, what: str, required: bool = True
               ) -> Optional[np.ndarray]:
        inputs = node.proto.input
        if i >= len(inputs) or not inputs[i]:
            if required:
                raise layer_error(node, f"has no {what}")
            return None
        if inputs[i] not in self.constants:
            raise layer_error(node, f"its {what} ({inputs[i]!r}) is computed, not a constant",
                              "export the model with constant weights (eval mode, constant "
                              "folding on)")
        return np.asarray(self.constants[inputs[i]], np.float32)

    def _constant_attribute(self, node: Node) -> np.ndarray:
        for attr in node.proto.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
            if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
                return np.asarray(onnx.helper.get_attribute_value(attr))
        raise layer_error(node, "has no tensor value")

    @staticmethod
    def _attrs(node: Node) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.proto.attribute}

    # -- operators ------------------------------------------------------------------------
    def _op_Identity(self, node: Node, out: str):
        name = node.proto.input[0]
        return self._value(node), self.perms.get(name)

    def _op_Dropout(self, node: Node, out: str):
        return self._op_Identity(node, out)

    def _op_Relu(self, node: Node, out: str):
        return self._activation(node, out, RELU)

    def _op_Clip(self, node: Node, out: str):
        return self._activation(node, out, self._clip_kind(node))

    def _op_Softmax(self, node: Node, out: str):
        x = self._value(node)
        if len(x.shape) != 1:
            raise layer_error(node, f"is applied to an input of shape {x.shape}",
                              "apply Softmax to a (batch, classes) tensor")
        return self._activation(node, out, SOFTMAX)

    def _activation(self, node: Node, out: str, kind: str):
        x = self._value(node)
        value = self.nonlinear(node, x, Probe(out), kind, self._terminal(out))
        return value, self.perms.get(node.proto.input[0])

    def _clip_kind(self, node: Node) -> str:
        attrs = self._attrs(node)
        low = attrs.get("min", self._const(node, 1, "minimum", required=False))
        high = attrs.get("max", self._const(node, 2, "maximum", required=False))
        low = -math.inf if low is None else float(np.asarray(low))
        high = math.inf if high is None else float(np.asarray(high))
        if low == 0.0 and high == math.inf:
            return RELU
        return f"Clip(min={low:g}, max={high:g})"

    def _op_Add(self, node: Node, out: str):
        names = list(node.proto.input)
        if len(names) != 2:
            raise layer_error(node, f"has {len(names)} inputs")
        tensors = [n for n in names if n in self.values]
        shape = self._to_planner(self._onnx_shape(out, node))
        if len(tensors) == 2:
            shapes = [self._onnx_shape(n, node) for n in names]
            if shapes[0] != shapes[1]:
                raise layer_error(node, f"adds shapes {shapes}; broadcasting two tensors is not "
                                        f"supported")
            perms = [self.perms.get(n) for n in names]
            if (perms[0] is None) != (perms[1] is None):
                raise layer_error(node, "adds a flattened feature map to a vector of another "
                                        "order", "flatten both branches the same way")
            return self.add(node, [self.values[n] for n in names], shape, Probe(out)), perms[0]
        if len(tensors) == 1:
            const = self._const(node, names.index(tensors[0]) ^ 1, "addend")
            perm = self.perms.get(tensors[0])
            bias = self._planner_constant(const, out, node, perm)
            return self.add_bias(node, self.values[tensors[0]], bias, Probe(out)), perm
        raise layer_error(node, f"adds {names}, none of which is computed from the input")

    def _vector_input(self, node: Node) -> tuple:
        x = self._value(node)
        if len(x.shape) != 1:
            raise layer_error(node, f"is applied to an input of shape {x.shape} (an image)",
                              "add a Flatten before it")
        return x, self.perms.get(node.proto.input[0])

    def _op_Gemm(self, node: Node, out: str):
        attrs = self._attrs(node)
        if attrs.get("transA", 0):
            raise layer_error(node, "has transA=1", "multiply the input from the left (transA=0)")
        x, perm = self._vector_input(node)
        weight = self._const(node, 1, "weight matrix")
        kernel = np.float32(attrs.get("alpha", 1.0)) * (weight.T if attrs.get("transB", 0)
                                                        else weight)
        bias = self._const(node, 2, "bias", required=False)
        if bias is not None:
            bias = np.float32(attrs.get("beta", 1.0)) * bias
            bias = self._planner_constant(bias, out, node)
        return self._dense_node(node, x, perm, kernel, bias, out)

    def _op_MatMul(self, node: Node, out: str):
        x, perm = self._vector_input(node)
        if node.proto.input[1] not in self.constants:
            raise layer_error(node, "multiplies two computed tensors",
                              "only a tensor times a constant weight matrix can be converted")
        kernel = self._const(node, 1, "weight matrix")
        if kernel.ndim != 2:
            raise layer_error(node, f"has a weight of shape {kernel.shape}; it must be 2-D")
        return self._dense_node(node, x, perm, kernel, None, out)

    def _dense_node(self, node, x, perm, kernel, bias, out):
        if kernel.shape[0] != x.shape[0]:
            raise layer_error(node, f"has a weight of shape {kernel.shape} for {x.shape[0]} "
                                    f"input features")
        if perm is not None:
            kernel = kernel[perm]
        shape = self._to_planner(self._onnx_shape(out, node))
        return self.dense(node, x, kernel, bias, shape, Probe(out)), None

    def _op_Conv(self, node: Node, out: str):
        attrs = self._attrs(node)
        weight = self._const(node, 1, "weight")
        if weight.ndim != 4:
            raise layer_error(node, f"is a {weight.ndim - 2}-D convolution",
                              "only 2-D (NCHW) convolutions are supported")
        if attrs.get("group", 1) != 1:
            raise layer_error(node, f"is a grouped (or depthwise) convolution, group="
                                    f"{attrs['group']}", "use groups=1")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise layer_error(node, f"is dilated ({list(attrs['dilations'])})",
                              "use dilation=1")
        x = self._value(node)
        if len(x.shape) != 3:
            raise layer_error(node, f"needs an image input (batch, channels, height, width), "
                                    f"not a vector of {x.shape[0]}")
        kernel_hw = tuple(int(k) for k in weight.shape[2:])
        strides = tuple(int(s) for s in attrs.get("strides", [1, 1]))
        pads = self._pads(node, attrs, x.shape[:2], kernel_hw, strides)
        bias = self._const(node, 2, "bias", required=False)
        shape = self._to_planner(self._onnx_shape(out, node))
        pre = self.conv(node, x, weight.transpose(2, 3, 1, 0), strides, "valid", bias, shape,
                        Probe(out), pads=pads)
        return pre, None

    def _op_ConvTranspose(self, node: Node, out: str):
        """Weight ``(c_in, c_out, kh, kw)``; output pixel ``i * s + t - pad_begin``, cropped
        ``pad_end - output_padding`` after (distsnn's explicit Conv2DTranspose padding)."""
        attrs = self._attrs(node)
        weight = self._const(node, 1, "weight")
        if weight.ndim != 4:
            raise layer_error(node, f"is a {weight.ndim - 2}-D transposed convolution",
                              "only 2-D (NCHW) transposed convolutions are supported")
        if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise layer_error(node, "is grouped or dilated", "use groups=1 and dilation=1")
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto not in ("NOTSET", "", "VALID") or "output_shape" in attrs:
            raise layer_error(node, "sets auto_pad or output_shape",
                              "give explicit pads and output_padding (as PyTorch exports)")
        x = self._value(node)
        if len(x.shape) != 3:
            raise layer_error(node, f"needs an image input (batch, channels, height, width), "
                                    f"not a vector of {x.shape[0]}")
        p = [0, 0, 0, 0] if auto == "VALID" else [int(v) for v in attrs.get("pads", [0] * 4)]
        extra = [int(v) for v in attrs.get("output_padding", [0, 0])]
        crops = ((p[0], p[2] - extra[0]), (p[1], p[3] - extra[1]))
        if min(crops[0][1], crops[1][1]) < 0:
            raise layer_error(node, f"has output_padding {extra} larger than its end pads "
                                    f"{[p[2], p[3]]}", "use output_padding <= pads")
        strides = tuple(int(s) for s in attrs.get("strides", [1, 1]))
        bias = self._const(node, 2, "bias", required=False)
        shape = self._to_planner(self._onnx_shape(out, node))
        pre = self.conv_transpose(node, x, weight.transpose(2, 3, 1, 0), strides, crops, bias,
                                  shape, Probe(out))
        return pre, None

    @staticmethod
    def _pads(node: Node, attrs: dict, in_hw, kernel_hw, strides) -> tuple:
        """Explicit ((top, bottom), (left, right)) pads of a Conv's ``pads``/``auto_pad``."""
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto in ("NOTSET", ""):
            p = [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]
            return (p[0], p[2]), (p[1], p[3])
        if auto == "VALID":
            return (0, 0), (0, 0)
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            raise layer_error(node, f"has auto_pad={auto!r}")
        pads = []
        for size, k, s in zip(in_hw, kernel_hw, strides):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            before = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads.append((before, total - before))
        return tuple(pads)

    def _op_BatchNormalization(self, node: Node, out: str):
        attrs = self._attrs(node)
        if attrs.get("training_mode", 0):
            raise layer_error(node, "is in training mode", "export the model in eval mode")
        gamma = self._const(node, 1, "scale")
        beta = self._const(node, 2, "bias")
        mean = self._const(node, 3, "running mean")
        var = self._const(node, 4, "running variance")
        scale = (gamma / np.sqrt(var + np.float32(attrs.get("epsilon", 1e-5)))).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        x = self._value(node)
        perm = self.perms.get(node.proto.input[0])
        if len(x.shape) == 1 and perm is not None:
            scale, shift = scale[perm], shift[perm]
        return self.batch_norm(node, x, scale, shift, Probe(out)), perm

    def _op_AveragePool(self, node: Node, out: str):
        attrs = self._attrs(node)
        x = self._value(node)
        kernel = tuple(int(k) for k in attrs.get("kernel_shape", []))
        strides = tuple(int(s) for s in attrs.get("strides", [1] * len(kernel)))
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if any(attrs.get("pads", [0])) or auto not in ("NOTSET", "VALID", ""):
            raise layer_error(node, "pads its input", "use average pooling without padding")
        if any(d != 1 for d in attrs.get("dilations", [1])):
            raise layer_error(node, "is dilated", "use dilation 1")
        shape = self._to_planner(self._onnx_shape(out, node))
        if len(x.shape) == 3 and len(kernel) == 2:
            valid = tuple((n - k) // s + 1 for n, k, s in zip(x.shape[:2], kernel, strides))
            if valid != shape[:2]:
                raise layer_error(node, f"outputs {shape[:2]} instead of {valid} (ceil_mode)",
                                  "use ceil_mode=False")
        return self.pool(node, x, kernel, strides, shape, Probe(out)), None

    def _op_GlobalAveragePool(self, node: Node, out: str):
        x = self._value(node)
        shape = self._to_planner(self._onnx_shape(out, node))
        hw = x.shape[:2] if len(x.shape) == 3 else ()
        return self.pool(node, x, hw, hw, shape, Probe(out)), None

    def _op_MaxPool(self, node: Node, out: str):
        """Explicit or auto pads; ``ceil_mode`` becomes extra end padding (the pooled values
        are non-negative, so a window's part outside the input adds nothing)."""
        attrs = self._attrs(node)
        x = self._value(node)
        if len(x.shape) != 3:
            raise layer_error(node, "needs an image input (batch, channels, height, width)")
        if len(node.proto.output) > 1 and node.proto.output[1]:
            raise layer_error(node, "also outputs the indices of the maxima",
                              "export without return_indices")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise layer_error(node, f"is dilated ({list(attrs['dilations'])}), which a spiking "
                                    f"max-pool cannot express", "use dilation=1")
        kernel = tuple(int(k) for k in attrs.get("kernel_shape", []))
        if len(kernel) != 2:
            raise layer_error(node, f"pools over {len(kernel)} dimensions",
                              "use 2-D (NCHW) max pooling")
        strides = tuple(int(s) for s in attrs.get("strides", [1, 1]))
        pads = self._pads(node, attrs, x.shape[:2], kernel, strides)
        shape = self._to_planner(self._onnx_shape(out, node))
        pads = tuple((before, max(after, (o - 1) * s + k - n - before))
                     for (before, after), n, k, s, o in zip(pads, x.shape[:2], kernel, strides,
                                                             shape[:2]))
        if any((o - 1) * s - before >= n for (before, _), n, s, o in zip(pads, x.shape[:2],
                                                                           strides, shape[:2])):
            raise layer_error(node, f"outputs {shape[:2]}: with ceil_mode its last window lies "
                                    f"outside the input", "use ceil_mode=0")
        return max_pool(self, node, x, kernel, strides, pads, shape, Probe(out)), None

    def _op_GlobalMaxPool(self, node: Node, out: str):
        x = self._value(node)
        shape = self._to_planner(self._onnx_shape(out, node))
        hw = x.shape[:2] if len(x.shape) == 3 else ()
        return max_pool(self, node, x, hw, hw, "valid", shape, Probe(out)), None

    def _op_Flatten(self, node: Node, out: str):
        if self._attrs(node).get("axis", 1) != 1:
            raise layer_error(node, f"flattens from axis {self._attrs(node)['axis']}",
                              "flatten from axis 1 (torch.flatten(x, 1))")
        return self._to_vector(node, out)

    def _op_Reshape(self, node: Node, out: str):
        if len(self._onnx_shape(out, node)) != 1:
            raise layer_error(node, f"reshapes to (batch, {self._onnx_shape(out, node)}); only "
                                    f"reshaping to (batch, features) is supported",
                              "use Flatten (torch.flatten(x, 1))")
        return self._to_vector(node, out)

    def _to_vector(self, node: Node, out: str):
        x = self._value(node)
        name = node.proto.input[0]
        shape = self._to_planner(self._onnx_shape(out, node))
        if len(x.shape) == 1:
            return x, self.perms.get(name)
        return self.flatten(node, x, shape, Probe(out)), _chw_permutation(x.shape)
