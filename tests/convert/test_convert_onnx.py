"""ONNX models (as PyTorch exports them: NCHW) convert like Keras ones and compute the same.

The ONNX files are built here with ``onnx.helper``, so no PyTorch is needed. Every supported
operator is checked in one few-spike network (one GeNN build) against onnxruntime: one-hop
outputs equal the ANN applied to the K-bit quantised input, two-hop outputs stay within the
quantisation bound. The input is non-square with 3 channels, so any mix-up of NCHW and
distsnn's NHWC would show.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("pygenn")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from distsnn.convert import ConversionError, FewSpike, Simple  # noqa: E402
from distsnn.layout import to_network_layout  # noqa: E402
from helpers.processes import DISTSNN, run, run_mpi  # noqa: E402

SCRIPTS = Path(__file__).parents[1] / "mpi_scripts"
K = 8  # the residual CNN's few-spike steps, as in the demo
OPERATOR_K = 12  # fine enough that the two-hop error bounds are well below the signal


class Graph:
    """A tiny ONNX graph builder: every node's output tensor is named after the node."""

    def __init__(self, name: str, shape: tuple, rng):
        self.rng, self.nodes, self.inits = rng, [], []
        self.input = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def weights(self, name: str, shape: tuple) -> str:
        return self.const(name, self.rng.uniform(-1, 1, shape))

    def node(self, op: str, inputs: list, name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x: str, name: str, c_in: int, c_out: int, k: int, **attrs) -> str:
        w = self.weights(name + "_w", (c_out, c_in, k, k))
        b = self.weights(name + "_b", (c_out,))
        return self.node("Conv", [x, w, b], name, kernel_shape=[k, k], **attrs)

    def gemm(self, x: str, name: str, n_in: int, n_out: int) -> str:
        w = self.weights(name + "_w", (n_out, n_in))  # torch.nn.Linear's layout
        return self.node("Gemm", [x, w, self.weights(name + "_b", (n_out,))], name, transB=1)

    def batch_norm(self, x: str, name: str, channels: int) -> str:
        r = self.rng
        params = [self.const(f"{name}_{p}", r.uniform(lo, hi, channels))
                  for p, lo, hi in (("g", 0.5, 2), ("b", -1, 1), ("m", -1, 1), ("v", 0.5, 2))]
        return self.node("BatchNormalization", [x, *params], name, epsilon=1e-3)

    def model(self, outputs: list) -> "onnx.ModelProto":
        """The model with these outputs, their shapes inferred, checked."""
        model = self._model(self.nodes)
        infos = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
        model.graph.output.extend(infos[o] for o in outputs)
        onnx.checker.check_model(model, full_check=True)
        return model

    def _model(self, nodes: list) -> "onnx.ModelProto":
        graph = helper.make_graph(nodes, "g", [self.input], [], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                 producer_name="distsnn-tests")

    def shape(self, name: str) -> tuple:
        """The inferred shape of tensor ``name`` without its batch dimension."""
        model = onnx.shape_inference.infer_shapes(self._model(self.nodes))
        info = next(vi for vi in model.graph.value_info if vi.name == name)
        return tuple(d.dim_value for d in info.type.tensor_type.shape.dim[1:])


def ort_run(model, x: np.ndarray, names: list) -> list:
    """onnxruntime's values of tensors ``names`` (outputs or intermediate) on ``x``."""
    model = onnx.shape_inference.infer_shapes(model)
    infos = {vi.name: vi for vi in model.graph.value_info}
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(infos[n] for n in names if n not in present)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(names, {model.graph.input[0].name: x.astype(np.float32)})


def quantise(x, alpha: float, k: int) -> np.ndarray:
    """Few-spike's unsigned k-bit code of x (floor, saturating at alpha (1 - 2^-k))."""
    lsb = alpha * 2.0 ** -k
    return np.minimum(np.floor(np.maximum(x, 0) / lsb) * lsb, alpha - lsb).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# every operator, in one network

