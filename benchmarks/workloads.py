"""The benchmark workloads: networks, their input data files and how to evaluate them.

Workloads (``WORKLOADS`` below; all deterministic from fixed seeds):

* ``digits_fs`` / ``digits_dn``: a small Keras CNN (Conv+BN+ReLU, AvgPool, Conv+ReLU, AvgPool,
  Dense with biases) trained for a few seconds on scikit-learn's 8x8 digits, converted with
  few-spike (K=8) or data-norm (IF input, evaluated at T=500). The .keras model is converted
  by distsnn itself inside the measured pipeline (``distsnn.jobs.network_source.load_or_convert``).
* ``cifar_rate`` / ``cifar_fs``: a CIFAR-10-shaped VGG-style CNN with fixed random weights,
  built directly as a distsnn Network: 32x32x3 -> conv16 -> conv16 -> pool+conv32 -> conv32
  -> pool+dense10 (all 3x3 ``same`` convolutions). ``rate``: IntegrateFire with thresholds
  calibrated on a host ANN pass so each layer fires on ~10% of steps on average (input ~20%),
  T=100. ``fs``: FewSpikeRelu/FewSpikeReluInput with K=8 and alpha = max activation / (1-2^-K).
* ``mlp_rate`` / ``mlp_fs``: a dense 784-512-256-10 MLP with random weights, same recipes.

Random inputs of the right shape (uniform in [0, 1]) and random labels are written as .npz.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import DATA

K = 8                      # few-spike window
RATE_T = 100               # rate-coded timesteps for the random networks
DIGITS_T = 500             # data-norm digits model
INPUT_RATE = 0.2           # mean input spike rate per step (rate-coded)
HIDDEN_RATE = 0.10         # mean hidden/output spike rate per step (rate-coded)


@dataclass
class Workload:
    name: str
    description: str
    source: str                       # "netfile" (built here) or "keras" (converted by distsnn)
    mode: str                         # "rate" or "few_spike"
    timesteps: int                    # T (rate) or K (few-spike)
    conversion: dict = field(default_factory=dict)

    # paths ------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        if self.source == "keras":
            return DATA / "digits_cnn.keras"
        return DATA / f"{self.name}.h5"

    def data_path(self, examples: int) -> Path:
        family = self.name.split("_")[0]
        if family == "digits":   # the 540-example test set; fewer: its head; more: tiled
            return DATA / ("digits_test.npz" if examples in (0, None, 540)
                           else f"digits_test_{examples}.npz")
        return DATA / f"{family}_random_{examples}.npz"

    def ensure(self, examples: int) -> tuple[Path, Path]:
        """Create (once) the model/network file and the data file; return their paths."""
        DATA.mkdir(parents=True, exist_ok=True)
        if self.source == "keras":
            ensure_digits()
        elif not self.model_path.exists():
            from distsnn.netfile import save_network
            tmp = self.model_path.with_suffix(".tmp.h5")
            save_network(self.network(), tmp)
            tmp.replace(self.model_path)
        data = self.data_path(examples)
        if not data.exists() and self.source == "keras":
            with np.load(DATA / "digits_test.npz") as f:
                reps = -(-examples // len(f["y"]))
                np.savez(data, x=np.concatenate([f["x"]] * reps)[:examples],
                         y=np.concatenate([f["y"]] * reps)[:examples])
        elif not data.exists():
            family = self.name.split("_")[0]
            shape = {"cifar": (32, 32, 3), "mlp": (784,)}[family]
            rng = np.random.default_rng(1234)
            x = rng.random((examples,) + shape, dtype=np.float32)
            y = rng.integers(0, 10, examples).astype(np.int64)
            tmp = data.with_suffix(".tmp.npz")
            np.savez(tmp, x=x, y=y)
            tmp.replace(data)
        return self.model_path, data

    def network(self):
        """The distsnn Network (built directly; digits: converted from the Keras model)."""
        family = self.name.split("_")[0]
        if family == "cifar":
            return cifar_vgg(self.mode)
        if family == "mlp":
            return mlp(self.mode)
        from distsnn.convert import convert_file
        _, data = self.ensure(0)
        return convert_file(self.model_path, **self.conversion, norm_data=str(DATA / "digits_norm.npz"))


WORKLOADS = {w.name: w for w in [
    Workload("digits_fs", "digits CNN (Keras, BN, biases), few-spike K=8", "keras", "few_spike", K,
             {"method": "few-spike", "k": K}),
    Workload("digits_dn", "digits CNN (Keras, BN, biases), data-norm IF input T=500", "keras",
             "rate", DIGITS_T, {"method": "data-norm", "timesteps": DIGITS_T, "input_type": "if"}),
    Workload("cifar_rate", "CIFAR-shaped VGG (random), rate-coded IF T=100", "netfile", "rate",
             RATE_T),
    Workload("cifar_fs", "CIFAR-shaped VGG (random), few-spike K=8", "netfile", "few_spike", K),
    Workload("mlp_rate", "MLP 784-512-256-10 (random), rate-coded IF T=100", "netfile", "rate",
             RATE_T),
    Workload("mlp_fs", "MLP 784-512-256-10 (random), few-spike K=8", "netfile", "few_spike", K),
]}


# ---------------------------------------------------------------------------------------
# random networks


def _sparse(conn):
    from scipy import sparse
    pre, post, w = conn.connectivity.synapses(conn.source.shape)
    return sparse.csr_matrix((w.astype(np.float64), (pre, post)),
                             shape=(conn.source.size, conn.target.size))


def _if_rate(current: np.ndarray, theta: float) -> np.ndarray:
    """Spikes per step of a non-leaky IF neuron with zero reset under a constant current:
    it fires every ceil(theta / I) steps (0 for I <= 0)."""
    u = np.maximum(current, 0.0) / theta
    out = np.zeros_like(u)
    on = u > 0
    out[on] = 1.0 / np.ceil(1.0 / np.minimum(u[on], 1.0) - 1e-9)
    return out


def _rate_threshold(a: np.ndarray, target: float) -> float:
    """Threshold theta with mean(_if_rate(a, theta)) == target (bisection)."""
    a = np.maximum(a, 0.0).reshape(-1)
    lo, hi = 1e-9, float(a.max()) / target * 4 + 1e-9
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if np.mean(_if_rate(a, mid)) > target:
            lo = mid
        else:
            hi = mid
    return hi


def _calibrate(net, mode: str, seed: int) -> None:
    """Thresholds (rate) or alphas (few-spike) from a host ANN pass over random inputs."""
    from distsnn.neurons import FewSpikeRelu, IntegrateFire
    rng = np.random.default_rng(seed + 1)
    inp = net.inputs[0]
    x = rng.random((16, inp.size))
    values = {}
    if mode == "rate":
        theta_in = _rate_threshold(x, INPUT_RATE)
        inp.neuron.v_thresh = theta_in
        values[inp.name] = _if_rate(x, theta_in)
    else:
        inp.neuron.alpha = 1.0 / (1.0 - 2.0 ** -K)
        values[inp.name] = x
    for pop in net.topological_order()[1:]:
        a = sum(values[c.source.name] @ _sparse(c) for c in net.incoming(pop))
        a = np.asarray(a)
        if isinstance(pop.neuron, IntegrateFire):
            theta = _rate_threshold(a, HIDDEN_RATE)
            pop.neuron.v_thresh = theta
            values[pop.name] = _if_rate(a, theta)
        else:
            assert isinstance(pop.neuron, FewSpikeRelu)
            relu = np.maximum(a, 0)
            pop.neuron.alpha = float(relu.max()) / (1.0 - 2.0 ** -K) or 1.0
            values[pop.name] = relu


def _neurons(mode: str):
    from distsnn.neurons import FewSpikeRelu, FewSpikeReluInput, IntegrateFire, IntegrateFireInput
    if mode == "rate":
        return (lambda: IntegrateFireInput(v_thresh=1.0),
                lambda out=False: IntegrateFire(v_thresh=1.0,
                                                readout="spike_count" if out else None))
    return (lambda: FewSpikeReluInput(k=K, alpha=1.0),
            lambda out=False: FewSpikeRelu(k=K, alpha=1.0, readout="var" if out else None))


def cifar_vgg(mode: str, seed: int = 0):
    """32x32x3 -> conv16 -> conv16 -> avgpool+conv32 -> conv32 -> avgpool+dense10."""
    from distsnn.connectivity import AvgPoolConv2D, AvgPoolDense2D, Conv2D
    from distsnn.network import Network
    rng = np.random.default_rng(seed)

    def kernel(cin, cout):
        return rng.normal(0, np.sqrt(2.0 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32)

    make_in, make = _neurons(mode)
    net = Network(metadata={"benchmark": f"cifar_vgg_{mode}", "seed": seed})
    x = net.add_population("input", (32, 32, 3), make_in())
    c1 = net.add_population("conv1", (32, 32, 16), make())
    c2 = net.add_population("conv2", (32, 32, 16), make())
    c3 = net.add_population("conv3", (16, 16, 32), make())
    c4 = net.add_population("conv4", (16, 16, 32), make())
    out = net.add_population("output", (10,), make(True))
    net.connect(x, c1, Conv2D(kernel(3, 16), padding="same"))
    net.connect(c1, c2, Conv2D(kernel(16, 16), padding="same"))
    net.connect(c2, c3, AvgPoolConv2D(kernel(16, 32), pool_size=(2, 2), padding="same"))
    net.connect(c3, c4, Conv2D(kernel(32, 32), padding="same"))
    w = rng.normal(0, np.sqrt(2.0 / (8 * 8 * 32)), (8 * 8 * 32, 10)).astype(np.float32)
    net.connect(c4, out, AvgPoolDense2D(w, (2, 2)))
    net.outputs = [out]
    _calibrate(net, mode, seed)
    return net


def mlp(mode: str, seed: int = 0, sizes=(784, 512, 256, 10)):
    from distsnn.connectivity import Dense
    from distsnn.network import Network
    rng = np.random.default_rng(seed)
    make_in, make = _neurons(mode)
    net = Network(metadata={"benchmark": f"mlp_{mode}", "seed": seed})
    pops = [net.add_population("input", (sizes[0],), make_in())]
    for i, n in enumerate(sizes[1:]):
        last = i == len(sizes) - 2
        pops.append(net.add_population("output" if last else f"dense{i + 1}", (n,), make(last)))
        w = rng.normal(0, np.sqrt(2.0 / sizes[i]), (sizes[i], n)).astype(np.float32)
        net.connect(pops[-2], pops[-1], Dense(w))
    net.outputs = [pops[-1]]
    _calibrate(net, mode, seed)
    return net


# ---------------------------------------------------------------------------------------
# digits: a trained Keras CNN


def ensure_digits(train_seconds: float = 8.0) -> dict:
    """Train (once) the digits CNN; write the model, norm data and test set into DATA."""
    info_path = DATA / "digits_info.json"
    model_path = DATA / "digits_cnn.keras"
    if info_path.exists() and model_path.exists():
        return json.loads(info_path.read_text())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import keras
    from keras import layers as L
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0,
                                                        stratify=y)
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="input"),
        L.Conv2D(16, 3, padding="same", use_bias=True, name="conv1"),
        L.BatchNormalization(name="bn1"),
        L.ReLU(name="relu1"),
        L.AveragePooling2D(2, name="pool1"),
        L.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        L.AveragePooling2D(2, name="pool2"),
        L.Flatten(name="flatten"),
        L.Dense(64, activation="relu", name="dense1"),
        L.Dense(10, activation="softmax", name="output"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start, epochs = time.perf_counter(), 0
    while time.perf_counter() - start < train_seconds and epochs < 60:
        model.fit(x_train, y_train, batch_size=64, epochs=1, verbose=0, shuffle=True)
        epochs += 1
    _, ann_acc = model.evaluate(x_test, y_test, verbose=0)
    DATA.mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    np.savez(DATA / "digits_norm.npz", x=x_train[:256])
    np.savez(DATA / "digits_test.npz", x=x_test, y=y_test)
    info = {"ann_test_accuracy": float(ann_acc), "epochs": epochs,
            "train_seconds": round(time.perf_counter() - start, 2),
            "train_examples": len(x_train), "test_examples": len(x_test)}
    info_path.write_text(json.dumps(info, indent=2))
    return info


def digits_conversion_options(workload: Workload):
    from distsnn.jobs.network_source import ConversionOptions
    c = workload.conversion
    return ConversionOptions(method=c["method"], norm_data=str(DATA / "digits_norm.npz"),
                             timesteps=c.get("timesteps", DIGITS_T), k=c.get("k", K),
                             input_type=c.get("input_type", "poisson"))
