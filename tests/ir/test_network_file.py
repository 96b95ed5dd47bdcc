"""The versioned HDF5 network file: exact round trips and clear rejections."""
from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest

from distsnn.compilers import InferenceCompiler
from distsnn.connectivity import AvgPool2D, AvgPoolConv2D, AvgPoolDense2D, Conv2D, Dense, OneToOne
from distsnn.netfile import (
    FORMAT_VERSION,
    NetworkFileError,
    load_network,
    network_to_bytes,
    save_network,
)
from distsnn.network import Network
from distsnn.neurons import (
    AnalogInput,
    BinarySpikeInput,
    FewSpikeRelu,
    FewSpikeReluInput,
    IntegrateFire,
    IntegrateFireInput,
    Integrator,
    PoissonInput,
)


def full_network() -> Network:
    """Every neuron and connectivity kind, per-neuron arrays, delays, several in/outputs."""
    rng = np.random.default_rng(3)
    net = Network(metadata={"method": "data-norm", "params": {"percentile": 99.9, "T": 500},
                            "source_sha256": "ab" * 32, "layers": ["conv1", "dense"],
                            "flag": True, "none": None})
    img = net.add_population("img", (8, 8, 2), BinarySpikeInput(), record_spikes=True)
    pois = net.add_population("pois", 6, PoissonInput(signed_input=True))
    ifin = net.add_population("ifin", 6, IntegrateFireInput(v_thresh=0.75, v_reset=0.0,
                                                            reset="subtract", signed_input=True))
    conv = net.add_population("conv", (8, 8, 3), IntegrateFire(
        v_thresh=rng.uniform(0.5, 2, 192).astype(np.float32), reset="subtract",
        bias=rng.uniform(-1, 1, 192).astype(np.float32)))
    pool = net.add_population("pool", (4, 4, 3), IntegrateFire(v_thresh=1.5, v_reset=-0.25))
    pconv = net.add_population("pconv", (2, 2, 4), IntegrateFire(bias=0.125))
    dense = net.add_population("dense", 5, IntegrateFire(readout="spike_count"))
    avg = net.add_population("avg", 6, IntegrateFire(readout="avg_var"))
    net.connect(img, conv, Conv2D(rng.uniform(-1, 1, (3, 3, 2, 3)).astype(np.float32),
                                  strides=(1, 1), padding="same", delay=2))
    net.connect(conv, pool, AvgPool2D((2, 2)))
    net.connect(pool, pconv, AvgPoolConv2D(rng.uniform(-1, 1, (2, 2, 3, 4)).astype(np.float32),
                                           pool_size=(2, 2), pool_strides=(2, 2),
                                           strides=(1, 1), padding="same"))
    net.connect(conv, dense, AvgPoolDense2D(rng.uniform(-1, 1, (18, 5)).astype(np.float32),
                                            pool_size=(3, 3), strides=(2, 3)), name="skip")
    net.connect(pois, avg, OneToOne(rng.uniform(-1, 1, 6).astype(np.float32), delay=1))
    net.connect(ifin, avg, OneToOne(0.5))
    net.connect(pconv, dense, Dense(rng.uniform(-1, 1, (16, 5)).astype(np.float64)))
    analog = net.add_population("analog", (2, 2, 1), AnalogInput())
    mean = net.add_population("mean", 3, Integrator(bias=rng.uniform(-1, 1, 3).astype(np.float32)))
    net.connect(analog, mean, Dense(rng.uniform(-1, 1, (4, 3)).astype(np.float32)))
    net.outputs = [dense, avg, mean]
    fs_in = net.add_population("fs_in", 4, FewSpikeReluInput(k=8, alpha=3.5, signed_input=True))
    net.add_population("fs", 4, FewSpikeRelu(k=8, alpha=2.0, bias=np.arange(4, dtype=np.float32),
                                             readout="var"))
    net.connect(fs_in, net.population("fs"), OneToOne(1.0))
    return net