C, H, W = 3, 5, 7  # non-square, several channels: NCHW vs NHWC mix-ups cannot cancel out
F = C * H * W


def operator_model(rng):
    """One output per case; the one-hop cases' outputs are linear in the input."""
    g = Graph("x", (C, H, W), rng)
    one_hop = {
        "conv_valid": g.conv("x", "conv_valid", C, 4, 3),
        "conv_pads_same": g.conv("x", "conv_pads_same", C, 4, 3, pads=[1, 1, 1, 1]),
        "conv_s2_same_upper": g.conv("x", "conv_s2_same_upper", C, 2, 3, strides=[2, 2],
                                     auto_pad="SAME_UPPER"),
        "conv_s2_asymmetric_pads": g.conv("x", "conv_s2_asymmetric_pads", C, 2, 3,
                                          strides=[2, 2], pads=[0, 0, 1, 1]),
        # neither TF 'same' nor 'valid' (like PyTorch's stride-2 padding-1 downsampling on
        # an even size): kept as explicit padding
        "conv_s2_explicit_pads": g.conv("x", "conv_s2_explicit_pads", C, 2, 3, strides=[2, 2],
                                        pads=[1, 1, 0, 0]),
        "conv_batch_norm": g.batch_norm(g.conv("x", "cbn_conv", C, 4, 3, pads=[1, 1, 1, 1]),
                                        "conv_batch_norm", 4),
        "conv_add_constant": g.node("Add", [g.conv("x", "cac_conv", C, 4, 1),
                                            g.weights("cac_c", (1, 4, 1, 1))],
                                    "conv_add_constant"),
        "average_pool": g.node("AveragePool", ["x"], "average_pool", kernel_shape=[2, 2],
                               strides=[2, 2]),
        "flatten_gemm": g.gemm(g.node("Flatten", ["x"], "fg_flat"), "flatten_gemm", F, 5),
        "global_pool_gemm": g.gemm(g.node("Flatten", [g.node("GlobalAveragePool", ["x"],
                                                             "gpg_pool")], "gpg_flat"),
                                   "global_pool_gemm", C, 4),
        "reshape_matmul_add": g.node("Add", [
            g.node("MatMul", [g.node("Reshape", ["x", g.node(
                "Constant", [], "rma_shape", value=numpy_helper.from_array(
                    np.array([0, -1], np.int64)))], "rma_reshape"),
                g.weights("rma_w", (F, 6))], "rma_matmul"),
            g.weights("rma_b", (6,))], "reshape_matmul_add"),
        "pool_flatten_gemm_batch_norm": g.batch_norm(g.gemm(g.node("Flatten", [
            g.node("AveragePool", ["x"], "pfg_pool", kernel_shape=[2, 2])], "pfg_flat"),
            "pfg_gemm", C * 4 * 6, 5), "pool_flatten_gemm_batch_norm", 5),
        "residual_add": g.node("Add", [g.node("Identity", ["x"], "ra_identity"),
                                       g.node("Dropout", [g.conv("x", "ra_conv", C, C, 3,
                                                                 pads=[1, 1, 1, 1])],
                                              "ra_dropout")], "residual_add"),
    }
    relu = g.node("Relu", [g.conv("x", "crg_conv", C, 4, 3, pads=[1, 1, 1, 1])], "crg_relu")
    clip = g.node("Clip", [g.gemm(g.node("Flatten", ["x"], "gcg_flat"), "gcg_gemm", F, 8),
                           g.const("zero", 0.0)], "gcg_clip")
    crg = g.gemm(g.node("Flatten", [relu], "crg_flat"), "conv_relu_flatten_gemm", 4 * H * W, 4)
    softmax = g.node("Softmax", [g.gemm(clip, "gcg_out", 8, 3)], "gemm_clip_gemm_softmax")
    # case: (output population, the tensor it reads out, the hidden population)
    two_hop = {"conv_relu_flatten_gemm": (crg, crg, "crg_relu"),
               "gemm_clip_gemm_softmax": (softmax, "gcg_out", "gcg_clip")}
    model = g.model([*one_hop.values(), crg, softmax])
    return model, one_hop, two_hop


