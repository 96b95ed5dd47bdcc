"""Max-pooling converted from ONNX (hand-built with onnx.helper) and Keras, through GeNN.

One model per framework has three max-pools after one ReLU: overlapping windows with padding
(ResNet's stem: 3x3, stride 2, pad 1), an uneven one (ONNX: 2x2 stride 2 with ceil_mode on an
odd size; Keras: 2x2 'same'), and a global max-pool, each followed by a Dense/Gemm output.

* rate methods (simple, data-norm): every max-pool's spike count equals at every step the
  largest count of its window one step earlier, and its rate times the source's scale is the
  framework's max-pool output within the rate-coding bound;
* few-spike: the tree of ReLUs is exact on the K-bit codes: the outputs equal the framework's
  max-pool of the quantised ReLU codes followed by the output layer;
* 1 and 2 MPI ranks give identical results.
"""
from __future__ import annotations

import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("pygenn")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from distsnn.callbacks import SpikeRecorder  # noqa: E402
from distsnn.connectivity import MaxPool2D, max_pool_forward  # noqa: E402
from distsnn.convert import ConversionError, DataNorm, FewSpike, Simple  # noqa: E402
from distsnn.layout import to_network_layout  # noqa: E402
from helpers.processes import DISTSNN, run, run_mpi  # noqa: E402
from helpers.spike_counts import counts_by_step  # noqa: E402

C, H, W = 2, 7, 6
T = 60
K = 8
#: ONNX pools: (kernel, strides, pads, ceil_mode); None: GlobalMaxPool
ONNX_POOLS = {"stem": ([3, 3], [2, 2], [1, 1, 1, 1], 0), "ceil": ([2, 2], [2, 2], [0] * 4, 1),
              "global": None}


def _const(inits: list, name: str, value) -> str:
    inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
    return name


