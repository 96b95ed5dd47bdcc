"""Linear terms between populations and their lowering to IR connectivities.

While the Keras graph is walked, the value of every tensor that is not itself a population
is kept as a sum of *terms* plus a bias. A term is a source population followed by a chain
of linear operations (pooling, zero padding, reshape, one weighted Dense, Conv2D or
Conv2DTranspose).
When a population is created, each incoming term becomes one connection; the chains that
the IR can express are::

    ()                      -> OneToOne
    (Pool,)                 -> AvgPool2D          (AvgPoolConv2D with a 1x1 kernel if scaled)
    (Dense,)                -> Dense              (the source may be multi-dimensional)
    (Pool, Dense)           -> AvgPoolDense2D
    (Conv,)                 -> Conv2D
    (Pool, Conv)            -> AvgPoolConv2D
    (ConvTranspose,)        -> Conv2DTranspose
    (MaxPool,)              -> MaxPool2D          (the term of a max-pool population)

``Reshape`` (Flatten) operations only change the view: flattening is C order, which is how
the IR flattens channels-last shapes, so they vanish when lowered. ``Pad`` operations are
folded into the following convolution's padding, and ``Scale`` operations into the
following layer's kernel, by the planner.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, Union

import numpy as np

from distsnn import connectivity as conn
from distsnn.convert.errors import ConversionError


@dataclass(frozen=True, eq=False)
class Pool:
    """Average pooling with ``valid`` padding."""

    pool_size: tuple[int, int]
    strides: tuple[int, int]


@dataclass(frozen=True, eq=False)
class MaxPool:
    """Max pooling with TF ``valid``/``same`` or explicit padding: only ever the single
    operation of a max-pool population's one term (see :mod:`distsnn.convert.maxpool`)."""

    pool_size: tuple[int, int]
    strides: tuple[int, int]
    padding: conn.Padding

    def connectivity(self) -> conn.MaxPool2D:
        return conn.MaxPool2D(self.pool_size, strides=self.strides, padding=self.padding)


@dataclass(frozen=True, eq=False)
class Pad:
    """Zero padding ``((top, bottom), (left, right))`` of an ``in_hw`` image (ZeroPadding2D)."""

    pads: tuple[tuple[int, int], tuple[int, int]]
    in_hw: tuple[int, int]
    layer_name: str


@dataclass(frozen=True, eq=False)
class Scale:
    """Elementwise multiplication by ``factor`` (shaped as the value it multiplies).

    The scale of input preprocessing (Rescaling/Normalization), the first of which is
    ``owner`` (described as in messages, e.g. ``layer 'norm' (Normalization)``).
    """

    factor: np.ndarray
    owner: str


@dataclass(frozen=True, eq=False)
class Reshape:
    """A reshape to a vector (Flatten); no change to the values."""

    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class DenseOp:
    """A Keras Dense kernel ``[n_in, n_out]`` (bias kept separately)."""

    kernel: np.ndarray

    def scaled(self, channel_scale: np.ndarray) -> "DenseOp":
        return DenseOp(self.kernel * channel_scale.astype(np.float32))


@dataclass(frozen=True, eq=False)
class ConvOp:
    """A Keras Conv2D kernel ``[kh, kw, c_in, filters]`` with strides and padding (TF
    ``valid``/``same`` or explicit, see :data:`distsnn.connectivity.Padding`)."""

    kernel: np.ndarray
    strides: tuple[int, int]
    padding: conn.Padding

    def scaled(self, channel_scale: np.ndarray) -> "ConvOp":
        return replace(self, kernel=self.kernel * channel_scale.astype(np.float32))


@dataclass(frozen=True, eq=False)
class ConvTransposeOp:
    """A Keras Conv2DTranspose kernel ``[kh, kw, filters, c_in]`` with strides and padding (TF
    ``valid``/``same`` or explicit cropping, see :class:`~distsnn.connectivity.Conv2DTranspose`)."""

    kernel: np.ndarray
    strides: tuple[int, int]
    padding: conn.Padding

    def scaled(self, channel_scale: np.ndarray) -> "ConvTransposeOp":
        """Output channels (the kernel's third axis) multiplied by ``channel_scale``."""
        factor = channel_scale.astype(np.float32)[:, None]
        return replace(self, kernel=self.kernel * factor)


Op = Union[Pool, MaxPool, Pad, Scale, Reshape, DenseOp, ConvOp, ConvTransposeOp]
WEIGHTED = (DenseOp, ConvOp, ConvTransposeOp)


