"""Networks built by hand as mlGeNN users build them, with only the imports changed
(``ml_genn`` -> ``distsnn``): SequentialNetwork/InputLayer/Layer, ``with Network():`` with
Population/Connection, mlGeNN's connectivity and neuron signatures, scalar weights, shape
inference, VarRecorder on layers, the few-spike delay-balancing network and the network file.
References are plain numpy loops (TF padding), independent of distsnn's own geometry code.
"""
from __future__ import annotations

import numpy as np
import pytest

from distsnn import Connection, InputLayer, Layer, Network, Population, SequentialNetwork
from distsnn.callbacks import SpikeRecorder, VarRecorder
from distsnn.compilers import FewSpikeCompiler, InferenceCompiler
from distsnn.connectivity import (
    AvgPool2D,
    AvgPoolConv2D,
    AvgPoolDense2D,
    Conv2D,
    Dense,
    OneToOne,
    ShapeError,
)
from distsnn.netfile import load_network, network_to_bytes
from distsnn.neurons import (
    BinarySpikeInput,
    FewSpikeRelu,
    FewSpikeReluInput,
    IntegrateFire,
    IntegrateFireInput,
    PoissonInput,
)
from distsnn.synapses import Delta, Exponential

NEVER = np.float64(np.finfo(np.float32).max)  # a threshold no input reaches: V is x . W


