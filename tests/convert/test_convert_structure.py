"""Structure of converted networks: populations, connections, weights, folding, metadata."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers

from distsnn import connectivity as C  # noqa: E402
from distsnn.convert import DataNorm, FewSpike, InputType, ModelFileError, Simple  # noqa: E402
from distsnn.netfile import load_network, network_to_bytes  # noqa: E402
from distsnn.neurons import BinarySpikeInput, IntegrateFire, IntegrateFireInput, PoissonInput  # noqa: E402
from helpers.conversion_harness import HarnessConverter, linear_response  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def randomise(model, seed=0):
    """Random weights (and non-trivial BatchNorm statistics) so nothing passes by accident."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, L.BatchNormalization):
            new = []
            for var, w in zip(layer.weights, weights):
                name = var.path.split("/")[-1]
                low, high = (0.5, 2.0) if name in ("gamma", "moving_variance") else (-0.5, 0.5)
                new.append(rng.uniform(low, high, w.shape).astype(np.float32))
            layer.set_weights(new)
        else:
            layer.set_weights([rng.uniform(-1, 1, w.shape).astype(np.float32) for w in weights])
    return model


def vgg(use_bias=False):
    return keras.Sequential([
        keras.Input((32, 32, 3), name="inp"),
        L.Conv2D(32, 3, padding="same", activation="relu", use_bias=use_bias, name="b1c1"),
        L.Conv2D(64, 3, padding="same", activation="relu", use_bias=use_bias, name="b1c2"),
        L.AveragePooling2D(2, name="pool1"),
        L.Conv2D(64, 3, padding="same", activation="relu", use_bias=use_bias, name="b2c1"),
        L.Conv2D(64, 3, padding="same", activation="relu", use_bias=use_bias, name="b2c2"),
        L.AveragePooling2D(2, name="pool2"),
        L.Flatten(),
        L.Dense(256, activation="relu", use_bias=use_bias, name="dense1"),
        L.Dense(10, activation="softmax", use_bias=use_bias, name="out"),
    ])


def test_sequential_vgg_structure():
    model = randomise(vgg())
    net, inputs, outputs, layer_pops = Simple(500).convert(model)
    assert [p.shape for p in net.populations] == [
        (32, 32, 3), (32, 32, 32), (32, 32, 64), (16, 16, 64), (16, 16, 64), (256,), (10,)]
    assert [type(c.connectivity) for c in net.connections] == [
        C.Conv2D, C.Conv2D, C.AvgPoolConv2D, C.Conv2D, C.AvgPoolDense2D, C.Dense]
    assert inputs == net.inputs and len(inputs) == 1 and isinstance(inputs[0].neuron, PoissonInput)
    assert outputs == [net.population("out")]
    assert outputs[0].neuron.readout == "spike_count"
    assert all(isinstance(p.neuron, IntegrateFire) and p.neuron.v_thresh == 1.0
               and p.neuron.reset == "subtract" for p in net.populations[1:])  # the default
    kernels = [model.get_layer(n).get_weights()[0]
               for n in ("b1c1", "b1c2", "b2c1", "b2c2", "dense1", "out")]
    for conn, kernel in zip(net.connections, kernels):
        np.testing.assert_array_equal(conn.connectivity.weight, kernel)
    pool = net.connections[2].connectivity
    assert pool.pool_size == (2, 2) and pool.padding == "same"
    assert {layer.name: pop.name for layer, pop in layer_pops.items()} == {
        "inp": "inp", "b1c1": "b1c1", "b1c2": "b1c2", "b2c1": "b2c1",
        "b2c2": "b2c2", "dense1": "dense1", "out": "out"}  # pooling/Flatten are not populations
    assert not any(p.neuron.__dict__.get("bias") is not None for p in net.populations[1:])


