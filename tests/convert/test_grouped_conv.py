"""Grouped and depthwise convolutions: the IR, its lowerings and conversion, exact against
Keras and onnxruntime; Keras' SeparableConv2D, converted as one Conv2D.

The numpy reference below loops over groups, taps and channels itself (it does not use
``distsnn.connectivity``). Simulated cases use the one-hop harness of tests/helpers/one_hop.py:
binary input spikes, outputs that never fire read out as V after T = 2 steps, i.e. exactly
one application of W, through distsnn's Toeplitz snippet (CPU and CUDA forms) and through
explicit synapses.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import re
import zlib

import numpy as np
import pytest

from distsnn.connectivity import Conv2D, DepthwiseConv2D, ShapeError, forward
from distsnn.genn.lowering import kernel_geometry, plan_lowering, synaptic_events
from distsnn.netfile import load_network, save_network
from distsnn.network import Network
from distsnn.neurons import BinarySpikeInput, IntegrateFire
from helpers.one_hop import (
    LOWERINGS,
    assert_geometry_counts_are_the_synapses,
    assert_matches_framework,
    assert_procedural_rows_are_the_synapses,
    simulate_one_hop,
)

keras = pytest.importorskip("keras")
L = keras.layers

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

EXAMPLES = 3
ATOL, RTOL = 1e-4, 1e-5


# --------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------
def ref_grouped_conv(x: np.ndarray, w: np.ndarray, strides, padding, groups: int) -> np.ndarray:
    """TF cross-correlation of one image x[H, W, C] with a grouped kernel w[kh, kw, C/g, F]:
    output channel f of group f // (F/g) sees input channels of that group only."""
    h, wd, c = x.shape
    kh, kw, icg, f = w.shape
    assert icg * groups == c
    sh, sw = strides
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        pads = []
        for n, k, s in ((h, kh, sh), (wd, kw, sw)):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
    else:
        pads = padding
    xp = np.pad(x.astype(np.float64), (*pads, (0, 0)))
    oh, ow = (xp.shape[0] - kh) // sh + 1, (xp.shape[1] - kw) // sw + 1
    out = np.zeros((oh, ow, f))
    ocg = f // groups
    for o in range(f):
        g = o // ocg
        for i in range(oh):
            for j in range(ow):
                patch = xp[i * sh:i * sh + kh, j * sw:j * sw + kw, g * icg:(g + 1) * icg]
                out[i, j, o] = np.sum(patch * w[:, :, :, o])
    return out


def _weights(name: str, shape) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(name.encode())).uniform(-1, 1, shape).astype(
        np.float32)