@pytest.fixture(scope="module")
def operators(tmp_path_factory):
    rng = np.random.default_rng(0)
    model, one_hop, two_hop = operator_model(rng)
    x = rng.uniform(0, 1, (12, C, H, W)).astype(np.float32)
    converter = FewSpike(k=OPERATOR_K, norm_data=x)
    net, inputs, outputs, layer_pops = converter.convert(model)
    compiled = converter.create_compiler(build_dir=str(tmp_path_factory.mktemp("genn"))
                                         ).compile(net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: to_network_layout(x, net)}, outputs,
                                          callbacks=[])
    by_name = {pop.name: predictions[pop] for pop in outputs}
    return dict(model=model, x=x, net=net, snn=by_name, one_hop=one_hop, two_hop=two_hop,
                alpha_in=float(inputs[0].neuron.alpha), layer_pops=layer_pops)


def nchw(snn_output: np.ndarray) -> np.ndarray:
    """An SNN readout in ONNX's layout: images (N, H, W, C) -> (N, C, H, W)."""
    return snn_output.transpose(0, 3, 1, 2) if snn_output.ndim == 4 else snn_output


def test_operator_network_structure(operators):
    net = operators["net"]
    assert net.inputs[0].shape == (H, W, C)
    assert net.metadata["input_layout"] == "channels_first"
    assert net.metadata["framework"] == "onnx" and net.metadata["onnx_opset"] == 13
    hidden = {p.name for p in net.populations} - {p.name for p in net.outputs} - {"x"}
    assert hidden == {"crg_relu", "gcg_clip"}  # BN, pads, Add, Identity ... all folded
    assert {c.connectivity.kind for c in net.connections} == {
        "conv2d", "dense", "avg_pool2d", "avg_pool_dense2d", "one_to_one"}


@pytest.mark.parametrize("case", ["conv_valid", "conv_pads_same", "conv_s2_same_upper",
                                  "conv_s2_asymmetric_pads", "conv_s2_explicit_pads", "conv_batch_norm",
                                  "conv_add_constant", "average_pool", "flatten_gemm",
                                  "global_pool_gemm", "reshape_matmul_add",
                                  "pool_flatten_gemm_batch_norm", "residual_add"])
def test_one_hop_operator_equals_onnxruntime_on_quantised_input(operators, case):
    """The readout is W x_hat + b exactly: the ANN (onnxruntime) on the k-bit input code."""
    r = operators
    tensor = r["one_hop"][case]
    x_hat = quantise(r["x"], r["alpha_in"], OPERATOR_K)
    expected, unquantised = (ort_run(r["model"], x, [tensor])[0] for x in (x_hat, r["x"]))
    got = nchw(r["snn"][tensor])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-4)
    assert np.abs(got - unquantised).max() > 0  # the input really was quantised


def propagate_bound(net, target, bounds: dict) -> np.ndarray:
    """``sum_conn |W_conn| bounds[source]`` per neuron of ``target``: how far input errors
    ``bounds`` (per source neuron) can move its pre-activation."""
    total = np.zeros(target.size)
    for conn in net.incoming(target):
        pre, post, w = conn.connectivity.synapses(conn.source.shape)
        np.add.at(total, post, np.abs(w) * bounds[conn.source.name][pre])
    return total


