"""The evaluation loop: per-example isolation, checkpoints, spike statistics, partial
batches, metrics end to end, the context manager and the mlGeNN documentation example."""
from __future__ import annotations

import gc
import logging

import numpy as np
import pytest

from distsnn.callbacks import CallbackList
from distsnn.compilers import InferenceCompiler
from distsnn.compilers.simulation import run_few_spike, run_rate
from distsnn.compilers.statistics import SpikeStats
from distsnn.connectivity import Conv2D, Dense, OneToOne
from distsnn.genn import available_backends
from distsnn.network import Network
from distsnn.neurons import BinarySpikeInput, IntegrateFire, PoissonInput

NEVER = 1e30




def _compile(net, build_dir, timesteps, **kwargs):
    kwargs.setdefault("rng_seed", 1)
    return InferenceCompiler(evaluate_timesteps=timesteps, build_dir=str(build_dir),
                             **kwargs).compile(net)


def _predict(net, x, build_dir, timesteps, **kwargs):
    with _compile(net, build_dir, timesteps, **kwargs) as compiled:
        preds, _ = compiled.predict(x, net.outputs, callbacks=[])
        return preds, compiled.last_report


def one_hop(w, delay=0, neuron=None):
    """BinarySpikeInput -> Dense(w) -> IntegrateFire(never fires, var readout)."""
    w = np.asarray(w, np.float32)
    net = Network()
    inp = net.add_population("in", w.shape[0], neuron or BinarySpikeInput())
    out = net.add_population("out", w.shape[1], IntegrateFire(v_thresh=NEVER, readout="var"))
    net.connect(inp, out, Dense(w, delay=delay))
    net.outputs = [out]
    return net, inp, out


# --------------------------------------------------------------------------------------
# no spike of example n reaches example n+1 (spec §2.3: mlGeNN leaks them)
# --------------------------------------------------------------------------------------
def test_t_leak_scenario_does_not_leak(build_dir):
    """x0 = [1, 1], x1 = x2 = [0, 0], W = [1, 2]^T, T = 3: mlGeNN predicts [6, 3, 0]."""
    net, inp, out = one_hop([[1.0], [2.0]])
    x = np.array([[1, 1], [0, 0], [0, 0]], np.float32)
    preds, _ = _predict(net, {inp: x}, build_dir, 3)
    assert preds[out][:, 0].tolist() == [6.0, 0.0, 0.0]


def test_t2_predictions_are_one_application_per_example(build_dir):
    rng = np.random.default_rng(4)
    w = rng.uniform(-1, 1, (8, 5)).astype(np.float32)
    net, inp, out = one_hop(w)
    x = (rng.random((12, 8)) < 0.5).astype(np.float32)
    x[3] = 1.0
    x[4] = 0.0   # an all-zero example right after an all-one example
    preds, _ = _predict(net, {inp: x}, build_dir, 2)
    np.testing.assert_allclose(preds[out], x @ w.astype(np.float64), atol=1e-5)
    assert np.all(preds[out][4] == 0.0)


def test_two_hop_spikes_do_not_leak(build_dir):
    """input -> hidden (identity, threshold 0.5) -> output, T = 3: the hidden spikes of the
    last step of an example would otherwise arrive in the next example's first step."""
    w = np.array([[1.0, 0.5], [2.0, -1.0], [4.0, 0.25]], np.float32)
    net = Network()
    inp = net.add_population("in", 3, BinarySpikeInput())
    hid = net.add_population("hid", 3, IntegrateFire(v_thresh=0.5))
    out = net.add_population("out", 2, IntegrateFire(v_thresh=NEVER, readout="var"))
    net.connect(inp, hid, OneToOne(1.0))
    net.connect(hid, out, Dense(w))
    net.outputs = [out]
    x = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 1], [0, 0, 0]], np.float32)
    preds, report = _predict(net, {inp: x}, build_dir, 3)
    np.testing.assert_allclose(preds[out], x @ w.astype(np.float64), atol=1e-6)
    # each active input makes its hidden neuron spike in steps 1 and 2
    assert report.spikes["populations"]["hid"]["spikes"] == int(x.sum()) * 2


