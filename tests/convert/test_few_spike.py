"""Few-spike (Stöckl & Maass 2021) networks: encoding, re-encoding, readout, pipelining,
delay balancing and spike statistics, against exact quantisation formulas.

distsnn's contract (differs from mlGeNN deliberately, spec §9.2/§9.3/§15.17-18):
- unsigned input: x_hat = min(floor(x / S) S, alpha (1 - 2^-K)), S = alpha 2^-K; x <= 0 -> 0;
- signed input (even K): S = alpha 2^-(K/2), truncation toward zero (an exact multiple is kept),
  clipped at +-S (2^(K/2) - 1);
- FewSpikeRelu's readout is the complete pre-activation W x_hat + bias (no missing LSB).
"""
from __future__ import annotations

import numpy as np
import pytest

from distsnn.compilers import FewSpikeCompiler, InferenceCompiler
from distsnn.connectivity import Dense, OneToOne
from distsnn.network import Network
from distsnn.neurons import BinarySpikeInput, FewSpikeRelu, FewSpikeReluInput, IntegrateFire
from helpers.few_spike import code_spikes, quantise_signed, quantise_unsigned, values_and_edges


def _run(net, x, build_dir, k, outputs=None, metrics=None, y=None):
    compiled = FewSpikeCompiler(k=k, rng_seed=1, build_dir=str(build_dir)).compile(net)
    with compiled:
        preds, _ = compiled.predict(x, outputs or net.outputs, callbacks=[])
        report = compiled.last_report
        evaluated = None
        if metrics is not None:
            evaluated, _ = compiled.evaluate(x, y, metrics=metrics, callbacks=[])
    return preds, report, evaluated


# --------------------------------------------------------------------------------------
# input encoding, read back through one FewSpikeRelu with OneToOne(1.0)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def unsigned_run(tmp_path_factory):
    k, alpha, n, examples = 8, 5.0, 200, 4
    scale = alpha * 2.0 ** -k
    rng = np.random.default_rng(11)
    extra = np.array([0.0, -1.0, 4.98, 4.99, 5.0, 6.0, 100.0, scale, 2 * scale, 0.5 * scale],
                     np.float32)
    x = np.stack([rng.permutation(values_and_edges(rng, n, -1.0, 6.5, scale, extra))
                  for _ in range(examples)])
    net = Network()
    inp = net.add_population("in", n, FewSpikeReluInput(k=k, alpha=alpha))
    out = net.add_population("out", n, FewSpikeRelu(k=k, alpha=alpha, readout="var"))
    net.connect(inp, out, OneToOne(1.0))
    net.outputs = [out]
    build_dir = tmp_path_factory.getbasetemp() / "genn-build"
    preds, report, _ = _run(net, {inp: x}, build_dir, k)
    return dict(k=k, alpha=alpha, scale=scale, x=x, pred=preds[out], report=report)


def test_unsigned_encoding_is_floor_quantisation(unsigned_run):
    r = unsigned_run
    expected = quantise_unsigned(r["x"], r["k"], r["alpha"])
    np.testing.assert_allclose(r["pred"], expected, rtol=0, atol=1e-6)


def test_unsigned_error_below_one_lsb_and_never_above_the_input(unsigned_run):
    r = unsigned_run
    x, pred, scale = r["x"].astype(np.float64), r["pred"], r["scale"]
    in_range = (x >= 0) & (x < r["alpha"] * (1 - 2.0 ** -r["k"]))
    err = x[in_range] - pred[in_range]
    assert err.min() >= -1e-6, "the decoded value must never exceed the input"
    assert err.max() < scale + 1e-6, "at most one LSB of error"
    assert np.all(pred[x <= 0] == 0)


def test_unsigned_saturates_at_the_documented_maximum(unsigned_run):
    r = unsigned_run
    top = r["alpha"] * (1 - 2.0 ** -r["k"])
    high = r["x"] >= top
    assert high.sum() >= 4
    np.testing.assert_allclose(r["pred"][high], top, atol=1e-6)
    assert r["pred"].max() <= top + 1e-6


def test_unsigned_examples_are_not_mixed(unsigned_run):
    """Pipelined windows: each example's readout is its own quantised value."""
    r = unsigned_run
    q = quantise_unsigned(r["x"], r["k"], r["alpha"])
    for i in range(len(q)):
        for j in range(len(q)):
            close = np.allclose(r["pred"][i], q[j], atol=1e-6)
            assert close == (i == j), (i, j)