def ref_conv(x, w, strides=(1, 1), padding="valid"):
    """TF Conv2D of one (H, W, C) image by loops."""
    (h, wd, _), (kh, kw, _, f), (sh, sw) = x.shape, w.shape, strides
    if padding == "same":
        oh, ow = -(-h // sh), -(-wd // sw)
        ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - wd, 0)
        x = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    oh, ow = (x.shape[0] - kh) // sh + 1, (x.shape[1] - kw) // sw + 1
    out = np.zeros((oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = np.tensordot(x[i * sh:i * sh + kh, j * sw:j * sw + kw], w, axes=3)
    return out


def ref_pool(x, size, strides=None):
    """TF AveragePooling2D ('valid') of one (H, W, C) image by loops."""
    (kh, kw), (sh, sw) = size, strides or size
    oh, ow = (x.shape[0] - kh) // sh + 1, (x.shape[1] - kw) // sw + 1
    return np.array([[x[i * sh:i * sh + kh, j * sw:j * sw + kw].mean(axis=(0, 1))
                      for j in range(ow)] for i in range(oh)])


def _compiler(build_dir, **kwargs) -> InferenceCompiler:
    return InferenceCompiler(evaluate_timesteps=2, build_dir=str(build_dir), **kwargs)


# --------------------------------------------------------------------------------------
# SequentialNetwork: Dense and OneToOne (mlGeNN's test_dense / test_one_to_one)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_size, out_size", [(5, 5), (5, 10)])
def test_dense(in_size, out_size, build_dir, request):
    rng = np.random.default_rng(in_size + out_size)
    x = rng.integers(0, 2, size=(3, in_size)).astype(np.float64)
    w = rng.random((in_size, out_size))
    y_true = x @ w

    network = SequentialNetwork()
    with network:
        input = InputLayer(BinarySpikeInput(), in_size)
        output = Layer(Dense(weight=w), IntegrateFire(v_thresh=NEVER, readout="var"), out_size)

    compiled_net = _compiler(build_dir).compile(network, request.node.name)
    with compiled_net:
        metrics, _ = compiled_net.evaluate({input: x}, {output: y_true}, "mean_square_error")
    assert metrics[output].result < 1e-6
    assert output.connection().source() is input.population()
    assert network.inputs == [input.population] and network.outputs == [output.population]


def test_one_to_one(build_dir, request):
    x = np.random.default_rng(1).integers(0, 2, size=(3, 10)).astype(np.float64)
    network = SequentialNetwork()
    with network:
        input = InputLayer("binary_spike_input", 10)
        output = Layer(OneToOne(1.0), IntegrateFire(v_thresh=NEVER, readout="var"))

    assert output.population().shape == (10,)  # inferred from the connectivity
    compiled_net = _compiler(build_dir).compile(network, request.node.name)
    with compiled_net:
        predictions, _ = compiled_net.predict({input: x}, output)
    np.testing.assert_array_equal(predictions[output], x)


# --------------------------------------------------------------------------------------
# convolutions and pooling with mlGeNN's signatures, target shapes inferred (one build)
# --------------------------------------------------------------------------------------
def test_convolutions_and_pooling(build_dir, request):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2, size=(3, 6, 6, 2)).astype(np.float64)
    k1, k2, k3 = (rng.normal(size=s) for s in ((3, 3, 2, 3), (3, 3, 2, 2), (2, 3, 2, 3)))
    kp, wd = rng.normal(size=(3, 3, 2, 2)), rng.normal(size=(18, 4))
    cases = {  # connectivity, reference, target shape (None: inferred), initial V
        "s1_same": (Conv2D(k1, 3, 3, conv_padding="same"),
                    lambda i: ref_conv(i, k1, padding="same"), None, 0.0),
        "s1_valid": (Conv2D(k1, 3, (3, 3)), lambda i: ref_conv(i, k1), None, 0.25),
        "s2_same": (Conv2D(k2, 2, 3, conv_strides=2, conv_padding="same"),
                    lambda i: ref_conv(i, k2, (2, 2), "same"), None, 0.0),
        "s2_valid": (Conv2D(k3, 3, (2, 3), conv_strides=(2, 2)),
                     lambda i: ref_conv(i, k3, (2, 2)), None, 0.0),
        "scalar_flat": (Conv2D(0.5, 2, 3, flatten=True, conv_strides=2),
                        lambda i: ref_conv(i, np.full((3, 3, 2, 2), 0.5), (2, 2)).reshape(-1),
                        None, 0.0),
        "pool": (AvgPool2D(2), lambda i: ref_pool(i, (2, 2)), None, 0.0),
        "pool_flat": (AvgPool2D(3, True, pool_strides=3),
                      lambda i: ref_pool(i, (3, 3)).reshape(-1), None, 0.0),
        "pool_conv": (AvgPoolConv2D(kp, 2, 2, 3, conv_padding="same"),
                      lambda i: ref_conv(ref_pool(i, (2, 2)), kp, padding="same"), None, 0.0),
        "pool_dense": (AvgPoolDense2D(wd, 2, pool_strides=(2, 2)),
                       lambda i: ref_pool(i, (2, 2)).reshape(-1) @ wd, 4, 0.0),
        "dense_scalar": (Dense(0.25), lambda i: np.full(5, 0.25 * i.sum()), 5, 0.0),
    }
    with Network() as network:
        input = Population(BinarySpikeInput(), (6, 6, 2))
        outputs = {}
        for name, (connectivity, _, shape, v) in cases.items():
            outputs[name] = Population(IntegrateFire(v_thresh=NEVER, v=v, readout="var"), shape,
                                       name=name)
            Connection(input, outputs[name], connectivity)

    assert outputs["s2_same"].shape == (3, 3, 2) and outputs["scalar_flat"].shape == (8,)
    assert outputs["pool_flat"].shape == (8,) and outputs["pool_conv"].shape == (3, 3, 2)
    compiled_net = _compiler(build_dir).compile(network, request.node.name, inputs=input,
                                                outputs=list(outputs.values()))
    with compiled_net:
        predictions, _ = compiled_net.predict({input: x}, list(outputs.values()))
    for name, (_, ref, _, v) in cases.items():
        expected = np.stack([ref(i) for i in x]) + v  # V starts every example at v
        np.testing.assert_allclose(predictions[outputs[name]], expected, rtol=1e-5, atol=1e-5,
                                   err_msg=name)


# --------------------------------------------------------------------------------------
# few-spike delay balancing on a hand-built Network (mlGeNN's test_delay_balancing)
# --------------------------------------------------------------------------------------
def test_few_spike_delay_balancing(build_dir):
    hidden_neuron = FewSpikeRelu(k=8, alpha=5.0)  # one object for every hidden population
    hidden_connectivity, output_connectivity = Dense(1.0), Dense(1.0 / 3.0)

    network = Network()
    with network:
        input = Population(FewSpikeReluInput(k=8, alpha=5.0), 1)
        output = Population(FewSpikeRelu(k=8, alpha=5.0, readout="var"), 1)
        for depth in (3, 2, 1):  # three branches of 3, 2 and 1 hidden layers
            source = input
            for _ in range(depth):
                hidden = Population(hidden_neuron, 1)
                Connection(source, hidden, hidden_connectivity)
                source = hidden
            Connection(source, output, output_connectivity)

    compiler = FewSpikeCompiler(k=8, build_dir=str(build_dir))
    compiled_net = compiler.compile(network, "test_delay_balancing", inputs=input,
                                    outputs=output)
    x = np.arange(0.0, 5.0).reshape((-1, 1))
    with compiled_net:
        metrics, _ = compiled_net.evaluate({input: x}, {output: x}, "mean_square_error")
    assert metrics[output].result < 0.1
    assert len({id(p.neuron) for p in network.populations}) == len(network.populations)


# --------------------------------------------------------------------------------------
# VarRecorder on layers with mlGeNN's GeNN variable names (mlGeNN's test_var_recorder),
# SpikeRecorder on a layer
# --------------------------------------------------------------------------------------
FILTERS = [(None, None), (slice(0, None, 2), None), (None, range(0, 5, 2)),
           (slice(0, None, 2), range(0, 5, 2))]


@pytest.mark.parametrize("batch_size", [1, 5])  # CPU: a batch of 5 runs as 5 GeNN batches
def test_var_recorder(batch_size, build_dir):
    x = np.random.default_rng(batch_size).random((5, 10))
    y_true = np.zeros((5, 10))
    v_thresh = np.arange(10)  # per neuron: a read-only variable "Vthresh"

    network = SequentialNetwork()
    with network:
        input = InputLayer(BinarySpikeInput(), 10, record_spikes=True, name="in")
        output = Layer(Dense(weight=0), IntegrateFire(readout="var", v_thresh=v_thresh), 10,
                       name="out")

    compiler = _compiler(build_dir, batch_size=batch_size)
    compiled_net = compiler.compile(network, "test_var_recorder")
    callbacks = [SpikeRecorder(input, key="spikes", record_counts=True)]
    for i, (neuron_filter, example_filter) in enumerate(FILTERS):
        callbacks += [VarRecorder(input, genn_var="Input", key=("in", i),
                                  neuron_filter=neuron_filter, example_filter=example_filter),
                      VarRecorder(output, genn_var="Vthresh", key=("out", i),
                                  neuron_filter=neuron_filter, example_filter=example_filter)]
    with compiled_net:
        _, cb_data = compiled_net.evaluate({input: x}, {output: y_true}, "mean_square_error",
                                           callbacks=callbacks)

    np.testing.assert_array_equal(cb_data["spikes"], np.full((5, 10), 2))  # every step: x > 0
    for i, (neuron_filter, example_filter) in enumerate(FILTERS):
        examples = range(5) if example_filter is None else example_filter
        neurons = slice(None) if neuron_filter is None else neuron_filter
        assert len(cb_data[("in", i)]) == len(cb_data[("out", i)]) == len(examples)
        for recorded_in, recorded_out, e in zip(cb_data[("in", i)], cb_data[("out", i)],
                                                examples):
            np.testing.assert_allclose(recorded_out, np.broadcast_to(v_thresh[neurons],
                                                                     (2, len(v_thresh[neurons]))))
            np.testing.assert_allclose(recorded_in, np.broadcast_to(x[e][neurons],
                                                                    (2, len(x[e][neurons]))),
                                       rtol=1e-6)


# --------------------------------------------------------------------------------------
# construction without GeNN: names, copies, signatures, errors
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("integrate_fire", IntegrateFire), ("binary_spike_input", BinarySpikeInput),
    ("poisson_input", PoissonInput), ("integrate_fire_input", IntegrateFireInput),
    ("few_spike_relu", FewSpikeRelu), ("few_spike_relu_input", FewSpikeReluInput)])