@dataclass(frozen=True, eq=False)
class Term:
    """``ops`` applied in order to the value of population ``source``."""

    source: Any  #: the plan's PopulationSpec (terms are built before the plan imports them)
    ops: tuple = ()

    def then(self, op: Op) -> "Term":
        return Term(self.source, self.ops + (op,))

    @property
    def weighted(self) -> bool:
        return any(isinstance(op, WEIGHTED) for op in self.ops)

    @property
    def last_weighted(self) -> bool:
        return bool(self.ops) and isinstance(self.ops[-1], WEIGHTED)

    def describe(self) -> str:
        names = [type(op).__name__.replace("Op", "") for op in self.ops]
        return " -> ".join([self.source.name] + names)


def lower(term: Term, scale: float = 1.0) -> conn.Connectivity:
    """The IR connectivity of ``term``, with all its weights multiplied by ``scale``."""
    ops = [op for op in term.ops if not isinstance(op, Reshape)]
    kinds = tuple(type(op) for op in ops)
    scale = float(scale)
    if kinds == ():
        return conn.OneToOne(weight=scale)
    if kinds == (Pool,):
        pool = ops[0]
        if scale == 1.0:
            return conn.AvgPool2D(pool_size=pool.pool_size, strides=pool.strides)
        channels = term.source.shape[-1]
        kernel = (scale * np.eye(channels, dtype=np.float32))[None, None]
        return conn.AvgPoolConv2D(weight=kernel, pool_size=pool.pool_size,
                                  pool_strides=pool.strides)
    if kinds == (DenseOp,):
        return conn.Dense(weight=_scaled(ops[0].kernel, scale))
    if kinds == (Pool, DenseOp):
        pool, dense = ops
        return conn.AvgPoolDense2D(weight=_scaled(dense.kernel, scale), pool_size=pool.pool_size,
                                   strides=pool.strides)
    if kinds == (ConvOp,):
        c = ops[0]
        return conn.Conv2D(weight=_scaled(c.kernel, scale), strides=c.strides, padding=c.padding)
    if kinds == (Pool, ConvOp):
        pool, c = ops
        return conn.AvgPoolConv2D(weight=_scaled(c.kernel, scale), pool_size=pool.pool_size,
                                  pool_strides=pool.strides, strides=c.strides,
                                  padding=c.padding)
    if kinds == (MaxPool,) and scale == 1.0:
        return ops[0].connectivity()
    if kinds == (ConvTransposeOp,):
        c = ops[0]
        kh, kw, filters, _ = c.kernel.shape
        return conn.Conv2DTranspose(weight=_scaled(c.kernel, scale), filters=filters,
                                    conv_size=(kh, kw), conv_strides=c.strides,
                                    conv_padding=c.padding)
    unfolded = unfolded_error(term)
    if unfolded is not None:
        raise unfolded
    raise ConversionError(f"the chain {term.describe()} has no spiking equivalent; put a ReLU "
                          f"between consecutive weighted or pooling layers")


def unfolded_error(term: Term) -> Optional[ConversionError]:
    """The error for a zero padding or input scale left in ``term`` (None if there is none)."""
    for op in term.ops:
        if isinstance(op, Pad):
            return ConversionError(f"layer {op.layer_name!r} (ZeroPadding2D): zero padding is "
                                   f"only supported directly before a Conv2D, into which it is "
                                   f"folded")
        if isinstance(op, Scale):
            return ConversionError(f"{op.owner}: is only supported on a model input followed "
                                   f"by a Dense or Conv2D, into which it is folded; move it "
                                   f"there, or scale the data instead (--scale/--mean/--std of "
                                   f"distsnn evaluate)")
    return None


def _scaled(kernel: np.ndarray, scale: float) -> np.ndarray:
    kernel = np.asarray(kernel, np.float32)
    return kernel.copy() if scale == 1.0 else (kernel * np.float32(scale)).astype(np.float32)


def fold_padding(pad: Pad, kernel_hw: tuple[int, int], strides: tuple[int, int],
                 padding: conn.Padding) -> conn.Padding:
    """The Conv2D padding equal to ``pad`` then a ``padding`` convolution, exactly: TF
    ``valid``/``same`` where one reproduces it, else explicit ``((top, bottom), (left, right))``."""
    combined, modes = [], []
    for axis, ((before, after), size, k, s) in enumerate(zip(pad.pads, pad.in_hw, kernel_hw,
                                                              strides)):
        padded, own = size + before + after, conn.axis_padding(padding, axis)
        out = conn.conv_output_size(padded, k, s, own)
        own_before = conn.conv_pad_before(padded, k, s, own)
        own_after = max((out - 1) * s + k - padded - own_before, 0)
        total = (before + own_before, after + own_after)
        combined.append(total)
        modes.append({mode for mode in ("valid", "same")
                      if conn.conv_output_size(size, k, s, mode) == out
                      and conn.conv_pad_before(size, k, s, mode) == total[0]})
    common = modes[0] & modes[1]
    if common:
        return "valid" if "valid" in common else "same"
    return conn.normalise_padding(combined)
