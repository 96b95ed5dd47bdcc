"""Clipped ReLUs (ReLU6): Keras ``ReLU(max_value=)``/``relu6`` and ONNX ``Clip(0, m)``, with
min/max as attributes, initializers or ``Constant`` nodes (PyTorch 2.x's ReLU6 export).

Few-spike reproduces the clip exactly: a clipped population's α is ``m / (1 - 2^-K)``, so its
K-bit code saturates at m; the next layer's readout equals the numpy K-bit reference. Data-norm
reproduces it by threshold balancing: λ = m, and an IF neuron reset by subtraction fires at
most one spike per step, so under the constant current ``a`` of analog input its count is
``a / m`` spikes per step, capped at one: ``min(a, m) / m``, the clip. Both are checked
through real GeNN models against numbers computed here from the framework's weights.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from distsnn.convert import ConversionError, DataNorm, FewSpike, InputType, Simple
from distsnn.convert.api import convert_file

keras = pytest.importorskip("keras")
L = keras.layers

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

M = 6.0
T = 64


def _dense_model(activation_layer, n_in=6, n_hidden=16, n_out=3, seed=0, out=True):
    """Input -> Dense -> activation (-> Dense); weights that drive many units past M."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((n_in,))
    hidden = L.Dense(n_hidden, name="hidden")
    h = activation_layer(hidden(inp)) if activation_layer is not None else hidden(inp)
    model = keras.Model(inp, L.Dense(n_out, name="out")(h) if out else h)
    hidden.set_weights([rng.uniform(-2.5, 5.5, (n_in, n_hidden)).astype(np.float32),
                        rng.uniform(-3, 3, n_hidden).astype(np.float32)])
    if out:
        model.get_layer("out").set_weights([rng.uniform(-1, 1, (n_hidden, n_out)),
                                            rng.uniform(-1, 1, n_out)])
    return model


def _pre_activation(model, x) -> np.ndarray:
    w, b = model.get_layer("hidden").get_weights()
    return x.astype(np.float64) @ w + b


def _predict(converter, model, x, tmp_path):
    net, inputs, outputs, _ = converter.convert(model)
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    return net, predictions[outputs[0]].astype(np.float64)


SPELLINGS = {
    "ReLU(max_value=6)": lambda: L.ReLU(max_value=M, name="act"),
    "Activation('relu6')": lambda: L.Activation("relu6", name="act"),
    "activations.relu6": lambda: L.Activation(keras.activations.relu6, name="act"),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_keras_spellings_are_one_population_clipped_at_m(spelling):
    model = _dense_model(SPELLINGS[spelling](), out=False)
    graph = DataNorm(10, norm_data=np.zeros((1, 6), np.float32)).conversion_graph(model)
    assert [(p.name, p.clip) for p in graph.populations] == [(graph.inputs[0].name, None),
                                                            ("act", M)]


def test_dense_activation_relu6_and_clip_values_other_than_six():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2, name="out")(
        L.ReLU(max_value=2.5, name="r")(L.Dense(3, activation="relu6", name="h")(inp))))
    graph = DataNorm(10, norm_data=np.zeros((1, 4), np.float32)).conversion_graph(model)
    assert {p.name: p.clip for p in graph.populations if not p.is_input} == {
        "h": 6.0, "r": 2.5, "out": None}


def test_simple_and_spike_norm_refuse_a_clip_and_leaky_relu_stays_refused(tmp_path):
    with pytest.raises(ConversionError, match=r"^layer 'act' \(ReLU\): is a ReLU clipped at 6, "
                                              r"which simple conversion does not reproduce; "
                                              r"use data-norm, qcfs or few-spike"):
        Simple(10).convert(_dense_model(SPELLINGS["ReLU(max_value=6)"]()))
    with pytest.raises(ConversionError, match=r"clipped at 6, which spike-norm conversion does "
                                              r"not reproduce"):
        path = tmp_path / "relu6.keras"
        _dense_model(SPELLINGS["ReLU(max_value=6)"]()).save(path)
        convert_file(path, "spike-norm")
    with pytest.raises(ConversionError, match="negative_slope=0.1"):
        DataNorm(10, norm_data=np.zeros((1, 6), np.float32)).convert(
            _dense_model(L.ReLU(max_value=M, negative_slope=0.1, name="act")))


