"""Data-based normalisation and few-spike alphas: statistics, scaling, data sources, API."""
from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
L = keras.layers

from distsnn.convert import DataNorm, FewSpike, ModelFileError, NormDataError, convert_file  # noqa: E402
from distsnn.convert.norm import RunningStat  # noqa: E402
from distsnn.neurons import IntegrateFire, IntegrateFireInput  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def randomise(model, seed, low=-1.0, high=1.0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = weights
            layer.set_weights([rng.uniform(0.5, 2, g.shape), rng.uniform(-.3, .3, b.shape),
                               rng.uniform(-.3, .3, m.shape), rng.uniform(0.5, 2, v.shape)])
        elif weights:
            layer.set_weights([rng.uniform(low, high, w.shape) for w in weights])
    return model


def outputs_of(model, names, x):
    sub = keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])
    out = sub(x, training=False)
    return [keras.ops.convert_to_numpy(t) for t in (out if isinstance(out, list) else [out])]


def chain_model():
    """mlGeNN's DataNorm check: Dense(5, linear) -> ReLU -> Dense(3, relu) -> Dense(2, softmax)."""
    inp = keras.Input((4,), name="inp")
    x = L.ReLU(name="relu")(L.Dense(5, name="d0")(inp))
    x = L.Dense(3, activation="relu", name="d2")(x)
    out = L.Dense(2, activation="softmax", name="out")(x)
    return randomise(keras.Model(inp, out), 0)


def test_data_norm_thresholds_chain():
    model = chain_model()
    x = np.random.default_rng(1).uniform(0, 1, (300, 4)).astype(np.float32)
    net, *_ = DataNorm(100, norm_data=x, norm_batch_size=64).convert(model)
    relu, d2 = outputs_of(model, ["relu", "d2"], x)
    w, b = model.get_layer("out").get_weights()
    logits = d2 @ w + b
    lam = [relu.max(), d2.max(), np.maximum(logits, 0).max()]
    thresholds = [p.neuron.v_thresh for p in net.populations[1:]]
    np.testing.assert_allclose(thresholds, [lam[0], lam[1] / lam[0], lam[2] / lam[1]], rtol=1e-5)
    # single sources: weights are the Keras kernels, biases scaled by the source's scale
    for conn in net.connections:
        layer = model.get_layer({"relu": "d0"}.get(conn.target.name, conn.target.name))
        np.testing.assert_array_equal(conn.connectivity.weight, layer.get_weights()[0])
    np.testing.assert_allclose(net.population("out").neuron.bias, b / lam[1], rtol=1e-6)
    meta = net.metadata
    assert meta["method"] == "data-norm" and meta["norm_examples"] == 300
    assert meta["thresholds"]["d2"] == pytest.approx(lam[1] / lam[0], rel=1e-5)
    assert meta["scales"]["out"] == pytest.approx(lam[2], rel=1e-5)
    assert meta["method_params"]["percentile"] == 100.0


def test_percentile_of_nonzero_activations():
    model = chain_model()
    x = np.random.default_rng(2).uniform(0, 1, (500, 4)).astype(np.float32)
    net, *_ = DataNorm(100, norm_data=x, percentile=99.0).convert(model)
    relu = outputs_of(model, ["relu"], x)[0]
    expected = np.percentile(relu[relu > 0], 99.0)
    assert net.population("relu").neuron.v_thresh == pytest.approx(expected, rel=2e-3)
    stat = RunningStat(with_histogram=True)
    values = np.random.default_rng(0).lognormal(0, 3, 100_000)
    for chunk in np.array_split(values, 7):
        stat.update(chunk)
    for q in (50, 99, 99.9):
        assert stat.percentile(q) == pytest.approx(np.percentile(values, q), rel=2e-3)
    assert stat.percentile(100) == np.float32(values.max())


def residual_model():
    inp = keras.Input((6, 6, 2), name="inp")
    a = L.ReLU(name="a")(L.BatchNormalization()(L.Conv2D(3, 3, padding="same")(inp)))
    b = L.Conv2D(3, 3, padding="same", activation="relu", name="b")(a)
    b = L.Conv2D(3, 3, padding="same", name="b2")(b)
    c = L.ReLU(name="c")(L.Add(name="add")([b, a]))
    g = L.GlobalAveragePooling2D()(c)
    out = L.Dense(4, name="out")(g)
    return randomise(keras.Model(inp, out), 5, -0.6, 0.6)


