"""One weighted hop through every connectivity kind against an independent numpy reference.

The reference below is written from the TF definitions with plain loops (cross-correlation,
``same`` padding with ``pad_before = total // 2``, ``valid`` pooling, C-order flatten); it
does not use ``distsnn.connectivity``'s ``forward``/``synapses``.

Each connectivity kind is compiled once per lowering (distsnn's Toeplitz snippets in their
CPU and CUDA forms, explicit SPARSE synapses): one network
holds one input population per distinct input shape and one output population per case
(IntegrateFire with a threshold it never reaches and a ``var`` readout), so with T = 2 every
output's V is exactly one application of its connection to the binary input (spec §13.1).
Several examples per run also check that nothing carries over from one example to the next.
"""
from __future__ import annotations

import zlib
from math import ceil

import numpy as np
import pytest
from pygenn import SynapseMatrixType

from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import (
    AvgPool2D,
    AvgPoolConv2D,
    AvgPoolDense2D,
    Conv2D,
    Dense,
    OneToOne,
    ShapeError,
)
from distsnn.network import Network
from distsnn.neurons import BinarySpikeInput, IntegrateFire
from helpers.one_hop import LOWERINGS, simulate_one_hop

EXAMPLES = 3      # examples per run (exercises the per-example reset)
ATOL, RTOL = 1e-4, 1e-5


# --------------------------------------------------------------------------------------
# independent numpy reference (TF semantics)
# --------------------------------------------------------------------------------------
def ref_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(output size, padding before) of TF 'same' along one axis."""
    out = ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2


def ref_conv2d(x: np.ndarray, w: np.ndarray, strides, padding: str) -> np.ndarray:
    """TF Conv2D (cross-correlation) of one image x[H, W, C] with kernel w[kh, kw, C, F]."""
    h, wd, c = x.shape
    kh, kw, kc, f = w.shape
    assert kc == c
    sh, sw = strides
    if isinstance(padding, tuple):  # explicit ((top, bottom), (left, right))
        (ph, pb), (pw, pr) = padding
        oh, ow = (h + ph + pb - kh) // sh + 1, (wd + pw + pr - kw) // sw + 1
    elif padding == "valid":
        oh, ph = (h - kh) // sh + 1, 0
        ow, pw = (wd - kw) // sw + 1, 0
    else:
        oh, ph = ref_same_padding(h, kh, sh)
        ow, pw = ref_same_padding(wd, kw, sw)
    out = np.zeros((oh, ow, f), np.float64)
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    r, s = i * sh - ph + a, j * sw - pw + b
                    if 0 <= r < h and 0 <= s < wd:
                        for ci in range(c):
                            for fo in range(f):
                                out[i, j, fo] += x[r, s, ci] * w[a, b, ci, fo]
    return out


def ref_avg_pool(x: np.ndarray, pool, strides) -> np.ndarray:
    """TF AveragePooling2D with 'valid' padding."""
    h, wd, c = x.shape
    kh, kw = pool
    sh, sw = strides
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.zeros((oh, ow, c), np.float64)
    for i in range(oh):
        for j in range(ow):
            for ch in range(c):
                total = 0.0
                for a in range(kh):
                    for b in range(kw):
                        total += x[i * sh + a, j * sw + b, ch]
                out[i, j, ch] = total / (kh * kw)
    return out


def ref_dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Keras Dense on the C-order flattened input."""
    flat = x.reshape(-1)
    out = np.zeros(w.shape[1], np.float64)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[j] += flat[i] * w[i, j]
    return out


def test_reference_same_padding_puts_the_odd_pixel_after():
    # TF: 'same' with an even total pads one more at the bottom/right
    assert ref_same_padding(12, 4, 1) == (12, 1)     # total 3: 1 before, 2 after
    assert ref_same_padding(11, 3, 2) == (6, 1)      # total 2
    assert ref_same_padding(12, 3, 2) == (6, 0)      # total 1: 0 before, 1 after
    assert ref_same_padding(12, 1, 2) == (6, 0)


def test_reference_conv_matches_hand_computed_example():
    x = np.arange(9, dtype=np.float64).reshape(3, 3, 1)
    w = np.ones((2, 2, 1, 1))
    # same, stride 1, k=2: pad 0 before, 1 after -> windows anchored at the top-left
    got = ref_conv2d(x, w, (1, 1), "same")[..., 0]
    assert got.tolist() == [[8, 12, 7], [20, 24, 13], [13, 15, 8]]
    assert ref_conv2d(x, w, (1, 1), "valid")[..., 0].tolist() == [[8, 12], [20, 24]]


