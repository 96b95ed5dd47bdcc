"""mlGeNN's compiler, compiled-network and callback API (issue #15): ``genn_model`` before
``with``, the "Reset" group, the callback protocol, Checkpoint, CustomUpdateOn*, the
step-by-step methods, ``evaluate_timesteps``, ``validate_tf_layer``'s config and the check
that all MPI ranks hold the same network."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from distsnn.callbacks import (
    Callback,
    CallbackList,
    Checkpoint,
    CustomHook,
    CustomUpdateOnBatchBegin,
    CustomUpdateOnBatchEnd,
    CustomUpdateOnTimestepBegin,
    CustomUpdateOnTimestepEnd,
)
from distsnn.compilers import FewSpikeCompiler, InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.network import Network
from distsnn.neurons import BinarySpikeInput, IntegrateFire, LeakyIntegrate
from helpers.processes import run, run_mpi

SCRIPTS = Path(__file__).parents[1] / "mpi_scripts"
NEVER = 1e30
T = 4
W = np.array([[1.0, 2.0, -1.0], [0.5, -2.0, 3.0]], np.float32)
X = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
Y = np.array([1, 2, 2])
YV = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 1.0], [-1.0, 4.0, 0.5]])  # regression targets
#: V of the output after T steps: the input spikes every step, the first arrives at step 1
V_END = (T - 1) * X @ W.astype(np.float64)


def _net():
    """BinarySpikeInput -> Dense(W) -> IntegrateFire (never fires, V read out), plus a
    spike-count output so that both reset groups exist."""
    net = Network()
    inp = net.add_population("in", 2, BinarySpikeInput())
    out = net.add_population("out", 3, IntegrateFire(v_thresh=NEVER, readout="var"))
    count = net.add_population("count", 3, IntegrateFire(v_thresh=1.0, readout="spike_count"))
    net.connect(inp, out, Dense(W))
    net.connect(inp, count, Dense(np.abs(W)))
    net.outputs = [out, count]
    return net, inp, out, count


@pytest.fixture
def small(build_dir):
    net, inp, out, count = _net()
    compiler = InferenceCompiler(evaluate_timesteps=T, rng_seed=1, build_dir=str(build_dir))
    return compiler.compile(net), inp, out, count


def _values(preds, pop):
    return np.asarray(preds[pop], np.float64)


# 1. genn_model before `with`, the "Reset" group ----------------------------------------
def test_timing_enabled_before_with_turns_on_kernel_profiling(small):
    compiled, inp, out, _ = small
    assert compiled.genn_model.timing_enabled is False  # the compiler's kernel_profiling
    compiled.genn_model.timing_enabled = True
    assert compiled.genn_model.timing_enabled is True
    with pytest.raises(ValueError, match=r"genn_model\.dt is set by the compiler: pass dt="):
        compiled.genn_model.dt = 0.5
    with pytest.raises(AttributeError, match="inside `with compiled_net:`"):
        compiled.genn_model.neuron_update_time
    with compiled:
        assert "prof" in compiled.build_info.model_name
        model = compiled.genn_model
        assert model.timing_enabled is True  # now the pygenn model's own attribute
        compiled.predict({inp: X}, callbacks=[])
        assert model.neuron_update_time > 0
        assert model.presynaptic_update_time > 0
        for name in ("init_time", "init_sparse_time"):
            assert isinstance(getattr(model, name), float)
        parts = model.get_custom_update_time("ResetReadout"), \
            model.get_custom_update_time("ResetState")
        assert min(parts) > 0
        assert model.get_custom_update_time("Reset") == pytest.approx(sum(parts))
        with pytest.raises(ValueError, match=r"no custom update group 'Softmax1'; its groups"):
            model.get_custom_update_time("Softmax1")


def test_few_spike_networks_have_an_empty_reset_group(build_dir):
    from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput
    net = Network()
    inp = net.add_population("in", 2, FewSpikeReluInput(k=4, alpha=1.0))
    out = net.add_population("out", 3, FewSpikeRelu(k=4, alpha=4.0, readout="var"))
    net.connect(inp, out, Dense(W))
    net.outputs = [out]
    compiled = FewSpikeCompiler(k=4, build_dir=str(build_dir)).compile(net)
    compiled.genn_model.timing_enabled = True
    with compiled:
        compiled.predict({inp: X / 2}, callbacks=[])
        assert compiled.genn_model.get_custom_update_time("Reset") == 0.0
        assert compiled.genn_model.neuron_update_time > 0


# 2. the callback protocol ---------------------------------------------------------------
class MlGeNNStyle(Callback):
    """Written as for mlGeNN: keyword set_params, set_first, (key, data) from get_data."""

    def __init__(self, key):
        self.key, self.events, self.first = key, [], False

    def set_params(self, data, compiled_network, num_batches, **kwargs):
        self.data, self.net, self.num_batches = data, compiled_network, num_batches

    def set_first(self):
        self.first = True

    def on_batch_begin(self, batch):
        self.events.append(("begin", batch))

    def on_timestep_end(self, timestep):
        self.events.append(("step", timestep))

    def on_batch_end(self, batch, metrics):
        self.events.append(("end", batch, metrics[self.out].result))

    def get_data(self):
        return self.key, self.events


class DuckTyped:
    """Not derived from Callback; a set_params without **kwargs gets what it names."""

    def set_params(self, compiled_network, num_batches):
        self.num_batches = num_batches

    def on_test_end(self, metrics):
        self.result = metrics

    def get_data(self):
        return None, self.num_batches


def test_mlgenn_callback_protocol(small):
    compiled, inp, out, count = small
    first, second, duck = MlGeNNStyle("first"), MlGeNNStyle("second"), DuckTyped()
    first.out = second.out = out
    with compiled:
        metrics, data = compiled.evaluate({inp: X}, {out: YV}, "mean_square_error",
                                          callbacks=[first, second, duck])
    assert first.net is compiled and isinstance(first.data, dict) and first.data is second.data
    assert first.num_batches == 3 and duck.num_batches == 3
    assert first.first and not second.first  # set_first: the first of each type only
    assert duck.result is metrics
    expected = []
    for b in range(3):
        expected += [("begin", b)] + [("step", t) for t in range(T)]
        expected.append(("end", b, np.mean((V_END[:b + 1] - YV[:b + 1]) ** 2)))
    assert [e[:2] for e in data["first"]] == [e[:2] for e in expected]
    np.testing.assert_allclose([e[2] for e in data["first"] if e[0] == "end"],
                               [e[2] for e in expected if e[0] == "end"])
    assert data["second"] == data["first"] and data[2] == 3  # a None key: the index


def test_callbacks_run_after_the_reset_and_get_data_must_be_a_pair(small):
    compiled, inp, out, _ = small

    class Offset(Callback):
        def on_batch_begin(self, batch):
            self.compiled_network.neuron_populations[out].vars["V"].view[:] = 10.0
            self.compiled_network.neuron_populations[out].vars["V"].push_to_device()

    class Bad(Callback):
        def get_data(self):
            return [1, 2, 3]

    with compiled:
        preds, _ = compiled.predict({inp: X}, [out], callbacks=[Offset()])
        np.testing.assert_allclose(_values(preds, out), V_END + 10.0, rtol=1e-6)
        with pytest.raises(TypeError, match=r"Bad: get_data\(\) must return a \(key, data\)"):
            compiled.predict({inp: X}, [out], callbacks=[Bad()])


def test_checkpoint_saves_the_network_per_evaluation(small, tmp_path):
    from distsnn.netfile import load_network
    compiled, inp, out, _ = small
    arrays, files = Checkpoint(path=str(tmp_path / "np")), \
        Checkpoint("network", epoch_interval=2, path=str(tmp_path / "h5"))
    with compiled:
        for _ in range(3):
            compiled.evaluate({inp: X}, {out: Y}, callbacks=[arrays, files])
    names = sorted(p.name for p in (tmp_path / "np").iterdir())
    conns = sorted(c.name for c in compiled.network.connections)
    assert names == sorted(f"{e}-{c}-g.npy" for e in range(3) for c in conns)
    dense = next(c for c in compiled.network.connections if c.target is out)
    np.testing.assert_array_equal(np.load(tmp_path / "np" / f"1-{dense.name}-g.npy"), W)
    assert sorted(p.name for p in (tmp_path / "h5").iterdir()) == ["0.h5", "2.h5"]
    saved = load_network(tmp_path / "h5" / "2.h5")
    assert saved.content_hash() == compiled.network.content_hash()
    with pytest.raises(ValueError, match="serialiser must be one of"):
        Checkpoint("pickle")


@pytest.mark.parametrize("callback, expected", [
    (None, V_END),
    (CustomUpdateOnBatchBegin("Reset"), V_END),                 # what every batch runs
    (CustomUpdateOnTimestepBegin("Reset"), V_END / (T - 1)),    # only the last step's input
    (CustomUpdateOnTimestepBegin("Reset", lambda t: t == 2), 2 * V_END / (T - 1)),
    (CustomUpdateOnTimestepEnd("Reset", lambda t: t == T - 1), 0 * V_END),
], ids=["none", "batch-begin", "every-step", "step-2", "after-last-step"])
def test_custom_update_callbacks(small, callback, expected):
    compiled, inp, out, _ = small
    with compiled:
        preds, _ = compiled.predict({inp: X}, [out], callbacks=[callback] if callback else [])
    np.testing.assert_allclose(_values(preds, out), expected, rtol=1e-6, atol=1e-9)


def test_custom_update_on_batch_end_leaves_the_state_reset(small):
    compiled, inp, out, _ = small
    with compiled:
        state = compiled.neuron_populations[out].vars["V"]
        compiled.predict({inp: X}, [out], callbacks=[])
        state.pull_from_device()
        np.testing.assert_allclose(state.view.reshape(-1), V_END[-1], rtol=1e-6)
        compiled.predict({inp: X}, [out], callbacks=[CustomUpdateOnBatchEnd("Reset")])
        state.pull_from_device()
        assert np.all(state.view == 0.0)


# 3. compiled-network attributes -----------------------------------------------------------
def test_step_by_step_api_reproduces_predict(small):
    compiled, inp, out, count = small
    with compiled:
        groups = compiled.neuron_populations
        assert list(groups) == compiled.network.populations
        assert [g.num_neurons for g in groups.values()] == [2, 3, 3]
        synapses = compiled.connection_populations
        assert list(synapses) == compiled.network.connections
        assert {s.name for s in synapses.values()} == {c.name for c in synapses}
        expected, _ = compiled.predict({inp: X}, [out, count], callbacks=[])
        steps = []
        hooks = CallbackList([CustomHook(on_timestep_end=steps.append)],
                             compiled_network=compiled)
        for i, x in enumerate(X):
            compiled.custom_update("Reset")
            compiled.reset_time()
            assert compiled.genn_model.timestep == 0 and compiled.genn_model.t == 0.0
            compiled.set_input({inp: x[None]})
            for _ in range(compiled.evaluate_timesteps):
                compiled.step_time(hooks)
            v, spikes = compiled.get_readout([out, count])
            assert v.shape == (1, 3)
            np.testing.assert_allclose(v[0], expected[out][i], rtol=1e-6)
            np.testing.assert_array_equal(spikes[0], expected[count][i])
            np.testing.assert_array_equal(compiled.get_readout(count), spikes)
        assert steps == list(range(T)) * 3
        with pytest.raises(ValueError, match="set_input takes one batch of at most 1"):
            compiled.set_input({inp: X})


@pytest.mark.parametrize("readout", ["avg_var", "avg_var_exp_weight"])
def test_get_readout_scales_averaging_readouts_as_predict_does(readout, build_dir):
    """After a run the readout variable holds the last example's accumulation: get_readout
    reports it as predict did (divided by the timesteps)."""
    net = Network()
    inp = net.add_population("in", 2, BinarySpikeInput())
    out = net.add_population("out", 3, LeakyIntegrate(tau_mem=10.0, readout=readout))
    net.connect(inp, out, Dense(np.array([[1.0, 0.5, 0.0], [0.25, 0.75, 2.0]], np.float32)))
    net.outputs = [out]
    compiled = InferenceCompiler(evaluate_timesteps=T, rng_seed=1,
                                 build_dir=str(build_dir)).compile(net)
    with compiled:
        predictions, _ = compiled.predict({inp: X}, [out], callbacks=[])
        np.testing.assert_allclose(compiled.get_readout(out)[0], predictions[out][-1],
                                   rtol=1e-6)
    assert np.all(predictions[out][-1] != 0.0)


def test_evaluate_batch_is_one_batch_with_global_metrics(small):
    compiled, inp, out, _ = small
    with compiled:
        full, _ = compiled.evaluate({inp: X}, {out: YV}, "mean_square_error", callbacks=[])
        results = [compiled.evaluate_batch({inp: X[i:i + 1]}, {out: YV[i:i + 1]},
                                           "mean_square_error")[0][out].result
                   for i in range(3)]
        assert np.mean(results) == pytest.approx(full[out].result)
        with pytest.raises(ValueError, match="evaluate_batch takes one batch of at most 1"):
            compiled.evaluate_batch({inp: X}, {out: Y})


def test_default_callbacks_show_progress(small, capsys):
    compiled, inp, out, _ = small
    with compiled:
        metrics, data = compiled.evaluate({inp: X}, {out: Y})  # no TTY: plain lines
        assert data == {} and metrics[out].name == "sparse_categorical_accuracy"
        assert "3/3 examples" in capsys.readouterr().err
        compiled.evaluate_batch({inp: X[:1]}, {out: Y[:1]})  # mlGeNN's default: none
        assert capsys.readouterr().err == ""


def test_evaluate_timesteps_attributes():
    assert InferenceCompiler(evaluate_timesteps=7).evaluate_timesteps == 7
    compiler = InferenceCompiler(example_timesteps=9)
    assert compiler.evaluate_timesteps == compiler.example_timesteps == compiler.timesteps == 9
    few_spike = FewSpikeCompiler(k=5)
    assert few_spike.evaluate_timesteps == 5
    net, _, _, _ = _net()
    assert compiler.compile(net).evaluate_timesteps == 9
    assert few_spike.compile(net).k == 5


# 4. validate_tf_layer's config ----------------------------------------------------------
def test_validate_tf_layer_sees_mlgenn_config_fields():
    keras = pytest.importorskip("keras")
    from distsnn.convert import Simple
    L = keras.layers
    inp = keras.Input((6, 6, 1))
    conv = L.Conv2D(2, 3, activation="relu", use_bias=False, name="conv")
    pool = L.AveragePooling2D(2, name="pool")
    hidden = L.Dense(4, use_bias=False, name="hidden")
    relu = L.ReLU(name="relu")
    top = L.Dense(3, activation="softmax", use_bias=False, name="top")
    model = keras.Model(inp, top(relu(hidden(L.Flatten(name="flat")(pool(conv(inp)))))))
    seen = {}

    class Recording(Simple):
        def validate_tf_layer(self, tf_layer, config):
            seen[tf_layer.name] = (config.tf_layer is tf_layer, config.is_input,
                                   config.is_output, config.has_activation)
            super().validate_tf_layer(tf_layer, config)

    Recording(evaluate_timesteps=10).convert(model)
    assert seen["conv"] == (True, False, False, True)
    assert seen["pool"] == (True, False, False, False)
    assert seen["hidden"] == (True, False, False, False)  # linear: its ReLU layer follows
    assert seen["relu"] == (True, False, False, True)
    assert seen["top"] == (True, False, True, True)


# 5. every rank must hold the same network -------------------------------------------------
@pytest.mark.mpi
def test_ranks_with_different_networks_fail_with_one_clear_error(tmp_path, build_dir):
    script = SCRIPTS / "different_networks.py"
    proc = run_mpi(2, ["sh", "-c", f'"{sys.executable}" "{script}" "{build_dir}"; '
                                   f'echo "exit=$?"'], timeout=240)
    text = proc.stdout + proc.stderr
    assert proc.stdout.split().count("exit=1") == 2, text  # every rank exits with 1
    assert text.count("distsnn: error: the ranks hold different networks") == 1, text
    assert "np.random.seed" in text and "rank 0: " in text and "rank 1: " in text
    assert "Traceback" not in text and "librunner" not in text


# the mlGeNN TF example style, on 1 and 2 ranks --------------------------------------------
@pytest.mark.mpi
def test_mlgenn_example_script_gives_identical_metrics_on_one_and_two_ranks(tmp_path,
                                                                          build_dir):
    results = []
    for ranks in (1, 2):
        out = tmp_path / f"example{ranks}.json"
        args = [sys.executable, str(SCRIPTS / "mlgenn_example.py"), str(out), str(build_dir)]
        proc = run_mpi(ranks, args, timeout=400) if ranks > 1 else run(args, timeout=400)
        assert proc.returncode == 0, proc.stderr
        assert re.search(r"custom_update_reset_time: \d", proc.stdout), proc.stdout
        results.append(json.loads(out.read_text()))
    one, two = results
    assert (one["ranks"], two["ranks"]) == (1, 2)
    assert one["metrics"] == two["metrics"] and one["metrics"]["total"] == 8
    assert one["batches"] == [8] and two["batches"] == [4, 4]  # the callback's data, per rank
    for r in results:
        assert r["timings"]["neuron_update_time"] > 0 and r["timings"]["reset_time"] > 0
