"""Few-spike codes rounded to the nearest step (``rounding="nearest"``) and α with headroom,
distsnn's options: encoding, re-encoding and spikes against exact numpy codes, the converter
passing them on, the error over a deep network against floor's, saturation against headroom.

Contract: unsigned x_hat = min(round(max(x, 0) / S) S, alpha (1 - 2^-K)), S = alpha 2^-K;
signed (even K) x_hat = sign(x) min(round(|x| / S), 2^(K/2) - 1) S, S = alpha 2^-(K/2); halves
round away from zero. The readout stays the complete pre-activation W x_hat + bias.
"""
from __future__ import annotations

import numpy as np
import pytest

from distsnn.compilers import FewSpikeCompiler
from distsnn.connectivity import Dense, OneToOne
from distsnn.convert import ConversionError, FewSpike
from distsnn.netfile import load_network, save_network
from distsnn.network import Network
from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput
from helpers.few_spike import code_spikes, quantise_signed, quantise_unsigned, values_and_edges

keras = pytest.importorskip("keras")


def _predict(net, x, build_dir, k):
    compiled = FewSpikeCompiler(k=k, rng_seed=1, build_dir=str(build_dir)).compile(net)
    with compiled:
        preds, _ = compiled.predict(x, net.outputs, callbacks=[])
        return preds, compiled.last_report


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_input_codes_round_to_the_nearest_step(build_dir, signed):
    k, alpha = (10, 4.0) if signed else (8, 5.0)
    scale = alpha * 2.0 ** -(k // 2 if signed else k)
    rng = np.random.default_rng(21)
    extra = np.array([0.0, 0.49 * scale, 0.51 * scale, -0.51 * scale, 3.5 * scale,
                      alpha, 2 * alpha, -2 * alpha], np.float32)
    x = np.stack([rng.permutation(values_and_edges(rng, 160, -alpha if signed else -1.0,
                                                   1.2 * alpha, scale, extra))
                  for _ in range(3)])
    net = Network()
    inp = net.add_population("in", 160, FewSpikeReluInput(k=k, alpha=alpha, signed_input=signed,
                                                          rounding="nearest"))
    out = net.add_population("out", 160, FewSpikeRelu(k=k, alpha=alpha, readout="var"))
    net.connect(inp, out, OneToOne(1.0))
    net.outputs = [out]
    preds, report = _predict(net, {inp: x}, build_dir, k)
    quantise = quantise_signed if signed else quantise_unsigned
    expected = quantise(x, k, alpha, "nearest")
    np.testing.assert_allclose(preds[out], expected, rtol=0, atol=1e-6)
    top = scale * (2 ** (k // 2) - 1) if signed else alpha * (1 - 2.0 ** -k)
    inside = (np.abs(x) < top) & ((x >= 0) | signed)
    assert np.abs(preds[out][inside] - x[inside]).max() <= scale / 2 + 1e-6
    assert not np.allclose(expected, quantise(x, k, alpha)), "rounding must differ from floor"
    assert report.spikes["populations"]["in"]["spikes"] == int(code_spikes(expected, scale).sum())


def test_relu_layers_round_their_codes_and_read_out_the_exact_pre_activation(build_dir):
    """input -> Dense(W1) -> FewSpikeRelu (bias b1) -> Dense(W2) + b2; every code rounded."""
    k, a_in, a_hid, a_out = 6, 4.0, 8.0, 8.0
    rng = np.random.default_rng(5)
    w1, w2 = (rng.uniform(-1, 1, shape).astype(np.float32) for shape in ((6, 5), (5, 3)))
    b1 = rng.uniform(-0.5, 0.5, 5).astype(np.float32)
    b2 = np.array([0.25, -0.5, 1.0], np.float32)
    x = rng.uniform(-0.5, 4.5, (6, 6)).astype(np.float32)
    net = Network()
    inp = net.add_population("in", 6, FewSpikeReluInput(k=k, alpha=a_in, rounding="nearest"))
    hid = net.add_population("hid", 5, FewSpikeRelu(k=k, alpha=a_hid, bias=b1, readout="var",
                                                    rounding="nearest"))
    out = net.add_population("out", 3, FewSpikeRelu(k=k, alpha=a_out, bias=b2, readout="var",
                                                    rounding="nearest"))
    net.connect(inp, hid, Dense(w1))
    net.connect(hid, out, Dense(w2))
    net.outputs = [hid, out]
    preds, report = _predict(net, {inp: x}, build_dir, k)
    pre_hid = quantise_unsigned(x, k, a_in, "nearest") @ w1.astype(np.float64) + b1
    np.testing.assert_allclose(preds[hid], pre_hid, atol=1e-5)
    hq = quantise_unsigned(pre_hid, k, a_hid, "nearest")
    np.testing.assert_allclose(preds[out], hq @ w2.astype(np.float64) + b2, atol=1e-5)
    assert report.spikes["populations"]["hid"]["spikes"] == int(
        code_spikes(hq, a_hid * 2.0 ** -k).sum())


def _deep_chain(depth: int = 8, width: int = 24, seed: int = 3):
    """Input(16) -> ``depth`` Dense+ReLU layers -> Dense(5), He-scaled random weights."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((16,))
    h, fan_in = inp, 16
    for i in range(depth):
        layer = keras.layers.Dense(width, activation="relu", name=f"h{i}")
        h = layer(h)
        layer.set_weights([rng.normal(0, np.sqrt(2 / fan_in), (fan_in, width)),
                           rng.uniform(-0.1, 0.1, width)])
        fan_in = width
    out = keras.layers.Dense(5, name="out")
    model = keras.Model(inp, out(h))
    out.set_weights([rng.normal(0, np.sqrt(1 / width), (width, 5)), np.zeros(5)])
    return model


def test_rounding_to_nearest_halves_the_error_of_a_deep_network(build_dir):
    """Floor's errors all point down and add up layer after layer; the nearest step's do not."""
    model = _deep_chain()
    x = np.random.default_rng(4).uniform(0, 1, (64, 16)).astype(np.float32)
    ann = model.predict(x, verbose=0).astype(np.float64)
    errors = {}
    for rounding in ("floor", "nearest"):
        net, inputs, outputs, _ = FewSpike(k=6, norm_data=x, rounding=rounding).convert(model)
        assert {p.neuron.rounding for p in net.populations} == {rounding}
        preds, _ = _predict(net, {inputs[0]: x}, build_dir, 6)
        errors[rounding] = np.abs(preds[outputs[0]] - ann).mean()
    assert errors["nearest"] < 0.5 * errors["floor"], errors


def test_headroom_codes_activations_beyond_the_normalisation_data(build_dir):
    """Hidden α = headroom x the data's maximum / (1 - 2^-K), the input's unchanged. Inputs
    brighter than the normalisation data's (1.8 x, capped at its maximum 1) drive the hidden
    layers past the data's maxima: their codes saturate without headroom, not with 2."""
    model = _deep_chain(depth=3)
    norm = np.random.default_rng(4).uniform(0, 1, (64, 16)).astype(np.float32)
    x = np.minimum(1.8 * norm[:16], 1.0)
    ann = model.predict(x, verbose=0).astype(np.float64)
    errors, alphas = {}, {}
    for headroom in (1.0, 2.0):
        net, inputs, outputs, _ = FewSpike(k=10, norm_data=norm, rounding="nearest",
                                           headroom=headroom).convert(model)
        alphas[headroom] = {p.name: p.neuron.alpha for p in net.populations}
        preds, _ = _predict(net, {inputs[0]: x}, build_dir, 10)
        errors[headroom] = np.abs(preds[outputs[0]] - ann).max()
    name = net.inputs[0].name
    assert alphas[2.0][name] == alphas[1.0][name]
    assert all(alphas[2.0][p] == pytest.approx(2 * alphas[1.0][p]) for p in ("h0", "h1", "h2"))
    assert errors[2.0] < 0.01 * np.abs(ann).max() and errors[2.0] < 0.2 * errors[1.0], errors
    with pytest.raises(ConversionError, match="headroom must be at least 1"):
        FewSpike(headroom=0.5)


def test_rounding_survives_the_network_file_and_is_checked(tmp_path):
    net = Network()
    inp = net.add_population("in", 2, FewSpikeReluInput(k=4, alpha=1.0, rounding="nearest"))
    out = net.add_population("out", 2, FewSpikeRelu(k=4, alpha=1.0, readout="var",
                                                    rounding="nearest"))
    net.connect(inp, out, OneToOne(1.0))
    save_network(net, tmp_path / "net.h5")
    assert {p.neuron.rounding for p in load_network(tmp_path / "net.h5").populations} == {
        "nearest"}
    with pytest.raises(ValueError, match="FewSpikeRelu: rounding must be one of floor, "
                                         "nearest, not 'up'"):
        FewSpikeRelu(rounding="up")
    with pytest.raises(ConversionError, match="few-spike rounding must be one of floor, "
                                              "nearest, not 'up'"):
        FewSpike(rounding="up")