# --------------------------------------------------------------------------------------
# the case tables
# --------------------------------------------------------------------------------------
class Case:
    """One connection: input shape, connectivity and the numpy reference of one example."""

    def __init__(self, name, in_shape, make, ref):
        self.name, self.in_shape, self.make, self.ref = name, tuple(in_shape), make, ref


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _weights(name: str, shape) -> np.ndarray:
    # signed weights in [-1, 1), float32 like GeNN stores them
    return _rng(name).uniform(-1.0, 1.0, shape).astype(np.float32)


def dense_cases():
    cases = []
    for n_in, n_out in [(5, 5), (5, 10), (12, 3)]:
        name = f"dense_{n_in}x{n_out}"
        w = _weights(name, (n_in, n_out))
        cases.append(Case(name, (n_in,), lambda w=w: Dense(w), lambda x, w=w: ref_dense(x, w)))
    # a (H, W, C) source flattened in C order into a Dense kernel
    name = "dense_from_2x3x2"
    w = _weights(name, (12, 4))
    cases.append(Case(name, (2, 3, 2), lambda w=w: Dense(w), lambda x, w=w: ref_dense(x, w)))
    return cases


def one_to_one_cases():
    cases = []
    for size in (10, 100):
        cases.append(Case(f"one_to_one_{size}_scalar", (size,), lambda: OneToOne(1.0),
                          lambda x: x.astype(np.float64).copy()))
        name = f"one_to_one_{size}_array"
        w = _weights(name, (size,))
        cases.append(Case(name, (size,), lambda w=w: OneToOne(w),
                          lambda x, w=w: x.astype(np.float64) * w))
    name = "one_to_one_4x4x2_scalar"
    cases.append(Case(name, (4, 4, 2), lambda: OneToOne(-0.5),
                      lambda x: -0.5 * x.astype(np.float64)))
    return cases


def conv2d_cases():
    cases = []
    # the reference table (spec §13.2), plus an even kernel
    for c_in, c_out in [(1, 1), (2, 1), (1, 2), (2, 2)]:
        for k in (3, 4):
            for stride in (1, 2):
                for padding in ("valid", "same"):
                    name = f"conv_{c_in}to{c_out}_k{k}_s{stride}_{padding}"
                    w = _weights(name, (k, k, c_in, c_out))
                    cases.append(Case(
                        name, (12, 12, c_in),
                        lambda w=w, s=stride, p=padding: Conv2D(w, strides=(s, s), padding=p),
                        lambda x, w=w, s=stride, p=padding: ref_conv2d(x, w, (s, s), p)))
    # asymmetric kernels, strides and images; odd sizes make TF's 'same' pad unevenly
    extras = [((11, 9, 2), (3, 4), (1, 1), "same", 3), ((11, 9, 2), (3, 4), (1, 1), "valid", 3),
              ((11, 9, 2), (4, 3), (2, 1), "same", 2), ((11, 9, 2), (5, 5), (3, 3), "same", 1),
              ((12, 12, 2), (1, 1), (2, 2), "same", 3), ((12, 12, 2), (1, 1), (2, 2), "valid", 3),
              ((11, 9, 2), (4, 4), (3, 2), "valid", 2),
              # explicit padding (ONNX/PyTorch, ZeroPadding2D): stride 2 pad 1 on an even size,
              # asymmetric and one-sided pads
              ((12, 12, 2), (3, 3), (2, 2), ((1, 1), (1, 1)), 3),
              ((11, 9, 2), (3, 4), (1, 2), ((2, 0), (0, 3)), 2),
              ((12, 12, 2), (1, 1), (2, 2), ((0, 1), (1, 0)), 3)]
    for in_shape, (kh, kw), strides, padding, c_out in extras:
        pad_name = padding if isinstance(padding, str) else "pad" + "".join(
            str(p) for axis in padding for p in axis)
        name = f"conv_{in_shape[0]}x{in_shape[1]}_k{kh}x{kw}_s{strides[0]}x{strides[1]}_{pad_name}"
        w = _weights(name, (kh, kw, in_shape[2], c_out))
        cases.append(Case(name, in_shape,
                          lambda w=w, s=strides, p=padding: Conv2D(w, strides=s, padding=p),
                          lambda x, w=w, s=strides, p=padding: ref_conv2d(x, w, s, p)))
    return cases


def avg_pool2d_cases():
    cases = []
    for channels in (1, 2):
        # (pool, stride) of the reference table, plus overlapping windows (stride < pool)
        for pool, stride in [(2, 2), (3, 3), (2, 3), (3, 2)]:
            name = f"avg_pool_c{channels}_p{pool}_s{stride}"
            cases.append(Case(name, (20, 20, channels),
                              lambda p=pool, s=stride: AvgPool2D((p, p), pool_strides=(s, s)),
                              lambda x, p=pool, s=stride: ref_avg_pool(x, (p, p), (s, s))))
    name = "avg_pool_15x20_p2x3_default_stride"
    cases.append(Case(name, (15, 20, 3), lambda: AvgPool2D((2, 3)),
                      lambda x: ref_avg_pool(x, (2, 3), (2, 3))))
    return cases