def test_delayed_spikes_in_flight_do_not_leak(build_dir):
    """Dense(delay=2), T = 4: only the step-0 spike arrives (at step 3); the spikes of steps
    1-3 are still in flight when the example ends and must not reach the next one."""
    w = np.array([[1.0, 3.0], [2.0, -5.0]], np.float32)
    net, inp, out = one_hop(w, delay=2)
    x = np.array([[1, 1], [0, 0], [0, 1], [0, 0], [0, 0]], np.float32)
    preds, _ = _predict(net, {inp: x}, build_dir, 4)
    np.testing.assert_allclose(preds[out], x @ w.astype(np.float64), atol=1e-6)


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_net():
    rng = np.random.default_rng(8)
    w = rng.uniform(0, 0.3, (10, 4)).astype(np.float32)
    net = Network()
    inp = net.add_population("in", 10, BinarySpikeInput())
    count = net.add_population("count", 4, IntegrateFire(v_thresh=1.0, readout="spike_count"))
    avg = net.add_population("avg", 4, IntegrateFire(v_thresh=1.0, reset="subtract",
                                                     readout="avg_var"))
    net.connect(inp, count, Dense(w))
    net.connect(inp, avg, Dense(w))
    net.outputs = [count, avg]
    x = (rng.random((5, 10)) < 0.6).astype(np.float32)
    return net, inp, count, avg, x


def test_checkpoints_equal_shorter_runs(checkpoint_net, build_dir):
    net, inp, count, avg, x = checkpoint_net
    shorter = {t: _predict(net, {inp: x}, build_dir, t)[0] for t in (10, 25, 50)}
    assert shorter[10][count].sum() > 0 and not np.array_equal(shorter[10][count],
                                                               shorter[50][count])
    with _compile(net, build_dir, 50, checkpoints=[25, 10]) as compiled:
        for target in (10, 25, 50):
            y = {count: shorter[target][count], avg: shorter[target][avg]}
            metrics, _ = compiled.evaluate({inp: x}, y, metrics="mean_square_error",
                                           callbacks=[])
            report = compiled.last_report.metrics
            assert sorted(report) == [10, 25, 50]
            for checkpoint in (10, 25, 50):
                for pop in (count, avg):
                    expected = np.mean((shorter[checkpoint][pop] - y[pop]) ** 2)
                    got = report[checkpoint][pop.name]["mean_square_error"]["result"]
                    assert got == pytest.approx(expected, abs=1e-9), (target, checkpoint,
                                                                     pop.name)
            # the returned metrics are those of the full run
            assert metrics[count].result == report[50]["count"]["mean_square_error"]["result"]
        preds, _ = compiled.predict({inp: x}, callbacks=[])
        np.testing.assert_array_equal(preds[count], shorter[50][count])


@pytest.mark.parametrize("bad", [[0], [51], [-3]])
def test_checkpoints_outside_the_run_are_rejected(checkpoint_net, build_dir, bad):
    net, inp, count, avg, x = checkpoint_net
    with _compile(net, build_dir, 50, checkpoints=bad) as compiled:
        with pytest.raises(ValueError, match="checkpoints"):
            compiled.predict({inp: x}, callbacks=[])


# --------------------------------------------------------------------------------------
# spike statistics
# --------------------------------------------------------------------------------------
def conv_fan_out(in_shape, k, filters):
    """Synapses per input neuron of a stride-1 'same' conv (odd k), by counting windows."""
    h, w, c = in_shape
    pad = (k - 1) // 2
    counts = np.zeros(in_shape, np.int64)
    for i in range(h):
        for j in range(w):
            for a in range(k):
                for b in range(k):
                    r, s = i - pad + a, j - pad + b
                    if 0 <= r < h and 0 <= s < w:
                        counts[r, s, :] += filters
    return counts.reshape(-1)