class Case:
    """A Keras ``Conv2D(groups=)`` (``multiplier`` None) or ``DepthwiseConv2D``."""

    def __init__(self, in_shape, kernel, strides, padding, groups=1, filters=None,
                 multiplier=None):
        self.in_shape, self.kernel, self.strides, self.padding = (tuple(in_shape), kernel,
                                                                  strides, padding)
        c = in_shape[2]
        self.depthwise = multiplier is not None
        self.groups = c if self.depthwise else groups
        self.filters = c * multiplier if self.depthwise else filters
        pad = padding if isinstance(padding, str) else "pad" + "".join(
            str(p) for axis in padding for p in axis)
        kind = f"dw{multiplier}" if self.depthwise else f"g{groups}f{filters}"
        self.name = (f"{kind}_{in_shape[0]}x{in_shape[1]}x{c}_k{kernel[0]}x{kernel[1]}"
                     f"_s{strides[0]}x{strides[1]}_{pad}")
        # the framework's kernel: DepthwiseConv2D [kh, kw, c, m], Conv2D [kh, kw, c/g, f]
        self.w = _weights(self.name, (*kernel, c, multiplier) if self.depthwise
                          else (*kernel, c // groups, filters))
        self.grouped_w = (self.w.reshape(*kernel, 1, self.filters) if self.depthwise
                          else self.w)

    def make(self) -> Conv2D:
        if self.depthwise:
            return DepthwiseConv2D(self.w, self.kernel, conv_strides=self.strides,
                                   conv_padding=self.padding)
        return Conv2D(self.w, self.filters, self.kernel, conv_strides=self.strides,
                      conv_padding=self.padding, groups=self.groups)

    def ref(self, x: np.ndarray) -> np.ndarray:
        return ref_grouped_conv(x, self.grouped_w, self.strides, self.padding, self.groups)

    def keras(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(self.padding, str):  # Keras has no explicit padding
            return np.stack([self.ref(e) for e in x])
        if self.depthwise:
            layer = L.DepthwiseConv2D(self.kernel, strides=self.strides, padding=self.padding,
                                      depth_multiplier=self.w.shape[3], use_bias=False)
        else:
            layer = L.Conv2D(self.filters, self.kernel, strides=self.strides,
                             padding=self.padding, groups=self.groups, use_bias=False)
        layer.build((None,) + x.shape[1:])
        layer.set_weights([self.w])
        return keras.ops.convert_to_numpy(layer(x.astype(np.float32))).astype(np.float64)


GRID = ([Case((6, 7, 3), (3, 3), (s, s), p, multiplier=m)
         for m in (1, 2) for s in (1, 2) for p in ("valid", "same")]
        + [Case((6, 7, 4), (3, 3), (s, s), p, groups=2, filters=f)
           for f in (2, 6) for s in (1, 2) for p in ("valid", "same")])
EXTRAS = [Case((5, 6, 4), (2, 3), (2, 1), "same", groups=4, filters=8),   # even kernel
          Case((5, 6, 6), (3, 3), (2, 2), ((1, 0), (2, 1)), groups=3, filters=3),  # ONNX pads
          Case((5, 6, 2), (3, 3), (1, 2), ((1, 1), (1, 1)), multiplier=3),
          Case((7, 7, 4), (5, 5), (2, 2), "same", multiplier=1)]
CASES = GRID + EXTRAS


def _binary(shape, n=EXAMPLES, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n,) + tuple(shape)) < 0.5).astype(np.float32)


def test_reference_matches_hand_computed_depthwise_example():
    """Two channels, 1x1 depthwise kernel [2, 3]: each channel scaled by its own weight."""
    x = np.array([[[1.0, 10.0], [2.0, 20.0]]])
    w = np.array([2.0, 3.0]).reshape(1, 1, 1, 2)
    np.testing.assert_array_equal(ref_grouped_conv(x, w, (1, 1), "valid", 2),
                                  [[[2.0, 30.0], [4.0, 60.0]]])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_synapses_match_keras_and_reference(case):
    x = _binary(case.in_shape, seed=1)
    expected = case.keras(x)
    for i in range(EXAMPLES):
        np.testing.assert_allclose(case.ref(x[i]), expected[i], rtol=RTOL, atol=ATOL)
    conn = case.make()
    assert conn.groups == case.groups
    assert conn.output_shape(case.in_shape) == expected.shape[1:]
    got = forward(conn, x.reshape(EXAMPLES, -1), case.in_shape)
    np.testing.assert_allclose(got, expected.reshape(EXAMPLES, -1), rtol=RTOL, atol=ATOL)
    assert not np.allclose(expected[0], expected[1])


# --------------------------------------------------------------------------------------
# constructor, scalar weights, network files, bad input
# --------------------------------------------------------------------------------------
def test_mlgenn_style_arguments():
    w = _weights("sig", (3, 3, 2, 4))
    positional = Conv2D(w, 4, 3, False, 2, "same", groups=2)
    keyword = Conv2D(weight=w, strides=(2, 2), padding="same", groups=2)
    for conn in (positional, keyword):
        assert conn.output_shape((5, 5, 4)) == (3, 3, 4)
        assert conn.params()["groups"] == 2
    assert "groups" not in Conv2D(_weights("g1", (3, 3, 4, 4))).params()  # files stay as before
    depthwise = DepthwiseConv2D(_weights("dw", (3, 3, 4, 2)), 3, conv_strides=2)
    assert depthwise.groups == 4 and depthwise.output_shape((5, 5, 4)) == (2, 2, 8)


def test_scalar_weight_resolves_to_the_grouped_kernel():
    conn = Conv2D(0.5, 6, (3, 2), conv_padding="same", groups=3)
    full = Conv2D(np.full((3, 2, 2, 6), 0.5, np.float32), conv_padding="same", groups=3)
    shape = (4, 4, 6)
    conn.resolve(shape, conn.output_shape(shape))
    assert conn.weight.shape == (3, 2, 2, 6) and np.all(conn.weight == 0.5)
    for a, b in zip(conn.synapses(shape), full.synapses(shape)):
        np.testing.assert_array_equal(a, b)


def test_network_file_round_trip_and_inspect(tmp_path):
    from helpers.processes import DISTSNN, run
    case = EXTRAS[1]
    net = Network()
    src = net.add_population("in", case.in_shape, BinarySpikeInput())
    for i, conn in enumerate([case.make(), Conv2D(-0.25, 6, 3, groups=6),
                              Conv2D(_weights("plain", (3, 3, 6, 2)))]):
        out = net.add_population(f"out{i}", conn.output_shape(case.in_shape), IntegrateFire())
        net.connect(src, out, conn)
    save_network(net, tmp_path / "net.h5")
    loaded = load_network(tmp_path / "net.h5")
    assert [c.connectivity.groups for c in loaded.connections] == [3, 6, 1]
    assert loaded.content_hash() == net.content_hash()
    for before, after in zip(net.connections, loaded.connections):
        for a, b in zip(before.connectivity.synapses(case.in_shape),
                        after.connectivity.synapses(case.in_shape)):
            np.testing.assert_array_equal(a, b)
    result = run([DISTSNN, "inspect", str(tmp_path / "net.h5")])
    assert result.returncode == 0, result.stderr
    assert "in -> out0: conv2d (" in result.stdout and "groups=3" in result.stdout
    n = len(case.make().synapses(case.in_shape)[0])
    kernel_bytes = 4 * case.w.size  # only the grouped kernel is stored
    assert re.search(rf"in_to_out0\s+TOEPLITZ\s+{n:,}\s+{kernel_bytes} B", result.stdout)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="groups=4 must be at least 1 and divide its 6 filters"):
        Conv2D(np.ones((3, 3, 1, 6), np.float32), groups=4)
    with pytest.raises(ShapeError, match=r"expects 4 input channels \(2 per group, groups=2\) "
                                         r"but the source has 6"):
        Conv2D(np.ones((3, 3, 2, 4), np.float32), groups=2).output_shape((5, 5, 6))
    with pytest.raises(ShapeError, match="groups=2 does not divide the 3 channels"):
        Conv2D(1.0, 4, 3, groups=2).output_shape((5, 5, 3))
    with pytest.raises(ValueError, match="depth_multiplier"):
        DepthwiseConv2D(np.ones((3, 3, 2), np.float32))