def test_unsigned_spike_statistics_count_code_bits(unsigned_run):
    """Input spikes are the set bits of each code; only windows with real examples count."""
    r = unsigned_run
    q = quantise_unsigned(r["x"], r["k"], r["alpha"])
    pops = r["report"].spikes["populations"]
    assert pops["in"]["spikes"] == int(code_spikes(q, r["scale"]).sum())
    # the output re-encodes max(0, x_hat) with the same alpha: the same code
    assert pops["out"]["spikes"] == int(code_spikes(q, r["scale"]).sum())
    assert r["report"].spikes["examples"] == len(q)
    assert r["report"].spikes["timesteps_per_example"] == r["k"]
    # synaptic operations: OneToOne fan-out 1 from the input; the output has none
    assert r["report"].spikes["synaptic_operations"] == pops["in"]["spikes"]


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory):
    k, alpha, n, examples = 10, 4.0, 200, 3
    scale = alpha * 2.0 ** -(k // 2)   # 0.125
    rng = np.random.default_rng(12)
    extra = np.array([0.0, 1.0, -1.0, 3.875, -3.875, 3.9, -3.9, 10.0, -10.0, 0.1, -0.1, -scale],
                     np.float32)
    x = np.stack([rng.permutation(values_and_edges(rng, n, -5.0, 5.0, scale, extra))
                  for _ in range(examples)])
    net = Network()
    inp = net.add_population("in", n, FewSpikeReluInput(k=k, alpha=alpha, signed_input=True))
    out = net.add_population("out", n, FewSpikeRelu(k=k, alpha=alpha, readout="var"))
    net.connect(inp, out, OneToOne(1.0))
    net.outputs = [out]
    build_dir = tmp_path_factory.getbasetemp() / "genn-build"
    preds, report, _ = _run(net, {inp: x}, build_dir, k)
    return dict(k=k, alpha=alpha, scale=scale, x=x, pred=preds[out], report=report)


def test_signed_encoding_truncates_toward_zero(signed_run):
    r = signed_run
    expected = quantise_signed(r["x"], r["k"], r["alpha"])
    np.testing.assert_allclose(r["pred"], expected, rtol=0, atol=1e-6)
    # mlGeNN loses one LSB on exact negative multiples (-1.0 -> -0.875); distsnn must not
    x = r["x"]
    for value in (1.0, -1.0, -r["scale"]):
        assert np.all(r["pred"][x == value] == value)


def test_signed_error_bounds_and_saturation(signed_run):
    r = signed_run
    x, pred, scale = r["x"].astype(np.float64), r["pred"], r["scale"]
    top = scale * (2 ** (r["k"] // 2) - 1)
    in_range = np.abs(x) < top
    assert np.all(np.abs(pred[in_range]) <= np.abs(x[in_range]) + 1e-6)
    assert np.all(np.abs(x[in_range] - pred[in_range]) < scale + 1e-6)
    assert np.all(np.sign(pred[in_range & (np.abs(x) >= scale)]) ==
                  np.sign(x[in_range & (np.abs(x) >= scale)]))
    np.testing.assert_allclose(pred[x >= top], top, atol=1e-6)
    np.testing.assert_allclose(pred[x <= -top], -top, atol=1e-6)
    assert (x >= top).sum() >= 2 and (x <= -top).sum() >= 2


def test_signed_spike_statistics(signed_run):
    r = signed_run
    q = quantise_signed(r["x"], r["k"], r["alpha"])
    pops = r["report"].spikes["populations"]
    assert pops["in"]["spikes"] == int(code_spikes(q, r["scale"]).sum())
    # the relu re-encodes max(0, q) with its own (unsigned) scale alpha 2^-K
    relu = quantise_unsigned(np.maximum(q, 0), r["k"], r["alpha"])
    assert pops["out"]["spikes"] == int(code_spikes(relu, r["alpha"] * 2.0 ** -r["k"]).sum())


# --------------------------------------------------------------------------------------
# re-encoding (ReLU), weights, bias and depth
# --------------------------------------------------------------------------------------
def test_relu_weights_and_bias_through_two_layers(build_dir):
    """input -> Dense(W1) -> hidden FewSpikeRelu (bias b1) -> Dense(W2) + b2 -> readout.

    The readout of the output is W2 Q_h(max(0, W1 x_hat + b1)) + b2, each example its own.
    """
    k, a_in, a_hid, a_out = 8, 4.0, 8.0, 8.0
    rng = np.random.default_rng(5)
    w1 = rng.uniform(-1, 1, (6, 5)).astype(np.float32)
    w2 = rng.uniform(-1, 1, (5, 3)).astype(np.float32)
    b1 = rng.uniform(-0.5, 0.5, 5).astype(np.float32)
    b2 = np.array([0.25, -0.5, 1.0], np.float32)
    x = rng.uniform(-0.5, 4.5, (6, 6)).astype(np.float32)
    net = Network()
    inp = net.add_population("in", 6, FewSpikeReluInput(k=k, alpha=a_in))
    hid = net.add_population("hid", 5, FewSpikeRelu(k=k, alpha=a_hid, bias=b1, readout="var"))
    out = net.add_population("out", 3, FewSpikeRelu(k=k, alpha=a_out, bias=b2, readout="var"))
    net.connect(inp, hid, Dense(w1))
    net.connect(hid, out, Dense(w2))
    net.outputs = [hid, out]
    preds, report, _ = _run(net, {inp: x}, build_dir, k)
    xq = quantise_unsigned(x, k, a_in)
    pre_hid = xq @ w1.astype(np.float64) + b1
    np.testing.assert_allclose(preds[hid], pre_hid, atol=1e-5)
    assert np.any(pre_hid < 0), "the ReLU must be exercised"
    hq = quantise_unsigned(pre_hid, k, a_hid)
    np.testing.assert_allclose(preds[out], hq @ w2.astype(np.float64) + b2, atol=1e-5)
    # pipelining over 6 examples at depth 2 took 6 + 2 windows, but only real ones count
    assert report.spikes["populations"]["hid"]["spikes"] == int(
        code_spikes(hq, a_hid * 2.0 ** -k).sum())


def test_delay_balancing_three_branches(build_dir):
    """spec §13.2 test_delay_balancing: branches of 3, 2 and 1 hidden layers meet at the
    output with Dense(1/3) each; x = 0..4 (5 examples) comes back within one LSB."""
    k, alpha = 8, 5.0
    net = Network()
    inp = net.add_population("in", 1, FewSpikeReluInput(k=k, alpha=alpha))
    out = net.add_population("out", 1, FewSpikeRelu(k=k, alpha=alpha, readout="var"))
    one = np.ones((1, 1), np.float32)
    for branch, length in enumerate((3, 2, 1)):
        prev = inp
        for layer in range(length):
            hidden = net.add_population(f"b{branch}_h{layer}", 1, FewSpikeRelu(k=k, alpha=alpha))
            net.connect(prev, hidden, Dense(one.copy()))
            prev = hidden
        net.connect(prev, out, Dense(one / 3))
    net.outputs = [out]
    x = np.arange(5, dtype=np.float32)[:, None]
    compiled = FewSpikeCompiler(k=k, rng_seed=1, build_dir=str(build_dir)).compile(net)
    with compiled:
        preds, _ = compiled.predict({inp: x}, [out], callbacks=[])
        delays = {name: sg.axonal_delay_steps
                  for name, sg in compiled.genn_model.synapse_populations.items()}
        metrics, _ = compiled.evaluate({inp: x}, {out: x}, metrics="mean_square_error",
                                       callbacks=[])
    scale = alpha * 2.0 ** -k
    np.testing.assert_allclose(preds[out][:, 0], x[:, 0], atol=scale)
    np.testing.assert_allclose(preds[out][:, 0], quantise_unsigned(x[:, 0], k, alpha),
                               atol=1e-5)
    assert metrics[out].result < scale ** 2
    # skip connections are balanced with whole windows: 0, K and 2K steps into the output
    into_out = sorted(delays[c.name] for c in net.incoming(out))
    assert into_out == [0, k, 2 * k]
    assert all(delays[c.name] == 0 for c in net.connections if c.target is not out)


@pytest.mark.parametrize("delay", [1, 4])
def test_explicit_connection_delay_is_rejected_or_harmless(build_dir, delay):
    """A connectivity delay in a few-spike network must not silently corrupt the readout.

    The schedule knows only the topological depth, so a user delay either has to be refused
    (mlGeNN asserts every delay is 0, spec §9.4) or be accounted for; what must not happen
    is a shifted code (delay 1: bits land on the wrong binary weights) or a readout that
    lags one example behind (delay K).
    """
    k, alpha = 4, 4.0
    net = Network()
    inp = net.add_population("in", 3, FewSpikeReluInput(k=k, alpha=alpha))
    out = net.add_population("out", 3, FewSpikeRelu(k=k, alpha=alpha, readout="var"))
    net.connect(inp, out, OneToOne(1.0, delay=delay))
    net.outputs = [out]
    x = np.array([[0.5, 1.0, 3.0], [2.0, 0.25, 0.0], [1.5, 1.5, 1.5]], np.float32)
    try:
        preds, _, _ = _run(net, {inp: x}, build_dir, k)
    except ValueError as err:
        assert "delay" in str(err)
        return
    np.testing.assert_allclose(preds[out], quantise_unsigned(x, k, alpha), atol=1e-6,
                               err_msg=f"few-spike readout with a connection delay of {delay}")


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def _enter(compiled):
    with compiled:
        pass


def test_signed_input_needs_even_k(build_dir):
    net = Network()
    inp = net.add_population("in", 2, FewSpikeReluInput(k=7, alpha=4.0, signed_input=True))
    out = net.add_population("out", 2, FewSpikeRelu(k=7, alpha=4.0, readout="var"))
    net.connect(inp, out, OneToOne(1.0))
    net.outputs = [out]
    with pytest.raises(ValueError, match="even K"):
        _enter(FewSpikeCompiler(k=7, rng_seed=1, build_dir=str(build_dir)).compile(net))


def test_mixed_neuron_kinds_are_rejected(build_dir):
    net = Network()
    inp = net.add_population("in", 2, BinarySpikeInput())
    out = net.add_population("out", 2, FewSpikeRelu(k=4, alpha=4.0, readout="var"))
    net.connect(inp, out, OneToOne(1.0))
    net.outputs = [out]
    with pytest.raises(ValueError, match="few-spike"):
        _enter(FewSpikeCompiler(k=4, rng_seed=1, build_dir=str(build_dir)).compile(net))
    # few-spike neurons in the rate schedule
    net2 = Network()
    inp2 = net2.add_population("in", 2, FewSpikeReluInput(k=4, alpha=4.0))
    out2 = net2.add_population("out", 2, IntegrateFire(readout="var"))
    net2.connect(inp2, out2, OneToOne(1.0))
    net2.outputs = [out2]
    with pytest.raises(ValueError, match="FewSpikeCompiler"):
        _enter(InferenceCompiler(evaluate_timesteps=4, rng_seed=1,
                                 build_dir=str(build_dir)).compile(net2))


def test_sources_with_different_alpha_are_each_decoded_exactly(build_dir):
    """Each source keeps its own code: out = 0.5 q_a(x_a) + 3 q_b(x_b), alphas 4 and 0.5
    (distsnn scales a source's weights by its alpha over the largest; mlGeNN refuses)."""
    k = 6
    net = Network()
    a = net.add_population("a", 8, FewSpikeReluInput(k=k, alpha=4.0))
    b = net.add_population("b", 8, FewSpikeReluInput(k=k, alpha=0.5))
    out = net.add_population("out", 8, FewSpikeRelu(k=k, alpha=4.0, readout="var"))
    net.connect(a, out, OneToOne(0.5))
    net.connect(b, out, OneToOne(3.0))
    net.outputs = [out]
    rng = np.random.default_rng(9)
    xa, xb = rng.uniform(0, 4, (5, 8)), rng.uniform(0, 0.5, (5, 8))
    preds, _, _ = _run(net, {a: xa, b: xb}, build_dir, k)
    expected = 0.5 * quantise_unsigned(xa, k, 4.0) + 3.0 * quantise_unsigned(xb, k, 0.5)
    np.testing.assert_allclose(preds[out], expected, rtol=0, atol=1e-5)
    lsb_a, lsb_b = 4.0 * 2.0 ** -k, 0.5 * 2.0 ** -k  # each decoded on its own, finer grid
    assert np.abs(expected - 0.5 * xa - 3.0 * xb).max() < 0.5 * lsb_a + 3.0 * lsb_b


def test_sources_with_different_k_or_signedness_are_rejected(build_dir):
    mixed = Network()
    a = mixed.add_population("a", 2, FewSpikeReluInput(k=4, alpha=4.0, signed_input=True))
    b = mixed.add_population("b", 2, FewSpikeReluInput(k=4, alpha=2.0))
    out = mixed.add_population("out", 2, FewSpikeRelu(k=4, alpha=4.0, readout="var"))
    mixed.connect(a, out, OneToOne(1.0))
    mixed.connect(b, out, OneToOne(1.0))
    mixed.outputs = [out]
    with pytest.raises(ValueError, match="all be signed or all unsigned"):
        _enter(FewSpikeCompiler(k=4, rng_seed=1, build_dir=str(build_dir)).compile(mixed))
    net2 = Network()
    a2 = net2.add_population("a", 2, FewSpikeReluInput(k=6, alpha=4.0))
    out2 = net2.add_population("out", 2, FewSpikeRelu(k=4, alpha=4.0, readout="var"))
    net2.connect(a2, out2, OneToOne(1.0))
    net2.outputs = [out2]
    with pytest.raises(ValueError, match="K=4"):
        _enter(FewSpikeCompiler(k=4, rng_seed=1, build_dir=str(build_dir)).compile(net2))