def test_neuron_names(name, cls):
    with Network() as network:
        pop = Population(name, 3)
    assert type(pop.neuron) is cls and network.populations == [pop] and pop() is pop
    assert pop.name.startswith("Pop")


def test_unknown_neuron_name():
    with Network(), pytest.raises(ValueError, match="unknown neuron 'lif'.*integrate_fire"):
        Population("lif", 3)


def test_mlgenn_neuron_signatures():
    assert IntegrateFire(2.0, -1.0, 0.5, "var") == IntegrateFire(
        v_thresh=2.0, v_reset=-1.0, v=0.5, readout="var")
    assert BinarySpikeInput(True).signed_input and PoissonInput(signed_spikes=True).signed_input
    assert IntegrateFireInput(2.0, 0.0, 0.5, 1, 1).v == 0.5
    assert FewSpikeRelu(8, 3.0, "var").readout == "var"
    assert FewSpikeReluInput(8, 3.0, True).signed_input
    with pytest.raises(ValueError, match="input_frames=3"):
        PoissonInput(False, 3)


def test_synapse_names_and_errors():
    with Network():
        a, b = Population(BinarySpikeInput(), 3), Population(IntegrateFire(), 3)
        with pytest.raises(ValueError, match="synapse must be \"delta\".*'alpha'"):
            Connection(a, b, OneToOne(1.0), synapse="alpha")
        assert Connection(a, b, OneToOne(1.0), synapse=Delta()).target() is b
        assert Connection(a, b, OneToOne(1.0), synapse="exponential").synapse == Exponential()
    with pytest.raises(ValueError, match="tau must be a positive"):
        Exponential(0.0)