# --------------------------------------------------------------------------------------
# GeNN: Toeplitz (CPU and CUDA forms) and SPARSE against Keras
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulate(tmp_path_factory):
    cache: dict = {}

    def run(lowering: str):
        if lowering not in cache:
            cache[lowering] = simulate_one_hop(
                CASES, lowering, tmp_path_factory.getbasetemp() / f"genn-build-gc-{lowering}",
                lambda shape, i: _binary(shape, seed=i + 1))
        return cache[lowering]
    return run


@pytest.mark.parametrize("lowering", LOWERINGS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_genn_one_hop_matches_keras(simulate, case, lowering):
    assert_matches_framework(simulate(lowering), case, lowering, RTOL, ATOL)


def test_procedural_row_code_generates_the_synapses(tmp_path):
    assert_procedural_rows_are_the_synapses([GRID[3], GRID[-1], EXTRAS[0], EXTRAS[1]],
                                            tmp_path, "gc")


# --------------------------------------------------------------------------------------
# memory model and synaptic events
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_geometry_counts_equal_the_explicit_synapses(case):
    assert kernel_geometry(case.make(), case.in_shape).kernel_shape == case.grouped_w.shape
    assert_geometry_counts_are_the_synapses(case)


def test_memory_estimate_and_events_from_the_real_synapses():
    case = GRID[5]  # DepthwiseConv2D, depth multiplier 2, stride 1, same
    net = Network()
    src = net.add_population("in", case.in_shape, BinarySpikeInput())
    conn = case.make()
    out = net.add_population("out", conn.output_shape(case.in_shape), IntegrateFire())
    c = net.connect(src, out, conn)
    pre, _, _ = conn.synapses(case.in_shape)
    toeplitz = plan_lowering(net, "auto").connections[c.name]
    assert (toeplitz.matrix, toeplitz.synapses) == ("TOEPLITZ", len(pre))
    assert toeplitz.resident_bytes == 4 * case.w.size  # kh * kw * c * m: only the kernel
    sparse = plan_lowering(net, "sparse").connections[c.name]
    longest = int(np.bincount(pre).max())
    assert longest == 9 * 2  # each source reaches its own 2 output channels through 9 taps
    assert (sparse.matrix, sparse.synapses) == ("SPARSE", len(pre))
    assert sparse.resident_bytes == src.size * (longest * 8 + 4)
    spikes = np.random.default_rng(3).integers(0, 4, src.size)
    assert synaptic_events(c, spikes) == int(np.sum(spikes[pre]))


# --------------------------------------------------------------------------------------
# conversion of Keras models (spec §13.1 harness: one hop, exact)
# --------------------------------------------------------------------------------------
def test_keras_harness_conversion_is_exact(tmp_path):
    """DepthwiseConv2D same/valid, stride 1/2, depth multiplier; Conv2D(groups=2); bias,
    BatchNormalization folded into output channels and an input Normalization folded into
    the grouped kernel's input channels and, convolved, into the bias."""
    from helpers.conversion_harness import HarnessConverter, linear_response, randomise
    inp = keras.Input((6, 7, 4), name="inp")
    norm = L.Normalization(mean=[0.3, -0.6, 0.1, 0.2], variance=[0.25, 4.0, 1.0, 2.0])
    outs = [L.DepthwiseConv2D(3, padding="same", name="dw_same")(inp),
            L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, use_bias=False,
                              name="dw_valid_s2")(inp),
            L.Conv2D(6, 3, strides=2, padding="same", groups=2, name="g2_same_s2")(inp),
            L.BatchNormalization(name="bn")(L.DepthwiseConv2D(3, strides=2,
                                                              padding="same")(inp)),
            L.Conv2D(4, 3, padding="same", groups=2, name="norm_g2")(norm(inp))]
    model = randomise(keras.Model(inp, outs), np.random.default_rng(11), bias=(0, 0.3))
    x = _binary((6, 7, 4), n=3, seed=4)
    expected = [keras.ops.convert_to_numpy(t) for t in model(x, training=False)]

    converter = HarnessConverter()
    net, inputs, outputs, _ = converter.convert(model)
    assert [c.connectivity.groups for c in net.connections] == [4, 4, 2, 4, 2]
    for out, exp in zip(outputs, expected):
        host = linear_response(net, out, {inputs[0]: x}, bias_scale=2.0)
        np.testing.assert_allclose(host, exp, rtol=1e-5, atol=1e-4, err_msg=out.name)
    _assert_simulations_match(converter, (net, inputs, outputs), x, expected, tmp_path)


