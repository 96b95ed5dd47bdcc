"""Conv2DTranspose: the IR connectivity, its lowerings and its conversion, exact against Keras.

The numpy reference below scatters every input pixel through the kernel onto the full
output and crops it (TF's definition); it does not use ``distsnn.connectivity``. Simulated
cases use the one-hop harness of tests/helpers/one_hop.py: binary input spikes, outputs
that never fire read out as V after T = 2 steps, i.e. exactly one application of W.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import re
import zlib

import numpy as np
import pytest

from distsnn.connectivity import Conv2DTranspose, ShapeError, forward
from distsnn.genn.lowering import plan_lowering, synaptic_events
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
def ref_conv_transpose(x: np.ndarray, w: np.ndarray, strides, padding) -> np.ndarray:
    """TF Conv2DTranspose of one image x[H, W, C] with kernel w[kh, kw, F, C]: scatter every
    pixel onto the full output, then crop (valid: nothing; same: max(k - s, 0) // 2 before
    and the rest after; explicit ((top, bottom), (left, right)))."""
    h, wd, c = x.shape
    kh, kw, f, kc = w.shape
    assert kc == c
    sh, sw = strides
    full = np.zeros((max((h - 1) * sh + kh, h * sh), max((wd - 1) * sw + kw, wd * sw), f))
    for i in range(h):
        for j in range(wd):
            for a in range(kh):
                for b in range(kw):
                    full[i * sh + a, j * sw + b] += w[a, b] @ x[i, j].astype(np.float64)
    if padding == "valid":
        return full[:h * sh + max(kh - sh, 0), :wd * sw + max(kw - sw, 0)]
    if padding == "same":
        top, left = max(kh - sh, 0) // 2, max(kw - sw, 0) // 2
        return full[top:top + h * sh, left:left + wd * sw]
    (top, bottom), (left, right) = padding
    return full[top:(h - 1) * sh + kh - bottom, left:(wd - 1) * sw + kw - right]


def keras_conv_transpose(x: np.ndarray, w: np.ndarray, strides, padding: str) -> np.ndarray:
    """Keras' own Conv2DTranspose of a batch x[N, H, W, C] (no bias)."""
    layer = L.Conv2DTranspose(w.shape[2], w.shape[:2], strides=strides, padding=padding,
                              use_bias=False)
    layer.build((None,) + x.shape[1:])
    layer.set_weights([w])
    return keras.ops.convert_to_numpy(layer(x.astype(np.float32))).astype(np.float64)


def _weights(name: str, shape) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(name.encode())).uniform(-1, 1, shape).astype(
        np.float32)


class Case:
    def __init__(self, in_shape, kernel, filters, strides, padding):
        self.in_shape, self.kernel, self.filters = tuple(in_shape), kernel, filters
        self.strides, self.padding = strides, padding
        pad = padding if isinstance(padding, str) else "pad" + "".join(
            str(p) for axis in padding for p in axis)
        self.name = (f"ct_{in_shape[0]}x{in_shape[1]}x{in_shape[2]}_k{kernel[0]}x{kernel[1]}"
                     f"_f{filters}_s{strides[0]}x{strides[1]}_{pad}")
        self.w = _weights(self.name, (*kernel, filters, in_shape[2]))

    def make(self) -> Conv2DTranspose:
        return Conv2DTranspose(self.w, self.filters, self.kernel, conv_strides=self.strides,
                               conv_padding=self.padding)

    def ref(self, x: np.ndarray) -> np.ndarray:
        return ref_conv_transpose(x, self.w, self.strides, self.padding)

    def keras(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(self.padding, str):  # Keras has no explicit cropping
            return np.stack([self.ref(e) for e in x])
        return keras_conv_transpose(x, self.w, self.strides, self.padding)


GRID = [Case((5, 6, c_in), (k, k), c_out, (s, s), p)
        for c_in, c_out in [(1, 1), (1, 2), (2, 1), (2, 2)] for k in (3, 4) for s in (1, 2)
        for p in ("valid", "same")]
EXTRAS = [Case((4, 5, 2), (3, 2), 3, (2, 3), "same"),    # asymmetric kernel and strides
          Case((4, 5, 2), (2, 2), 2, (3, 3), "valid"),   # kernel smaller than the stride
          Case((4, 5, 2), (2, 2), 2, (3, 3), "same"),
          Case((4, 5, 1), (5, 5), 2, (2, 2), "same"),
          Case((4, 5, 2), (3, 3), 2, (2, 2), ((1, 0), (2, 1))),  # ONNX-style explicit pads
          Case((4, 4, 2), (4, 4), 1, (2, 2), ((1, 1), (1, 1))),
          Case((4, 5, 2), (2, 2), 2, (3, 3), ((2, 0), (0, 1)))]  # crops more than k - 1
CASES = GRID + EXTRAS
#: simulated: one of each stride, padding, kernel size and channel count, and the extras
SIMULATED = [c for c in GRID if (c.kernel[0] + c.strides[0] + c.in_shape[2] + c.filters
                                 + (c.padding == "same")) % 2 == 0] + EXTRAS


def _binary(shape, n=EXAMPLES, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n,) + tuple(shape)) < 0.5).astype(np.float32)


