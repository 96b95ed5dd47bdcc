"""mlGeNN's LeakyIntegrate, LeakyIntegrateFire, readouts and SpikeInput spike trains, against
numpy simulations of the same equations driven by the same input spikes (real GeNN models)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from distsnn.callbacks import VarRecorder
from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.errors import UserError
from distsnn.genn import available_backends
from distsnn.netfile import load_network, save_network
from distsnn.network import Network
from distsnn.neurons import (
    BinarySpikeInput,
    IntegrateFire,
    LeakyIntegrate,
    LeakyIntegrateFire,
    SpikeInput,
)
from distsnn.readouts import AvgVar, FirstSpikeTime, SpikeCount
from distsnn.utils.data import (
    PreprocessedSpikes,
    batch_spikes,
    calc_latest_spike_time,
    calc_max_spikes,
    calc_start_spikes,
    linear_latency_encode_data,
    log_latency_encode_data,
    preprocess_spikes,
)
from helpers.processes import run, run_mpi

T, N_IN, N_OUT = 24, 5, 4
LOWEST = float(np.finfo(np.float32).min)
READOUTS = ("var", "avg_var", "sum_var", "max_var", "avg_var_exp_weight", "spike_count",
            "first_spike_time")
#: population -> (neuron model to simulate, its parameters); every one gets a V recorder
CONFIGS = {
    "lif_a": ("lif", dict(v_thresh=1.0, v_reset=0.25, tau_mem=10.0, tau_refrac=2.0)),
    "lif_b": ("lif", dict(v_thresh=0.25, v_reset=-0.125, v=0.5, tau_mem=2.0, tau_refrac=3.0,
                          integrate_during_refrac=False, relative_reset=False, scale_i=True)),
    "lif_c": ("lif", dict(tau_mem=20.0)),
    "li_a": ("li", dict(v=0.5, bias=0.0625, tau_mem=8.0)),
    "li_b": ("li", dict(tau_mem=4.0, scale_i=True)),
    "if_a": ("if", dict(v_thresh=1.0)),
}


def _neuron(kind: str, params: dict, readout):
    cls = {"lif": LeakyIntegrateFire, "li": LeakyIntegrate, "if": IntegrateFire}[kind]
    return cls(**params, readout=readout)


def _examples(seed: int, n: int, t_max: float = T - 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """(times, ids) per example: fractional times, repeats and simultaneous spikes."""
    rng = np.random.default_rng(seed)
    out = []
    for k in rng.integers(8, 30, n):
        times = np.round(rng.uniform(0, t_max, k), 1)
        times[:3] = times[0]  # three spikes of one time...
        ids = rng.integers(0, N_IN, k)
        ids[:3] = ids[0]      # ...of one neuron: emitted on three successive steps
        out.append((times, ids))
    return out


def emitted(times: np.ndarray, ids: np.ndarray, steps: int, dt: float = 1.0) -> np.ndarray:
    """mlGeNN's SpikeInput: a spike at s is emitted at the first free step n with n dt >= s."""
    spikes = np.zeros((steps, N_IN), bool)
    for i in range(N_IN):
        pending = sorted(times[ids == i])
        for n in range(steps):
            if pending and n * dt >= pending[0]:
                spikes[n, i] = True
                pending.pop(0)
    return spikes


def simulate(kind: str, p: dict, current: np.ndarray, dt: float = 1.0):
    """float32 numpy model: V after integration (what readouts see), V after reset, spikes."""
    f = np.float32
    alpha = f(np.exp(-dt / p.get("tau_mem", 20.0)))
    v = np.full(current.shape[1], f(p.get("v", 0.0)), np.float32)
    refrac = np.zeros_like(v)
    pre, post, spikes = (np.zeros(current.shape, t) for t in (np.float32, np.float32, bool))
    for n, i in enumerate(current.astype(np.float32)):
        drive = (f(1.0) - alpha) * i if p.get("scale_i") else i
        if kind == "if":
            v = v + i
        elif kind == "li":
            v = alpha * v + drive + f(p.get("bias", 0.0))
        elif p.get("tau_refrac") is None or p.get("integrate_during_refrac", True):
            v = alpha * v + drive
            refrac = np.where(refrac > 0, refrac - f(dt), refrac)
        else:
            v = np.where(refrac > 0, v, alpha * v + drive)
            refrac = np.where(refrac > 0, refrac - f(dt), refrac)
        pre[n] = v
        if kind != "li":
            th, vr = f(p.get("v_thresh", 1.0)), f(p.get("v_reset", 0.0))
            fire = (v >= th) & (refrac <= 0)
            relative = kind == "lif" and p.get("relative_reset", True)
            v = np.where(fire, v - (th - vr) if relative else vr, v)
            if p.get("tau_refrac") is not None:
                refrac = np.where(fire, f(p["tau_refrac"]), refrac)
            spikes[n] = fire
        post[n] = v
    return pre, post, spikes