def _assert_simulations_match(converter, converted: tuple, x: np.ndarray, expected: list,
                              build_dir) -> None:
    """The ``(network, inputs, outputs)`` that ``converter`` made, simulated with Toeplitz
    and with explicit synapses from input ``x``, predicts ``expected`` at each output."""
    net, inputs, outputs = converted
    for connectivity in ("toeplitz", "sparse"):
        compiled = converter.create_compiler(rng_seed=1, build_dir=str(build_dir / connectivity),
                                             connectivity=connectivity).compile(
            net, inputs=inputs, outputs=outputs)
        with compiled:
            predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
        for out, exp in zip(outputs, expected):
            np.testing.assert_allclose(predictions[out], exp, rtol=1e-5, atol=1e-4,
                                       err_msg=f"{out.name} ({connectivity})")


#: SeparableConv2D settings: (depth multiplier, stride, padding)
SEPARABLE = [(m, s, p) for m in (1, 2) for s in (1, 2) for p in ("valid", "same")]


def test_keras_separable_conv_is_one_exact_conv2d(tmp_path):
    """SeparableConv2D (depth multiplier 1/2, stride 1/2, valid/same, bias) becomes one
    Conv2D of the composed kernel ``[kh, kw, c_in, filters]``, exact against Keras."""
    from helpers.conversion_harness import HarnessConverter, randomise
    inp = keras.Input((6, 7, 4), name="inp")
    outs = [L.SeparableConv2D(3, 3, strides=s, padding=p, depth_multiplier=m,
                              name=f"sep_m{m}_s{s}_{p}")(inp) for m, s, p in SEPARABLE]
    model = randomise(keras.Model(inp, outs), np.random.default_rng(13), bias=(0, 0.3))
    x = _binary((6, 7, 4), n=3, seed=6)
    expected = [keras.ops.convert_to_numpy(t) for t in model(x, training=False)]

    converter = HarnessConverter()
    net, inputs, outputs, _ = converter.convert(model)
    assert [(type(c.connectivity).__name__, c.connectivity.groups,
             c.connectivity.weight.shape) for c in net.connections] == (
        [("Conv2D", 1, (3, 3, 4, 3))] * len(SEPARABLE))
    _assert_simulations_match(converter, (net, inputs, outputs), x, expected, tmp_path)