def test_spike_totals_and_synaptic_operations(build_dir):
    rng = np.random.default_rng(21)
    T, n_in, n_out = 7, 20, 5
    net = Network()
    flat = net.add_population("flat", n_in, BinarySpikeInput())
    img = net.add_population("img", (6, 6, 2), BinarySpikeInput())
    hid = net.add_population("hid", 4, IntegrateFire(v_thresh=1.0, readout="spike_count"))
    out = net.add_population("out", n_out, IntegrateFire(v_thresh=NEVER, readout="var"))
    conv = net.add_population("conv", (6, 6, 3), IntegrateFire(v_thresh=NEVER, readout="var"))
    w_hid = rng.uniform(0.2, 0.6, (n_in, 4)).astype(np.float32)
    net.connect(flat, out, Dense(rng.uniform(-1, 1, (n_in, n_out)).astype(np.float32)))
    net.connect(flat, hid, Dense(w_hid))
    net.connect(hid, out, Dense(np.ones((4, n_out), np.float32)))
    net.connect(img, conv, Conv2D(rng.uniform(0.1, 1, (3, 3, 2, 3)).astype(np.float32),
                                  padding="same"))
    net.outputs = [out, hid, conv]
    active = [3, 7, 0, 12]
    x_flat = np.zeros((4, n_in), np.float32)
    for e, a in enumerate(active):
        x_flat[e, rng.choice(n_in, a, replace=False)] = 1.0
    x_img = (rng.random((4, 6, 6, 2)) < 0.3).astype(np.float32)
    preds, report = _predict(net, {flat: x_flat, img: x_img}, build_dir, T)
    spikes = report.spikes
    pops = spikes["populations"]
    assert spikes["examples"] == 4 and spikes["timesteps_per_example"] == T
    assert pops["flat"]["spikes"] == sum(active) * T
    assert pops["img"]["spikes"] == int(x_img.sum()) * T
    assert pops["hid"]["spikes"] == int(preds[hid].sum()) > 0
    assert pops["out"]["spikes"] == pops["conv"]["spikes"] == 0
    img_fan_out = conv_fan_out((6, 6, 2), 3, 3)
    expected_synops = (pops["flat"]["spikes"] * (n_out + 4) + pops["hid"]["spikes"] * n_out
                       + T * int(x_img.reshape(4, -1).sum(axis=0) @ img_fan_out))
    assert spikes["synaptic_operations"] == expected_synops
    assert spikes["synaptic_operations_per_example"] == pytest.approx(expected_synops / 4)
    assert pops["flat"]["spikes_per_neuron_per_example"] == pytest.approx(
        sum(active) * T / (n_in * 4))
    assert pops["flat"]["rate_per_timestep"] == pytest.approx(sum(active) / (n_in * 4))
    assert report.examples == 4


def test_fan_out_synaptic_operations_of_successive_networks():
    """SpikeStats.synaptic_operations of many successive networks, as the report uses it."""
    wrong = []
    for i in range(60):
        n_in, n_out = 2 + i % 5, 1 + i % 3
        net = Network()
        a = net.add_population("a", n_in, BinarySpikeInput())
        b = net.add_population("b", n_out, IntegrateFire())
        net.connect(a, b, Dense(np.ones((n_in, n_out), np.float32)))
        stats = SpikeStats(1, 1, {"a": np.ones(n_in, np.int64), "b": np.zeros(n_out, np.int64)})
        try:
            synops = stats.synaptic_operations(net)
        except ValueError as err:
            synops = f"ValueError: {err}"
        if synops != n_in * n_out:
            wrong.append((i, n_in * n_out, synops))
        del net, a, b
        gc.collect()
    assert not wrong, f"(iteration, expected, got): {wrong[:3]}"