def assert_same_value(a, b, where):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.shape == b.shape and a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def assert_same_network(a: Network, b: Network):
    assert [p.name for p in a.populations] == [p.name for p in b.populations]
    for pa, pb in zip(a.populations, b.populations):
        assert pa.shape == pb.shape and type(pa.neuron) is type(pb.neuron), pa.name
        assert pa.record_spikes == pb.record_spikes, pa.name
        params_a, params_b = pa.neuron.params(), pb.neuron.params()
        assert params_a.keys() == params_b.keys()
        for key in params_a:
            assert_same_value(params_a[key], params_b[key], f"{pa.name}.{key}")
    assert [c.name for c in a.connections] == [c.name for c in b.connections]
    for ca, cb in zip(a.connections, b.connections):
        assert (ca.source.name, ca.target.name) == (cb.source.name, cb.target.name), ca.name
        assert ca.source is b.population(ca.source.name) or cb.source is b.population(
            cb.source.name)
        assert type(ca.connectivity) is type(cb.connectivity), ca.name
        params_a, params_b = ca.connectivity.params(), cb.connectivity.params()
        assert params_a.keys() == params_b.keys()
        for key in params_a:
            assert_same_value(params_a[key], params_b[key], f"{ca.name}.{key}")
    assert [p.name for p in a.inputs] == [p.name for p in b.inputs]
    assert [p.name for p in a.outputs] == [p.name for p in b.outputs]
    assert a.metadata == b.metadata
    assert a.content_hash() == b.content_hash()


def test_round_trip_through_a_file_is_exact(tmp_path):
    net = full_network()
    path = tmp_path / "net.h5"
    save_network(net, path)
    loaded = load_network(path)
    assert_same_network(net, loaded)
    # connections refer to the loaded populations themselves
    for conn in loaded.connections:
        assert conn.source is loaded.population(conn.source.name)
        assert conn.target is loaded.population(conn.target.name)
    # and the result round-trips again
    assert_same_network(net, load_network(network_to_bytes(loaded)))


def test_round_trip_through_bytes_and_str_path(tmp_path):
    net = full_network()
    data = network_to_bytes(net)
    assert isinstance(data, bytes) and data[:8] == b"\x89HDF\r\n\x1a\n"
    assert_same_network(net, load_network(data))
    path = tmp_path / "net.h5"
    path.write_bytes(data)
    assert_same_network(net, load_network(str(path)))


def test_round_trip_keeps_population_and_connection_order_beyond_ten(tmp_path):
    net = Network()
    prev = net.add_population("p0", 2, BinarySpikeInput())
    for i in range(1, 13):
        pop = net.add_population(f"p{i}", 2, IntegrateFire(v_thresh=float(i)))
        net.connect(prev, pop, OneToOne(float(i)))
        prev = pop
    net.outputs = [prev]
    loaded = load_network(network_to_bytes(net))
    assert [p.name for p in loaded.populations] == [f"p{i}" for i in range(13)]
    assert [c.connectivity.weight for c in loaded.connections] == [float(i) for i in range(1, 13)]


def test_content_hash_tells_networks_apart():
    a, b = full_network(), full_network()
    assert a.content_hash() == b.content_hash()
    b.connections[0].connectivity.weight[0, 0, 0, 0] += 1e-3
    assert a.content_hash() != b.content_hash()
    c = full_network()
    c.population("pool").neuron.v_thresh = 1.25
    assert a.content_hash() != c.content_hash()