def simulate_rates(net, x, steps):
    """Host IF simulation of a rate-coded network (reset by subtraction): spikes per step."""
    order = net.topological_order()
    n = len(x)
    state = {p: np.zeros((n, p.size)) for p in order}
    spikes = {p: np.zeros((n, p.size)) for p in order}
    counts = {p: np.zeros((n, p.size)) for p in order}
    mats = {}
    for c in net.connections:
        pre, post, w = c.connectivity.synapses(c.source.shape)
        m = np.zeros((c.source.size, c.target.size))
        np.add.at(m, (pre, post), w)
        mats[c] = m
    flat_x = x.reshape(n, -1)
    for _ in range(steps):
        new = {}
        for p in order:
            neuron = p.neuron
            if isinstance(neuron, IntegrateFireInput):
                state[p] += flat_x
            else:
                state[p] += sum(spikes[c.source] @ mats[c] for c in net.incoming(p))
                if neuron.bias is not None:
                    state[p] += neuron.bias
            fired = state[p] >= np.asarray(neuron.v_thresh)
            state[p] -= fired * np.asarray(neuron.v_thresh)
            new[p] = fired.astype(float)
            counts[p] += fired
        spikes = new
    return {p.name: counts[p] / steps for p in order}


def test_data_norm_scaling_is_exact_through_residual_branches():
    """With reset by subtraction every population fires at relu(activation) / λ.

    The residual population c receives the skip a (scale λ_a) and the conv b2 (scale λ_b):
    it is normalised too (mlGeNN stops at the first branch), each source's weights scaled
    by λ_source / max(λ_a, λ_b), and all biases (conv, BatchNorm shift) by 1 / λ_ref.
    """
    model = residual_model()
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (200, 6, 6, 2)).astype(np.float32)
    converter = DataNorm(1000, norm_data=x, input_type="if", reset="subtract")
    net, _, _, layer_pops = converter.convert(model)
    scales = net.metadata["scales"]
    assert all(isinstance(p.neuron, IntegrateFire) for p in net.populations[1:])
    c_in = {conn.source.name: conn for conn in net.incoming(net.population("c"))}
    lam_ref = max(scales["a"], scales["b"])
    assert c_in["a"].connectivity.weight == pytest.approx(scales["a"] / lam_ref)
    np.testing.assert_allclose(c_in["b"].connectivity.weight,
                               model.get_layer("b2").get_weights()[0] * scales["b"] / lam_ref,
                               rtol=1e-6)
    assert net.population("c").neuron.v_thresh == pytest.approx(scales["c"] / lam_ref)
    np.testing.assert_allclose(
        net.population("c").neuron.bias,
        np.broadcast_to(model.get_layer("b2").get_weights()[1], (6, 6, 3)).reshape(-1) / lam_ref,
        rtol=1e-6)
    rates = simulate_rates(net, x[:20], steps=1000)
    acts = dict(zip(["a", "b", "c", "out"], outputs_of(model, ["a", "b", "c", "out"], x[:20])))
    for name, act in acts.items():
        expected = np.maximum(act, 0).reshape(20, -1) / scales[name]
        error = np.abs(rates[name] - expected)
        assert error.max() < 0.03 and error.mean() < 0.003, (name, error.max(), error.mean())