# --------------------------------------------------------------------------------------
# ONNX Conv with group > 1 (PyTorch's groups=: NCHW, explicit pads)
# --------------------------------------------------------------------------------------
def _onnx_model(nodes: list, outputs: list, inits: dict, shape=(4, 6, 7)):
    from onnx import TensorProto, helper, numpy_helper, shape_inference
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])
    graph = helper.make_graph(nodes, "g", [x], [],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k)
                               for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    infos = {vi.name: vi for vi in shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.extend(infos[o] for o in outputs)
    return model


def test_onnx_grouped_and_depthwise_conv_are_exact(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    from helpers.conversion_harness import HarnessConverter
    rng = np.random.default_rng(8)
    inits = {"w1": rng.uniform(-1, 1, (4, 1, 3, 3)), "b1": rng.uniform(-1, 1, 4),
             "w2": rng.uniform(-1, 1, (8, 1, 3, 3)),
             "w3": rng.uniform(-1, 1, (6, 2, 3, 3)), "b3": rng.uniform(-1, 1, 6),
             "w4": rng.uniform(-1, 1, (4, 1, 3, 3)),
             "g": [1.5, 0.5, 1.0, 2.0], "beta": [0.2, -0.4, 0.1, 0.0],
             "mean": [0.1, -0.3, 0.2, 0.5], "var": [0.8, 1.7, 1.0, 0.6]}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["dw_s1"], group=4, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "w2"], ["dw_m2_s2"], group=4, strides=[2, 2]),
             helper.make_node("Conv", ["x", "w3", "b3"], ["g2_s2"], group=2, strides=[2, 2],
                              pads=[1, 0, 0, 1]),
             helper.make_node("Conv", ["x", "w4"], ["dw4"], group=4, strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["dw4", "g", "beta", "mean", "var"],
                              ["bn"])]
    names = ["dw_s1", "dw_m2_s2", "g2_s2", "bn"]
    model = _onnx_model(nodes, names, inits)
    onnx.checker.check_model(model)
    x = _binary((4, 6, 7), n=3, seed=9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = [e.transpose(0, 2, 3, 1) for e in session.run(names, {"x": x})]

    converter = HarnessConverter()
    net, inputs, outputs, _ = converter.convert(model)
    assert [c.connectivity.groups for c in net.connections] == [4, 4, 2, 4]
    for connectivity in ("toeplitz", "sparse"):
        compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path / connectivity),
                                             connectivity=connectivity).compile(
            net, inputs=inputs, outputs=outputs)
        with compiled:
            predictions, _ = compiled.predict({inputs[0]: x.transpose(0, 2, 3, 1)}, outputs,
                                              callbacks=[])
        for out, exp in zip(outputs, expected):
            np.testing.assert_allclose(predictions[out], exp, rtol=1e-5, atol=1e-4,
                                       err_msg=f"{out.name} ({connectivity})")