def test_round_trip_with_numpy_scalar_parameters_keeps_the_hash():
    """Parameters given as numpy scalars (np.float32 thresholds, np.int64 delays) load back
    as Python numbers of the same value, so the content hash must not depend on the type."""
    net = Network()
    inp = net.add_population("in", (4, 4, 1), BinarySpikeInput())
    conv = Conv2D(np.ones((3, 3, 1, 2), np.float32), padding="same", delay=np.int64(1))
    out = net.add_population("out", (4, 4, 2), IntegrateFire(v_thresh=np.float32(0.5)))
    net.connect(inp, out, conv)
    net.outputs = [out]
    loaded = load_network(network_to_bytes(net))
    assert loaded.population("out").neuron.v_thresh == 0.5
    assert loaded.connections[0].connectivity.delay == 1
    assert loaded.content_hash() == net.content_hash()


def test_per_channel_arrays_are_stored_once_and_load_back_whole():
    """A bias folded from BatchNorm repeats per channel over the image: the file holds one
    copy per channel (network file size close to the model's weights)."""
    net = Network()
    inp = net.add_population("in", (16, 16, 4), BinarySpikeInput())
    bias = np.tile(np.arange(4, dtype=np.float32), 256)
    varied = bias.copy()
    varied[-1] = 9.0
    a = net.add_population("a", (16, 16, 4), IntegrateFire(bias=bias))
    b = net.add_population("b", (16, 16, 4), IntegrateFire(bias=varied))
    net.connect(inp, a, OneToOne(np.tile(np.float32([0.5, 1, 2, 3]), 256)))
    net.connect(inp, b, OneToOne(1.0))
    net.outputs = [a, b]
    data = network_to_bytes(net)
    loaded = load_network(data)
    np.testing.assert_array_equal(loaded.population("a").neuron.bias, bias)
    np.testing.assert_array_equal(loaded.population("b").neuron.bias, varied)
    assert loaded.content_hash() == net.content_hash()
    with h5py.File(io.BytesIO(data)) as f:
        pops = f["populations"]
        sizes = {pops[g].attrs["name"]: pops[g]["bias"].size for g in pops if "bias" in pops[g]}
        assert sizes == {"a": 4, "b": 1024}
        assert f["connections"]["00000"]["weight"].size == 4


def test_round_trip_keeps_explicit_padding():
    net = Network()
    inp = net.add_population("in", (6, 6, 1), BinarySpikeInput())
    out = net.add_population("out", (3, 3, 2), IntegrateFire())
    net.connect(inp, out, Conv2D(np.ones((3, 3, 1, 2), np.float32), strides=2,
                                 padding=[[1, 0], [0, 1]]))
    net.outputs = [out]
    loaded = load_network(network_to_bytes(net))
    assert loaded.connections[0].connectivity.padding == ((1, 0), (0, 1))
    assert loaded.content_hash() == net.content_hash()


def test_loaded_network_simulates_identically(tmp_path, build_dir):
    rng = np.random.default_rng(9)
    net = Network()
    inp = net.add_population("in", (6, 6, 1), BinarySpikeInput())
    hid = net.add_population("hid", (6, 6, 2), IntegrateFire(
        v_thresh=rng.uniform(0.5, 1.5, 72).astype(np.float32), reset="subtract"))
    out = net.add_population("out", 3, IntegrateFire(v_thresh=1e30, readout="var"))
    net.connect(inp, hid, Conv2D(rng.uniform(0, 1, (3, 3, 1, 2)).astype(np.float32),
                                 padding="same"))
    net.connect(hid, out, Dense(rng.uniform(-1, 1, (72, 3)).astype(np.float32)))
    net.outputs = [out]
    save_network(net, tmp_path / "n.h5")
    loaded = load_network(tmp_path / "n.h5")
    x = (rng.random((3, 6, 6, 1)) < 0.5).astype(np.float32)
    results = []
    for network in (net, loaded):
        compiled = InferenceCompiler(evaluate_timesteps=10, rng_seed=1,
                                     build_dir=str(build_dir)).compile(network)
        with compiled:
            preds, _ = compiled.predict({network.inputs[0]: x}, callbacks=[])
            results.append((preds[network.outputs[0]], compiled.build_info.model_name))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert np.any(results[0][0] != 0)
    assert results[0][1] == results[1][1]  # same content hash: same GeNN model