def test_functional_skip_shares_dense_kernel():
    """mlGeNN's functional test: Add of two pooled branches, then Flatten and Dense."""
    inp = keras.Input((32, 32, 3), name="inp")
    b1 = L.Conv2D(32, 3, padding="same", activation="relu", use_bias=False, name="b1c1")(inp)
    b1 = L.Conv2D(64, 3, padding="same", activation="relu", use_bias=False, name="b1c2")(b1)
    b2 = L.AveragePooling2D(2)(b1)
    b2 = L.Conv2D(64, 3, padding="same", activation="relu", use_bias=False, name="b2c1")(b2)
    b2 = L.Conv2D(64, 3, padding="same", activation="relu", use_bias=False, name="b2c2")(b2)
    merged = L.Add()([L.AveragePooling2D(2)(b2), L.AveragePooling2D(4)(b1)])
    x = L.Dense(256, activation="relu", use_bias=False, name="dense1")(L.Flatten()(merged))
    out = L.Dense(10, activation="softmax", use_bias=False, name="out")(x)
    model = randomise(keras.Model(inp, out))
    net, *_ = Simple(500).convert(model)
    b1c2, dense1 = net.population("b1c2"), net.population("dense1")
    assert sorted(type(c.connectivity).__name__ for c in net.outgoing(b1c2)) == [
        "AvgPoolConv2D", "AvgPoolDense2D"]
    incoming = net.incoming(dense1)
    assert [type(c.connectivity) for c in incoming] == [C.AvgPoolDense2D] * 2
    kernel = model.get_layer("dense1").get_weights()[0]
    for c in incoming:
        np.testing.assert_array_equal(c.connectivity.weight, kernel)
    assert {c.connectivity.pool_size for c in incoming} == {(2, 2), (4, 4)}


def resnet_block(use_bias=True):
    inp = keras.Input((6, 6, 3), name="inp")
    a = L.ReLU(name="a")(L.Conv2D(4, 3, padding="same", name="conv_a")(inp))
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(a)
    b = L.Conv2D(4, 3, padding="same", name="conv_c")(b)
    b = L.BatchNormalization(name="bn_c")(b)
    c = L.ReLU(name="c")(L.Add(name="add")([b, a]))
    p = L.AveragePooling2D(2)(c)
    out = L.Dense(3, activation="softmax", name="out")(L.Flatten()(p))
    return randomise(keras.Model(inp, out), seed=3)


def test_functional_resnet_block_structure():
    model = resnet_block()
    net, inputs, outputs, layer_pops = Simple(100).convert(model)
    assert [p.name for p in net.populations] == ["inp", "a", "conv_b", "c", "out"]
    kinds = {(c.source.name, c.target.name): type(c.connectivity) for c in net.connections}
    assert kinds == {("inp", "a"): C.Conv2D, ("a", "conv_b"): C.Conv2D,
                     ("conv_b", "c"): C.Conv2D, ("a", "c"): C.OneToOne,
                     ("c", "out"): C.AvgPoolDense2D}
    assert net.connections[3].connectivity.weight == 1.0
    assert net.population("out").neuron.readout == "spike_count"
    assert layer_pops[model.get_layer("a")] is net.population("a")
    assert model.get_layer("conv_a") not in layer_pops  # linear: folded into population "a"


def keras_value(model, layer_name, x):
    sub = keras.Model(model.inputs[0], model.get_layer(layer_name).output)
    return keras.ops.convert_to_numpy(sub(x, training=False))