def test_onnx_grouped_conv_transpose_is_refused_with_one_line():
    pytest.importorskip("onnx")
    from onnx import helper

    from distsnn.convert import ConversionError, Simple
    model = _onnx_model([helper.make_node("ConvTranspose", ["x", "w"], ["up"], name="up",
                                          group=2, strides=[2, 2])],
                        ["up"], {"w": np.ones((4, 1, 3, 3))})
    with pytest.raises(ConversionError) as err:
        Simple(10).convert(model)
    assert str(err.value) == ("node 'up' (ConvTranspose): is a grouped transposed convolution "
                              "(group=2), which is not supported; use groups=1 (one "
                              "ConvTranspose2d over all channels)")


# --------------------------------------------------------------------------------------
# small depthwise and separable CNNs through the real methods, and on 1 and 2 MPI ranks
# --------------------------------------------------------------------------------------
def _classifier(layers: list, seed: int, x_seed: int) -> tuple:
    """``keras.Sequential(layers)`` (an Input, hidden layers, Flatten, a Dense named "out")
    with random weights, the output biases centred so that every class wins somewhere:
    ``(model, normalisation data, 8 examples with a clear winner, their logits, a bound on
    the logits' size)``."""
    from helpers.conversion_harness import randomise
    model = randomise(keras.Sequential(layers), np.random.default_rng(seed), bias=(0, 0.3))
    x = np.random.default_rng(x_seed).uniform(0, 1, (40, *model.input_shape[1:])).astype(
        np.float32)
    dense = model.get_layer("out")
    kernel, bias = dense.get_weights()
    centred = bias - model.predict(x, verbose=0).mean(axis=0)  # every class predicted somewhere
    dense.set_weights([kernel, centred])
    logits = model.predict(x, verbose=0).astype(np.float64)
    hidden = keras.Model(model.inputs, dense.input).predict(x, verbose=0)
    magnitude = float((np.abs(hidden) @ np.abs(kernel)).max())
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.02 * magnitude
    assert clear.sum() >= 8 and len(set(logits[clear].argmax(axis=1))) > 1
    return model, x, x[clear][:8], logits[clear][:8], magnitude


@pytest.fixture(scope="module")
def cnn():
    """Conv2D(relu) -> DepthwiseConv2D(stride 2, relu6) -> Conv2D(groups=2, relu) -> Flatten ->
    Dense."""
    return _classifier([
        keras.Input((8, 8, 1)), L.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu6",
                          name="dw"),
        L.Conv2D(4, 3, groups=2, activation="relu", name="grouped"),
        L.Flatten(), L.Dense(4, name="out")], seed=3, x_seed=6)


