"""Every supported layer, converted and simulated, reproduces its Keras output exactly.

The harness (spec §13.1, tests/helpers/conversion_harness.py) feeds binary inputs as a spike
every step and reads never-firing IF outputs after T = 2 steps, which then hold exactly
``W x + b`` for an output one hop from the input. Each case is also checked on the host
with the IR's explicit synapses, so a failure says whether the converter or the simulation
is wrong.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("pygenn")
L = keras.layers

from distsnn.compilers import InferenceCompiler  # noqa: E402
from helpers.conversion_harness import HarnessConverter, linear_response, randomise  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (10, 10, 2)


def _bn():
    return L.BatchNormalization()


CASES = {
    "dense_after_flatten": lambda x: L.Dense(5)(L.Flatten()(x)),
    "dense_after_reshape": lambda x: L.Dense(5)(L.Reshape((-1,))(x)),
    "conv_s1_valid": lambda x: L.Conv2D(3, 3)(x),
    "conv_s1_same": lambda x: L.Conv2D(3, 3, padding="same")(x),
    "conv_s2_valid": lambda x: L.Conv2D(3, 3, strides=2)(x),
    "conv_s2_same": lambda x: L.Conv2D(3, 3, strides=2, padding="same")(x),
    "conv_k4_s2_same": lambda x: L.Conv2D(2, 4, strides=2, padding="same")(x),
    "avg_pool_2": lambda x: L.AveragePooling2D(2)(x),
    "avg_pool_3_stride_2": lambda x: L.AveragePooling2D(3, strides=2)(x),
    "global_avg_pool": lambda x: L.GlobalAveragePooling2D()(x),
    "pool_conv_valid": lambda x: L.Conv2D(3, 3)(L.AveragePooling2D(2)(x)),
    "pool_conv_same": lambda x: L.Conv2D(3, 3, padding="same")(L.AveragePooling2D(2)(x)),
    "pool_conv_s2_same": lambda x: L.Conv2D(3, 3, strides=2, padding="same")(
        L.AveragePooling2D(2)(x)),
    "pool_flatten_dense": lambda x: L.Dense(5)(L.Flatten()(L.AveragePooling2D(2)(x))),
    "gap_dense": lambda x: L.Dense(4)(L.GlobalAveragePooling2D()(x)),
    "zero_pad_conv": lambda x: L.Conv2D(3, 3)(L.ZeroPadding2D(1)(x)),
    "zero_pad_asym_conv_s2": lambda x: L.Conv2D(3, 3, strides=2)(
        L.ZeroPadding2D(((0, 1), (0, 1)))(x)),
    # neither TF 'valid' nor 'same': explicit padding in the network
    "asymmetric_zero_pad_conv": lambda x: L.Conv2D(3, 3)(L.ZeroPadding2D(((2, 0), (0, 1)))(x)),
    "zero_pad_strided_same_conv": lambda x: L.Conv2D(3, 3, strides=2, padding="same")(
        L.ZeroPadding2D(((1, 0), (0, 2)))(x)),
    "pool_zero_pad_conv": lambda x: L.Conv2D(3, 3)(L.ZeroPadding2D(1)(L.AveragePooling2D(2)(x))),
    "conv_batch_norm": lambda x: _bn()(L.Conv2D(3, 3, padding="same")(x)),
    "conv_no_bias_batch_norm": lambda x: _bn()(L.Conv2D(3, 3, use_bias=False)(x)),
    "dense_batch_norm": lambda x: _bn()(L.Dense(6)(L.Flatten()(x))),
    "add_identity_conv": lambda x: L.Add()([x, L.Conv2D(2, 3, padding="same")(x)]),
    "add_pool_conv": lambda x: L.Add()([L.AveragePooling2D(2)(x),
                                        L.Conv2D(2, 2, strides=2)(x)]),
    "add_two_dense_bn": lambda x: _bn()(L.Add()([L.Dense(4)(L.Flatten()(x)),
                                                 L.Dense(4)(L.GlobalAveragePooling2D()(x))])),
    "conv_dropout": lambda x: L.Dropout(0.5)(L.Conv2D(3, 3)(x)),
    # input preprocessing folded into the first weighted layer (the offset exactly so at the
    # zero-padded borders of 'same' convolutions, where Keras does not offset the zeros)
    "rescale_dense": lambda x: L.Dense(5)(L.Flatten()(L.Rescaling(0.5, offset=-0.25)(x))),
    "norm_conv_valid": lambda x: L.Conv2D(3, 3)(_norm()(x)),
    "norm_conv_same": lambda x: L.Conv2D(3, 3, padding="same")(_norm()(x)),
    "rescale_norm_conv_s2_same": lambda x: L.Conv2D(3, 3, strides=2, padding="same")(
        _norm()(L.Rescaling(2.0, offset=0.5)(x))),
    "norm_zero_pad_conv_s2": lambda x: L.Conv2D(3, 3, strides=2)(
        L.ZeroPadding2D(((0, 1), (0, 1)))(_norm()(x))),
    # zero padding that no TF padding reproduces: explicit padding, and the offset not at it
    "norm_zero_pad_explicit_conv_same": lambda x: L.Conv2D(3, 3, strides=2, padding="same")(
        L.ZeroPadding2D(((2, 0), (0, 1)))(_norm()(x))),
    "norm_inverted_conv_same": lambda x: L.Conv2D(3, 3, padding="same")(_norm(invert=True)(x)),
    "flatten_norm_dense": lambda x: L.Dense(4)(L.Normalization(
        mean=np.linspace(-1, 1, 200), variance=np.linspace(0.1, 3, 200))(L.Flatten()(x))),
    "norm_add_dense": lambda x: L.Dense(4)(L.Flatten()(L.Add()([_norm()(x),
                                                               L.Rescaling(-3.0)(x)]))),
}


def _norm(invert=False):
    """Per-channel Normalization of the two input channels."""
    return L.Normalization(mean=[0.3, -0.6], variance=[0.25, 4.0], invert=invert)


def to_numpy(tensors):
    if not isinstance(tensors, (list, tuple)):
        tensors = [tensors]
    return [keras.ops.convert_to_numpy(t) for t in tensors]


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_matches_keras(case, tmp_path):
    rng = np.random.default_rng(sorted(CASES).index(case))
    inp = keras.Input(SHAPE, name="inp")
    model = randomise(keras.Model(inp, CASES[case](inp)), rng)
    x = (rng.uniform(0, 1, (3,) + SHAPE) > 0.5).astype(np.float32)
    expected = to_numpy(model(x, training=False))[0]

    converter = HarnessConverter()
    net, inputs, outputs, _ = converter.convert(model)
    assert len(net.populations) == 2, net.populations  # one hop: input -> output
    host = linear_response(net, outputs[0], {inputs[0]: x}, bias_scale=2.0)
    np.testing.assert_allclose(host, expected, rtol=1e-5, atol=1e-4)

    compiled = converter.create_compiler(rng_seed=1, build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    np.testing.assert_allclose(predictions[outputs[0]], expected, rtol=1e-5, atol=1e-4)


def test_flatten_after_conv_population(tmp_path):
    """Two hops: binary spikes of a Conv2D(relu) population, flattened into a Dense.

    The hidden IF neurons (threshold 1) integrate ``conv(x)`` at step 1 and spike where it
    reaches 1; the output integrates those spikes at step 2, so after T = 3 steps it holds
    ``Dense(flatten(conv(x) >= 1))``, whatever the flattening order, if it is Keras'.
    """
    rng = np.random.default_rng(7)
    inp = keras.Input((6, 6, 2), name="inp")
    hidden = L.Conv2D(4, 3, activation="relu", use_bias=False, name="hidden")(inp)
    skip = L.AveragePooling2D(2)(inp)                                   # population-free branch
    out = L.Dense(5, use_bias=False, name="out")(L.Flatten()(hidden))
    out2 = L.Dense(3, use_bias=False, name="out2")(L.Flatten()(skip))
    model = randomise(keras.Model(inp, [out, out2]), rng)
    x = (rng.uniform(0, 1, (4, 6, 6, 2)) > 0.4).astype(np.float32)
    conv = to_numpy(keras.Model(inp, hidden)(x))[0]
    spikes = (conv >= 1.0).astype(np.float32)
    expected = spikes.reshape(4, -1) @ model.get_layer("out").get_weights()[0]

    net, inputs, outputs, _ = HarnessConverter().convert(model)
    assert [p.name for p in net.populations] == ["inp", "hidden", "out", "out2"]
    compiled = InferenceCompiler(evaluate_timesteps=3, rng_seed=1, build_dir=str(tmp_path)
                                 ).compile(net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    np.testing.assert_allclose(predictions[outputs[0]], expected, rtol=1e-5, atol=1e-4)
    # out2 is one hop from the input and integrated for two steps
    pooled = to_numpy(keras.Model(inp, out2)(x))[0]
    np.testing.assert_allclose(predictions[outputs[1]], 2 * pooled, rtol=1e-5, atol=1e-4)