# --------------------------------------------------------------------------------------
# partial last batch: the loop's accounting with a batched stand-in for GeNN (the CPU
# backend runs batch size 1, so a real partial batch needs CUDA: see the test below)
# --------------------------------------------------------------------------------------
class FakeGeNN:
    """Batched stand-in: input lanes with x > 0 spike every step; the population "bias"
    spikes on every lane every step, padded lanes included; readouts are lane sums of the
    input since the last reset."""

    def __init__(self, network, batch_size):
        self.network, self.batch_size = network, batch_size
        self.totals = {p.name: np.zeros((batch_size, p.size), np.int64)
                       for p in network.populations}
        self.x = {p.name: np.zeros((batch_size, p.size)) for p in network.inputs}
        self.since_reset = np.zeros(batch_size)
        self.steps = 0

    def reset_example_state(self, reset_vars=True, reset_time=True):
        self.since_reset[:] = 0

    def set_timestep(self, timestep):
        self.since_reset[:] = 0

    def set_input(self, pop, x):
        view = self.x[pop.name]
        b = x.shape[0]
        view[:b] = np.asarray(x).reshape(b, pop.size)
        view[b:] = 0.0

    def step(self, n=1):
        for _ in range(n):
            self.steps += 1
            for name, x in self.x.items():
                self.totals[name] += x > 0
                self.since_reset += (x > 0).sum(axis=1)
            self.totals["bias"] += 1

    def pull(self, pop, var):
        assert var == "SpikeTotal"
        return self.totals[pop.name].copy()

    def readout(self, pop, kind):
        return np.repeat(self.since_reset[:, None], pop.size, axis=1)


def _fake_network():
    net = Network()
    inp = net.add_population("in", 3, BinarySpikeInput())
    bias = net.add_population("bias", 2, IntegrateFire(bias=1.0, readout="spike_count"))
    net.connect(inp, bias, Dense(np.ones((3, 2), np.float32)))
    net.outputs = [bias]
    return net, inp, bias


@pytest.mark.parametrize("sizes", [[4, 4, 2], [4, 3, 4, 1], [1]])
def test_partial_batches_rate_schedule_accounting(sizes):
    net, inp, bias = _fake_network()
    B, T, n = 4, 5, sum(sizes)
    x = np.zeros((n, 3), np.float32)
    x[np.arange(n), np.arange(n) % 3] = 1.0
    x[-1] = 1.0
    starts = np.cumsum([0] + sizes)
    batches = [{inp: x[s:e]} for s, e in zip(starts[:-1], starts[1:])]
    genn = FakeGeNN(net, B)
    results = []
    stats = run_rate(genn, batches, {bias: "spike_count"}, T, [2],
                     lambda b, c, p, v: results.append((b, c, v.shape[0])), CallbackList([]))
    assert stats.examples == n
    totals = stats.totals()
    assert totals["in"] == int(x.sum()) * T
    assert totals["bias"] == n * 2 * T, "padded lanes of partial batches must not count"
    assert results == [(i, c, size) for i, size in enumerate(sizes) for c in (2, T)]


@pytest.mark.parametrize("sizes", [[4, 2], [3, 4, 1], [2]])
@pytest.mark.parametrize("depth", [0, 2])
def test_partial_batches_few_spike_schedule_accounting(sizes, depth):
    """A population at depth d works on batch j during window j + d; leading and trailing
    windows and padded lanes must not count."""
    net, inp, bias = _fake_network()
    B, K, n = 4, 6, sum(sizes)
    x = np.ones((n, 3), np.float32)
    starts = np.cumsum([0] + sizes)
    batches = [{inp: x[s:e]} for s, e in zip(starts[:-1], starts[1:])]
    genn = FakeGeNN(net, B)
    results = []
    stats = run_few_spike(genn, iter(batches), [bias], K, {"in": 0, "bias": depth},
                          lambda b, c, p, v: results.append((b, v.shape[0])), CallbackList([]))
    assert genn.steps == K * (len(sizes) + depth)    # N batches + maximum depth windows
    assert stats.examples == n
    assert stats.totals()["in"] == n * 3 * K
    assert stats.totals()["bias"] == n * 2 * K
    assert results == list(enumerate(sizes))