def readout(kind: str, pre, post, spikes, dt: float = 1.0) -> np.ndarray:
    """mlGeNN's readouts of one example from the simulated variables."""
    steps = len(pre)
    if kind == "var":
        return post[-1]
    if kind == "avg_var":
        return pre.astype(np.float64).sum(0) / steps
    if kind == "sum_var":
        return pre.astype(np.float64).sum(0)
    if kind == "max_var":
        return pre.max(0)
    if kind == "avg_var_exp_weight":
        w = np.exp(-np.arange(steps) / steps)[:, None]
        return (w * pre).sum(0) / steps
    if kind == "spike_count":
        return spikes.sum(0)
    return np.where(spikes.any(0), -spikes.argmax(0) * dt, LOWEST)


# --------------------------------------------------------------------------------------
# neurons and readouts against numpy
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """One build: a SpikeInput drives every configuration (all of lif_a's readouts)."""
    rng = np.random.default_rng(1)
    w = (rng.integers(-4, 14, (N_IN, N_OUT)) / 16).astype(np.float32)  # exact float sums
    net = Network()
    inp = net.add_population("in", N_IN, SpikeInput(max_spikes=64))
    pops = {}
    for name, (kind, params) in CONFIGS.items():
        for r in (READOUTS if name == "lif_a" else ("var",)):
            pops[name, r] = net.add_population(f"{name}_{r}", N_OUT, _neuron(kind, params, r))
    for r in ("max_var", "avg_var_exp_weight", "first_spike_time", "spike_count"):
        kind, params = CONFIGS["if_a" if r in ("first_spike_time", "spike_count") else "li_a"]
        name = "if_a" if kind == "if" else "li_a"
        pops[name, r] = net.add_population(f"{name}_{r}", N_OUT, _neuron(kind, params, r))
    for pop in pops.values():
        net.connect(inp, pop, Dense(w))
    net.outputs = list(pops.values())
    examples = _examples(2, 3)
    x = [preprocess_spikes(t, i, N_IN) for t, i in examples]
    recorders = [VarRecorder(pops[name, "var"], "v", key=name) for name in CONFIGS]
    build = tmp_path_factory.getbasetemp() / "genn-build"
    # time runs on: examples 1 and 2 start at T and 2T, their readouts still count from 0
    compiled = InferenceCompiler(T, rng_seed=1, build_dir=str(build),
                                 reset_time_between_batches=False).compile(net)
    with compiled:
        preds, recorded = compiled.predict({inp: x}, net.outputs, callbacks=recorders)
    return pops, preds, recorded, examples, w


def _reference(examples, w, kind, params):
    out = []
    for times, ids in examples:
        spikes = emitted(times, ids, T).astype(np.float32)
        current = np.vstack([np.zeros((1, N_OUT), np.float32), spikes[:-1] @ w])
        out.append(simulate(kind, params, current))
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_membrane_traces_equal_numpy(simulated, name):
    pops, preds, recorded, examples, w = simulated
    kind, params = CONFIGS[name]
    ref = _reference(examples, w, kind, params)
    assert len(recorded[name]) == len(examples)
    for got, (_, post, spikes) in zip(recorded[name], ref):
        np.testing.assert_allclose(got, post, rtol=1e-6, atol=1e-6)
    if kind != "li":
        assert sum(s.sum() for *_, s in ref) > 3, "the test must exercise spikes and resets"
    if params.get("tau_refrac") and params.get("integrate_during_refrac", True):
        # some spike is held back by the refractory period
        pre_fire = [(pre >= params.get("v_thresh", 1.0)) & ~s for pre, _, s in ref]
        assert any(f.any() for f in pre_fire)
    elif params.get("tau_refrac"):  # not integrating while refractory changes the trace
        other = _reference(examples, w, kind, {**params, "integrate_during_refrac": True})
        assert any(not np.allclose(a[1], b[1]) for a, b in zip(ref, other))


@pytest.mark.parametrize("name,kind", [("lif_a", r) for r in READOUTS]
                         + [("li_a", r) for r in ("var", "max_var", "avg_var_exp_weight")]
                         + [("if_a", r) for r in ("first_spike_time", "spike_count")])