def test_data_norm_through_folded_input_preprocessing():
    """Raw 0-255 inputs, Rescaling and per-channel Normalization folded into a 'same' Conv2D:
    the scales are the activations of the Keras model (preprocessing included) and every
    population fires at relu(activation) / λ."""
    inp = keras.Input((6, 6, 2), name="inp")
    x = L.Normalization(mean=[0.4, 0.6], variance=[0.09, 0.04])(L.Rescaling(1 / 255)(inp))
    a = L.Conv2D(3, 3, padding="same", activation="relu", name="a")(x)
    b = L.Conv2D(3, 3, activation="relu", name="b")(a)
    out = L.Dense(4, name="out")(L.GlobalAveragePooling2D()(b))
    model = randomise(keras.Model(inp, out), 9, -0.4, 0.4)
    raw = np.random.default_rng(10).integers(0, 256, (200, 6, 6, 2)).astype(np.float32)
    net, *_ = DataNorm(1000, norm_data=raw, input_type="if", reset="subtract").convert(model)
    assert [p.name for p in net.populations] == ["inp", "a", "b", "out"]
    scales = net.metadata["scales"]
    acts = dict(zip(["a", "b", "out"], outputs_of(model, ["a", "b", "out"], raw)))
    assert scales["inp"] == raw.max()
    for name, act in acts.items():
        assert scales[name] == pytest.approx(np.maximum(act, 0).max(), rel=1e-5), name
    rates = simulate_rates(net, raw[:20], steps=1000)
    for name, act in acts.items():
        expected = np.maximum(act[:20], 0).reshape(20, -1) / scales[name]
        error = np.abs(rates[name] - expected)
        assert error.max() < 0.03 and error.mean() < 0.003, (name, error.max(), error.mean())


def test_norm_data_sources_agree(tmp_path):
    tf = pytest.importorskip("tensorflow")
    h5py = pytest.importorskip("h5py")
    model = chain_model()
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (130, 4)).astype(np.float32)
    y = rng.integers(0, 2, 130)
    np.savez(tmp_path / "n.npz", x=x, y=y)
    np.savez(tmp_path / "named.npz", images=x)
    np.save(tmp_path / "n.npy", x)
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f["x"] = x
    sources = {
        "array": (x, {}),
        "npz": (str(tmp_path / "n.npz"), {}),
        "npz_named": (tmp_path / "named.npz", {"x_name": "images"}),
        "npy": (tmp_path / "n.npy", {}),
        "h5": (tmp_path / "n.h5", {}),
        "mlgenn_dataset": ([tf.data.Dataset.from_tensor_slices((x, y)).batch(32)], {}),
        "batch_list": ([[(x[i:i + 50], y[i:i + 50]) for i in range(0, 130, 50)]], {}),
        "several_parts": ([x[:30], (x[30:100], y[30:100]),
                           tf.data.Dataset.from_tensor_slices(x[100:]).batch(8)], {}),
    }
    reference = None
    for name, (source, options) in sources.items():
        net, *_ = DataNorm(10, norm_data=source, norm_batch_size=40, **options).convert(model)
        thresholds = [p.neuron.v_thresh for p in net.populations[1:]]
        assert net.metadata["norm_examples"] == 130, name
        if reference is None:
            reference = thresholds
        np.testing.assert_allclose(thresholds, reference, rtol=1e-6, err_msg=name)
    with pytest.raises(NormDataError, match="images"):
        DataNorm(10, norm_data=tmp_path / "named.npz")
    with pytest.raises(NormDataError, match="missing.npz"):
        DataNorm(10, norm_data=tmp_path / "missing.npz")