@pytest.mark.skipif("cuda" not in available_backends(), reason="needs pygenn's CUDA backend")
def test_partial_last_batch_on_cuda(build_dir):
    from distsnn.parallel.devices import answering_gpus
    if not answering_gpus():
        pytest.skip("no GPU visible")
    w = np.array([[1.0, 2.0], [0.5, -1.0], [4.0, 0.25]], np.float32)
    net, inp, out = one_hop(w)
    bias = net.add_population("bias", 2, IntegrateFire(v_thresh=1.0, bias=1.0,
                                                       readout="spike_count"))
    net.connect(inp, bias, Dense(np.zeros((3, 2), np.float32)))
    net.outputs = [out, bias]
    x = (np.random.default_rng(3).random((7, 3)) < 0.5).astype(np.float32)
    preds, report = _predict(net, {inp: x}, build_dir, 4, backend="cuda", batch_size=4)
    np.testing.assert_allclose(preds[out], 3 * (x @ w.astype(np.float64)), atol=1e-5)
    assert report.spikes["populations"]["bias"]["spikes"] == 7 * 2 * 4
    assert report.spikes["populations"]["in"]["spikes"] == int(x.sum()) * 4


# --------------------------------------------------------------------------------------
# metrics end to end
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier():
    """One-hot input -> identity -> spike counts: the predicted class is the input's."""
    net = Network()
    inp = net.add_population("in", 4, BinarySpikeInput())
    out = net.add_population("out", 4, IntegrateFire(v_thresh=1.0, readout="spike_count"))
    net.connect(inp, out, Dense(np.eye(4, dtype=np.float32)))
    net.outputs = [out]
    x = np.zeros((7, 4), np.float32)
    for e, c in enumerate([0, 1, 2, 3, 1]):
        x[e, c] = 1.0
    # examples 5, 6: no input, every count 0 -> argmax 0 (ties go to the lowest index)
    y = np.array([0, 1, 2, 0, 3, 0, 2])
    return net, inp, out, x, y


def test_evaluate_accuracy_on_a_known_network(classifier, build_dir):
    net, inp, out, x, y = classifier
    with _compile(net, build_dir, 5) as compiled:
        metrics, cb_data = compiled.evaluate({inp: x}, {out: y}, callbacks=[])
        assert cb_data == {}
        assert metrics[out].result == pytest.approx(4 / 7)
        assert (metrics[out].correct, metrics[out].total) == (4, 7)
        assert compiled.last_report.metrics[5]["out"] == {"sparse_categorical_accuracy": {
            "result": pytest.approx(4 / 7), "correct": 4, "total": 7}}
        preds, _ = compiled.predict({inp: x}, callbacks=[])
        assert preds[out][:5].argmax(axis=1).tolist() == [0, 1, 2, 3, 1]
        assert preds[out][:5].max(axis=1).tolist() == [4] * 5
        # several metrics on one output; names as keys
        metrics, _ = compiled.evaluate({"in": x}, {"out": y}, metrics="top_2_accuracy",
                                       callbacks=[])
        # top 2 adds example 3 (label 0 ranks second: one higher score, no lower-index tie);
        # example 4 (label 3: ties with 0 and 2 rank first) and 6 (rank 2) stay out
        assert metrics[out].correct == 5
        metrics, _ = compiled.evaluate({inp: x}, {out: y}, metrics="confusion_matrix",
                                       callbacks=[])
        matrix = np.asarray(metrics[out].matrix)
        assert matrix.sum() == 7 and np.trace(matrix) == 4 and matrix[0, 3] == 1