def test_readouts_equal_numpy(simulated, name, kind):
    pops, preds, _, examples, w = simulated
    model, params = CONFIGS[name]
    ref = np.array([readout(kind, *sim) for sim in _reference(examples, w, model, params)])
    np.testing.assert_allclose(preds[pops[name, kind]], ref, rtol=2e-6, atol=1e-6)
    if kind == "first_spike_time":  # both spiking and silent neurons occur
        assert (ref > LOWEST).any() and (ref == LOWEST).any()


def test_readout_objects_are_their_names():
    neuron = LeakyIntegrateFire(readout=FirstSpikeTime())
    assert neuron.readout == "first_spike_time" and type(neuron.readout) is str
    assert LeakyIntegrate(readout=AvgVar).readout == "avg_var"
    assert IntegrateFire(readout=SpikeCount()) == IntegrateFire(readout="spike_count")
    with pytest.raises(ValueError, match="unknown readout 'mean'"):
        LeakyIntegrate(readout="mean")


def test_readout_errors_name_the_population(tmp_path):
    net = Network()
    inp = net.add_population("in", 2, BinarySpikeInput())
    out = net.add_population("li", 2, LeakyIntegrate(readout="spike_count"))
    net.connect(inp, out, Dense(np.eye(2, dtype=np.float32)))
    net.outputs = [out]
    with pytest.raises(ValueError, match="population 'li': the spike_count readout needs a "
                                         "spiking neuron"):
        with InferenceCompiler(3, rng_seed=1, build_dir=str(tmp_path)).compile(net):
            pass
    out.neuron = LeakyIntegrate()
    with pytest.raises(ValueError, match="output population 'li' .* has no readout"):
        InferenceCompiler(3, rng_seed=1).compile(net)


def test_new_neurons_round_trip_through_network_files(tmp_path):
    net = Network()
    inp = net.add_population("in", 3, SpikeInput(max_spikes=77))
    lif = net.add_population("lif", 2, LeakyIntegrateFire(
        v_thresh=np.array([1.0, 2.0], np.float32), tau_refrac=2.0, relative_reset=False,
        integrate_during_refrac=False, scale_i=True, readout=AvgVar()))
    li = net.add_population("li", 2, LeakyIntegrate(bias=0.5, tau_mem=3.0, readout="var"))
    net.connect(inp, lif, Dense(np.ones((3, 2), np.float32)))
    net.connect(lif, li, Dense(np.ones((2, 2), np.float32)))
    net.outputs = [li]
    save_network(net, tmp_path / "net.h5")
    loaded = load_network(tmp_path / "net.h5")
    for a, b in zip(net.populations, loaded.populations):
        assert type(a.neuron) is type(b.neuron)
        for key, value in a.neuron.params().items():
            np.testing.assert_array_equal(b.neuron.params()[key], value)
    assert loaded.content_hash() == net.content_hash()


# --------------------------------------------------------------------------------------
# spike-train inputs
# --------------------------------------------------------------------------------------
def test_preprocess_spikes_and_helpers():
    s = preprocess_spikes(np.array([3.0, 1.0, 2.0, 0.5]), np.array([2, 0, 2, 2]), 4)
    np.testing.assert_array_equal(s.end_spikes, [1, 1, 4, 4])
    np.testing.assert_array_equal(s.spike_times, [1.0, 0.5, 2.0, 3.0])
    with pytest.raises(ValueError, match="neuron ids must lie in 0..3"):
        preprocess_spikes(np.array([1.0]), np.array([4]), 4)
    other = preprocess_spikes(np.array([7.5]), np.array([1]), 4)
    assert calc_max_spikes([s, other]) == 4
    assert calc_latest_spike_time([s, other]) == 7.5
    lin = linear_latency_encode_data(np.array([[0, 255, 128]], np.uint8), 10.0, 2.0)[0]
    np.testing.assert_array_equal(lin.end_spikes, [0, 1, 2])
    np.testing.assert_allclose(lin.spike_times, [2.0, 2.0 + 8.0 * 127 / 255])
    log = log_latency_encode_data(np.array([[0.5, 2.0]]), 4.0, 1.0)[0]
    np.testing.assert_array_equal(log.end_spikes, [0, 1])
    np.testing.assert_allclose(log.spike_times, [4.0 * np.log(2.0)])