@pytest.fixture(scope="module")
def separable_cnn():
    """Three SeparableConv2D(relu, bias): depth multiplier 2, stride 1, same; 1, 2, valid;
    2, 2, same; then Flatten -> Dense."""
    return _classifier([
        keras.Input((8, 8, 2)),
        L.SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="relu",
                          name="sep_m2_s1_same"),
        L.SeparableConv2D(6, 3, strides=2, activation="relu", name="sep_m1_s2_valid"),
        L.SeparableConv2D(4, 3, strides=2, padding="same", depth_multiplier=2,
                          activation="relu", name="sep_m2_s2_same"),
        L.Flatten(), L.Dense(4, name="out")], seed=4, x_seed=7)


#: (fixture, a hidden layer, the groups of the connections into its population)
CLASSIFIERS = [("cnn", "dw", [4]), ("separable_cnn", "sep_m1_s2_valid", [1])]


def _snn_readout(converter, model, x, build_dir, layer: str, groups: list) -> np.ndarray:
    net, inputs, outputs, layer_pops = converter.convert(model)
    hidden = layer_pops[model.get_layer(layer)]
    assert [c.connectivity.groups for c in net.incoming(hidden)] == groups
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(build_dir)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    return predictions[outputs[0]].astype(np.float64)


@pytest.mark.parametrize("classifier, layer, groups", CLASSIFIERS,
                         ids=["depthwise", "separable"])
def test_few_spike_agrees_with_the_ann(request, classifier, layer, groups, tmp_path):
    from distsnn.convert import FewSpike
    model, x_norm, x, logits, magnitude = request.getfixturevalue(classifier)
    snn = _snn_readout(FewSpike(k=12, norm_data=x_norm), model, x, tmp_path, layer, groups)
    np.testing.assert_array_equal(snn.argmax(axis=1), logits.argmax(axis=1))
    assert np.abs(snn - logits).max() < 0.005 * magnitude  # three K-bit quantisations


@pytest.mark.parametrize("classifier, layer, groups", CLASSIFIERS,
                         ids=["depthwise", "separable"])
def test_data_norm_agrees_with_the_ann(request, classifier, layer, groups, tmp_path):
    """Analog input and readout: the readout is the ANN logit over the output's scale λ."""
    from distsnn.convert import DataNorm, InputType
    model, x_norm, x, logits, magnitude = request.getfixturevalue(classifier)
    converter = DataNorm(400, norm_data=x_norm, input_type=InputType.ANALOG, readout="analog")
    snn = _snn_readout(converter, model, x, tmp_path, layer, groups)
    np.testing.assert_array_equal(snn.argmax(axis=1), logits.argmax(axis=1))
    scale = float(np.sum(snn * logits) / np.sum(snn * snn))
    assert np.abs(scale * snn - logits).max() < 0.02 * magnitude


def test_one_and_two_ranks_give_identical_results(cnn, tmp_path):
    """``distsnn evaluate`` of the converted grouped network: 1 rank and ``mpiexec -n 2``
    report the same metrics (accuracy and its counts), Toeplitz and explicit alike."""
    from distsnn.convert import FewSpike
    from helpers.processes import DISTSNN, run, run_mpi
    model, x_norm, x, logits, _ = cnn
    save_network(FewSpike(k=12, norm_data=x_norm).convert(model)[0], tmp_path / "net.h5")
    np.savez(tmp_path / "data.npz", x=x, y=logits.argmax(axis=1))
    results = {}
    for connectivity in ("toeplitz", "sparse"):
        for ranks in (1, 2):
            out = tmp_path / f"{connectivity}-{ranks}.json"
            args = [DISTSNN, "evaluate", str(tmp_path / "net.h5"), "--data",
                    str(tmp_path / "data.npz"), "-o", str(out), "--connectivity", connectivity,
                    "--build-dir", str(tmp_path / f"genn-{connectivity}"), "--no-progress"]
            proc = run(args, timeout=300) if ranks == 1 else run_mpi(2, args, timeout=300)
            assert proc.returncode == 0, proc.stderr
            results[connectivity, ranks] = json.loads(out.read_text())
    metrics = {key: r["metrics"] for key, r in results.items()}
    assert results["toeplitz", 2]["ranks"] == 2
    assert len({json.dumps(m, sort_keys=True) for m in metrics.values()}) == 1, metrics
    accuracy = next(iter(metrics["toeplitz", 1].values()))["sparse_categorical_accuracy"]
    assert accuracy["total"] == len(x) and accuracy["result"] == 1.0