def onnx_model(rng, pool_before_relu: bool = False, **bad_attrs):
    """x -> Conv 3x3 -> Relu -> three max-pools -> Flatten -> Gemm each (outputs y_<pool>)."""
    inits, nodes, outputs = [], [], []
    conv_w = _const(inits, "conv_w", rng.uniform(-1, 1, (3, C, 3, 3)))
    conv_b = _const(inits, "conv_b", rng.uniform(-0.3, 0.3, 3))
    nodes.append(helper.make_node("Conv", ["x", conv_w, conv_b], ["conv"], name="conv",
                                  kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["conv"], ["relu"], name="relu"))
    source = "conv" if pool_before_relu else "relu"
    for name, spec in ONNX_POOLS.items():
        if spec is None:
            nodes.append(helper.make_node("GlobalMaxPool", [source], [name], name=name))
        else:
            kernel, strides, pads, ceil = spec
            attrs = dict(kernel_shape=kernel, strides=strides, pads=pads, ceil_mode=ceil)
            nodes.append(helper.make_node("MaxPool", [source], [name], name=name,
                                          **{**attrs, **bad_attrs}))
        nodes.append(helper.make_node("Flatten", [name], [f"{name}_flat"], name=f"{name}_flat"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", C, H, W])], [], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    infos = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for name in ONNX_POOLS:
        n = int(np.prod([d.dim_value for d in infos[name].type.tensor_type.shape.dim[1:]]))
        w = _const(inits, f"{name}_w", rng.uniform(-1, 1, (4, n)))
        b = _const(inits, f"{name}_b", rng.uniform(-0.3, 0.3, 4))
        nodes.append(helper.make_node("Gemm", [f"{name}_flat", w, b], [f"y_{name}"],
                                      name=f"y_{name}", transB=1))
        outputs.append(f"y_{name}")
    graph = helper.make_graph(nodes, "g", graph.input, [], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    infos = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.extend(infos[o] for o in outputs)
    onnx.checker.check_model(model, full_check=True)
    return model


def ort_run(model, x: np.ndarray, names: list) -> list:
    """onnxruntime's values of tensors ``names`` on ``x``, images as (N, H, W, C)."""
    model = onnx.shape_inference.infer_shapes(model)
    infos = {vi.name: vi for vi in model.graph.value_info}
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(infos[n] for n in names if n not in present)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(names, {"x": x.astype(np.float32)})
    return [v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for v in values]


@pytest.fixture(scope="module")
def onnx_case():
    rng = np.random.default_rng(0)
    model = onnx_model(rng)
    x = rng.uniform(0, 1, (3, C, H, W)).astype(np.float32)
    relu, *pools = ort_run(model, x, ["relu", *ONNX_POOLS])
    return dict(model=model, x=x, relu=relu, pools=dict(zip(ONNX_POOLS, pools)),
                framework="onnx")


def keras_case():
    keras = pytest.importorskip("keras")
    L = keras.layers
    inp = keras.Input((H, W, C), name="x")
    relu = L.Conv2D(3, 3, padding="same", activation="relu", name="relu")(inp)
    pools = {"stem": L.MaxPooling2D(3, strides=2, padding="valid", name="stem")(relu),
             "same": L.MaxPooling2D(2, padding="same", name="same")(relu),
             "global": L.GlobalMaxPooling2D(name="global")(relu)}
    outs = [L.Dense(4, name=f"y_{k}")(L.Flatten()(v) if len(v.shape) > 2 else v)
            for k, v in pools.items()]
    model = keras.Model(inp, outs)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([rng.uniform(-1, 1, w.shape).astype(np.float32)
                               for w in layer.get_weights()])
    x = rng.uniform(0, 1, (3, H, W, C)).astype(np.float32)
    probe = keras.Model(inp, [relu, *pools.values()])
    values = [np.asarray(v) for v in probe.predict(x, verbose=0)]
    return dict(model=model, x=x, relu=values[0], pools=dict(zip(pools, values[1:])),
                framework="keras")


@pytest.fixture(scope="module", params=["onnx", "keras"])
def case(request, onnx_case):
    return onnx_case if request.param == "onnx" else keras_case()


@pytest.mark.parametrize("method", ["simple", "data-norm"])
def test_rate_max_pool_counts_are_window_maxima_and_match_the_framework(case, method,
                                                                       tmp_path):
    x = case["x"]
    converter = (Simple(T, input_type="analog", readout="analog") if method == "simple" else
                 DataNorm(T, norm_data=x, input_type="analog", readout="analog"))
    net, inputs, outputs, _ = converter.convert(case["model"])
    relu = net.population("relu")
    pools = {name: net.population(name) for name in case["pools"]}
    assert all(p.neuron.kind == "spiking_max" for p in pools.values())
    for pop in (relu, *pools.values()):
        pop.record_spikes = True
    recorders = [SpikeRecorder(p, key=p.name) for p in (relu, *pools.values())]
    compiled = converter.create_compiler(build_dir=str(tmp_path), rng_seed=1).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        _, data = compiled.predict({inputs[0]: to_network_layout(x, net)}, outputs,
                                   callbacks=recorders)
    scale = 1.0 if method == "simple" else net.metadata["scales"][relu.name]
    assert method == "simple" or scale == pytest.approx(float(case["relu"].max()), rel=1e-5)
    for name, pop in pools.items():
        assert net.metadata.get("scales", {}).get(pop.name, scale) == scale  # source's units
        conn = net.incoming(pop)[0].connectivity
        for example in range(len(x)):
            hidden = counts_by_step(data["relu"][0][example], data["relu"][1][example],
                                    relu.size, T)
            got = counts_by_step(data[pop.name][0][example], data[pop.name][1][example],
                                 pop.size, T)
            expected = max_pool_forward(conn, hidden[:-1].astype(np.float64), relu.shape)
            np.testing.assert_array_equal(got[1:], expected, err_msg=name)
        # rate coding: three steps of latency (input, ReLU, pool) and one of rounding
        rates = np.stack([np.bincount(i.astype(np.int64), minlength=pop.size)
                          for i in data[pop.name][1]]) * scale / T
        ann = np.minimum(case["pools"][name].reshape(len(x), -1), scale)  # simple saturates
        np.testing.assert_allclose(rates, ann, atol=4.0 * scale / T, err_msg=name)
        assert ann.max() > 0.3 * scale


def quantise(x, alpha: float, k: int) -> np.ndarray:
    lsb = alpha * 2.0 ** -k
    return np.minimum(np.floor(np.maximum(x, 0) / lsb) * lsb, alpha - lsb)


def test_few_spike_tree_is_exact_on_the_codes(case, tmp_path):
    """The outputs are the max-pools of the ReLU's K-bit codes, then the output layer (its
    readout is W x_hat + b), to float precision; the pools share the ReLU's alpha. The ReLU's
    pre-activation (read out too) is the framework's on the quantised input."""
    x = case["x"]
    converter = FewSpike(k=K, norm_data=x)
    net, inputs, outputs, _ = converter.convert(case["model"])
    relu = net.population("relu")
    relu.neuron.readout = "var"
    alpha = float(relu.neuron.alpha)
    compiled = converter.create_compiler(build_dir=str(tmp_path)).compile(
        net, inputs=inputs, outputs=[*outputs, relu])
    with compiled:
        preds, _ = compiled.predict({inputs[0]: to_network_layout(x, net)}, [*outputs, relu],
                                    callbacks=[])
    x_hat = quantise(to_network_layout(x, net), float(inputs[0].neuron.alpha), K)
    if case["framework"] == "onnx":
        relu_ann = ort_run(case["model"], x_hat.transpose(0, 3, 1, 2), ["conv"])[0]
    else:
        import keras
        layer = case["model"].get_layer("relu")
        linear = keras.layers.Conv2D.from_config({**layer.get_config(), "activation": None})
        linear.build(x_hat.shape)
        linear.set_weights(layer.get_weights())
        relu_ann = np.asarray(linear(x_hat))
    # equal but where an input sits on a code boundary (float32 encoding): |W| lsb at most
    lsb_in = float(inputs[0].neuron.alpha) * 2.0 ** -K
    np.testing.assert_allclose(preds[relu], relu_ann, rtol=1e-5, atol=3 * 3 * C * lsb_in)
    assert np.mean(np.isclose(preds[relu], relu_ann, rtol=1e-5, atol=1e-5)) > 0.8
    codes = quantise(preds[relu], alpha, K).reshape(len(x), -1)
    for name in case["pools"]:
        pop = net.population(name)
        assert float(pop.neuron.alpha) == alpha
        pooled = max_pool_forward(MaxPool2D(**_tree_pool(net, pop)), codes, relu.shape)
        np.testing.assert_array_equal(  # the framework's window maxima (padding: -inf)
            pooled.max(axis=1) > 0, case["pools"][name].reshape(len(x), -1).max(axis=1) > 0)
        out = net.population(f"y_{name}")
        dense = net.incoming(out)[0].connectivity
        expected = pooled @ dense.weight.astype(np.float64) + out.neuron.bias
        np.testing.assert_allclose(preds[out], expected, rtol=1e-5, atol=1e-4, err_msg=name)
        ann = case["pools"][name].reshape(len(x), -1) @ dense.weight + out.neuron.bias
        assert 0 < np.abs(preds[out] - ann).max() < 0.05 * np.abs(ann).max()  # quantised


def _tree_pool(net, pool_pop) -> dict:
    """The window of a few-spike max tree, read back from its one-hot convolutions."""
    convs = [c.connectivity for c in net.connections
             if c.target.name.startswith(pool_pop.name) and c.connectivity.kind == "conv2d"]
    kh, kw = convs[0].weight.shape[:2]
    return dict(pool_size=(kh, kw), strides=convs[0].strides, padding=convs[0].padding)


# ---------------------------------------------------------------------------------------------
# one and two ranks; errors


@pytest.mark.parametrize("method, options", [
    ("data-norm", ["-t", "40", "--input", "poisson", "--readout", "spikes"]),
    ("few-spike", ["--k", str(K)])])
def test_one_and_two_ranks_give_identical_results(onnx_case, method, options, tmp_path):
    """``distsnn convert`` of the max-pool model (ResNet-stem pool, Poisson input for the rate
    method), then ``distsnn evaluate`` on 1 and on 2 ranks: the same metrics and spikes."""
    model = onnx.ModelProto()
    model.CopyFrom(onnx_case["model"])
    kept = [o for o in model.graph.output if o.name == "y_stem"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(model, str(tmp_path / "model.onnx"))
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (9, C, H, W)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=rng.integers(0, 4, len(x)))
    common = ["--build-dir", str(tmp_path / "genn"), "--no-progress"]
    converted = run([DISTSNN, "convert", str(tmp_path / "model.onnx"), "-o",
                     str(tmp_path / "net.h5"), "--method", method, "--norm-data",
                     str(tmp_path / "data.npz"), *options, *common[:2]], timeout=300)
    assert converted.returncode == 0, converted.stderr
    results = {}
    for ranks in (1, 2):
        args = [DISTSNN, "evaluate", str(tmp_path / "net.h5"), "--data",
                str(tmp_path / "data.npz"), "-o", str(tmp_path / f"r{ranks}.json"), *common]
        proc = run(args, timeout=300) if ranks == 1 else run_mpi(2, args, timeout=300)
        assert proc.returncode == 0, proc.stderr
        results[ranks] = json.loads((tmp_path / f"r{ranks}.json").read_text())
    assert results[2]["ranks"] == 2
    assert results[1]["metrics"] == results[2]["metrics"]
    assert results[1]["spikes"] == results[2]["spikes"]
    assert "stem" in json.dumps(results[1]["spikes"])  # the max-pool's spikes are counted


def test_cli_inspect_describes_the_max_pool(onnx_case, tmp_path):
    onnx.save(onnx_case["model"], str(tmp_path / "model.onnx"))
    np.save(tmp_path / "norm.npy", onnx_case["x"])
    for method in ("data-norm", "few-spike"):
        net = tmp_path / f"{method}.h5"
        proc = run([DISTSNN, "convert", str(tmp_path / "model.onnx"), "-o", str(net),
                    "--method", method, "--norm-data", str(tmp_path / "norm.npy")], timeout=300)
        assert proc.returncode == 0, proc.stderr
        text = run([DISTSNN, "inspect", str(net)], timeout=120)
        assert text.returncode == 0, text.stderr
        if method == "data-norm":
            assert re.search(r"stem +\(4, 3, 3\) +spiking_max", text.stdout), text.stdout
            assert re.search(r"relu_to_stem +TOEPLITZ", text.stdout), text.stdout
        else:
            assert re.search(r"stem_max7 +\(4, 3, 3\) +few_spike_relu", text.stdout)


def _with_output(model, name: str):
    """``model`` with tensor ``name`` as an extra output."""
    inferred = onnx.shape_inference.infer_shapes(model)
    model.graph.output.extend(vi for vi in inferred.graph.value_info if vi.name == name)
    return model


@pytest.mark.parametrize("build, message", [
    (lambda rng: onnx_model(rng, pool_before_relu=True),
     "node 'stem' (MaxPool): max-pools signed values (its input is not the output of a ReLU); "
     "only the maximum of rectified values can be converted; put the ReLU before the max-pool"),
    (lambda rng: onnx_model(rng, dilations=[2, 2]),
     "node 'stem' (MaxPool): is dilated ([2, 2]), which a spiking max-pool cannot express; use "
     "dilation=1"),
    (lambda rng: _with_output(onnx_model(rng), "global"),
     "node 'global' (GlobalMaxPool): is a model output; follow the max-pool with a Dense/Gemm "
     "output layer"),
    (lambda rng: onnx_model(rng, pads=[1, 1, 1, 1]),  # the 2x2 ceil_mode pool's 5th row
     "node 'ceil' (MaxPool): outputs (5, 4): with ceil_mode its last window lies outside the "
     "input; use ceil_mode=0"),
])
def test_bad_max_pools_are_refused_in_one_line(build, message):
    for converter in (Simple(10), FewSpike(k=K)):
        with pytest.raises(ConversionError) as err:
            converter.convert(build(np.random.default_rng(0)))
        assert str(err.value).startswith(message)
        assert "\n" not in str(err.value)