@pytest.mark.parametrize("dt,reset_time", [(1.0, True), (0.5, True), (1.0, False)])
def test_spike_times_are_emitted_at_the_first_step_not_before_them(build_dir, dt, reset_time):
    """mlGeNN's t_spk: a spike at 2.5 ms is emitted at the first step with t >= 2.5; three
    spikes at 0 leave on three successive steps; the second example starts again at 0, even
    when time runs on between batches (mlGeNN compares with the absolute time)."""
    from distsnn.callbacks import SpikeRecorder
    net = Network()
    inp = net.add_population("in", 3, SpikeInput(max_spikes=8), record_spikes=True)
    out = net.add_population("out", 1, LeakyIntegrate(tau_mem=5.0, readout="var"))
    net.connect(inp, out, Dense(np.ones((3, 1), np.float32)))
    net.outputs = [out]
    x = [preprocess_spikes(np.array([2.5, 0.0, 0.0, 0.0, 1.2]), np.array([0, 1, 1, 1, 2]), 3)] * 2
    compiled = InferenceCompiler(8, dt=dt, rng_seed=1, build_dir=str(build_dir),
                                 reset_time_between_batches=reset_time).compile(net)
    with compiled:
        _, data = compiled.predict({inp: x}, [out], callbacks=[SpikeRecorder(inp, key="s")])
    expected = sorted([(np.ceil(2.5 / dt) * dt, 0), (0.0, 1), (dt, 1), (2 * dt, 1),
                       (np.ceil(1.2 / dt) * dt, 2)])
    times_per_example, ids_per_example = data["s"]
    assert len(times_per_example) == 2
    for e, (times, ids) in enumerate(zip(times_per_example, ids_per_example)):
        start = 0.0 if reset_time else e * 8 * dt  # the recorder gives GeNN's time here
        assert sorted(zip(np.round(times - start, 6).tolist(), ids.tolist())) == expected


def test_batched_lanes_replay_each_example():
    """The batch layout (B = 3, one lane padded) read by the GeNN threshold rule gives every
    lane exactly its own example's spikes, and the padded lane none."""
    examples = _examples(5, 2)
    x = [preprocess_spikes(t, i, N_IN) for t, i in examples]
    batch = batch_spikes(x, 3, N_IN)
    start, end = calc_start_spikes(batch.end_spikes), batch.end_spikes
    assert end.shape == start.shape == (3, N_IN)
    got = np.zeros((3, T, N_IN), bool)
    for n in range(T):  # the model's threshold and reset, per lane and neuron
        nxt = batch.spike_times[np.minimum(start, len(batch.spike_times) - 1)]
        fire = (start != end) & (n >= nxt)
        got[:, n] = fire
        start = start + fire
    for lane, (times, ids) in enumerate(examples):
        np.testing.assert_array_equal(got[lane], emitted(times, ids, T))
    assert not got[2].any()


def _binary_vs_trains(build_dir, backend="cpu", batch_size=1):
    """The same spike trains as BinarySpikeInput arrays and as PreprocessedSpikes."""
    rng = np.random.default_rng(3)
    n = 7
    x = (rng.random((n, N_IN)) < 0.5).astype(np.float32)
    x[-1] = 0.0
    trains = [preprocess_spikes(np.tile(np.arange(T, dtype=np.float64), int(row.sum())),
                                np.repeat(np.flatnonzero(row), T), N_IN) for row in x]
    y = rng.integers(0, N_OUT, n)
    w = rng.normal(0.2, 0.5, (N_IN, N_OUT)).astype(np.float32)
    results = []
    for neuron, data in ((BinarySpikeInput(), x), (SpikeInput(max_spikes=N_IN * T * 3), trains)):
        net = Network()
        inp = net.add_population("in", N_IN, neuron)
        out = net.add_population("out", N_OUT, LeakyIntegrateFire(
            v_thresh=1.5, tau_mem=10.0, tau_refrac=1.0, readout="spike_count"))
        net.connect(inp, out, Dense(w))
        net.outputs = [out]
        compiled = InferenceCompiler(T, rng_seed=1, build_dir=str(build_dir), backend=backend,
                                     batch_size=batch_size).compile(net)
        with compiled:
            metrics, _ = compiled.evaluate({inp: data}, {out: y}, callbacks=[])
            by_iter, _ = compiled.evaluate_batch_iter(
                inp, out, [(data[s:s + 2], y[s:s + 2]) for s in range(0, n, 2)], callbacks=[])
            assert (by_iter[out].correct, by_iter[out].total) == (metrics[out].correct, n)
            preds, _ = compiled.predict({inp: data}, [out], callbacks=[])
            spikes = compiled.last_report.spikes["populations"]
        results.append((metrics[out].correct, metrics[out].total, preds[out],
                        {k: v["spikes"] for k, v in spikes.items()}))
    (c1, t1, p1, s1), (c2, t2, p2, s2) = results
    assert (c1, t1) == (c2, t2) and t1 == n
    np.testing.assert_array_equal(p1, p2)
    assert s1 == s2 and s1["in"] == int(x.sum()) * T
    assert p1.sum() > 0