# --------------------------------------------------------------------------------------
# rejections: NetworkFileError naming the file and the problem
# --------------------------------------------------------------------------------------
def _rejects(source, *words):
    with pytest.raises(NetworkFileError) as info:
        load_network(source)
    message = str(info.value)
    label = "<network bytes>" if isinstance(source, bytes) else str(source)
    assert label in message, message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def _edited(net: Network, edit) -> bytes:
    buffer = io.BytesIO(network_to_bytes(net))
    with h5py.File(buffer, "r+") as f:
        edit(f)
    return buffer.getvalue()


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_rejected(tmp_path, fraction):
    data = network_to_bytes(full_network())
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[:int(len(data) * fraction)])
    _rejects(path, "HDF5")


def test_truncated_bytes_are_rejected():
    data = network_to_bytes(full_network())
    _rejects(data[:len(data) - 1], "HDF5")


def test_non_hdf5_file_is_rejected(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("this is not an HDF5 file\n" * 20)
    _rejects(path, "not a readable HDF5 file")


def test_missing_file_is_rejected(tmp_path):
    _rejects(tmp_path / "nope.h5", "no such file")
    _rejects(tmp_path, "no such file")  # a directory


def test_hdf5_file_of_another_format_is_rejected(tmp_path):
    path = tmp_path / "keras.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "keras"
        f.create_dataset("model_weights", data=np.arange(4))
    _rejects(path, "not a distsnn network file")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    _rejects(plain, "not a distsnn network file")


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, 99])
def test_unknown_format_version_is_rejected(tmp_path, version):
    path = tmp_path / "future.h5"
    path.write_bytes(_edited(full_network(),
                             lambda f: f.attrs.__setitem__("format_version", version)))
    message = _rejects(path, "version", str(version))
    assert str(FORMAT_VERSION) in message


def test_missing_weight_dataset_is_rejected(tmp_path):
    def drop(f):
        for key in f["connections"]:
            if "weight" in f["connections"][key]:
                del f["connections"][key]["weight"]
                return
    path = tmp_path / "incomplete.h5"
    path.write_bytes(_edited(full_network(), drop))
    _rejects(path, "missing", "weight")


def test_missing_per_neuron_array_is_rejected():
    data = _edited(full_network(), lambda f: f["populations/00003"].__delitem__("v_thresh"))
    _rejects(data, "missing", "v_thresh")


def test_missing_population_is_rejected():
    data = _edited(full_network(), lambda f: f["populations"].__delitem__("00004"))
    _rejects(data, "missing", "pool")


def test_missing_root_attribute_is_rejected():
    data = _edited(full_network(), lambda f: f.attrs.__delitem__("outputs"))
    _rejects(data, "missing")


def test_unknown_neuron_and_connectivity_kinds_are_rejected():
    data = _edited(full_network(), lambda f: f["populations/00001"].attrs.__setitem__(
        "kind", "izhikevich"))
    _rejects(data, "izhikevich", "pois")
    data = _edited(full_network(), lambda f: f["connections/00000"].attrs.__setitem__(
        "kind", "fixed_probability"))
    _rejects(data, "fixed_probability")


def test_corrupt_parameter_record_is_rejected_as_network_file_error():
    """A damaged parameter record is a bad file, not an internal JSONDecodeError."""
    def bad_json(f):
        f["populations/00003"].attrs["params"] = '{"v_reset": 0.0, "reset": "subt'
    _rejects(_edited(full_network(), bad_json))


def test_unknown_parameter_is_rejected_as_network_file_error():
    """A parameter this distsnn does not know is a bad file, not an internal TypeError."""
    def unknown_key(f):
        params = json.loads(f["populations/00004"].attrs["params"])
        params["tau_mem"] = 20.0
        f["populations/00004"].attrs["params"] = json.dumps(params)
    _rejects(_edited(full_network(), unknown_key), "tau_mem")
