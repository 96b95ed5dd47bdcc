"""Neuron dynamics on GeNN's CPU backend: integrate-and-fire, inputs (binary, Poisson,
integrate-and-fire; unsigned and signed) and the readouts.

Timing used throughout (spec §2.3): an input spikes from step 0, one hop adds one step of
latency, so an output of a single hop integrates its input during steps 1 .. T-1.
"""
from __future__ import annotations

from math import ceil, exp, floor

import numpy as np
import pytest

from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense, OneToOne
from distsnn.network import Network
from distsnn.neurons import BinarySpikeInput, IntegrateFire, IntegrateFireInput, PoissonInput

NEVER = 1e30




def emulate_if(x: float, theta: float, steps: int, reset: str) -> int:
    """Spike count of a non-leaky IF neuron under constant drive, in float32 like GeNN."""
    v, x, theta = np.float32(0.0), np.float32(x), np.float32(theta)
    spikes = 0
    for _ in range(steps):
        v = np.float32(v + x)
        if v >= theta:
            spikes += 1
            v = np.float32(0.0) if reset == "zero" else np.float32(v - theta)
    return spikes


def _predict(net, x, build_dir, timesteps, **kwargs):
    compiled = InferenceCompiler(evaluate_timesteps=timesteps, rng_seed=kwargs.pop("seed", 1),
                                 build_dir=str(build_dir), **kwargs).compile(net)
    with compiled:
        preds, _ = compiled.predict(x, net.outputs, callbacks=[])
        return preds, compiled.last_report


# --------------------------------------------------------------------------------------
# integrate-and-fire under constant drive, both reset modes
# --------------------------------------------------------------------------------------
SPEC_X = [0.3, 0.5, 0.7, 0.9, 1.0]                  # spec §4.1 / §16
SPEC_ZERO_RESET_COUNTS = [25, 50, 50, 50, 100]       # per 100 steps, mlGeNN-verified
EXTRA_X = [0.1, 0.25, 0.45, 0.15, 0.2]
XS = np.array(SPEC_X + EXTRA_X, np.float32)
THRESHOLDS = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 7.0], np.float32)
STEPS = 100


@pytest.fixture(scope="module")
def drive_runs(tmp_path_factory):
    build_dir = tmp_path_factory.getbasetemp() / "genn-build"
    cache: dict = {}

    def get(reset: str):
        if reset not in cache:
            cache[reset] = _constant_drive(reset, build_dir)
        return cache[reset]
    return get


@pytest.fixture(params=["zero", "subtract"])
def constant_drive(request, drive_runs):
    return drive_runs(request.param)


def _constant_drive(reset: str, build_dir):
    """One run with T = STEPS + 1, so a one-hop output integrates exactly STEPS inputs:

    - ``syn``: BinarySpikeInput -> OneToOne(x) -> IntegrateFire (spike_count);
    - ``bias``: IntegrateFire(bias=x) with a zero-weight input (integrates from step 0,
      so STEPS + 1 steps);
    - ``ifin``: IntegrateFireInput(x) -> OneToOne(1) -> IF var readout, i.e. the number of
      input spikes emitted in steps 0 .. STEPS-1;
    - ``thresh``: per-neuron thresholds with drive 1.0.
    """
    n = len(XS)
    net = Network()
    bin_in = net.add_population("bin_in", n, BinarySpikeInput())
    if_in = net.add_population("if_in", n, IntegrateFireInput(reset=reset))
    bin_th = net.add_population("bin_th", len(THRESHOLDS), BinarySpikeInput())
    syn = net.add_population("syn", n, IntegrateFire(v_thresh=1.0, reset=reset,
                                                      readout="spike_count"))
    bias = net.add_population("bias", n, IntegrateFire(v_thresh=1.0, reset=reset, bias=XS.copy(),
                                                        readout="spike_count"))
    ifin = net.add_population("ifin", n, IntegrateFire(v_thresh=NEVER, readout="var"))
    thresh = net.add_population("thresh", len(THRESHOLDS),
                                IntegrateFire(v_thresh=THRESHOLDS.copy(), reset=reset,
                                              readout="spike_count"))
    net.connect(bin_in, syn, OneToOne(XS.copy()))
    net.connect(bin_in, bias, OneToOne(0.0))
    net.connect(if_in, ifin, OneToOne(1.0))
    net.connect(bin_th, thresh, OneToOne(1.0))
    net.outputs = [syn, bias, ifin, thresh]
    x = {bin_in: np.ones((2, n), np.float32), if_in: np.stack([XS, XS]),
         bin_th: np.ones((2, len(THRESHOLDS)), np.float32)}
    preds, report = _predict(net, x, build_dir, STEPS + 1)
    return reset, {p.name: preds[p] for p in net.outputs}, report, net