def test_spike_trains_equal_the_same_spikes_as_arrays(build_dir):
    _binary_vs_trains(build_dir)


def test_spike_trains_equal_arrays_in_batches_of_3_on_the_cpu(build_dir):
    """On the CPU backend a batch of 3 runs as three GeNN batches of 1."""
    _binary_vs_trains(build_dir, batch_size=3)


@pytest.mark.skipif("cuda" not in available_backends(), reason="needs pygenn's CUDA backend")
def test_spike_trains_equal_arrays_with_batch_size_3(build_dir):
    from distsnn.parallel.devices import answering_gpus
    if not answering_gpus():
        pytest.skip("no GPU visible")
    _binary_vs_trains(build_dir, backend="cuda", batch_size=3)


def test_bad_spike_inputs_give_clear_errors(build_dir):
    net = Network()
    inp = net.add_population("in", N_IN, SpikeInput(max_spikes=4))
    out = net.add_population("out", 2, LeakyIntegrateFire(readout="spike_count"))
    net.connect(inp, out, Dense(np.ones((N_IN, 2), np.float32)))
    net.outputs = [out]
    few = preprocess_spikes(np.arange(4.0), np.zeros(4, int), N_IN)
    many = preprocess_spikes(np.arange(5.0), np.zeros(5, int), N_IN)
    with InferenceCompiler(T, rng_seed=1, build_dir=str(build_dir)).compile(net) as compiled:
        preds, _ = compiled.predict({inp: [few]}, [out], callbacks=[])
        with pytest.raises(UserError, match=r"'in': 5 spikes in a batch of 1 example\(s\), "
                                            r"but SpikeInput\(max_spikes=4\)"):
            compiled.predict({inp: [few, many]}, [out], callbacks=[])
        with pytest.raises(ValueError, match="one entry per neuron"):
            compiled.predict({inp: [preprocess_spikes(np.zeros(1), np.zeros(1, int), 3)]},
                             [out], callbacks=[])
        with pytest.raises(TypeError, match="takes a list of PreprocessedSpikes"):
            compiled.predict({inp: np.ones((2, N_IN), np.float32)}, [out], callbacks=[])
        with pytest.raises(TypeError, match="pass a list of PreprocessedSpikes"):
            compiled.predict({inp: few}, [out], callbacks=[])
    assert isinstance(few, PreprocessedSpikes) and preds[out].sum() > 0


@pytest.mark.mpi
def test_spike_trains_on_two_ranks_equal_one(tmp_path, build_dir):
    script = Path(__file__).parents[1] / "mpi_scripts" / "spike_trains.py"
    results = []
    for ranks in (1, 2):
        out = tmp_path / f"trains{ranks}.json"
        args = [sys.executable, str(script), str(out), str(build_dir)]
        proc = run_mpi(ranks, args, timeout=240) if ranks > 1 else run(args, timeout=240)
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(out.read_text()))
    one, two = results
    assert (one["ranks"], two["ranks"]) == (1, 2)
    assert one["total"] == two["total"] == 11
    assert {k: v for k, v in one.items() if k != "ranks"} == \
        {k: v for k, v in two.items() if k != "ranks"}
    assert np.asarray(one["predictions"]).sum() > 0


def test_command_line_refuses_spike_input_networks_in_one_line(tmp_path, build_dir):
    from helpers.processes import DISTSNN
    net = Network()
    inp = net.add_population("in", 3, SpikeInput())
    out = net.add_population("out", 2, LeakyIntegrateFire(readout="spike_count"))
    net.connect(inp, out, Dense(np.ones((3, 2), np.float32)))
    net.outputs = [out]
    save_network(net, tmp_path / "net.h5")
    np.savez(tmp_path / "data.npz", x=np.ones((4, 3), np.float32), y=np.zeros(4, int))
    proc = run([DISTSNN, "evaluate", str(tmp_path / "net.h5"), "--data", str(tmp_path / "data.npz"),
                "--build-dir", str(build_dir), "--no-progress"])
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("distsnn: error:")]
    assert len(errors) == 1 and "'in' is a SpikeInput" in errors[0], proc.stderr