def test_reference_matches_hand_computed_example():
    """1x2 input, 2x2 kernel, stride 2: each pixel stamps the kernel into its own 2x2 block."""
    x = np.array([[[1.0], [2.0]]])
    w = np.arange(1, 5, dtype=np.float32).reshape(2, 2, 1, 1)
    expected = np.array([[1, 2, 2, 4], [3, 4, 6, 8]], np.float64)[..., None]
    np.testing.assert_array_equal(ref_conv_transpose(x, w, (2, 2), "valid"), expected)
    # stride 1 overlaps the stamps; 'same' keeps the first rows and columns
    np.testing.assert_array_equal(ref_conv_transpose(x, w, (1, 1), "same")[..., 0],
                                  [[1, 4]])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_synapses_match_keras_and_reference(case):
    x = _binary(case.in_shape, seed=1)
    expected = case.keras(x)
    for i in range(EXAMPLES):
        np.testing.assert_allclose(case.ref(x[i]), expected[i], rtol=RTOL, atol=ATOL)
    conn = case.make()
    assert conn.output_shape(case.in_shape) == expected.shape[1:]
    got = forward(conn, x.reshape(EXAMPLES, -1), case.in_shape)
    np.testing.assert_allclose(got, expected.reshape(EXAMPLES, -1), rtol=RTOL, atol=ATOL)
    assert not np.allclose(expected[0], expected[1])


# --------------------------------------------------------------------------------------
# constructor, scalar weights, network files, bad input
# --------------------------------------------------------------------------------------
def test_mlgenn_signature_positional_and_keyword():
    w = _weights("sig", (3, 3, 2, 1))
    positional = Conv2DTranspose(w, 2, 3, False, 2, "same")
    keyword = Conv2DTranspose(weight=w, filters=2, conv_size=(3, 3), conv_strides=(2, 2),
                              conv_padding="same")
    assert positional.conv_strides == keyword.conv_strides == (2, 2)
    assert Conv2DTranspose(w, 2, 3).conv_strides == (1, 1)  # mlGeNN's default
    for conn in (positional, keyword):
        assert conn.output_shape((4, 5, 1)) == (8, 10, 2)


def test_scalar_weight_resolves_to_the_full_kernel():
    conn = Conv2DTranspose(0.5, 2, (3, 2), conv_strides=2, conv_padding="same")
    full = Conv2DTranspose(np.full((3, 2, 2, 3), 0.5, np.float32), 2, (3, 2), conv_strides=2,
                           conv_padding="same")
    shape = (4, 4, 3)
    for a, b in zip(conn.synapses(shape), full.synapses(shape)):
        np.testing.assert_array_equal(a, b)
    conn.resolve(shape, conn.output_shape(shape))
    assert conn.weight.shape == (3, 2, 2, 3) and np.all(conn.weight == 0.5)