@pytest.mark.parametrize("case", ["conv_relu_flatten_gemm", "gemm_clip_gemm_softmax"])
def test_two_hop_operator_within_quantisation_bound(operators, case):
    """|SNN - ANN| <= |W2| (|W1| lsb_in + lsb_hidden) per neuron: the input's and the hidden
    ReLU's (Relu, or Clip(min=0)) k-bit codes are the only approximations."""
    r = operators
    net = r["net"]
    output, tensor, hidden = r["two_hop"][case]
    inp, hid, out = net.inputs[0], net.population(hidden), net.population(output)
    lsb_in, lsb_hidden = (p.neuron.alpha * 2.0 ** -OPERATOR_K for p in (inp, hid))
    hidden_bound = propagate_bound(net, hid, {inp.name: np.full(inp.size, lsb_in)}) + lsb_hidden
    bound = propagate_bound(net, out, {hid.name: hidden_bound})
    expected = ort_run(r["model"], r["x"], [tensor])[0]  # the softmax's input: its readout
    error = np.abs(r["snn"][output] - expected).reshape(len(expected), -1)
    assert np.all(error <= bound + 1e-5), (error.max(0), bound)
    assert bound.max() < 0.1 * np.abs(expected).max()  # a bound that means something


# ---------------------------------------------------------------------------------------------
# errors


def small_model(op: str, inputs_after_x=(), shape=(2, 6, 6), **attrs):
    rng = np.random.default_rng(1)
    g = Graph("x", shape, rng)
    extra = [g.weights(f"w{i}", s) for i, s in enumerate(inputs_after_x)]
    bad = g.node(op, ["x", *extra], "bad", **attrs)
    return g.model([g.gemm(g.node("Flatten", [bad], "flat"), "out",
                           int(np.prod(g.shape(bad))), 3)])


ERRORS = [
    ("MaxPool", dict(kernel_shape=[2, 2]), (), "node 'bad' (MaxPool): max-pools signed values "
                                               "(its input is not the output of a ReLU)"),
    ("Sigmoid", {}, (), "node 'bad' (Sigmoid) is not supported; use Relu"),
    ("Conv", dict(kernel_shape=[3, 3], group=2), [(2, 1, 3, 3)],
     "node 'bad' (Conv): is a grouped (or depthwise) convolution, group=2; use groups=1"),
    ("Conv", dict(kernel_shape=[3, 3], dilations=[2, 2]), [(2, 2, 3, 3)],
     "node 'bad' (Conv): is dilated ([2, 2]); use dilation=1"),
    ("Clip", {}, [()], "node 'bad' (Clip): activation 'Clip(min="),
    ("Transpose", dict(perm=[0, 1, 3, 2]), (), "node 'bad' (Transpose) is not supported; "
                                               "export the model in NCHW"),
]


@pytest.mark.parametrize("op, attrs, weights, message", ERRORS,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_unsupported_nodes_are_named_with_a_fix(op, attrs, weights, message):
    model = small_model(op, weights, **attrs)
    with pytest.raises(ConversionError) as err:
        FewSpike(k=K).convert(model)
    assert message in str(err.value)


def test_relu6_clip_is_rejected_but_clip_from_zero_is_a_relu():
    g = Graph("x", (4,), np.random.default_rng(2))
    hidden = g.gemm("x", "h", 4, 4)
    for name, bounds in (("relu", ["zero"]), ("relu6", ["zero", "six"])):
        g.const("zero", 0.0) if name == "relu" else g.const("six", 6.0)
        g.node("Clip", [hidden, *bounds], name)
    ok = g.model([g.gemm("relu", "out", 4, 2)])
    net = Simple(10).convert(ok)[0]
    assert [p.name for p in net.populations] == ["x", "relu", "out"]
    g.nodes = [n for n in g.nodes if n.name != "out"]
    bad = g.model([g.gemm("relu6", "out6", 4, 2)])
    with pytest.raises(ConversionError, match=r"node 'relu6' \(Clip\): activation "
                                              r"'Clip\(min=0, max=6\)' is not supported"):
        Simple(10).convert(bad)


def test_cli_error_is_one_line_with_exit_code_2(tmp_path):
    path = tmp_path / "bad.onnx"
    onnx.save(small_model("MaxPool", kernel_shape=[2, 2]), str(path))
    proc = run([DISTSNN, "convert", str(path), "-o", str(tmp_path / "net.h5")], timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "distsnn: error: node 'bad' (MaxPool): max-pools signed values (its input is not the "
        "output of a ReLU); only the maximum of rectified values can be converted; put the ReLU "
        "before the max-pool (the two commute)"]
    assert not (tmp_path / "net.h5").exists()


# ---------------------------------------------------------------------------------------------
# a residual CNN: ONNX and Keras give the same network, the same accuracy, on 2 ranks


def keras_residual_cnn(x_train, y_train):
    import keras
    L = keras.layers
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 1), name="inp")
    r1 = L.ReLU(name="r1")(L.BatchNormalization(name="bn1")(L.Conv2D(8, 3, padding="same",
                                                                      name="c1")(inp)))
    r2 = L.ReLU(name="r2")(L.Add(name="add")([r1, L.Conv2D(8, 3, padding="same", name="c2")(r1)]))
    flat = L.Flatten(name="flat")(L.AveragePooling2D(2, name="pool")(r2))
    out = L.Dense(10, name="out")(L.Dense(32, activation="relu", name="d1")(flat))
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, batch_size=32, epochs=4, verbose=0)
    return model


