"""Connectivity descriptions of the network IR and their exact host-side geometry.

Shapes are channels-last ``(H, W, C)`` and flattened in C order, so the flat index of
``(h, w, c)`` is ``(h * W + w) * C + c``. Convolutions are TF cross-correlations with TF's
``valid``/``same`` padding or explicit zero padding ``((top, bottom), (left, right))`` (what
ONNX/PyTorch models and ZeroPadding2D layers need). ``synapses()`` lowers any connectivity to explicit
``(pre, post, weight)`` arrays, which is what the GeNN compilation uses where no cheaper
GeNN matrix type applies and what the numpy reference forward pass uses.

The constructors take mlGeNN's arguments (``Conv2D(weight, filters, conv_size, flatten=False,
conv_strides=None, conv_padding="valid", delay=0)``, ...) as well as the IR's keyword forms
(``Conv2D(weight=kernel, strides=(2, 2), padding="same")``), which are what ``params()`` and the
network file hold. A weight given as a scalar is expanded into the full array by
``resolve`` when the connection is made, once both shapes are known.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from math import ceil, prod
from typing import ClassVar, Optional, Union

import numpy as np

from distsnn.errors import UserError

Shape = tuple[int, ...]
#: "valid", "same" or explicit ``((top, bottom), (left, right))`` zero padding.
Padding = Union[str, tuple[tuple[int, int], tuple[int, int]]]
#: One axis of a padding: "valid", "same" or ``(before, after)``.
AxisPadding = Union[str, tuple[int, int]]
#: A weight array, or one value for every synapse (expanded by ``resolve``).
Weight = Union[float, np.ndarray]


class ShapeError(UserError, ValueError):
    """A connectivity does not fit the shape of the population it connects."""


def _pair(v: Union[int, tuple[int, int], list[int]]) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def normalise_padding(padding) -> Padding:
    """``"valid"``/``"same"``, or explicit pads as ``((top, bottom), (left, right))`` ints."""
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid', 'same' or ((top, bottom), (left, right)), "
                             f"not {padding!r}")
        return padding
    (top, bottom), (left, right) = ((int(a), int(b)) for a, b in padding)
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"explicit padding must not be negative, not {padding!r}")
    return (top, bottom), (left, right)


def axis_padding(padding: Padding, axis: int) -> AxisPadding:
    """The padding of one axis (0: rows, 1: columns)."""
    return padding if isinstance(padding, str) else padding[axis]


def conv_output_size(size: int, kernel: int, stride: int, padding: AxisPadding) -> int:
    """Output length of a TF convolution or pooling along one axis."""
    if not isinstance(padding, str):
        return (size + padding[0] + padding[1] - kernel) // stride + 1
    if padding == "valid":
        return ceil((size - kernel + 1) / stride)
    if padding == "same":
        return ceil(size / stride)
    raise ValueError(f"padding must be 'valid' or 'same', not {padding!r}")


def conv_pad_before(size: int, kernel: int, stride: int, padding: AxisPadding) -> int:
    """Padding before the first element, as TF computes it (any odd extra goes after)."""
    if not isinstance(padding, str):
        return padding[0]
    if padding == "valid":
        return 0
    out = ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2


@dataclass(eq=False)
class Connectivity:
    """Base class; ``kind`` names the connectivity in network files."""

    kind: ClassVar[str] = ""
    #: mlGeNN's ``flatten``: a target population without a shape gets the output flattened.
    flatten: ClassVar[bool] = False
    # Each subclass declares ``delay: int = 0`` (axonal delay in timesteps) as its last
    # field, so weights come first positionally, as in mlGeNN: ``Dense(weight, delay=0)``.

    def params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def output_shape(self, input_shape: Shape) -> Shape:
        raise NotImplementedError

    def target_shape(self, input_shape: Shape) -> Shape:
        """The shape a target population without one gets (mlGeNN's shape inference)."""
        shape = tuple(self.output_shape(tuple(input_shape)))
        return (prod(shape),) if self.flatten else shape

    def resolve(self, input_shape: Shape, output_shape: Shape) -> None:
        """Expand weights given as a scalar once both shapes are known (default: nothing)."""

    def synapses(self, input_shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Explicit synapses ``(pre, post, weight)`` (uint32, uint32, float32)."""
        raise NotImplementedError

    def check(self, input_shape: Shape, output_shape: Shape) -> None:
        expected = self.output_shape(tuple(input_shape))
        if int(np.prod(expected)) != int(np.prod(output_shape)) or (
                len(output_shape) > 1 and tuple(expected) != tuple(output_shape)):
            raise ShapeError(f"{type(self).__name__} from shape {tuple(input_shape)} produces "
                             f"{tuple(expected)}, but the target population has shape "
                             f"{tuple(output_shape)}")


def _is_scalar(weight) -> bool:
    return np.ndim(weight) == 0


def _scalar_shape_error(what: str) -> ShapeError:
    return ShapeError(f"{what} with a scalar weight cannot infer the target's shape; give the "
                      f"target population a shape")


def _either(what: str, mlgenn_name: str, mlgenn_value, ir_name: str, ir_value):
    """One of two spellings of an argument (mlGeNN's and the IR's); None if neither is given."""
    if mlgenn_value is not None and ir_value is not None:
        raise TypeError(f"{what}: give {mlgenn_name}= or {ir_name}=, not both")
    return ir_value if ir_value is not None else mlgenn_value


def _flatten(what: str, flatten) -> bool:
    if not isinstance(flatten, (bool, np.bool_)):
        raise TypeError(f"{what}: flatten must be True or False, not {flatten!r} (mlGeNN's "
                        f"argument order; strides go by keyword)")
    return bool(flatten)


def _kernel_size(what: str, weight: Weight, filters: Optional[int],
                 conv_size) -> tuple[int, int, int]:
    """``(kh, kw, filters)`` of a convolution kernel given as an array or as a scalar."""
    if _is_scalar(weight):
        if filters is None or conv_size is None:
            raise TypeError(f"{what} with a scalar weight needs filters= and conv_size=")
        return (*_pair(conv_size), int(filters))
    shape = np.shape(weight)
    if len(shape) != 4:
        raise ValueError(f"{what} weight must be a (height, width, in_channels, filters) kernel, "
                         f"not shape {shape}")
    if ((filters is not None and int(filters) != shape[3])
            or (conv_size is not None and _pair(conv_size) != tuple(shape[:2]))):
        raise ValueError(f"{what} kernel of shape {shape} does not match filters={filters}, "
                         f"conv_size={conv_size}")
    return int(shape[0]), int(shape[1]), int(shape[3])


@dataclass(eq=False)
class Dense(Connectivity):
    """All-to-all with a Keras Dense kernel ``weight[n_src, n_trg]`` (or one scalar weight)."""

    kind: ClassVar[str] = "dense"
    weight: Weight
    delay: int = 0

    def output_shape(self, input_shape: Shape) -> Shape:
        if _is_scalar(self.weight):
            raise _scalar_shape_error("Dense")
        n_in = int(np.prod(input_shape))
        if self.weight.shape[0] != n_in:
            raise ShapeError(f"Dense weight has {self.weight.shape[0]} rows but the source "
                             f"has {n_in} neurons (shape {tuple(input_shape)})")
        return (int(self.weight.shape[1]),)

    def resolve(self, input_shape: Shape, output_shape: Shape) -> None:
        if _is_scalar(self.weight):
            self.weight = np.full((prod(input_shape), prod(output_shape)), self.weight,
                                  np.float32)

    def dense_weight(self, input_shape: Shape) -> np.ndarray:
        self.output_shape(input_shape)
        return np.asarray(self.weight, np.float32)

    def synapses(self, input_shape: Shape):
        w = self.dense_weight(input_shape)
        pre, post = np.indices(w.shape, np.uint32).reshape(2, -1)
        return pre, post, w.reshape(-1)


@dataclass(eq=False)
class OneToOne(Connectivity):
    """Neuron i to neuron i with a scalar or per-neuron weight."""

    kind: ClassVar[str] = "one_to_one"
    weight: Union[float, np.ndarray] = 1.0
    delay: int = 0

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def synapses(self, input_shape: Shape):
        n = int(np.prod(input_shape))
        idx = np.arange(n, dtype=np.uint32)
        w = np.broadcast_to(np.asarray(self.weight, np.float32).reshape(-1), (n,))
        return idx, idx.copy(), w.copy()


@dataclass(eq=False, init=False)
class Conv2D(Connectivity):
    """TF Conv2D with kernel ``weight[kh, kw, c_in, filters]`` (or one scalar weight).

    ``Conv2D(weight, filters, conv_size, flatten=False, conv_strides=None,
    conv_padding="valid", delay=0)`` as in mlGeNN, or ``Conv2D(weight=kernel, strides=,
    padding=)``; ``filters``/``conv_size`` are needed only for a scalar weight.
    """

    kind: ClassVar[str] = "conv2d"
    weight: Weight
    strides: tuple[int, int]
    padding: Padding
    delay: int

    def __init__(self, weight: Weight, filters: Optional[int] = None, conv_size=None,
                 flatten: bool = False, conv_strides=None, conv_padding: Optional[Padding] = None,
                 delay: int = 0, *, strides=None, padding: Optional[Padding] = None):
        self.weight, self.delay, self.flatten = weight, delay, _flatten("Conv2D", flatten)
        self.filters, self.conv_size = filters, conv_size
        self.kernel_size()  # checks the kernel against filters and conv_size
        self.strides = _pair(_either("Conv2D", "conv_strides", conv_strides, "strides", strides)
                             or (1, 1))
        self.padding = normalise_padding(
            _either("Conv2D", "conv_padding", conv_padding, "padding", padding) or "valid")

    def kernel_size(self) -> tuple[int, int, int]:
        """``(kh, kw, filters)``."""
        return _kernel_size("Conv2D", self.weight, self.filters, self.conv_size)

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = _image_shape(input_shape, "Conv2D")
        kh, kw, f = self.kernel_size()
        if not _is_scalar(self.weight) and np.shape(self.weight)[2] != c:
            raise ShapeError(f"Conv2D kernel expects {np.shape(self.weight)[2]} input channels "
                             f"but the source has {c} (shape {tuple(input_shape)})")
        return (conv_output_size(h, kh, self.strides[0], axis_padding(self.padding, 0)),
                conv_output_size(w, kw, self.strides[1], axis_padding(self.padding, 1)), int(f))

    def resolve(self, input_shape: Shape, output_shape: Shape) -> None:
        if _is_scalar(self.weight):
            kh, kw, f = self.kernel_size()
            c = _image_shape(input_shape, "Conv2D")[2]
            self.weight = np.full((kh, kw, c, f), self.weight, np.float32)

    def synapses(self, input_shape: Shape):
        return _conv_synapses(np.asarray(self.weight, np.float32), tuple(input_shape),
                              self.strides, self.padding)


@dataclass(eq=False, init=False)
class AvgPool2D(Connectivity):
    """TF AveragePooling2D with ``valid`` padding; windows may overlap.

    ``AvgPool2D(pool_size, flatten=False, pool_strides=None, delay=0)`` as in mlGeNN, or
    ``AvgPool2D(pool_size=, strides=)``; strides default to the pool size.
    """

    kind: ClassVar[str] = "avg_pool2d"
    pool_size: tuple[int, int]
    strides: tuple[int, int]
    delay: int

    def __init__(self, pool_size, flatten: bool = False, pool_strides=None, delay: int = 0, *,
                 strides=None):
        self.pool_size, self.delay = _pair(pool_size), delay
        self.flatten = _flatten("AvgPool2D", flatten)
        self.strides = _pair(_either("AvgPool2D", "pool_strides", pool_strides, "strides",
                                     strides) or self.pool_size)

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = _image_shape(input_shape, "AvgPool2D")
        return (conv_output_size(h, self.pool_size[0], self.strides[0], "valid"),
                conv_output_size(w, self.pool_size[1], self.strides[1], "valid"), c)

    def synapses(self, input_shape: Shape):
        c = _image_shape(input_shape, "AvgPool2D")[2]
        kh, kw = self.pool_size
        kernel = np.zeros((kh, kw, c, c), np.float32)
        kernel[:, :, np.arange(c), np.arange(c)] = 1.0 / (kh * kw)
        return _conv_synapses(kernel, tuple(input_shape), self.strides, "valid")


@dataclass(eq=False, init=False)
class AvgPoolDense2D(Connectivity):
    """AveragePooling2D, Flatten and Dense fused into one all-to-all matrix.

    ``AvgPoolDense2D(weight, pool_size, pool_strides=None, delay=0)`` as in mlGeNN (or
    ``strides=``); ``weight[n_pooled, n_trg]`` or one scalar weight.
    """

    kind: ClassVar[str] = "avg_pool_dense2d"
    weight: Weight
    pool_size: tuple[int, int]
    strides: tuple[int, int]
    delay: int

    def __init__(self, weight: Weight, pool_size, pool_strides=None, delay: int = 0, *,
                 strides=None):
        self.weight, self.delay = weight, delay
        self.pool = AvgPool2D(pool_size, strides=_either("AvgPoolDense2D", "pool_strides",
                                                         pool_strides, "strides", strides))
        self.pool_size, self.strides = self.pool.pool_size, self.pool.strides

    def output_shape(self, input_shape: Shape) -> Shape:
        if _is_scalar(self.weight):
            raise _scalar_shape_error("AvgPoolDense2D")
        pooled = self.pool.output_shape(input_shape)
        return Dense(weight=self.weight).output_shape(pooled)

    def resolve(self, input_shape: Shape, output_shape: Shape) -> None:
        if _is_scalar(self.weight):
            pooled = self.pool.output_shape(input_shape)
            self.weight = np.full((prod(pooled), prod(output_shape)), self.weight, np.float32)

    def synapses(self, input_shape: Shape):
        pooled = self.pool.output_shape(input_shape)
        p_pre, p_post, p_w = self.pool.synapses(input_shape)
        d_pre, d_post, d_w = Dense(weight=self.weight).synapses(pooled)
        return _compose(p_pre, p_post, p_w, d_pre, d_post, d_w)


@dataclass(eq=False, init=False)
class AvgPoolConv2D(Connectivity):
    """AveragePooling2D followed by Conv2D, fused into one sparse connection.

    ``AvgPoolConv2D(weight, filters, pool_size, conv_size, flatten=False, pool_strides=None,
    conv_strides=None, conv_padding="valid", delay=0)`` as in mlGeNN, or
    ``AvgPoolConv2D(weight=kernel, pool_size=, pool_strides=, strides=, padding=)``.
    """

    kind: ClassVar[str] = "avg_pool_conv2d"
    weight: Weight
    pool_size: tuple[int, int]
    pool_strides: tuple[int, int]
    strides: tuple[int, int]
    padding: Padding
    delay: int

    def __init__(self, weight: Weight, filters: Optional[int] = None, pool_size=None,
                 conv_size=None, flatten: bool = False, pool_strides=None, conv_strides=None,
                 conv_padding: Optional[Padding] = None, delay: int = 0, *, strides=None,
                 padding: Optional[Padding] = None):
        if pool_size is None:
            raise TypeError("AvgPoolConv2D needs pool_size=")
        self.weight, self.delay = weight, delay
        self.flatten = _flatten("AvgPoolConv2D", flatten)
        self.pool = AvgPool2D(pool_size, pool_strides=pool_strides)
        self.pool_size, self.pool_strides = self.pool.pool_size, self.pool.strides
        self.filters, self.conv_size = filters, conv_size
        conv = Conv2D(weight, filters, conv_size, conv_strides=conv_strides,
                      conv_padding=conv_padding, strides=strides, padding=padding)
        self.strides, self.padding = conv.strides, conv.padding

    def _conv(self) -> Conv2D:
        return Conv2D(self.weight, self.filters, self.conv_size, strides=self.strides,
                      padding=self.padding)

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._conv().output_shape(self.pool.output_shape(input_shape))

    def resolve(self, input_shape: Shape, output_shape: Shape) -> None:
        conv = self._conv()
        conv.resolve(self.pool.output_shape(input_shape), output_shape)
        self.weight = conv.weight

    def synapses(self, input_shape: Shape):
        pooled = self.pool.output_shape(input_shape)
        p_pre, p_post, p_w = self.pool.synapses(input_shape)
        c_pre, c_post, c_w = self._conv().synapses(pooled)
        return _compose(p_pre, p_post, p_w, c_pre, c_post, c_w)


@dataclass(eq=False, init=False)
class MaxPool2D(Connectivity):
    """Max pooling of spike counts: target neuron ``(r, c, ch)`` holds the largest spike count
    among the sources of its window (channel ``ch``) and spikes once whenever it grows.

    ``MaxPool2D(pool_size, flatten=False, pool_strides=None, delay=0, padding="valid")`` as
    :class:`AvgPool2D`, plus TF ``padding`` (``valid``/``same``) or explicit
    ``((top, bottom), (left, right))`` pads (padded positions hold nothing, which equals a
    -inf pad for the non-negative values a spike count stands for). Its target must be a
    :class:`~distsnn.neurons.SpikingMax` population; windows may overlap.
    """

    kind: ClassVar[str] = "max_pool2d"
    pool_size: tuple[int, int]
    strides: tuple[int, int]
    padding: Padding
    delay: int

    def __init__(self, pool_size, flatten: bool = False, pool_strides=None, delay: int = 0, *,
                 strides=None, padding: Padding = "valid"):
        self.pool_size, self.delay = _pair(pool_size), delay
        self.flatten = _flatten("MaxPool2D", flatten)
        self.strides = _pair(_either("MaxPool2D", "pool_strides", pool_strides, "strides",
                                     strides) or self.pool_size)
        self.padding = normalise_padding(padding)

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = _image_shape(input_shape, "MaxPool2D")
        out = tuple(conv_output_size(n, k, s, axis_padding(self.padding, axis))
                    for axis, (n, k, s) in enumerate(zip((h, w), self.pool_size, self.strides)))
        if min(out) < 1:
            raise ShapeError(f"MaxPool2D window {self.pool_size} does not fit a {h}x{w} source")
        return (*out, c)

    def pads_before(self, input_shape: Shape) -> tuple[int, int]:
        """Rows and columns of padding before the first window (TF's rule for ``same``)."""
        return tuple(conv_pad_before(int(n), k, s, axis_padding(self.padding, axis))
                     for axis, (n, k, s) in enumerate(zip(input_shape[:2], self.pool_size,
                                                          self.strides)))

    def synapses(self, input_shape: Shape):
        c = _image_shape(input_shape, "MaxPool2D")[2]
        kh, kw = self.pool_size
        kernel = np.zeros((kh, kw, c, c), np.float32)
        kernel[:, :, np.arange(c), np.arange(c)] = 1.0
        return _conv_synapses(kernel, tuple(input_shape), self.strides, self.padding)


def max_pool_forward(connectivity: MaxPool2D, x: np.ndarray, input_shape: Shape) -> np.ndarray:
    """The window maxima of per-example inputs ``x[n, prod(input_shape)]`` (numpy reference;
    padding and empty windows count as 0)."""
    pre, post, _ = connectivity.synapses(input_shape)
    n_out = int(np.prod(connectivity.output_shape(input_shape)))
    out = np.zeros((x.shape[0], n_out), np.float64)
    for i in range(x.shape[0]):
        np.maximum.at(out[i], post, x[i, pre])
    return out


def _image_shape(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a (height, width, channels) source, not shape {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def _conv_synapses(kernel: np.ndarray, input_shape: Shape, strides: tuple[int, int],
                   padding: Padding):
    """Explicit synapses of a TF cross-correlation; kernel is ``[kh, kw, c_in, c_out]``."""
    ih, iw, ic = _image_shape(input_shape, "Conv2D")
    kh, kw, _, oc = kernel.shape
    sh, sw = strides
    rows, cols = axis_padding(padding, 0), axis_padding(padding, 1)
    oh, ow = conv_output_size(ih, kh, sh, rows), conv_output_size(iw, kw, sw, cols)
    ph, pw = conv_pad_before(ih, kh, sh, rows), conv_pad_before(iw, kw, sw, cols)
    # All (output row, output col, kernel row, kernel col) combinations inside the input
    o_r, o_c, k_r, k_c = np.meshgrid(np.arange(oh), np.arange(ow), np.arange(kh), np.arange(kw),
                                     indexing="ij")
    i_r = o_r * sh - ph + k_r
    i_c = o_c * sw - pw + k_c
    ok = (i_r >= 0) & (i_r < ih) & (i_c >= 0) & (i_c < iw)
    i_r, i_c, o_r, o_c, k_r, k_c = (a[ok] for a in (i_r, i_c, o_r, o_c, k_r, k_c))
    # Expand over input and output channels
    ch_in, ch_out = np.meshgrid(np.arange(ic), np.arange(oc), indexing="ij")
    ch_in, ch_out = ch_in.reshape(-1), ch_out.reshape(-1)
    pre = ((i_r * iw + i_c) * ic)[:, None] + ch_in[None, :]
    post = ((o_r * ow + o_c) * oc)[:, None] + ch_out[None, :]
    w = kernel[k_r[:, None], k_c[:, None], ch_in[None, :], ch_out[None, :]]
    keep = w != 0.0  # zero weights (e.g. off-diagonal channels of a pooling kernel) add nothing
    return (pre[keep].astype(np.uint32).reshape(-1), post[keep].astype(np.uint32).reshape(-1),
            w[keep].astype(np.float32).reshape(-1))


def _compose(a_pre, a_post, a_w, b_pre, b_post, b_w):
    """Synapses of applying connection a then connection b (sparse matrix product)."""
    a_pre, a_post, b_pre, b_post = (x.astype(np.int64) for x in (a_pre, a_post, b_pre, b_post))
    order = np.argsort(b_pre, kind="stable")
    b_pre, b_post, b_w = b_pre[order], b_post[order], b_w[order]
    n_mid = int(max(a_post.max(initial=-1), b_pre.max(initial=-1))) + 1
    starts = np.searchsorted(b_pre, np.arange(n_mid))
    counts = np.bincount(b_pre, minlength=n_mid)
    reps = counts[a_post]
    pre = np.repeat(a_pre, reps)
    idx = np.repeat(starts[a_post] - (np.cumsum(reps) - reps), reps) + np.arange(len(pre))
    post = b_post[idx]
    w = np.repeat(a_w, reps) * b_w[idx]
    # Merge duplicates (overlapping pool windows reaching the same output): the first
    # occurrence of each (pre, post) carries the summed weight
    key = pre * (int(post.max(initial=0)) + 1) + post
    _, first_idx, inv = np.unique(key, return_index=True, return_inverse=True)
    merged_w = np.bincount(inv.reshape(-1), weights=w, minlength=len(first_idx))
    return (pre[first_idx].astype(np.uint32), post[first_idx].astype(np.uint32),
            merged_w.astype(np.float32))


def forward(connectivity: Connectivity, x: np.ndarray, input_shape: Shape) -> np.ndarray:
    """Apply a connectivity to per-example inputs ``x[n, prod(input_shape)]`` (numpy)."""
    pre, post, w = connectivity.synapses(input_shape)
    n_out = int(np.prod(connectivity.output_shape(input_shape)))
    out = np.zeros((x.shape[0], n_out), np.float64)
    for i in range(x.shape[0]):
        np.add.at(out[i], post, x[i, pre] * w)
    return out


def transpose_output_size(size: int, kernel: int, stride: int, padding: AxisPadding) -> int:
    """Output length of a TF transposed convolution (no output padding) along one axis."""
    if not isinstance(padding, str):
        return (size - 1) * stride + kernel - padding[0] - padding[1]
    if padding == "valid":
        return size * stride + max(kernel - stride, 0)
    if padding == "same":
        return size * stride
    raise ValueError(f"padding must be 'valid' or 'same', not {padding!r}")


def transpose_pad_before(kernel: int, stride: int, padding: AxisPadding) -> int:
    """Rows (columns) cropped before the first output: input pixel ``i`` and kernel tap ``t``
    reach output ``i * stride + t - pad_before`` (TF's 'same' crops ``max(k - s, 0) // 2``)."""
    if not isinstance(padding, str):
        return padding[0]
    return 0 if padding == "valid" else max(kernel - stride, 0) // 2


@dataclass(eq=False, init=False)
class Conv2DTranspose(Connectivity):
    """TF Conv2DTranspose with kernel ``weight[kh, kw, filters, c_in]`` (Keras' layout).

    mlGeNN's signature: ``weight`` is the kernel or one scalar for every tap (expanded by
    :meth:`resolve`), ``conv_size`` and ``conv_strides`` an int or a pair, ``conv_padding``
    ``"valid"``, ``"same"`` or explicit ``((top, bottom), (left, right))`` cropping of the
    full output (ONNX ``pads``). Input pixel ``(r, c)`` adds ``x * weight[kr, kc, o, i]`` to
    output ``(r * sh + kr - pad_top, c * sw + kc - pad_left, o)`` where that is inside the
    output. ``flatten=True``: a target without a shape gets the output flattened (mlGeNN).
    """

    kind: ClassVar[str] = "conv2d_transpose"
    weight: Weight
    filters: int
    conv_size: tuple[int, int]
    conv_strides: tuple[int, int]
    conv_padding: Padding
    delay: int

    def __init__(self, weight: Weight, filters: int, conv_size, flatten: bool = False,
                 conv_strides=None, conv_padding: Padding = "valid", delay: int = 0):
        self.weight, self.delay = weight, delay
        self.flatten = _flatten("Conv2DTranspose", flatten)
        self.filters = int(filters)
        self.conv_size = _pair(conv_size)
        self.conv_strides = _pair(conv_strides if conv_strides is not None else 1)
        self.conv_padding = normalise_padding(conv_padding)
        if self.filters < 1 or min(self.conv_size) < 1 or min(self.conv_strides) < 1:
            raise ValueError(f"Conv2DTranspose needs filters, conv_size and conv_strides of at "
                             f"least 1, not filters={self.filters}, conv_size={self.conv_size}, "
                             f"conv_strides={self.conv_strides}")

    def kernel(self, input_shape: Shape) -> np.ndarray:
        """The float32 kernel ``[kh, kw, filters, c_in]`` (a scalar weight broadcast)."""
        c_in = _image_shape(input_shape, "Conv2DTranspose")[2]
        expected = (*self.conv_size, self.filters, c_in)
        w = np.asarray(self.weight, np.float32)
        if w.ndim == 0:
            return np.full(expected, w, np.float32)
        if w.shape != expected:
            raise ShapeError(f"Conv2DTranspose weight has shape {w.shape} but conv_size "
                             f"{self.conv_size}, {self.filters} filters and a source with {c_in} "
                             f"channels (shape {tuple(input_shape)}) need {expected}")
        return w

    def resolve(self, input_shape: Shape, output_shape: Shape) -> None:
        """Expand a scalar weight to the full kernel."""
        if np.ndim(self.weight) == 0:
            self.weight = self.kernel(input_shape)

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w, _ = _image_shape(input_shape, "Conv2DTranspose")
        self.kernel(input_shape)
        (kh, kw), (sh, sw) = self.conv_size, self.conv_strides
        out = (transpose_output_size(h, kh, sh, axis_padding(self.conv_padding, 0)),
               transpose_output_size(w, kw, sw, axis_padding(self.conv_padding, 1)))
        if min(out) < 1:
            raise ShapeError(f"Conv2DTranspose padding {self.conv_padding} crops the whole "
                             f"output of a {h}x{w} source; use smaller pads")
        return (*out, self.filters)

    def pad_before(self) -> tuple[int, int]:
        """``(pad_top, pad_left)``: outputs cropped before the first row and column."""
        return tuple(transpose_pad_before(k, s, axis_padding(self.conv_padding, axis))
                     for axis, (k, s) in enumerate(zip(self.conv_size, self.conv_strides)))

    def synapses(self, input_shape: Shape):
        ih, iw, ic = _image_shape(input_shape, "Conv2DTranspose")
        kernel = self.kernel(input_shape)
        oh, ow, oc = self.output_shape(input_shape)
        (kh, kw), (sh, sw), (ph, pw) = self.conv_size, self.conv_strides, self.pad_before()
        # every (input row, input col, tap row, tap col) whose output lies inside
        i_r, i_c, k_r, k_c = np.meshgrid(np.arange(ih), np.arange(iw), np.arange(kh),
                                         np.arange(kw), indexing="ij")
        o_r, o_c = i_r * sh + k_r - ph, i_c * sw + k_c - pw
        ok = (o_r >= 0) & (o_r < oh) & (o_c >= 0) & (o_c < ow)
        i_r, i_c, k_r, k_c, o_r, o_c = (a[ok] for a in (i_r, i_c, k_r, k_c, o_r, o_c))
        ch_in, ch_out = (a.reshape(-1) for a in np.meshgrid(np.arange(ic), np.arange(oc),
                                                             indexing="ij"))
        pre = ((i_r * iw + i_c) * ic)[:, None] + ch_in[None, :]
        post = ((o_r * ow + o_c) * oc)[:, None] + ch_out[None, :]
        w = kernel[k_r[:, None], k_c[:, None], ch_out[None, :], ch_in[None, :]]
        keep = w != 0.0
        return (pre[keep].astype(np.uint32), post[keep].astype(np.uint32),
                w[keep].astype(np.float32))


CONNECTIVITY_TYPES: dict[str, type[Connectivity]] = {
    cls.kind: cls for cls in (Dense, OneToOne, Conv2D, AvgPool2D, AvgPoolDense2D, AvgPoolConv2D,
                              Conv2DTranspose, MaxPool2D)
}
