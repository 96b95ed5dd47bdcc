"""QCFS against data-norm at few timesteps, on scikit-learn's digits.

Trains the digits CNN of ``distsnn.convert.digits`` with every ReLU replaced by the QCFS
activation (Bu et al. 2022): clipped at a trainable per-layer λ and quantised to L levels,
``floor(clip(x / λ, 0, 1) L + 0.5) / L * λ`` with a straight-through gradient; exports it with
the clip only (``ReLU(max_value=λ)``, the quantisation dropped) and converts it with
``QCFSConverter`` (thresholds from the clips, membranes at half the threshold) and with
``DataNorm`` (thresholds at the same clips, membranes at 0), both with analog input and
readout; and, as the usual baseline, the plain-ReLU digits CNN (the demo's) with data-norm.
Accuracy on the 360 test digits at T = 2, 4, 8, 16, 32 (one process, CPU backend), and at
T + D, where D (4 here) is the network's depth in steps: every connection delivers a spike one
step later, so the output first hears from the input at step D, whereas QCFS's own simulation
(like most PyTorch SNN simulators) passes a timestep through all layers at once.

    PYTHONPATH=$PWD nice .venv/bin/python benchmarks/qcfs_digits.py
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import BUILD, machine_info, table, write_result  # noqa: E402

STEPS = (2, 4, 8, 16, 32)
LEVELS = (4, 8)
SEED = 0


def qcfs_layer_class(keras):
    class QCFS(keras.layers.Layer):
        """ReLU clipped at a trainable λ and quantised to ``levels`` steps (straight-through)."""

        def __init__(self, levels: int, init: float = 4.0, **kwargs):
            super().__init__(**kwargs)
            self.levels, self.init = int(levels), float(init)

        def build(self, input_shape):
            self.lam = self.add_weight(shape=(), initializer=keras.initializers.Constant(
                self.init), trainable=True, name="lam")

        def call(self, x):
            ops = keras.ops
            y = ops.clip(x / self.lam, 0.0, 1.0)
            q = ops.floor(y * self.levels + 0.5) / self.levels
            return (y + ops.stop_gradient(q - y)) * self.lam

    return QCFS


def digits_layers(keras, activation):
    """The digits CNN of distsnn.convert.digits with ``activation(i)`` for its i-th ReLU."""
    L = keras.layers
    return [keras.Input((8, 8, 1)), L.Conv2D(16, 3, padding="same"), L.BatchNormalization(),
            activation(0), L.AveragePooling2D(2), L.Conv2D(32, 3, padding="same"), activation(1),
            L.AveragePooling2D(2), L.Flatten(), L.Dense(64), activation(2), L.Dense(10)]


def train_qcfs(data, levels: int, epochs: int = 30):
    """The QCFS-trained model and its clip-only export, with their test accuracies."""
    from distsnn.convert._backend import keras
    keras.utils.set_random_seed(SEED)
    QCFS = qcfs_layer_class(keras)
    trained = keras.Sequential(digits_layers(keras, lambda i: QCFS(levels, name=f"qcfs{i}")))
    trained.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trained.fit(data.x_train, data.y_train, batch_size=32, epochs=epochs, verbose=0)
    lams = [float(keras.ops.convert_to_numpy(trained.get_layer(f"qcfs{i}").lam))
            for i in range(3)]
    export = keras.Sequential(digits_layers(
        keras, lambda i: keras.layers.ReLU(max_value=lams[i], name=f"clip{i}")))
    for src, dst in zip([la for la in trained.layers if not isinstance(la, QCFS)],
                        [la for la in export.layers if type(la).__name__ != "ReLU"]):
        dst.set_weights(src.get_weights())
    accuracy = {name: float(np.mean(np.argmax(m.predict(data.x_test, verbose=0), 1)
                                    == data.y_test))
                for name, m in (("quantised", trained), ("clip_only", export))}
    return export, lams, accuracy


def depth(net) -> int:
    """Steps until the output first receives anything: one per connection on the longest
    path, counting the analog input's step 0."""
    hops = {p.name: 0 for p in net.inputs}
    for pop in net.populations:  # topological order
        sources = [c.source.name for c in net.incoming(pop)]
        if sources:
            hops[pop.name] = 1 + max(hops[s] for s in sources)
    return max(hops[p.name] for p in net.outputs)


def snn_accuracy(converter, model, data) -> float:
    net, inputs, outputs, _ = converter.convert(model)
    compiled = converter.create_compiler(
        batch_size=60, rng_seed=1, build_dir=str(BUILD / "qcfs_digits")).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        predictions, _ = compiled.predict({inputs[0]: data.x_test}, outputs, callbacks=[])
    return float(np.mean(np.argmax(predictions[outputs[0]], 1) == data.y_test))


def main() -> dict:
    from distsnn.convert import DataNorm, InputType, QCFSConverter
    from distsnn.convert.digits import load_digits_data, train_digits_cnn
    data = load_digits_data(seed=SEED)
    norm = data.x_train[:256]
    models, anns = {}, {}
    for levels in LEVELS:
        model, lams, accuracy = train_qcfs(data, levels)
        models[f"qcfs_L{levels}"] = model
        anns[f"qcfs_L{levels}"] = {"levels": levels, "lambdas": lams, **accuracy}
    relu_model, relu_accuracy = train_digits_cnn(data, seed=SEED)
    anns["relu"] = {"clip_only": relu_accuracy}
    configs = [(f"{name} + {method}", name, method) for name in models
               for method in ("qcfs", "data-norm")] + [("relu + data-norm", "relu", "data-norm")]
    rows, started = [], time.time()
    d = depth(QCFSConverter(2).convert(models[f"qcfs_L{LEVELS[0]}"])[0])
    columns = [f"T={s}" for s in STEPS] + [f"T={s}+{d}" for s in STEPS]
    for label, name, method in configs:
        model = relu_model if name == "relu" else models[name]
        row = {"model + method": label, "ANN": anns[name]["clip_only"]}
        for column, steps in zip(columns, [*STEPS, *(s + d for s in STEPS)]):
            if method == "qcfs":
                converter = QCFSConverter(steps)
            else:
                converter = DataNorm(steps, norm_data=norm, input_type=InputType.ANALOG,
                                     readout="analog")
            row[column] = snn_accuracy(converter, model, data)
            print(label, column, row[column], flush=True)
        rows.append(row)
    result = {"machine": machine_info(), "steps": STEPS, "depth": d,
              "test_examples": len(data.y_test),
              "ann": anns, "rows": rows, "seconds": round(time.time() - started, 1),
              "setup": "analog input and readout for both methods; data-norm norm data: 256 "
                       "training digits; qcfs: no data; T counts every step (the analog "
                       "current reaches the first layer from step 1)"}
    path = write_result("qcfs_digits", result)
    print(table(rows, ["model + method", "ANN", *columns]))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