def _exponential_reference(x, w, synapse: Exponential, steps: int, dt: float) -> np.ndarray:
    """mlGeNN's Exponential synapse into a non-leaky, never-firing IF neuron, per example:
    each step the target receives I (times the scale) and I decays; spikes of a step add
    their weights to I for the next one; I starts at 0 with every example."""
    out = []
    for example in x:
        current, v = np.zeros(w.shape[1]), np.zeros(w.shape[1])
        for step in range(steps):
            if step >= 1:
                v += current * synapse.current_scale(dt)
                current *= synapse.decay(dt)
            current += (example > 0) @ w
        out.append(v)
    return np.array(out)


@pytest.mark.parametrize("scale_i", [False, True])
def test_exponential_synapse_against_numpy(scale_i, build_dir):
    rng = np.random.default_rng(7)
    x = (rng.random((4, 5)) < 0.5).astype(np.float32)
    x[2] = 0.0  # an example without input right after one with: no current carries over
    w = rng.normal(size=(5, 3))
    synapse = Exponential(tau=3.0, scale_i=scale_i)
    network = SequentialNetwork()
    with network:
        input = InputLayer(BinarySpikeInput(), 5)
        output = Layer(Dense(w), IntegrateFire(v_thresh=NEVER, readout="var"),
                       synapse=synapse)
    compiler = InferenceCompiler(evaluate_timesteps=6, dt=0.5, build_dir=str(build_dir))
    with compiler.compile(network) as compiled:
        predictions, _ = compiled.predict({input: x}, [output], callbacks=[])
    expected = _exponential_reference(x, w, synapse, 6, 0.5)
    np.testing.assert_allclose(predictions[output], expected, rtol=1e-5, atol=1e-5)
    assert np.all(predictions[output][2] == 0.0)


def test_exponential_synapse_is_refused_by_few_spike(build_dir):
    with Network() as network:
        input = Population(FewSpikeReluInput(k=4), 2)
        output = Population(FewSpikeRelu(k=4, readout="var"), 2)
        Connection(input, output, OneToOne(1.0), synapse=Exponential(2.0))
    compiled = FewSpikeCompiler(k=4, build_dir=str(build_dir)).compile(
        network, inputs=input, outputs=output)
    with pytest.raises(ValueError, match="few-spike networks take delta synapses only"):
        with compiled:
            pass


def test_construction_errors():
    with pytest.raises(RuntimeError, match="inside a `with network:` block"):
        Population(IntegrateFire(), 3)
    with Network(), pytest.raises(RuntimeError, match="with sequential_network:"):
        InputLayer(BinarySpikeInput(), 3)
    with SequentialNetwork(), pytest.raises(ValueError, match="not an input neuron"):
        InputLayer(IntegrateFire(), 3)
    with SequentialNetwork():
        layer = InputLayer(BinarySpikeInput(), 3, name="quiet")
    with pytest.raises(ValueError, match="'quiet' was not created with record_spikes=True"):
        SpikeRecorder(layer)
    with Network():
        a = Population(BinarySpikeInput(), (4, 4, 1))
        with pytest.raises(ShapeError, match="scalar weight cannot infer the target's shape"):
            Connection(a, Population(IntegrateFire()), Dense(1.0))
    with pytest.raises(TypeError, match="scalar weight needs filters= and conv_size="):
        Conv2D(1.0)
    with pytest.raises(TypeError, match="flatten must be True or False"):
        AvgPool2D((2, 2), (2, 2))  # distsnn's old positional strides
    with pytest.raises(ValueError, match="does not match filters=4"):
        Conv2D(np.ones((3, 3, 1, 2)), 4, 3)


