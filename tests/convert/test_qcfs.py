"""QCFS conversion (Bu et al. 2022): thresholds from the trained clips, membranes starting at
half the threshold, reset by subtraction, no normalisation data.

A hand-built network shows what the half-threshold start does: under a constant current I a
neuron fires ``round(n I / θ)`` times in n steps (``floor`` when it starts at 0). Converted
clip models then get exactly those neurons, and their counts match an IF reference
simulated here from the framework's weights.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

import numpy as np
import pytest

from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import Dense
from distsnn.convert import ConversionError, QCFSConverter
from distsnn.network import Network
from distsnn.neurons import AnalogInput, IntegrateFire

keras = pytest.importorskip("keras")
L = keras.layers

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

T = 17  # the analog current arrives from step 1: n = 16 steps of integration


def test_half_threshold_membrane_rounds_where_zero_floors(tmp_path):
    """θ = 1.5, currents ``θ (j/16 + 3/64)`` (exact in float32): in n = 16 steps the neuron
    starting at θ/2 fires ``j + 1`` times (round(j + 0.75)), the one starting at 0 ``j``."""
    theta, n = 1.5, T - 1
    j = np.arange(17)
    current = (theta * (j / 16 + 3 / 64)).astype(np.float32)
    net = Network()
    inp = net.add_population("in", (1,), AnalogInput())
    outs = {}
    for name, v in (("half", theta / 2), ("zero", 0.0)):
        outs[name] = net.add_population(name, (len(j),), IntegrateFire(
            v_thresh=theta, v=v, reset="subtract", readout="spike_count"))
        net.connect(inp, outs[name], Dense(weight=current.reshape(1, -1)))
    net.inputs, net.outputs = [inp], list(outs.values())
    compiled = InferenceCompiler(evaluate_timesteps=T, rng_seed=1,
                                 build_dir=str(tmp_path)).compile(net)
    with compiled:
        predictions, _ = compiled.predict({inp: np.ones((1, 1), np.float32)}, net.outputs,
                                          callbacks=[])
    expected_half = np.minimum(np.floor(n * current / theta + 0.5), n)
    np.testing.assert_array_equal(predictions[outs["half"]][0], expected_half)
    np.testing.assert_array_equal(expected_half[:-1], j[:-1] + 1)  # and j = 16 saturates at n
    np.testing.assert_array_equal(predictions[outs["zero"]][0], np.minimum(j, n))


def _clip_model(clips=(2.5, 1.5), seed=0):
    """Input(6) -> Dense(12) -> ReLU(max_value=λ1) -> Dense(8) -> ReLU(max_value=λ2) [output]."""
    rng = np.random.default_rng(seed)
    inp = keras.Input((6,))
    h = L.ReLU(max_value=clips[0], name="r1")(L.Dense(12, name="d1")(inp))
    model = keras.Model(inp, L.ReLU(max_value=clips[1], name="r2")(L.Dense(8, name="d2")(h)))
    for name, shape in (("d1", (6, 12)), ("d2", (12, 8))):
        model.get_layer(name).set_weights([rng.uniform(-1, 2, shape).astype(np.float32),
                                           rng.uniform(-0.5, 0.5, shape[1:]).astype(np.float32)])
    return model


def test_converted_clip_model_has_the_qcfs_neurons_and_counts(tmp_path):
    """Thresholds λ1 / 1 and λ2 / λ1 (weights into r2 scaled by λ1 / λ1 = 1), v = θ / 2; the
    first clipped layer's spike train, simulated here, drives the second: the output counts
    equal the reference's."""
    model = _clip_model()
    converter = QCFSConverter(T, readout="spikes")
    net, inputs, outputs, _ = converter.convert(model)
    r1, r2 = net.population("r1"), net.population("r2")
    assert (r1.neuron.v_thresh, r1.neuron.v, r1.neuron.reset) == (2.5, 1.25, "subtract")
    assert r2.neuron.v_thresh == pytest.approx(1.5 / 2.5) and r2.neuron.v == pytest.approx(0.3)
    assert net.metadata["method"] == "qcfs" and net.metadata["norm_examples"] == 0
    x = np.random.default_rng(1).uniform(0, 1, (8, 6)).astype(np.float32)
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    (w1, b1), (w2, b2) = (model.get_layer(n).get_weights() for n in ("d1", "d2"))
    current1 = x @ w1
    v1, v2 = np.full_like(current1, 1.25), np.full((len(x), 8), 0.3, np.float32)
    counts, spikes_prev = np.zeros_like(v2), np.zeros_like(v1)
    for t in range(T):  # r1 integrates from step 1, r2 sees r1's spikes a step later
        v2 += spikes_prev @ w2 + b2 / np.float32(2.5)
        s2 = v2 >= np.float32(0.6)
        v2[s2] -= np.float32(0.6)
        counts += s2
        v1 += b1 + (current1 if t >= 1 else 0.0)
        spikes_prev = (v1 >= 2.5).astype(np.float32)
        v1[v1 >= 2.5] -= 2.5
    got = predictions[outputs[0]]
    assert counts.max() > 3 and counts.min() < counts.max()
    assert np.abs(got - counts).max() <= 1 and np.mean(got == counts) > 0.9


