"""Analog ends of the rate methods: analog input current and non-spiking analog readout.

The analog input sends ``g x`` once per example and the first layer holds it, so that layer
receives exactly its ANN pre-activation ``W x + b`` every step; the analog readout averages
the output layer's input instead of counting spikes, so it keeps the ANN's ordering where
spike counts lose it (here: all logits negative, so no output neuron ever fires).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("pygenn")
L = keras.layers

from distsnn.compilers import CompiledInferenceNetwork  # noqa: E402
from distsnn.convert import DataNorm, InputType, Simple  # noqa: E402
from distsnn.neurons import AnalogInput, IntegrateFire, Integrator  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


class _RecordInput(CompiledInferenceNetwork):
    """Compiled so that every IF neuron keeps the input it received in the last step."""

    def _extra_options(self) -> dict:
        return {"record_max_input": True}


def _conv_model(seed: int):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 6, 2))
    pre = L.Conv2D(3, 3, padding="same", bias_initializer="random_normal", name="conv")(inp)
    hidden = L.ReLU()(pre)
    out = L.Dense(4, activation="softmax")(L.Flatten()(hidden))
    return keras.Model(inp, out), keras.Model(inp, pre)


def test_analog_input_current_is_first_layer_pre_activation(build_dir):
    model, pre_model = _conv_model(seed=4)
    x = np.random.default_rng(5).normal(0, 1, (3, 6, 6, 2)).astype(np.float32)  # signed too
    net, inputs, outputs, layer_pops = Simple(5, input_type=InputType.ANALOG).convert(model)
    assert isinstance(inputs[0].neuron, AnalogInput)
    conv = next(p for p in net.populations if isinstance(p.neuron, IntegrateFire))
    compiler = Simple(5).create_compiler(rng_seed=1, backend="cpu", build_dir=str(build_dir))
    compiled = _RecordInput(compiler, net, inputs, outputs, None)
    expected = pre_model.predict(x, verbose=0).reshape(3, -1)
    with compiled:
        for i in range(3):
            compiled.predict({inputs[0]: x[i:i + 1]})
            current = compiled.pull_var(conv, "LastIn")[0]
            np.testing.assert_allclose(current, expected[i], rtol=1e-5, atol=1e-5)
            assert np.abs(expected[i]).max() > 0.5  # a real, non-trivial input


def _negative_logit_model():
    """input(4) -> dense(4, relu): h = 0.9 x -> dense(4): logit_j = 0.9 (h_j - sum h) - 0.2,
    every logit negative and the ANN's prediction the largest x_j."""
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(4)(L.Dense(4, activation="relu")(inp)))
    eye = np.eye(4, dtype=np.float32)
    model.layers[1].set_weights([0.9 * eye, np.zeros(4, np.float32)])
    model.layers[2].set_weights([0.9 * (eye - 1.0), np.full(4, -0.2, np.float32)])
    return model


def test_analog_readout_argmax_matches_ann_where_spike_counts_do_not(build_dir):
    model = _negative_logit_model()
    x = np.random.default_rng(8).uniform(0, 1, (40, 4)).astype(np.float32)
    logits = model.predict(x, verbose=0)
    top2 = np.sort(logits, axis=1)[:, -2:]
    x, logits = x[top2[:, 1] - top2[:, 0] > 0.05], logits[top2[:, 1] - top2[:, 0] > 0.05]
    ann = logits.argmax(axis=1)
    assert len(set(ann)) > 1 and (logits < 0).all()
    predictions = {}
    for readout in ("spikes", "analog"):
        converter = Simple(200, input_type=InputType.ANALOG, reset="subtract", readout=readout)
        net, inputs, outputs, _ = converter.convert(model)
        assert isinstance(outputs[0].neuron, Integrator if readout == "analog" else IntegrateFire)
        compiled = converter.create_compiler(rng_seed=1, backend="cpu",
                                             build_dir=str(build_dir)).compile(net)
        with compiled:
            out, _ = compiled.predict({inputs[0]: x})
        predictions[readout] = out[outputs[0]].argmax(axis=1)
    np.testing.assert_array_equal(predictions["analog"], ann)
    assert (predictions["spikes"] != ann).any()


def test_data_norm_analog_input_scale_is_one():
    model, _ = _conv_model(seed=2)
    norm = np.random.default_rng(1).uniform(0, 3, (16, 6, 6, 2)).astype(np.float32)
    converter = DataNorm(10, norm_data=norm, input_type="analog", readout="analog")
    net, inputs, outputs, _ = converter.convert(model)
    first = net.outgoing(inputs[0])[0]
    np.testing.assert_array_equal(first.connectivity.weight,
                                  model.get_layer("conv").get_weights()[0])
    assert net.metadata["method_params"]["readout"] == "analog"
    assert net.metadata["method_params"]["input_type"] == "analog"
