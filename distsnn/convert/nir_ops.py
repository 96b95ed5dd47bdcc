"""NIR's linear nodes as numpy functions on batches ``x[n, *shape]`` (NIR's channels-first
layout), and the layout change to distsnn's channels-last populations."""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Linear nodes (composed into connections) and neuron nodes (populations).
LINEAR_NODES = ("Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
                "Flatten", "Delay", "Identity")
NEURON_NODES = ("IF", "LIF", "LI", "I", "CubaLIF", "CubaLI", "Threshold")


def pair(value, n: int = 2) -> tuple[int, ...]:
    """An int or a sequence of ints as an n-tuple."""
    flat = np.atleast_1d(np.asarray(value)).astype(np.int64).reshape(-1)
    return tuple(int(flat[0]) for _ in range(n)) if flat.size == 1 else tuple(int(v) for v in flat)


def conv_padding(node, kernel: tuple[int, ...]) -> tuple[int, ...]:
    """Symmetric zero padding per spatial axis; ``same`` (stride 1) and ``valid`` as torch."""
    pad = node.padding
    if isinstance(pad, bytes):
        pad = pad.decode()
    if isinstance(pad, str):
        if pad == "valid":
            return tuple(0 for _ in kernel)
        if pad == "same":
            return tuple((k - 1) // 2 for k in kernel)
        raise ValueError(f"padding {pad!r}")
    return pair(pad, len(kernel))


def dense_kernel(node) -> np.ndarray:
    """A convolution's weight ``[O, I, k...]`` with its groups made block-diagonal and its
    dilation spelt out as zeros: one ungrouped, undilated kernel of the same map."""
    w = np.asarray(node.weight, np.float64)
    groups = int(np.asarray(getattr(node, "groups", 1)))
    if groups > 1:
        out_c, in_g = w.shape[:2]
        full = np.zeros((out_c, in_g * groups) + w.shape[2:])
        per = out_c // groups
        for g in range(groups):
            full[g * per:(g + 1) * per, g * in_g:(g + 1) * in_g] = w[g * per:(g + 1) * per]
        w = full
    dil = pair(getattr(node, "dilation", 1), w.ndim - 2)
    if any(d > 1 for d in dil):
        size = tuple((k - 1) * d + 1 for k, d in zip(w.shape[2:], dil))
        full = np.zeros(w.shape[:2] + size)
        full[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in dil)] = w
        w = full
    return w


def conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, ...], pad: tuple[int, ...]
         ) -> np.ndarray:
    """Cross-correlation of ``x[n, I, *s]`` with ``w[O, I, *k]`` (torch's Conv1d/Conv2d)."""
    spatial = w.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    win = sliding_window_view(x, w.shape[2:], axis=tuple(range(2, 2 + spatial)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    if spatial == 1:
        return np.einsum("nilk,oik->nol", win, w)
    return np.einsum("nihwab,oiab->nohw", win, w)


def pool(x: np.ndarray, node, average: bool) -> np.ndarray:
    k, s = pair(node.kernel_size), pair(node.stride)
    pad = pair(getattr(node, "padding", 0))
    c = x.shape[1]
    w = np.zeros((c, c) + k)
    w[np.arange(c), np.arange(c)] = 1.0 / math.prod(k) if average else 1.0
    return conv(x, w, s, pad)


def apply(kind: str, node, x: np.ndarray, bias: bool) -> np.ndarray:
    """Node ``node`` (NIR type ``kind``) applied to ``x[n, *shape]``, its bias included or not."""
    if kind in ("Delay", "Identity"):
        return x
    if kind == "Flatten":
        return x.reshape(len(x), -1)
    if kind == "Scale":
        return x * np.asarray(node.scale, np.float64)
    if kind in ("Affine", "Linear"):
        w = np.asarray(node.weight, np.float64)
        y = x.reshape(len(x), -1) @ w.T
        if bias and kind == "Affine":
            y = y + np.asarray(node.bias, np.float64).reshape(-1)
        return y
    if kind in ("Conv1d", "Conv2d"):
        w = dense_kernel(node)
        spatial = w.ndim - 2
        y = conv(x, w, pair(node.stride, spatial), conv_padding(node, w.shape[2:]))
        if bias:
            y = y + np.asarray(node.bias, np.float64).reshape((-1,) + (1,) * spatial)
        return y
    if kind in ("SumPool2d", "AvgPool2d"):
        return pool(x, node, kind == "AvgPool2d")
    raise ValueError(f"not a linear node: {kind}")


def ir_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """distsnn's channels-last shape of a NIR shape: (C,H,W) -> (H,W,C), (C,L) -> (1,L,C)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return shape[1:] + shape[:1]
    if len(shape) == 2:
        return (1, shape[1], shape[0])
    return shape or (1,)


def ir_order(shape: tuple[int, ...]) -> np.ndarray:
    """Index array ``p`` with ``ir_flat = nir_flat[p]`` for values of a NIR shape."""
    idx = np.arange(math.prod(shape)).reshape(shape)
    if len(shape) == 3:
        idx = idx.transpose(1, 2, 0)
    elif len(shape) == 2:
        idx = idx.T
    return idx.reshape(-1)


def to_ir(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-neuron values of a NIR shape (or broadcastable to it) in distsnn's order."""
    full = np.broadcast_to(np.asarray(values, np.float64), shape).reshape(-1)
    return full[ir_order(shape)]