def avg_pool_dense2d_cases():
    cases = []
    for channels in (1, 2):
        for pool, stride in [(2, 2), (3, 3), (2, 3), (3, 2)]:
            name = f"avg_pool_dense_c{channels}_p{pool}_s{stride}"
            ph = (20 - pool) // stride + 1
            w = _weights(name, (ph * ph * channels, 10))
            cases.append(Case(
                name, (20, 20, channels),
                lambda w=w, p=pool, s=stride: AvgPoolDense2D(w, (p, p), (s, s)),
                lambda x, w=w, p=pool, s=stride: ref_dense(ref_avg_pool(x, (p, p), (s, s)), w)))
    return cases


def avg_pool_conv2d_cases():
    cases = []
    for c_in, c_out in [(1, 1), (2, 2), (1, 2)]:
        for pool, pool_stride in [(2, 2), (3, 3), (3, 4), (3, 2)]:
            for k in (3, 4):
                for padding in ("valid", "same"):
                    if (c_in, c_out) == (1, 2) and (pool, pool_stride) != (2, 2):
                        continue  # the channel change needs only one pooling
                    name = f"avg_pool_conv_{c_in}to{c_out}_p{pool}s{pool_stride}_k{k}_{padding}"
                    w = _weights(name, (k, k, c_in, c_out))
                    cases.append(Case(
                        name, (20, 20, c_in),
                        lambda w=w, p=pool, ps=pool_stride, pad=padding: AvgPoolConv2D(
                            w, pool_size=(p, p), pool_strides=(ps, ps), padding=pad),
                        lambda x, w=w, p=pool, ps=pool_stride, pad=padding: ref_conv2d(
                            ref_avg_pool(x, (p, p), (ps, ps)), w, (1, 1), pad)))
    name = "avg_pool_conv_2to2_p2s2_k3_s2_pad1010"
    w = _weights(name, (3, 3, 2, 2))
    cases.append(Case(name, (20, 20, 2),
                      lambda w=w: AvgPoolConv2D(w, pool_size=(2, 2), pool_strides=(2, 2),
                                                strides=(2, 2), padding=((1, 0), (1, 0))),
                      lambda x, w=w: ref_conv2d(ref_avg_pool(x, (2, 2), (2, 2)), w, (2, 2),
                                                ((1, 0), (1, 0)))))
    # a strided convolution after the pool (distsnn allows it; mlGeNN does not)
    name = "avg_pool_conv_2to2_p2s2_k3_s2_same"
    w = _weights(name, (3, 3, 2, 2))
    cases.append(Case(name, (20, 20, 2),
                      lambda w=w: AvgPoolConv2D(w, pool_size=(2, 2), pool_strides=(2, 2),
                                                strides=(2, 2), padding="same"),
                      lambda x, w=w: ref_conv2d(ref_avg_pool(x, (2, 2), (2, 2)), w, (2, 2),
                                                "same")))
    return cases


def all_zero_cases():
    """All-zero weights (mlGeNN's ResNet-20 initialises its projection shortcuts to zero)."""
    zero_conv = np.zeros((1, 1, 2, 3), np.float32)
    zero_dense = np.zeros((12, 4), np.float32)
    return [Case("zero_conv_1x1_s2", (6, 6, 2),
                 lambda: Conv2D(zero_conv, strides=(2, 2)),
                 lambda x: ref_conv2d(x, zero_conv, (2, 2), "valid")),
            Case("zero_dense", (2, 3, 2), lambda: Dense(zero_dense),
                 lambda x: ref_dense(x, zero_dense)),
            Case("zero_one_to_one", (7,), lambda: OneToOne(0.0), lambda x: 0.0 * x)]


KINDS = {
    "dense": dense_cases(),
    "one_to_one": one_to_one_cases(),
    "conv2d": conv2d_cases(),
    "avg_pool2d": avg_pool2d_cases(),
    "avg_pool_dense2d": avg_pool_dense2d_cases(),
    "avg_pool_conv2d": avg_pool_conv2d_cases(),
    "all_zero": all_zero_cases(),
}
ALL = [(kind, case) for kind, cases in KINDS.items() for case in cases]