def test_shared_connectivity_is_copied_per_connection():
    """One scalar Dense serves connections of different sizes (mlGeNN copies it)."""
    dense = Dense(2.0)
    with Network() as network:
        a = Population(BinarySpikeInput(), 3)
        first = Connection(a, Population(IntegrateFire(), 2), dense)
        second = Connection(a, Population(IntegrateFire(), 4), dense)
    assert np.ndim(dense.weight) == 0
    np.testing.assert_array_equal(first.connectivity.weight, np.full((3, 2), 2.0))
    np.testing.assert_array_equal(second.connectivity.weight, np.full((3, 4), 2.0))
    assert [c.name for c in network.connections] == [first.name, second.name]
    assert a.outgoing_connections == [first, second]
    assert first.target().incoming_connections[0]() is first


def test_distsnn_api_keeps_working():
    """distsnn's own calls and the IR's keyword forms beside mlGeNN's."""
    net = Network()
    a = net.add_population("a", (6, 6, 1), BinarySpikeInput())
    b = net.add_population("b", (3, 3, 2), IntegrateFire())
    conn = net.connect(a, b, Conv2D(weight=np.ones((3, 3, 1, 2)), strides=(2, 2), padding="same"))
    assert conn.name == "a_to_b" and net.inputs == [a]
    assert conn.connectivity.params().keys() == {"weight", "strides", "padding", "delay"}
    assert AvgPoolConv2D(weight=np.ones((3, 3, 2, 2)), pool_size=2, pool_strides=2,
                         strides=2, padding="same").strides == (2, 2)
    with pytest.raises(TypeError, match="conv_strides= or strides=, not both"):
        Conv2D(np.ones((3, 3, 1, 2)), conv_strides=1, strides=1)


# --------------------------------------------------------------------------------------
# network file round trip of a hand-built network
# --------------------------------------------------------------------------------------
def test_network_file_round_trip():
    network = SequentialNetwork()
    with network:
        input = InputLayer(PoissonInput(signed_spikes=True), (6, 6, 2), record_spikes=True)
        conv = Layer(Conv2D(0.5, 3, 3, conv_padding="same"),
                     IntegrateFire(v_thresh=np.arange(108.0), v_reset=-0.5, v=0.25))
        pool = Layer(AvgPool2D(2, flatten=True), IntegrateFire(v_reset=-0.5, v=-0.5))
        Layer(Dense(1.5), IntegrateFire(readout="spike_count"), 4,
              synapse=Exponential(4.0, scale_i=True))

    loaded = load_network(network_to_bytes(network))
    assert [c.synapse for c in loaded.connections] == [Delta(), Delta(),
                                                      Exponential(4.0, scale_i=True)]
    assert loaded.content_hash() == network.content_hash()
    assert [p.name for p in loaded.inputs] == [input.name]
    assert [p.name for p in loaded.outputs] == [p.name for p in network.outputs]
    assert [p.shape for p in loaded.populations] == [(6, 6, 2), (6, 6, 3), (27,), (4,)]
    assert loaded.populations[0].record_spikes and loaded.populations[0].neuron.signed_input
    assert loaded.populations[1].neuron.v == 0.25 and loaded.populations[2].neuron.v == -0.5
    assert "v" not in pool.population.neuron.params()  # v == v_reset: files as before v
    np.testing.assert_array_equal(loaded.connections[0].connectivity.weight,
                                  np.full((3, 3, 2, 3), 0.5, np.float32))
    np.testing.assert_array_equal(loaded.connections[2].connectivity.weight,
                                  np.full((27, 4), 1.5, np.float32))
    assert conv.connection().connectivity.params().keys() == {
        "weight", "strides", "padding", "delay"}