def onnx_from_keras(model):
    """The same network as PyTorch would export it: NCHW, OIHW kernels, Linear as Gemm."""
    w = {layer.name: layer.get_weights() for layer in model.layers}
    g = Graph("inp", (1, 8, 8), None)

    def conv(x, name):
        kernel, bias = w[name]
        g.const(name + "_w", kernel.transpose(3, 2, 0, 1))
        g.const(name + "_b", bias)
        return g.node("Conv", [x, name + "_w", name + "_b"], name, kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1])

    def dense(x, name, nchw_features=None):
        kernel, bias = w[name]
        if nchw_features:  # Keras flattens (h, w, c); PyTorch (c, h, w)
            kernel = kernel.reshape(nchw_features + (-1,)).transpose(2, 0, 1, 3).reshape(
                kernel.shape)
        g.const(name + "_w", kernel.T)
        g.const(name + "_b", bias)
        return g.node("Gemm", [x, name + "_w", name + "_b"], name + "_gemm" if name == "d1"
                      else name, transB=1)

    gamma, beta, mean, var = w["bn1"]
    for n, v in zip("gbmv", (gamma, beta, mean, var)):
        g.const(f"bn1_{n}", v)
    bn = g.node("BatchNormalization", [conv("inp", "c1"), *[f"bn1_{n}" for n in "gbmv"]],
                "bn1", epsilon=model.get_layer("bn1").epsilon)
    r1 = g.node("Relu", [bn], "r1")
    r2 = g.node("Relu", [g.node("Add", [r1, conv(r1, "c2")], "add")], "r2")
    flat = g.node("Flatten", [g.node("AveragePool", [r2], "pool", kernel_shape=[2, 2],
                                     strides=[2, 2])], "flat")
    d1 = g.node("Relu", [dense(flat, "d1", (4, 4, 8))], "d1")
    return g.model([dense(d1, "out")])


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    from distsnn.convert.digits import load_digits_data
    root = tmp_path_factory.mktemp("residual")
    data = load_digits_data(seed=2)
    model = keras_residual_cnn(data.x_train, data.y_train)
    onnx_model = onnx_from_keras(model)
    onnx.save(onnx_model, str(root / "cnn.onnx"))
    x_test, y_test = data.x_test[:120], data.y_test[:120]
    # the ONNX model's data are NCHW, as a PyTorch user has them
    np.savez(root / "test_nchw.npz", x=x_test.transpose(0, 3, 1, 2), y=y_test)
    np.savez(root / "norm_nchw.npz", x=data.x_train[:200].transpose(0, 3, 1, 2))
    return dict(root=root, keras=model, onnx=onnx_model, x_test=x_test, y_test=y_test,
                x_norm=data.x_train[:200])