def test_few_spike_clips_exactly_at_m(tmp_path):
    """Hidden α = m / (1 - 2^-K): its code is ``min(floor(a / s) s, m)`` with s = m / (2^K - 1);
    the linear output reads ``W2 code + b2``, equal to numpy's to float32 rounding."""
    k = 6
    model = _dense_model(L.ReLU(max_value=M, name="act"))
    x = np.random.default_rng(1).uniform(0, 1, (32, 6)).astype(np.float32)
    net, out = _predict(FewSpike(k=k, norm_data=x), model, x, tmp_path)
    hidden = net.population("act")
    full = 1.0 - 2.0 ** -k
    assert hidden.neuron.alpha == pytest.approx(M / full)
    alpha_in = net.inputs[0].neuron.alpha
    x_hat = np.minimum(np.floor(x / (alpha_in * 2.0 ** -k)), 2 ** k - 1) * alpha_in * 2.0 ** -k
    a = _pre_activation(model, x_hat)
    step = M / (2 ** k - 1)
    code = np.minimum(np.floor(np.maximum(a, 0) / step), 2 ** k - 1) * step
    assert (a > M).mean() > 0.2 and ((a > 0) & (a < M)).mean() > 0.2  # both regimes
    w2, b2 = model.get_layer("out").get_weights()
    np.testing.assert_allclose(out, code @ w2 + b2, rtol=1e-5, atol=1e-4)


def test_data_norm_threshold_balancing_reproduces_the_clip(tmp_path):
    """Analog input, the clipped layer read out as spike counts: threshold m, reset by
    subtraction. The current ``W x`` arrives from step 1 (analog input is sent at step 0), the
    bias from step 0: every unit with ``a >= m`` fires at every step from 1, T - 1 spikes, the
    others as the IF reference simulated here."""
    model = _dense_model(L.Activation("relu6", name="act"), out=False)
    x = np.random.default_rng(2).uniform(0, 1, (16, 6)).astype(np.float32)
    converter = DataNorm(T, norm_data=x[:2], input_type=InputType.ANALOG)  # data never reach m
    net, counts = _predict(converter, model, x, tmp_path)
    assert net.population("act").neuron.v_thresh == pytest.approx(M)
    w, b = (v.astype(np.float32) for v in model.get_layer("hidden").get_weights())
    current = x @ w
    v, expected = np.zeros_like(current), np.zeros_like(current)
    for t in range(T):
        v += b + (current if t >= 1 else 0.0)
        spike = v >= M
        v[spike] -= M
        expected += spike
    a = current + b
    saturated, below = a >= M * (1 + 1e-4), a <= 0
    assert saturated.mean() > 0.2 and ((a > 0) & (a < M)).mean() > 0.2
    np.testing.assert_array_equal(counts[saturated], T - 1)  # the clip, exactly
    np.testing.assert_array_equal(counts[below], 0)
    assert np.abs(counts - expected).max() <= 1  # float32 sums in another order