def test_network_file_round_trip(tmp_path):
    case = EXTRAS[0]
    net = Network()
    src = net.add_population("in", case.in_shape, BinarySpikeInput())
    for i, conn in enumerate([case.make(), EXTRAS[4].make(),
                              Conv2DTranspose(-0.25, 2, 3, conv_strides=2)]):
        out = net.add_population(f"out{i}", conn.output_shape(case.in_shape), IntegrateFire())
        net.connect(src, out, conn)
    save_network(net, tmp_path / "net.h5")
    loaded = load_network(tmp_path / "net.h5")
    for before, after in zip(net.connections, loaded.connections):
        assert type(after.connectivity) is Conv2DTranspose
        for a, b in zip(before.connectivity.synapses(case.in_shape),
                        after.connectivity.synapses(case.in_shape)):
            np.testing.assert_array_equal(a, b)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ShapeError, match=r"weight has shape \(3, 3, 2, 2\).*need \(3, 3, 2, 1\)"):
        Conv2DTranspose(np.ones((3, 3, 2, 2), np.float32), 2, 3).output_shape((4, 4, 1))
    with pytest.raises(ShapeError, match=r"\(height, width, channels\)"):
        Conv2DTranspose(1.0, 2, 3).output_shape((16,))
    with pytest.raises(ValueError, match="at least 1"):
        Conv2DTranspose(1.0, 2, 3, conv_strides=0)
    with pytest.raises(ValueError, match="padding must be"):
        Conv2DTranspose(1.0, 2, 3, conv_padding="full")


# --------------------------------------------------------------------------------------
# GeNN: Toeplitz (CPU and CUDA forms) and SPARSE against Keras
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulate(tmp_path_factory):
    cache: dict = {}

    def run(lowering: str):
        if lowering not in cache:
            cache[lowering] = simulate_one_hop(
                SIMULATED, lowering, tmp_path_factory.getbasetemp() / f"genn-build-ct-{lowering}",
                lambda shape, i: _binary(shape, seed=i + 1))
        return cache[lowering]
    return run


@pytest.mark.parametrize("lowering", LOWERINGS)
@pytest.mark.parametrize("case", SIMULATED, ids=[c.name for c in SIMULATED])
def test_genn_one_hop_matches_keras(simulate, case, lowering):
    assert_matches_framework(simulate(lowering), case, lowering, RTOL, ATOL)


def test_procedural_row_code_generates_the_synapses(tmp_path):
    assert_procedural_rows_are_the_synapses([EXTRAS[0], EXTRAS[4], GRID[-1]], tmp_path, "ct")


# --------------------------------------------------------------------------------------
# memory model and synaptic events
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", SIMULATED, ids=[c.name for c in SIMULATED])
def test_geometry_counts_equal_the_explicit_synapses(case):
    assert_geometry_counts_are_the_synapses(case)


def test_memory_estimate_and_events_from_the_real_synapses():
    case = EXTRAS[0]
    net = Network()
    src = net.add_population("in", case.in_shape, BinarySpikeInput())
    conn = case.make()
    out = net.add_population("out", conn.output_shape(case.in_shape), IntegrateFire())
    c = net.connect(src, out, conn)
    pre, _, _ = conn.synapses(case.in_shape)
    toeplitz = plan_lowering(net, "auto").connections[c.name]
    assert (toeplitz.matrix, toeplitz.synapses) == ("TOEPLITZ", len(pre))
    assert toeplitz.resident_bytes == 4 * case.w.size  # only the kernel
    sparse = plan_lowering(net, "sparse").connections[c.name]
    longest = int(np.bincount(pre).max())
    assert (sparse.matrix, sparse.synapses) == ("SPARSE", len(pre))
    assert sparse.resident_bytes == src.size * (longest * 8 + 4)
    spikes = np.random.default_rng(3).integers(0, 4, src.size)
    assert synaptic_events(c, spikes) == int(np.sum(spikes[pre]))


def test_inspect_lists_the_connection(tmp_path):
    from helpers.processes import DISTSNN, run
    case = EXTRAS[0]
    net = Network()
    src = net.add_population("in", case.in_shape, BinarySpikeInput())
    out = net.add_population("up", case.make().output_shape(case.in_shape), IntegrateFire())
    net.connect(src, out, case.make())
    save_network(net, tmp_path / "net.h5")
    n = len(case.make().synapses(case.in_shape)[0])
    result = run([DISTSNN, "inspect", str(tmp_path / "net.h5")])
    assert result.returncode == 0, result.stderr
    assert "in -> up: conv2d_transpose (" in result.stdout
    kernel_bytes = 4 * case.w.size  # only the kernel is stored
    assert re.search(rf"in_to_up\s+TOEPLITZ\s+{n:,}\s+{kernel_bytes} B", result.stdout)