def test_evaluate_batch_iter_matches_evaluate(classifier, build_dir):
    net, inp, out, x, y = classifier
    with _compile(net, build_dir, 5) as compiled:
        expected, _ = compiled.evaluate({inp: x}, {out: y}, callbacks=[])
        data = iter([(x[0:3], y[0:3]), (x[3:6], y[3:6]), (x[6:], y[6:])])
        metrics, _ = compiled.evaluate_batch_iter(inp, out, data, num_batches=3, callbacks=[])
        assert (metrics[out].correct, metrics[out].total) == (expected[out].correct, 7)
        assert compiled.last_report.examples == 7


def test_mse_over_several_examples_is_element_wise(build_dir):
    rng = np.random.default_rng(6)
    w = rng.uniform(-1, 1, (6, 3)).astype(np.float32)
    net, inp, out = one_hop(w)
    x = (rng.random((5, 6)) < 0.5).astype(np.float32)
    y = rng.normal(size=(5, 3))
    with _compile(net, build_dir, 2) as compiled:
        metrics, _ = compiled.evaluate({inp: x}, {out: y}, metrics="mean_square_error",
                                       callbacks=[])
    expected = np.mean((x @ w.astype(np.float64) - y) ** 2)
    assert metrics[out].result == pytest.approx(expected, rel=1e-5)


def test_repeated_calls_in_one_context_give_the_same_answers(build_dir):
    rng = np.random.default_rng(10)
    w = rng.uniform(0, 0.5, (6, 3)).astype(np.float32)
    net = Network()
    inp = net.add_population("in", 6, BinarySpikeInput())
    out = net.add_population("out", 3, IntegrateFire(v_thresh=1.0, readout="spike_count"))
    net.connect(inp, out, Dense(w))
    net.outputs = [out]
    x = (rng.random((4, 6)) < 0.5).astype(np.float32)
    with _compile(net, build_dir, 20) as compiled:
        first, _ = compiled.predict({inp: x}, callbacks=[])
        again, _ = compiled.predict({inp: x[::-1].copy()}, callbacks=[])
        last, _ = compiled.predict({inp: x}, callbacks=[])
    np.testing.assert_array_equal(first[out], last[out])
    np.testing.assert_array_equal(first[out][::-1], again[out])


def test_integrate_fire_output_without_explicit_readout_counts_spikes(build_dir):
    """mlGeNN-style `IntegrateFire()` output: the compiler defaults its readout to
    spike_count (compilers._readout_kind), so the model must provide that readout."""
    net = Network()
    inp = net.add_population("in", 3, BinarySpikeInput())
    out = net.add_population("out", 3, IntegrateFire(v_thresh=1.0))
    net.connect(inp, out, Dense(np.eye(3, dtype=np.float32)))
    net.outputs = [out]
    x = np.eye(3, dtype=np.float32)
    with _compile(net, build_dir, 5) as compiled:
        preds, _ = compiled.predict({inp: x}, callbacks=[])
        metrics, _ = compiled.evaluate({inp: x}, {out: np.arange(3)}, callbacks=[])
    np.testing.assert_array_equal(preds[out], 4 * np.eye(3))
    assert metrics[out].result == 1.0


# --------------------------------------------------------------------------------------
# seeds, the context manager
# --------------------------------------------------------------------------------------
def test_random_seed_is_drawn_logged_and_reproducible(build_dir, caplog):
    net = Network()
    inp = net.add_population("in", 50, PoissonInput())
    out = net.add_population("out", 50, IntegrateFire(v_thresh=NEVER, readout="var"))
    net.connect(inp, out, OneToOne(1.0))
    net.outputs = [out]
    x = np.full((2, 50), 0.3, np.float32)
    with caplog.at_level(logging.WARNING, logger="distsnn"):
        compiled = _compile(net, build_dir, 30, rng_seed=0)
        with compiled:
            first, _ = compiled.predict({inp: x}, callbacks=[])
    base = compiled.base_seed
    assert base != 0
    assert f"rng_seed={base}" in caplog.text
    with _compile(net, build_dir, 30, rng_seed=base) as again:
        second, _ = again.predict({inp: x}, callbacks=[])
        assert again.build_info.reused  # the seed is not compiled into the model
    np.testing.assert_array_equal(first[out], second[out])
    # the two examples have equal inputs but their own random streams
    assert not np.array_equal(first[out][0], first[out][1])
    with _compile(net, build_dir, 30, rng_seed=base + 1) as other:
        third, _ = other.predict({inp: x}, callbacks=[])
    assert not np.array_equal(first[out], third[out])