def test_bias_and_batchnorm_folding_match_keras():
    """c's input = folded conv_c(conv_b) + BN + skip: the host forward pass of the IR's
    connections and biases reproduces Keras' pre-activation of the Add."""
    model = resnet_block()
    net, *_ = HarnessConverter().convert(model)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (3, 6, 6, 3)).astype(np.float32)
    values = {net.population("inp"): x}
    # the harness halves biases (they are added at both of its two steps): scale back by 2
    a = linear_response(net, net.population("a"), values, bias_scale=2.0)
    np.testing.assert_allclose(a, keras_value(model, "conv_a", x), rtol=1e-5, atol=1e-5)
    values[net.population("a")] = keras_value(model, "a", x)
    values[net.population("conv_b")] = keras_value(model, "conv_b", x)
    pre_c = linear_response(net, net.population("c"), values, bias_scale=2.0)
    np.testing.assert_allclose(pre_c, keras_value(model, "add", x), rtol=1e-5, atol=1e-4)
    # the folded kernel is the BN scale times the Keras kernel
    bn = model.get_layer("bn_c")
    gamma, beta, mean, var = bn.get_weights()
    scale = gamma / np.sqrt(var + bn.epsilon)
    conn = next(c for c in net.incoming(net.population("c")) if c.source.name == "conv_b")
    np.testing.assert_allclose(conn.connectivity.weight,
                               model.get_layer("conv_c").get_weights()[0] * scale, rtol=1e-6)


@pytest.mark.parametrize("spelling", ["string", "keras_fn", "tf_nn", "ops", "relu_layer",
                                      "activation_layer", "ops_relu_call"])
def test_relu_spellings(spelling):
    tf = pytest.importorskip("tensorflow")
    inp = keras.Input((5,), name="inp")
    activation = {"string": "relu", "keras_fn": keras.activations.relu, "tf_nn": tf.nn.relu,
                  "ops": keras.ops.relu}.get(spelling)
    if activation is not None:
        x = L.Dense(4, activation=activation, name="h")(inp)
    elif spelling == "relu_layer":
        x = L.ReLU(name="h")(L.Dense(4)(inp))
    elif spelling == "activation_layer":
        x = L.Activation("relu", name="h")(L.Dense(4)(inp))
    else:
        x = keras.ops.relu(L.Dense(4)(inp))
    out = L.Dense(2, activation="softmax")(x)
    net, *_ = Simple(10).convert(keras.Model(inp, out))
    assert [p.shape for p in net.populations] == [(5,), (4,), (2,)]
    assert [type(c.connectivity) for c in net.connections] == [C.Dense, C.Dense]


def test_flatten_after_populations_reshape_and_ops_add():
    inp = keras.Input((4, 4, 2), name="inp")
    h = L.Conv2D(3, 3, activation="relu", use_bias=False, name="conv")(inp)  # (2, 2, 3)
    skip = L.Dense(5, use_bias=False)(L.Reshape((-1,))(inp))   # Reshape after the input
    out = L.Dense(5, use_bias=False)(L.Flatten()(h)) + skip    # Flatten after a conv; ops.add
    model = randomise(keras.Model(inp, out))
    net, *_ = HarnessConverter().convert(model)
    out_pop = net.outputs[0]
    assert sorted((c.source.name, type(c.connectivity).__name__) for c in net.incoming(out_pop)) \
        == [("conv", "Dense"), ("inp", "Dense")]
    x = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 2)).astype(np.float32)
    h_val = keras.ops.convert_to_numpy(keras.Model(inp, h)(x))
    got = linear_response(net, out_pop, {net.inputs[0]: x, net.population("conv"): h_val})
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-5)


def test_input_types_and_options():
    model = randomise(keras.Sequential([keras.Input((4,), name="inp"),
                                        L.Dense(3, activation="softmax")]))
    x = np.random.default_rng(0).uniform(0, 0.5, (10, 4)).astype(np.float32)
    for input_type, cls in ((InputType.IF, IntegrateFireInput), ("spike", BinarySpikeInput),
                            ("poisson", PoissonInput)):
        net, *_ = Simple(10, input_type=input_type, reset="zero").convert(model)
        assert isinstance(net.inputs[0].neuron, cls)
        assert net.outputs[0].neuron.reset == "zero"  # mlGeNN-exact, on request
    net, *_ = DataNorm(10, norm_data=x, input_type="if").convert(model)
    assert net.inputs[0].neuron.v_thresh == pytest.approx(float(x.max()))
    with pytest.raises(TypeError, match="unknown option"):
        Simple(10, colour="red")
    with pytest.raises(ValueError, match="reset"):
        Simple(10, reset="hold")