def test_residual_cnn_onnx_and_keras_give_the_same_network(residual):
    r = residual
    x_nchw = r["x_test"].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(ort_run(r["onnx"], x_nchw, ["out"])[0],
                               r["keras"].predict(r["x_test"], verbose=0), rtol=1e-4, atol=1e-4)
    from_keras = FewSpike(k=K, norm_data=r["x_norm"]).convert(r["keras"])[0]
    from_onnx = FewSpike(k=K, norm_data=r["x_norm"].transpose(0, 3, 1, 2)).convert(
        r["root"] / "cnn.onnx")[0]
    assert [p.name for p in from_onnx.populations] == [p.name for p in from_keras.populations]
    for a, b in zip(from_onnx.populations, from_keras.populations):
        assert a.shape == b.shape and type(a.neuron) is type(b.neuron), a.name
        assert_same_params(a.neuron.params(), b.neuron.params(), a.name)
    assert len(from_onnx.connections) == len(from_keras.connections)
    for a, b in zip(from_onnx.connections, from_keras.connections):
        assert (a.source.name, a.target.name) == (b.source.name, b.target.name)
        assert a.connectivity.kind == b.connectivity.kind
        assert_same_params(a.connectivity.params(), b.connectivity.params(),
                           f"{a.source.name}->{a.target.name}")


def assert_same_params(got: dict, expected: dict, where: str) -> None:
    """Equal parameters; numbers up to float32 rounding (TF and onnxruntime sum differently)."""
    assert got.keys() == expected.keys(), where
    for key, value in expected.items():
        if value is None or isinstance(value, (str, bool)):
            assert got[key] == value, f"{where}.{key}"
        else:
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{where}.{key}")


def test_mpi_evaluate_onnx_matches_keras_and_rank_1_never_imports_onnx(residual, tmp_path):
    """``mpiexec -n 2 distsnn evaluate model.onnx`` on NCHW data: rank 0 alone imports onnx and
    onnxruntime (for the few-spike α), and the accuracy is the Keras-converted network's."""
    r = residual
    root, build = r["root"], str(tmp_path / "genn")
    keras_net = root / "keras_net.h5"
    from distsnn.netfile import save_network
    save_network(FewSpike(k=K, norm_data=r["x_norm"]).convert(r["keras"])[0], keras_net)
    np.savez(root / "test_nhwc.npz", x=r["x_test"], y=r["y_test"])
    common = ["--build-dir", build, "--no-progress"]
    proc = run_mpi(2, [sys.executable, str(SCRIPTS / "cli_imports.py"), "evaluate",
                       str(root / "cnn.onnx"), "--method", "few-spike", "--k", str(K),
                       "--norm-data", str(root / "norm_nchw.npz"),
                       "--data", str(root / "test_nchw.npz"), "-o", str(tmp_path / "onnx.json"),
                       *common], timeout=300)
    assert proc.returncode == 0, proc.stderr
    ranks = sorted(line for line in proc.stderr.splitlines() if line.startswith("rank "))
    assert ranks == ["rank 0: imported=onnx,onnxruntime", "rank 1: imported=none"]
    keras_run = run([DISTSNN, "evaluate", str(keras_net), "--data", str(root / "test_nhwc.npz"),
                     "-o", str(tmp_path / "keras.json"), *common], timeout=300)
    assert keras_run.returncode == 0, keras_run.stderr
    onnx_results = json.loads((tmp_path / "onnx.json").read_text())
    keras_results = json.loads((tmp_path / "keras.json").read_text())
    assert onnx_results["ranks"] == 2
    assert onnx_results["network"]["metadata"]["input_layout"] == "channels_first"
    accuracy = {name: next(iter(res["metrics"].values()))["sparse_categorical_accuracy"]
                for name, res in (("onnx", onnx_results), ("keras", keras_results))}
    assert accuracy["onnx"]["total"] == len(r["y_test"])
    assert accuracy["onnx"] == accuracy["keras"]
    accuracy = accuracy["onnx"]["result"]
    ann = float(np.mean(np.argmax(r["keras"].predict(r["x_test"], verbose=0), 1) == r["y_test"]))
    assert accuracy >= ann - 0.03 and ann > 0.8, (accuracy, ann)