def test_spec_counts_for_reset_to_zero(drive_runs):
    _, preds, _, _ = drive_runs("zero")
    for name in ("syn", "ifin"):
        assert preds[name][0, :5].tolist() == SPEC_ZERO_RESET_COUNTS, name
        # one spike every ceil(1/x) steps; the residual is lost
        assert preds[name][0].tolist() == [floor(STEPS / ceil(1 / float(x))) for x in XS], name


def test_subtract_reset_keeps_the_residual(drive_runs):
    _, preds, _, _ = drive_runs("subtract")
    for name in ("syn", "ifin"):
        counts = preds[name][0]
        # floor(T x) up to float32 accumulation error (x = 0.7 gives 69, not 70)
        assert all(abs(c - floor(STEPS * float(x))) <= 1 for c, x in zip(counts, XS)), name
        assert counts[:5].tolist() == [30, 50, 69, 89, 100], name


def test_counts_equal_float32_emulation(constant_drive):
    reset, preds, _, _ = constant_drive
    expected = [emulate_if(x, 1.0, STEPS, reset) for x in XS]
    assert preds["syn"][0].tolist() == expected
    assert preds["ifin"][0].tolist() == expected
    # the bias integrates from step 0: one step more
    assert preds["bias"][0].tolist() == [emulate_if(x, 1.0, STEPS + 1, reset) for x in XS]


def test_per_neuron_thresholds(constant_drive):
    reset, preds, _, _ = constant_drive
    expected = [emulate_if(1.0, th, STEPS, reset) for th in THRESHOLDS]
    assert preds["thresh"][0].tolist() == expected
    assert expected[:5] == [100, 50, 33, 25, 20]


def test_every_example_restarts_from_rest(constant_drive):
    _, preds, report, _ = constant_drive
    for name, values in preds.items():
        np.testing.assert_array_equal(values[0], values[1], err_msg=name)
    assert report.examples == 2


def test_spike_report_matches_readouts(constant_drive):
    reset, preds, report, net = constant_drive
    pops = report.spikes["populations"]
    for name in ("syn", "bias", "thresh"):
        assert pops[name]["spikes"] == int(preds[name].sum()), name
        assert pops[name]["neurons"] == net.population(name).size
    # binary inputs spike every step of both examples
    assert pops["bin_in"]["spikes"] == len(XS) * (STEPS + 1) * 2
    # IF inputs: over T = STEPS + 1 steps per example
    assert pops["if_in"]["spikes"] == 2 * sum(emulate_if(x, 1.0, STEPS + 1, reset) for x in XS)
    assert pops["ifin"]["spikes"] == 0
    assert pops["syn"]["rate_per_timestep"] == pytest.approx(
        pops["syn"]["spikes"] / (len(XS) * 2 * (STEPS + 1)))


# --------------------------------------------------------------------------------------
# readouts and reset options
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def readout_net():
    w = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [-2.0, 1.0, 1.0], [0.125, 0.5, 3.0]],
                 np.float32)
    net = Network()
    inp = net.add_population("in", 4, BinarySpikeInput())
    var = net.add_population("var", 3, IntegrateFire(v_thresh=NEVER, readout="var"))
    avg = net.add_population("avg", 3, IntegrateFire(v_thresh=NEVER, readout="avg_var"))
    net.connect(inp, var, Dense(w))
    net.connect(inp, avg, Dense(w))
    net.outputs = [var, avg]
    x = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], np.float32)
    return net, inp, var, avg, w, x