# --------------------------------------------------------------------------------------
# conversion of Keras models
# --------------------------------------------------------------------------------------
def test_harness_conversion_is_exact(tmp_path):
    """One hop from the input (spec §13.1 harness): bias, BatchNormalization folded into the
    kernel's output channels, and an input Normalization folded into its input channels and,
    transposed-convolved, into the bias."""
    from helpers.conversion_harness import HarnessConverter, linear_response, randomise
    inp = keras.Input((5, 6, 2), name="inp")
    norm = L.Normalization(mean=[0.3, -0.6], variance=[0.25, 4.0])
    outs = [L.Conv2DTranspose(2, 3, strides=2, padding="same", name="s2_same")(inp),
            L.Conv2DTranspose(3, 4, use_bias=False, name="k4_valid")(inp),
            L.BatchNormalization(name="bn")(L.Conv2DTranspose(2, 3, strides=2)(inp)),
            L.Conv2DTranspose(2, 4, strides=2, padding="same", name="norm_s2")(norm(inp))]
    model = randomise(keras.Model(inp, outs), np.random.default_rng(11), bias=(0, 0.3))
    x = _binary((5, 6, 2), n=3, seed=4)
    expected = [keras.ops.convert_to_numpy(t) for t in model(x, training=False)]

    converter = HarnessConverter()
    net, inputs, outputs, _ = converter.convert(model)
    assert len(net.populations) == 5
    assert all(type(c.connectivity) is Conv2DTranspose for c in net.connections)
    for out, exp in zip(outputs, expected):
        host = linear_response(net, out, {inputs[0]: x}, bias_scale=2.0)
        np.testing.assert_allclose(host, exp, rtol=1e-5, atol=1e-4, err_msg=out.name)
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    for out, exp in zip(outputs, expected):
        np.testing.assert_allclose(predictions[out], exp, rtol=1e-5, atol=1e-4, err_msg=out.name)


@pytest.fixture(scope="module")
def cnn():
    """Sequential Conv2D(relu) -> Conv2DTranspose(relu, stride 2, same, bias) -> Flatten ->
    Dense."""
    from helpers.conversion_harness import randomise
    model = randomise(keras.Sequential([
        keras.Input((6, 6, 1)), L.Conv2D(3, 3, padding="same", activation="relu", name="conv"),
        L.Conv2DTranspose(2, 3, strides=2, padding="same", activation="relu", name="up"),
        L.Flatten(), L.Dense(4, name="out")]), np.random.default_rng(3), bias=(0, 0.3))
    x = np.random.default_rng(6).uniform(0, 1, (40, 6, 6, 1)).astype(np.float32)
    dense = model.get_layer("out")
    kernel, bias = dense.get_weights()
    centred = bias - model.predict(x, verbose=0).mean(axis=0)  # every class predicted somewhere
    dense.set_weights([kernel, centred])
    logits = model.predict(x, verbose=0).astype(np.float64)
    # the largest sum of absolute contributions to a logit: what quantisation errors scale with
    up = keras.Model(model.inputs, model.get_layer("up").output).predict(x, verbose=0)
    up = up.reshape(len(x), -1)
    magnitude = float((np.abs(up) @ np.abs(kernel)).max())
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.02 * magnitude
    assert clear.sum() >= 8 and len(set(logits[clear].argmax(axis=1))) > 1
    return model, x, x[clear][:8], logits[clear][:8], magnitude


def _snn_readout(converter, model, x, build_dir) -> np.ndarray:
    net, inputs, outputs, layer_pops = converter.convert(model)
    up = layer_pops[model.get_layer("up")]
    assert [type(c.connectivity).__name__ for c in net.incoming(up)] == ["Conv2DTranspose"]
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(build_dir)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    return predictions[outputs[0]].astype(np.float64)


def test_few_spike_agrees_with_the_ann(cnn, tmp_path):
    from distsnn.convert import FewSpike
    model, x_norm, x, logits, magnitude = cnn
    snn = _snn_readout(FewSpike(k=8, norm_data=x_norm), model, x, tmp_path)
    np.testing.assert_array_equal(snn.argmax(axis=1), logits.argmax(axis=1))
    assert np.abs(snn - logits).max() < 0.005 * magnitude