def test_model_files_hash_and_network_file_roundtrip(tmp_path):
    model = randomise(vgg(use_bias=True))
    keras_path, h5_path = tmp_path / "m.keras", tmp_path / "m.h5"
    model.save(keras_path)
    model.save(h5_path)
    import hashlib
    for path in (keras_path, h5_path):
        net, *_ = Simple(500).convert(str(path))
        assert net.metadata["keras_model_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert net.metadata["keras_model_hash_of"] == "file"
        assert [type(c.connectivity) for c in net.connections] == [
            C.Conv2D, C.Conv2D, C.AvgPoolConv2D, C.Conv2D, C.AvgPoolDense2D, C.Dense]
        np.testing.assert_array_equal(net.connections[0].connectivity.weight,
                                      model.get_layer("b1c1").get_weights()[0])
        np.testing.assert_array_equal(
            net.population("b1c1").neuron.bias,
            np.broadcast_to(model.get_layer("b1c1").get_weights()[1], (32, 32, 32)).reshape(-1))
    net_obj, *_ = Simple(500).convert(model)
    assert net_obj.metadata["keras_model_hash_of"] == "weights"
    again, *_ = Simple(500).convert(model)
    assert again.metadata["keras_model_sha256"] == net_obj.metadata["keras_model_sha256"]
    copy = load_network(network_to_bytes(net_obj))
    assert copy.content_hash() == net_obj.content_hash()
    assert copy.metadata["method"] == "simple"


def test_missing_and_unreadable_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="nope.keras: no such model file"):
        Simple(10).convert(str(tmp_path / "nope.keras"))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="bad.h5: not a complete Keras model file"):
        Simple(10).convert(bad)
    good = tmp_path / "good.keras"
    keras.Sequential([keras.Input((4,)), L.Dense(2)]).save(good)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match=r"truncated.keras: .*zip archive.*truncated"):
        Simple(10).convert(truncated)


def test_few_spike_structure_and_own_alphas():
    model = resnet_block()
    x = np.random.default_rng(0).uniform(0, 1, (64, 6, 6, 3)).astype(np.float32)
    net, inputs, outputs, _ = FewSpike(k=8, norm_data=x).convert(model)
    a, conv_b, c = (net.population(n) for n in ("a", "conv_b", "c"))
    assert a.neuron.alpha != conv_b.neuron.alpha  # both feed c, each with its own code
    assert outputs[0].neuron.readout == "var"
    assert net.metadata["alphas"]["a"] == a.neuron.alpha
    assert c.neuron.bias is not None  # conv_c's bias and BN shift, in ANN units


def test_overridden_steps_are_used():
    """convert() calls the subclass's create_neurons / create_input_neurons / post_convert."""
    calls = []

    class Custom(Simple):
        def create_input_neurons(self, pre_convert_output):
            calls.append("input")
            return BinarySpikeInput()

        def create_neurons(self, keras_layer, pre_convert_output, is_output):
            calls.append((keras_layer.name, is_output))
            return IntegrateFire(v_thresh=2.5, readout="var" if is_output else None)

        def post_convert(self, network, inputs, outputs):
            calls.append("post")
            network.metadata["custom"] = True

    inp = keras.Input((4,), name="inp")
    out = L.Dense(2, name="out")(L.Dense(3, activation="relu", name="hidden")(inp))
    net, *_ = Custom(10).convert(keras.Model(inp, out))
    assert calls == ["input", ("hidden", False), ("out", True), "post"]
    assert [p.neuron.v_thresh for p in net.populations[1:]] == [2.5, 2.5]
    assert net.metadata["custom"] and net.metadata["thresholds"]["out"] == 2.5