# --------------------------------------------------------------------------------------
# linear bottlenecks: a 1x1 convolution right after a linear convolution composes with it
# --------------------------------------------------------------------------------------
def test_pointwise_conv_after_a_linear_conv_composes_exactly(tmp_path):
    """MobileNetV2's projection (1x1, linear, BatchNorm) -> Add (skip) -> next expansion (1x1,
    BatchNorm): one hop of composed 1x1 kernels from each source, exact against Keras; a 3x3
    convolution after a linear one is still refused."""
    from helpers.conversion_harness import HarnessConverter, randomise
    inp = keras.Input((6, 7, 4), name="inp")
    dw = L.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(inp)
    project = L.BatchNormalization(name="bn_p")(L.Conv2D(3, 1, name="project")(dw))
    skip = L.Conv2D(3, 3, strides=2, padding="same", name="skip")(inp)
    merged = L.Add(name="add")([project, skip])
    expand = L.BatchNormalization(name="bn_e")(L.Conv2D(5, 1, name="expand")(merged))
    model = randomise(keras.Model(inp, L.Conv2D(2, 1, name="out")(expand)),
                      np.random.default_rng(12), bias=(0, 0.3))
    x = _binary((6, 7, 4), n=3, seed=5)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    converter = HarnessConverter()
    net, inputs, outputs, _ = converter.convert(model)
    assert [type(c.connectivity).__name__ for c in net.connections] == ["Conv2D", "Conv2D"]
    assert [c.connectivity.weight.shape for c in net.connections] == [(3, 3, 4, 2)] * 2
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    np.testing.assert_allclose(predictions[outputs[0]], expected, rtol=1e-5, atol=1e-4)

    from distsnn.convert import ConversionError
    bad = keras.Sequential([keras.Input((6, 7, 4)), L.Conv2D(3, 1), L.Conv2D(2, 3, name="k3")])
    with pytest.raises(ConversionError, match=r"layer 'k3' \(Conv2D\): follows another "
                                              r"weighted layer without an activation"):
        converter.convert(bad)


def test_onnx_identity_of_a_weight_is_that_weight(tmp_path):
    """torch.onnx.export writes ``Identity`` nodes copying initializers (torchvision's VGG):
    the copy is a constant like its source, here a depthwise Conv's bias."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    from helpers.conversion_harness import HarnessConverter
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Identity", ["b"], ["b_copy"], name="Identity_0"),
             helper.make_node("Conv", ["x", "w", "b_copy"], ["dw"], group=4, pads=[1, 1, 1, 1])]
    model = _onnx_model(nodes, ["dw"], {"w": rng.uniform(-1, 1, (4, 1, 3, 3)),
                                        "b": rng.uniform(-1, 1, 4)})
    x = _binary((4, 6, 7), n=2, seed=11)
    expected = ort.InferenceSession(model.SerializeToString(), providers=[
        "CPUExecutionProvider"]).run(["dw"], {"x": x})[0].transpose(0, 2, 3, 1)
    converter = HarnessConverter()
    net, inputs, outputs, _ = converter.convert(model)
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x.transpose(0, 2, 3, 1)}, outputs,
                                          callbacks=[])
    np.testing.assert_allclose(predictions[outputs[0]], expected, rtol=1e-5, atol=1e-4)