@pytest.mark.parametrize("failure", ["invalid_name", "unusable_build_dir"])
def test_enter_works_after_a_failed_enter(build_dir, tmp_path, failure):
    """mlGeNN leaves a class-level context set when __enter__ fails, so every later `with`
    fails with "Nested compiled networks"; distsnn must recover."""
    bad_net = Network()
    bad_in = bad_net.add_population("in", 1, BinarySpikeInput())
    name = "bad name" if failure == "invalid_name" else "out"
    bad_out = bad_net.add_population(name, 1, IntegrateFire(v_thresh=NEVER, readout="var"))
    bad_net.connect(bad_in, bad_out, Dense(np.ones((1, 1), np.float32)))
    bad_net.outputs = [bad_out]
    bad_dir = build_dir
    if failure == "unusable_build_dir":
        bad_dir = tmp_path / "a_file"
        bad_dir.write_text("not a directory")
    bad = InferenceCompiler(evaluate_timesteps=2, rng_seed=1,
                            build_dir=str(bad_dir)).compile(bad_net)
    with pytest.raises(Exception):
        with bad:
            pass
    with pytest.raises(RuntimeError, match="not loaded"):
        bad.predict({bad_in: np.ones((1, 1))}, callbacks=[])
    w = np.array([[1.0, -2.0], [3.0, 0.5]], np.float32)
    net, inp, out = one_hop(w)
    good = _compile(net, build_dir, 2)
    x = np.array([[1, 0], [1, 1]], np.float32)
    with good:
        preds, _ = good.predict({inp: x}, callbacks=[])
    np.testing.assert_allclose(preds[out], x @ w.astype(np.float64))
    with pytest.raises(Exception):      # the broken one still fails the same way
        with bad:
            pass
    with good:                          # and the good one can be entered again
        preds, _ = good.predict({inp: x}, callbacks=[])
    np.testing.assert_allclose(preds[out], x @ w.astype(np.float64))


def test_predict_outside_the_context_is_an_error(build_dir):
    net, inp, out = one_hop([[1.0]])
    compiled = _compile(net, build_dir, 2)
    with pytest.raises(RuntimeError, match="with"):
        compiled.predict({inp: np.ones((1, 1))}, callbacks=[])


def test_genn_seed_is_fixed_and_non_zero_whatever_the_base_seed():
    """GeNN compiles its seed into the code (0 = std::random_device): distsnn always passes
    1 and keeps randomness in per-example streams, so one build serves every seed."""
    from distsnn.genn import CompileOptions, GeNNNetwork
    net, _, _ = one_hop([[1.0]])
    models = [GeNNNetwork(net, CompileOptions(seed=s)) for s in (0, 7)]
    assert [m.genn_model.seed for m in models] == [1, 1]
    assert models[0].model_name == models[1].model_name