def test_var_and_avg_var_readouts(readout_net, build_dir):
    net, inp, var, avg, w, x = readout_net
    T = 6
    preds, _ = _predict(net, {inp: x}, build_dir, T)
    wx = x.astype(np.float64) @ w
    # V after step n is n * Wx (the input arrives from step 1 on)
    np.testing.assert_allclose(preds[var], (T - 1) * wx, atol=1e-5)
    np.testing.assert_allclose(preds[avg], wx * (T - 1) / 2, atol=1e-5)


def test_no_variable_reset_accumulates_across_examples(readout_net, build_dir):
    """reset_vars_between_batches=False keeps V; spikes in flight are still dropped."""
    net, inp, var, avg, w, x = readout_net
    preds, _ = _predict(net, {inp: x}, build_dir, 2, reset_vars_between_batches=False)
    np.testing.assert_allclose(preds[var], np.cumsum(x.astype(np.float64) @ w, axis=0),
                               atol=1e-5)


def test_no_time_reset_gives_the_same_per_example_results(readout_net, build_dir):
    net, inp, var, avg, w, x = readout_net
    preds, _ = _predict(net, {inp: x}, build_dir, 2, reset_time_between_batches=False)
    np.testing.assert_allclose(preds[var], x.astype(np.float64) @ w, atol=1e-5)


def test_reset_mode_is_validated(build_dir):
    net = Network()
    inp = net.add_population("in", 2, BinarySpikeInput())
    out = net.add_population("out", 2, IntegrateFire(reset="halve", readout="var"))
    net.connect(inp, out, OneToOne(1.0))
    net.outputs = [out]
    compiled = InferenceCompiler(evaluate_timesteps=2, rng_seed=1,
                                 build_dir=str(build_dir)).compile(net)
    with pytest.raises(ValueError, match="reset"):
        with compiled:
            pass


# --------------------------------------------------------------------------------------
# spike sources
# --------------------------------------------------------------------------------------
def test_binary_input_ignores_magnitude_and_non_positive_values(build_dir):
    w = np.array([[1.0], [2.0], [4.0], [8.0]], np.float32)
    net = Network()
    inp = net.add_population("in", 4, BinarySpikeInput())
    out = net.add_population("out", 1, IntegrateFire(v_thresh=NEVER, readout="var"))
    net.connect(inp, out, Dense(w))
    net.outputs = [out]
    x = np.array([[0.2, 5.0, -1.0, 0.0], [-0.5, 0.0, 0.001, 3.0]], np.float32)
    T = 4
    preds, report = _predict(net, {inp: x}, build_dir, T)
    np.testing.assert_array_equal(preds[out][:, 0], (T - 1) * np.array([1 + 2, 4 + 8]))
    assert report.spikes["populations"]["in"]["spikes"] == 4 * T