# --------------------------------------------------------------------------------------
# simulation: one network per (kind, lowering), built once per module
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulate(tmp_path_factory):
    cache: dict = {}

    def run(kind: str, lowering: str):
        if (kind, lowering) not in cache:
            rng = np.random.default_rng(1234)
            cache[kind, lowering] = simulate_one_hop(
                KINDS[kind], lowering, tmp_path_factory.getbasetemp() / f"genn-build-{lowering}",
                lambda shape, _: (rng.random((EXAMPLES,) + shape) < 0.5).astype(np.float32))
        return cache[kind, lowering]
    return run


@pytest.mark.parametrize("lowering", LOWERINGS)
@pytest.mark.parametrize("kind,case", ALL, ids=[c.name for _, c in ALL])
def test_one_hop_matches_reference(simulate, kind, case, lowering):
    result = simulate(kind, lowering)
    x, pred = result["x"][case.name], result["pred"][case.name]
    expected = np.stack([case.ref(x[i]) for i in range(EXAMPLES)])
    assert pred.shape == expected.shape, (pred.shape, expected.shape)
    np.testing.assert_allclose(pred, expected, atol=ATOL, rtol=RTOL,
                               err_msg=f"{case.name} ({lowering})")
    if kind != "all_zero":  # a random binary input makes every example different
        assert not np.allclose(expected[0], expected[1])


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_lowering_kinds(simulate, lowering):
    """Convolution-like connections are TOEPLITZ unless explicit synapses are asked for;
    Dense is DENSE, OneToOne SPARSE; all-zero connections are left out of the model."""
    in_memory = lowering != "sparse"
    conv_like = SynapseMatrixType.TOEPLITZ if in_memory else SynapseMatrixType.SPARSE
    for kind in ("conv2d", "avg_pool2d", "avg_pool_dense2d", "avg_pool_conv2d"):
        assert set(simulate(kind, lowering)["matrix"].values()) == {conv_like}, kind
    assert set(simulate("dense", lowering)["matrix"].values()) == {SynapseMatrixType.DENSE}
    assert set(simulate("one_to_one", lowering)["matrix"].values()) == {SynapseMatrixType.SPARSE}
    assert set(simulate("all_zero", lowering)["matrix"].values()) == {None}


def test_prefer_in_memory_connect_means_toeplitz():
    """The seed documents: True uses in-memory strategies such as TOEPLITZ."""
    assert InferenceCompiler(10, prefer_in_memory_connect=True).connectivity == "auto"
    assert InferenceCompiler(10, prefer_in_memory_connect=False).connectivity == "sparse"
    assert InferenceCompiler(10, prefer_in_memory_connect=False,
                             connectivity="toeplitz").connectivity == "toeplitz"


# --------------------------------------------------------------------------------------
# geometry checks (no simulation)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,case", ALL, ids=[c.name for _, c in ALL])
def test_output_shape_matches_reference(kind, case):
    x = np.zeros(case.in_shape)
    expected = case.ref(x).shape
    got = case.make().output_shape(case.in_shape)
    assert int(np.prod(got)) == int(np.prod(expected))
    if len(expected) == 3:
        assert tuple(got) == tuple(expected)


def test_connect_rejects_mismatched_shapes():
    net = Network()
    src = net.add_population("src", (12, 12, 2), BinarySpikeInput())
    wrong = net.add_population("wrong", (12, 12, 3), IntegrateFire())
    with pytest.raises(ShapeError, match="produces"):
        net.connect(src, wrong, Conv2D(np.ones((3, 3, 2, 3), np.float32), padding="valid"))
    with pytest.raises(ShapeError, match="input channels"):
        net.connect(src, wrong, Conv2D(np.ones((3, 3, 1, 3), np.float32), padding="same"))
    flat = net.add_population("flat", 5, IntegrateFire())
    with pytest.raises(ShapeError, match="rows"):
        net.connect(src, flat, Dense(np.ones((10, 5), np.float32)))
    with pytest.raises(ShapeError, match=r"\(height, width, channels\)"):
        net.connect(flat, flat, AvgPool2D((2, 2)))
    assert net.connections == []


def test_connection_names_stay_unique():
    """GeNN needs one synapse group per name; automatic names must not collide with
    explicit ones (e.g. a second a->b after an explicit "a_to_b_2")."""
    net = Network()
    a = net.add_population("a", 2, BinarySpikeInput())
    b = net.add_population("b", 2, IntegrateFire())
    net.connect(a, b, OneToOne(1.0))
    net.connect(a, b, OneToOne(1.0), name="a_to_b_2")
    net.connect(a, b, OneToOne(1.0))
    net.connect(a, b, OneToOne(1.0))
    net.connect(a, b, OneToOne(1.0), name="a_to_b")
    names = [c.name for c in net.connections]
    assert len(set(names)) == len(names), names
    with pytest.raises(ValueError, match="already used"):
        net.add_population("a", 3, IntegrateFire())