def test_ann_and_snn_agree_at_few_timesteps_on_a_clip_trained_shape(tmp_path):
    """The analog readout (mean input of the linear output, in units of the last λ) times λ
    is the ANN's logit to within a few quantisation steps at T = 32."""
    rng = np.random.default_rng(5)
    inp = keras.Input((6,))
    h = L.ReLU(max_value=2.0, name="r1")(L.Dense(16, name="d1")(inp))
    model = keras.Model(inp, L.Dense(4, name="out")(h))
    model.get_layer("d1").set_weights([rng.uniform(-1, 2, (6, 16)), rng.uniform(-0.5, 0.5, 16)])
    model.get_layer("out").set_weights([rng.uniform(-1, 1, (16, 4)), rng.uniform(-1, 1, 4)])
    x = rng.uniform(0, 1, (16, 6)).astype(np.float32)
    logits = model.predict(x, verbose=0)
    converter = QCFSConverter(33)
    net, inputs, outputs, _ = converter.convert(model)
    compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    snn = predictions[outputs[0]] * 2.0  # spikes carry λ1 = 2
    w = model.get_layer("out").get_weights()[0]
    step = 2.0 / 32  # one quantisation step of each hidden unit (plus the first silent step)
    bound = np.abs(w).sum(axis=0) * 2 * step + np.abs(logits).max() / 33
    assert np.all(np.abs(snn - logits) <= bound), (np.abs(snn - logits).max(), bound)


def test_plain_relu_is_refused_with_one_line():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2, name="out")(L.Dense(3, activation="relu",
                                                            name="hidden")(inp)))
    with pytest.raises(ConversionError) as err:
        QCFSConverter(8).convert(model)
    assert str(err.value) == (
        "layer 'hidden' (Dense): is a ReLU without a clip, but QCFS takes each layer's "
        "threshold from its trained clip λ; clip every hidden activation (ReLU(max_value=λ), "
        "Clip(0, λ)) or use data-norm")


def test_cli_method_qcfs_needs_no_norm_data(tmp_path):
    from helpers.processes import DISTSNN, run
    path = tmp_path / "clip.keras"
    _clip_model().save(path)
    out = tmp_path / "net.h5"
    proc = run([DISTSNN, "convert", str(path), "--method", "qcfs", "-t", "8", "-o", str(out)],
               timeout=300)
    assert proc.returncode == 0, proc.stderr
    inspect = run([DISTSNN, "inspect", str(out)], timeout=120)
    assert inspect.returncode == 0, inspect.stderr
    meta = json.loads(inspect.stdout.split("metadata:\n", 1)[1])
    assert meta["method"] == "qcfs" and meta["thresholds"]["r1"] == 2.5