# --------------------------------------------------------------------------------------
# the mlGeNN documentation example (mlgenn-inference-api.txt), adapted in its imports
# --------------------------------------------------------------------------------------
def test_inference_documentation_example(build_dir, monkeypatch, capsys):
    rng = np.random.default_rng(2)
    w = rng.uniform(0, 1, (16, 4)).astype(np.float32)
    network = Network()
    input_layer = network.add_population("input", 16, BinarySpikeInput())
    output_layer = network.add_population("output", 4, IntegrateFire(v_thresh=NEVER,
                                                                     readout="avg_var"))
    network.connect(input_layer, output_layer, Dense(w))
    network.outputs = [output_layer]
    x_test = (rng.random((6, 16)) < 0.5).astype(np.float32)
    y_test = (x_test @ w.astype(np.float64)) * 499 / 2   # avg of V = n Wx over n = 0..499
    monkeypatch.setenv("DISTSNN_BUILD_DIR", str(build_dir))

    # --- the example, verbatim but for `from ml_genn.compilers import InferenceCompiler` ---
    from distsnn.compilers import InferenceCompiler

    # Create compiler with metric
    compiler = InferenceCompiler(
        example_timesteps=500,
        metrics="mean_square_error")

    # Compile network
    compiled_net = compiler.compile(network)

    # Run evaluation
    with compiled_net:
        metrics, _ = compiled_net.evaluate(
            {input_layer: x_test},
            {output_layer: y_test})

        print(f"Error: {metrics['mean_square_error']}")
    # --- end of the example ---
    assert compiler.timesteps == 500
    assert metrics[output_layer] is metrics["mean_square_error"]
    assert metrics[output_layer].name == "mean_square_error"
    # float32 accumulation over 500 steps: relative error ~1e-7
    assert metrics[output_layer].result < 1e-9 * np.mean(y_test ** 2)
    printed = capsys.readouterr().out
    assert f"Error: {metrics[output_layer].result}" in printed
    assert compiled_net.base_seed != 0  # rng_seed=0 drew (and logged) a seed


def test_a_second_live_copy_of_the_same_model_is_refused(build_dir):
    """GeNN loads one runtime library per model directory: two live copies would share it."""
    net, inp, out = one_hop([[1.0, 2.0]])
    first = _compile(net, build_dir, 2)
    second = _compile(net, build_dir, 2)
    with first:
        with pytest.raises(RuntimeError, match="already loaded"):
            second.__enter__()
        preds, _ = first.predict({inp: np.ones((1, 1), np.float32)}, callbacks=[])
        np.testing.assert_allclose(preds[out], [[1.0, 2.0]])
    with second:  # fine once the first is unloaded
        preds, _ = second.predict({inp: np.ones((1, 1), np.float32)}, callbacks=[])
        np.testing.assert_allclose(preds[out], [[1.0, 2.0]])


def test_genn_preferences_are_part_of_the_build_key():
    from distsnn.genn import CompileOptions, GeNNNetwork
    net, _, _ = one_hop([[1.0]])
    names = {GeNNNetwork(net, CompileOptions(genn_kwargs=kw)).model_name
             for kw in ({}, {"optimize_code": False}, {"optimize_code": True})}
    assert len(names) == 3


def test_var_recorder_filters_and_timestep_hooks(build_dir):
    """V after every step of the selected examples and neurons; hooks at step boundaries."""
    from distsnn.callbacks import CustomHook, VarRecorder
    w = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    net, inp, out = one_hop(w)
    x = np.arange(5, dtype=np.float32).reshape(5, 1)  # example 0 has no input spike
    steps = []
    recorder = VarRecorder(out, "v", key="v", example_filter=[1, 3],
                           neuron_filter=slice(0, None, 2))
    hooks = CustomHook(on_timestep_begin=steps.append)
    with _compile(net, build_dir, 3) as compiled:
        _, data = compiled.predict({inp: x}, callbacks=[recorder, hooks])
    assert steps == [0, 1, 2] * 5
    assert len(data["v"]) == 2  # examples 1 and 3
    for record in data["v"]:
        # step 0: only stale input could arrive (dropped); then +W x per step; neurons 0, 2
        np.testing.assert_allclose(record, [[0, 0], [1, 3], [2, 6]])


def test_kernel_profiling_exposes_genn_kernel_times(build_dir):
    net, inp, out = one_hop([[1.0, 2.0]])
    with _compile(net, build_dir, 50, kernel_profiling=True) as compiled:
        compiled.predict({inp: np.ones((3, 1), np.float32)}, callbacks=[])
        times = compiled.kernel_times()
    assert times["neuron_update_time"] > 0
    assert "ResetReadout_time" in times or "ResetState_time" in times