def test_few_spike_alphas_are_each_populations_own_maximum():
    inp = keras.Input((4,), name="inp")
    a = L.Dense(3, activation="relu", name="a")(inp)
    b = L.Dense(3, activation="relu", name="b")(inp)
    c = L.Dense(3, activation="relu", name="c")(inp)
    t1 = L.Dense(2, name="t1")(L.Add()([a, b]))
    t2 = L.Dense(2, name="t2")(L.Add()([b, c]))
    model = randomise(keras.Model(inp, [t1, t2]), 6)
    x = np.random.default_rng(7).uniform(0, 1, (100, 4)).astype(np.float32)
    k = 8
    net, *_ = FewSpike(k=k, norm_data=x).convert(model)
    acts = outputs_of(model, ["a", "b", "c", "t1"], x)
    full = 1 - 2.0 ** -k
    for name, act in zip("abc", acts):  # b feeds t1 beside a and t2 beside c: not shared
        assert net.population(name).neuron.alpha == pytest.approx(act.max() / full, rel=1e-5)
    assert len({net.population(name).neuron.alpha for name in "abc"}) == 3
    assert net.population("t1").neuron.alpha == pytest.approx(np.maximum(acts[3], 0).max() / full,
                                                              rel=1e-5)
    assert net.inputs[0].neuron.alpha == pytest.approx(x.max() / full, rel=1e-6)
    assert net.metadata["alphas"]["b"] == net.population("b").neuron.alpha
    assert [o.neuron.readout for o in net.outputs] == ["var", "var"]
    xs = x - 0.5
    signed, *_ = FewSpike(k=k, signed_input=True, norm_data=xs).convert(model)
    assert signed.inputs[0].neuron.signed_input
    assert signed.inputs[0].neuron.alpha == pytest.approx(np.abs(xs).max() / (1 - 2.0 ** -(k // 2)),
                                                          rel=1e-6)
    plain, *_ = FewSpike(k=k, alpha=3.0).convert(model)
    assert {p.neuron.alpha for p in plain.populations} == {3.0}


def test_convert_file_methods(tmp_path):
    model = chain_model()
    path = tmp_path / "model.keras"
    model.save(path)
    x = np.random.default_rng(8).uniform(0, 1, (64, 4)).astype(np.float32)
    np.savez(tmp_path / "norm.npz", x=x)
    simple = convert_file(path, "simple", timesteps=200, input_type="if", reset="subtract")
    assert simple.metadata["method"] == "simple"
    assert simple.metadata["method_params"]["reset"] == "subtract"
    norm = convert_file(path, "data-norm", norm_data=tmp_path / "norm.npz", percentile=99.9)
    assert norm.metadata["norm_examples"] == 64
    assert norm.metadata["method_params"]["percentile"] == 99.9
    assert norm.metadata["keras_model_path"] == str(path)
    few = convert_file(path, "few-spike", norm_data=str(tmp_path / "norm.npz"), k=6)
    assert few.metadata["method_params"]["k"] == 6 and "alphas" in few.metadata
    pending = convert_file(path, "spike-norm", timesteps=300)
    assert pending.metadata["method"] == "spike-norm"
    assert pending.metadata["spike_norm"]["status"] == "pending"
    assert set(pending.metadata["thresholds"].values()) == {1.0}
    with pytest.raises(NormDataError, match="data-norm needs normalisation data"):
        convert_file(path, "data-norm")
    with pytest.raises(ValueError, match="unknown conversion method"):
        convert_file(path, "magic")
    with pytest.raises(ModelFileError, match="absent.h5"):
        convert_file(tmp_path / "absent.h5", "simple")


LEAN_CONVERT = """
import json, sys
from distsnn.convert import convert_file
net = convert_file(sys.argv[1], "data-norm", norm_data=sys.argv[2], input_type="analog")
left_out = [m for m in ("sklearn", "matplotlib") if m not in sys.modules]
import matplotlib.pyplot, sklearn.base  # still importable afterwards
print(json.dumps({"hash": net.content_hash(), "left_out": left_out}))
"""


def test_convert_file_skips_keras_optional_imports_with_an_identical_network(tmp_path):
    """A process that imports Keras for convert_file skips Keras' scikit-learn and matplotlib
    imports (1-1.5 s); the network is bit-identical to one converted with Keras' full import
    (this process imported Keras itself)."""
    path = tmp_path / "model.keras"
    chain_model().save(path)
    np.savez(tmp_path / "norm.npz", x=np.random.default_rng(3).uniform(0, 1, (40, 4)))
    done = subprocess.run([sys.executable, "-c", LEAN_CONVERT, str(path), str(tmp_path /
                           "norm.npz")], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    lean = json.loads(done.stdout.strip().splitlines()[-1])
    assert lean["left_out"] == ["sklearn", "matplotlib"]
    full = convert_file(path, "data-norm", norm_data=tmp_path / "norm.npz", input_type="analog")
    assert lean["hash"] == full.content_hash()


def test_lazy_imports():
    code = ("import sys, distsnn.convert as c; assert 'keras' not in sys.modules; "
            "assert 'tensorflow' not in sys.modules; print(c.InputType('if'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    spike_norm = pytest.importorskip("distsnn.spike_norm")
    from distsnn.convert import spike_normalise
    assert spike_normalise is spike_norm.spike_normalise