def test_poisson_input_rate_and_seed(build_dir):
    n, T = 500, 200
    net = Network()
    inp = net.add_population("in", n, PoissonInput())
    out = net.add_population("out", n, IntegrateFire(v_thresh=NEVER, readout="var"))
    net.connect(inp, out, OneToOne(1.0))
    net.outputs = [out]
    x = np.concatenate([np.full(n // 2, 0.2), np.full(n // 4, -0.5), np.zeros(n // 4)])
    x = x[None].astype(np.float32)

    def run(seed):
        preds, report = _predict(net, {inp: x}, build_dir, T, seed=seed)
        return preds[out][0], report

    counts, report = run(7)
    p = 1 - exp(-0.2)  # P(spike) per step at 0.2 spikes/ms, dt = 1
    active = counts[: n // 2]
    # spikes in steps 0 .. T-2 reach the output; mean over 250 neurons x 199 steps
    assert active.mean() == pytest.approx(p * (T - 1), rel=0.03)
    assert np.all(counts[n // 2:] == 0), "negative or zero rates must not spike (unsigned)"
    assert report.spikes["populations"]["in"]["spikes"] >= active.sum()
    again, _ = run(7)
    np.testing.assert_array_equal(again, counts)      # same seed, same spikes
    other, _ = run(8)
    assert not np.array_equal(other, counts)          # the seed reaches GeNN's RNG


# --------------------------------------------------------------------------------------
# signed inputs (mlGeNN's signed spikes do not build on GeNN 5; distsnn's must)
# --------------------------------------------------------------------------------------
SIGNED_W = np.array([[1.0, -0.5], [2.0, 0.25], [4.0, 1.0], [8.0, -2.0]], np.float32)


def test_signed_binary_and_integrate_fire_inputs_are_exact(build_dir):
    net = Network()
    b_in = net.add_population("b_in", 4, BinarySpikeInput(signed_input=True))
    i_in = net.add_population("i_in", 4, IntegrateFireInput(signed_input=True))
    s_in = net.add_population("s_in", 4, IntegrateFireInput(signed_input=True, reset="subtract"))
    b_out = net.add_population("b_out", 2, IntegrateFire(v_thresh=NEVER, readout="var"))
    i_out = net.add_population("i_out", 2, IntegrateFire(v_thresh=NEVER, readout="var"))
    s_out = net.add_population("s_out", 2, IntegrateFire(v_thresh=NEVER, readout="var"))
    net.connect(b_in, b_out, Dense(SIGNED_W))
    net.connect(i_in, i_out, Dense(SIGNED_W))
    net.connect(s_in, s_out, Dense(SIGNED_W))
    net.outputs = [b_out, i_out, s_out]
    xb = np.array([[-1.0, 0.0, 1.0, -3.0], [0.5, -0.25, 0.0, 2.0]], np.float32)
    xi = np.array([[-0.5, 0.5, -1.0, 0.0], [-0.3, 0.7, 0.25, -0.9]], np.float32)
    T = 9
    preds, report = _predict(net, {b_in: xb, i_in: xi, s_in: xi}, build_dir, T)
    w = SIGNED_W.astype(np.float64)
    # binary: +-1 spike every step; the magnitude is ignored
    np.testing.assert_allclose(preds[b_out], (T - 1) * (np.sign(xb) @ w), atol=1e-5)
    # IF: signed counts over steps 0 .. T-2, negative inputs contribute -W per spike
    for reset, pop in (("zero", i_out), ("subtract", s_out)):
        counts = np.array([[np.sign(v) * emulate_if(abs(v), 1.0, T - 1, reset) for v in row]
                           for row in xi])
        np.testing.assert_allclose(preds[pop], counts @ w, atol=1e-5, err_msg=reset)
        assert np.any(counts < 0)
    pops = report.spikes["populations"]
    assert pops["b_in"]["spikes"] == int(np.count_nonzero(xb)) * T


def test_signed_poisson_input_sign_and_magnitude(build_dir):
    n, T = 400, 51
    net = Network()
    inp = net.add_population("in", n, PoissonInput(signed_input=True))
    out = net.add_population("out", 1, IntegrateFire(v_thresh=NEVER, readout="var"))
    net.connect(inp, out, Dense(np.ones((n, 1), np.float32)))
    net.outputs = [out]
    x = np.stack([np.full(n, -0.5), np.full(n, 0.5),
                  np.concatenate([np.full(n // 2, -0.5), np.full(n // 2, 0.5)])]).astype(
        np.float32)
    preds, report = _predict(net, {inp: x}, build_dir, T, seed=3)
    v = preds[out][:, 0]
    expected = (1 - exp(-0.5)) * n * (T - 1)        # about 7870, sd about 70
    assert v[0] == pytest.approx(-expected, rel=0.05)
    assert v[1] == pytest.approx(expected, rel=0.05)
    assert abs(v[2]) < 0.05 * expected
    assert report.spikes["populations"]["in"]["spikes"] == pytest.approx(
        3 * n * T * (1 - exp(-0.5)), rel=0.05)