# --------------------------------------------------------------------------------------
# ONNX: Clip(0, 6) with min/max as Constant nodes, initializers or attributes
# --------------------------------------------------------------------------------------
def _onnx_clip_model(style: str, low=0.0, high=M):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.uniform(-2.5, 5.5, (16, 6)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.uniform(-3, 3, 16).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.uniform(-1, 1, (3, 16)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.uniform(-1, 1, 3).astype(np.float32), "b2")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1)]
    if style == "constant_nodes":  # torch.onnx.export of nn.ReLU6 (torch 2.x)
        for name, value in (("lo", low), ("hi", high)):
            nodes.append(helper.make_node("Constant", [], [name], name=f"c_{name}",
                                          value=numpy_helper.from_array(np.float32(value))))
        nodes.append(helper.make_node("Clip", ["h", "lo", "hi"], ["r"], name="relu6"))
        opset = 17
    elif style == "initializers":
        inits += [numpy_helper.from_array(np.float32(low), "lo"),
                  numpy_helper.from_array(np.float32(high), "hi")]
        nodes.append(helper.make_node("Clip", ["h", "lo", "hi"], ["r"], name="relu6"))
        opset = 13
    else:  # opsets before 11: attributes
        nodes.append(helper.make_node("Clip", ["h"], ["r"], name="relu6", min=low, max=high))
        opset = 10
    nodes.append(helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2", transB=1))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("style", ["constant_nodes", "initializers", "attributes"])
def test_onnx_clip_converts_and_few_spike_is_exact(style, tmp_path):
    """onnxruntime's clip is active on these inputs; the SNN's output is exactly the ONNX
    weights applied to the K-bit codes of the input and of the clipped layer."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _onnx_clip_model(style)
    x = np.random.default_rng(4).uniform(0, 1, (16, 6)).astype(np.float32)
    hidden = ort.InferenceSession(_with_output(model, "r").SerializeToString(),
                                  providers=["CPUExecutionProvider"]).run(["r"], {"x": x})[0]
    assert (hidden == M).mean() > 0.2 and ((hidden > 0) & (hidden < M)).mean() > 0.2
    k = 8
    net, out = _predict(FewSpike(k=k, norm_data=x), model, x, tmp_path)
    assert net.population("relu6").neuron.alpha == pytest.approx(M / (1 - 2.0 ** -k))
    w1, b1, w2, b2 = (_onnx_weight(model, n).astype(np.float64) for n in ("w1", "b1", "w2", "b2"))
    alpha_in = net.inputs[0].neuron.alpha
    x_hat = np.minimum(np.floor(x / (alpha_in * 2.0 ** -k)), 2 ** k - 1) * alpha_in * 2.0 ** -k
    step = M / (2 ** k - 1)
    code = np.minimum(np.floor(np.maximum(x_hat @ w1.T + b1, 0) / step), 2 ** k - 1) * step
    np.testing.assert_allclose(out, code @ w2.T + b2, rtol=1e-5, atol=1e-4)


def _with_output(model, name: str):
    from onnx import TensorProto, helper
    copy = type(model)()
    copy.CopyFrom(model)
    copy.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 16]))
    return copy


def _onnx_weight(model, name: str) -> np.ndarray:
    from onnx import numpy_helper
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


@pytest.mark.parametrize("low, high, message", [
    (-1.0, 1.0, "Clip(min=-1, max=1) is not supported: a spiking neuron's output starts at 0; "
                "clip from 0 (Relu, or Clip(0, m) as ReLU6 exports)"),
    (0.5, 6.0, "Clip(min=0.5, max=6) is not supported"),
])
def test_onnx_clip_not_from_zero_is_refused_with_one_line(low, high, message):
    pytest.importorskip("onnx")
    with pytest.raises(ConversionError) as err:
        FewSpike(k=8).convert(_onnx_clip_model("constant_nodes", low, high))
    assert str(err.value).startswith("node 'relu6' (Clip): ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_few_spike_keeps_a_clip_beside_a_wider_branch(tmp_path):
    """A ReLU6 branch and a ReLU branch reaching 20 feed one Dense: each keeps its own α (the
    clip's m / (1 - 2^-K), the other 20 / (1 - 2^-K)), and the readout is exact."""
    k = 8
    inp = keras.Input((4,))
    clipped = L.ReLU(max_value=M, name="six")(L.Dense(3, name="a")(inp))
    wide = L.ReLU(name="wide")(L.Dense(3, name="b")(inp))
    model = keras.Model(inp, L.Dense(2, name="out")(L.Add()([clipped, wide])))
    rng = np.random.default_rng(3)
    model.get_layer("a").set_weights([rng.uniform(0, 4, (4, 3)), np.zeros(3)])
    model.get_layer("b").set_weights([np.full((4, 3), 5.0, np.float32), np.zeros(3, np.float32)])
    x = rng.uniform(0, 1, (16, 4)).astype(np.float32)
    x[0] = 1.0  # the wide branch's maximum: 20
    net, out = _predict(FewSpike(k=k, norm_data=x), model, x, tmp_path)
    full = 1.0 - 2.0 ** -k
    assert net.population("six").neuron.alpha == pytest.approx(M / full)
    assert net.population("wide").neuron.alpha == pytest.approx(20.0 / full, rel=1e-6)
    alpha_in = net.inputs[0].neuron.alpha
    x_hat = np.minimum(np.floor(x / (alpha_in * 2.0 ** -k)), 2 ** k - 1) * alpha_in * 2.0 ** -k

    def code(a, alpha):
        step = alpha * 2.0 ** -k
        return np.minimum(np.floor(np.maximum(a, 0) / step), 2 ** k - 1) * step

    codes = sum(code(x_hat @ model.get_layer(name).get_weights()[0].astype(np.float64),
                     net.population(relu).neuron.alpha)
                for name, relu in (("a", "six"), ("b", "wide")))
    w2, b2 = model.get_layer("out").get_weights()
    np.testing.assert_allclose(out, codes @ w2 + b2, rtol=1e-5, atol=1e-4)