def test_data_norm_agrees_with_the_ann(cnn, tmp_path):
    """Analog input and readout: the readout is the ANN logit over the output's scale λ."""
    from distsnn.convert import DataNorm, InputType
    model, x_norm, x, logits, magnitude = cnn
    converter = DataNorm(100, norm_data=x_norm, input_type=InputType.ANALOG, readout="analog")
    snn = _snn_readout(converter, model, x, tmp_path)
    np.testing.assert_array_equal(snn.argmax(axis=1), logits.argmax(axis=1))
    scale = float(np.sum(snn * logits) / np.sum(snn * snn))
    assert np.abs(scale * snn - logits).max() < 0.02 * magnitude


# --------------------------------------------------------------------------------------
# ONNX ConvTranspose (PyTorch's ConvTranspose2d: NCHW, explicit pads and output_padding)
# --------------------------------------------------------------------------------------
def _onnx_model(nodes: list, outputs: list, inits: dict, shape=(2, 5, 6)):
    from onnx import TensorProto, helper, numpy_helper, shape_inference
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])
    graph = helper.make_graph(nodes, "g", [x], [],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k)
                               for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    infos = {vi.name: vi for vi in shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.extend(infos[o] for o in outputs)
    return model


def test_onnx_conv_transpose_is_exact(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper

    from helpers.conversion_harness import HarnessConverter
    rng = np.random.default_rng(8)
    inits = {"w1": rng.uniform(-1, 1, (2, 3, 3, 3)), "b1": rng.uniform(-1, 1, 3),
             "w2": rng.uniform(-1, 1, (2, 2, 4, 4)), "w3": rng.uniform(-1, 1, (2, 1, 3, 2)),
             "g": [1.5, 0.5], "beta": [0.2, -0.4], "mean": [0.1, -0.3], "var": [0.8, 1.7]}
    nodes = [helper.make_node("ConvTranspose", ["x", "w1", "b1"], ["up"], strides=[2, 2],
                              pads=[1, 0, 1, 1], output_padding=[1, 0]),
             helper.make_node("ConvTranspose", ["x", "w2"], ["t2"], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["t2", "g", "beta", "mean", "var"],
                              ["bn"]),
             helper.make_node("ConvTranspose", ["x", "w3"], ["full"], strides=[1, 3])]
    model = _onnx_model(nodes, ["up", "bn", "full"], inits)
    onnx.checker.check_model(model)
    x = _binary((2, 5, 6), n=3, seed=9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = [e.transpose(0, 2, 3, 1) for e in session.run(["up", "bn", "full"], {"x": x})]
    assert expected[0].shape == (3, 10, 12, 3)

    converter = HarnessConverter()
    net, inputs, outputs, _ = converter.convert(model)
    assert all(type(c.connectivity) is Conv2DTranspose for c in net.connections)
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x.transpose(0, 2, 3, 1)}, outputs,
                                          callbacks=[])
    for out, exp in zip(outputs, expected):
        np.testing.assert_allclose(predictions[out], exp, rtol=1e-5, atol=1e-4, err_msg=out.name)


def test_onnx_conv_transpose_refusals_name_the_node():
    pytest.importorskip("onnx")
    from onnx import helper

    from distsnn.convert import ConversionError, Simple
    w = {"w": np.ones((2, 2, 3, 3))}
    cases = [(dict(strides=[2, 2], output_padding=[1, 1]), "output_padding [1, 1] larger than "
                                                          "its end pads"),
             (dict(auto_pad="SAME_UPPER", strides=[2, 2]), "give explicit pads"),
             (dict(dilations=[2, 2]), "use groups=1 and dilation=1")]
    for attrs, message in cases:
        model = _onnx_model([helper.make_node("ConvTranspose", ["x", "w"], ["bad"], name="bad",
                                              **attrs)], ["bad"], w)
        with pytest.raises(ConversionError, match=r"node 'bad' \(ConvTranspose\)") as err:
            Simple(10).convert(model)
        assert message in str(err.value)
