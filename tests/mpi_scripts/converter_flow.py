"""mlGeNN-style flow for each converter, with ``communicator=MPI()``.

Usage: converter_flow.py OUT_JSON BUILD_DIR
For Simple, DataNorm and FewSpike: convert a fixed-weight Keras model, then evaluate,
evaluate_batch_iter and predict; rank 0 writes the results as JSON.
"""
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

from distsnn.communicators import MPI  # noqa: E402
from distsnn.convert import DataNorm, FewSpike, InputType, Simple  # noqa: E402

out_path, build_dir = sys.argv[1], sys.argv[2]
comm = MPI()
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6, 6, 1)),
                          keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(),
                          keras.layers.Dense(5)])
rng = np.random.default_rng(1)
x = rng.random((23, 6, 6, 1)).astype(np.float32)
y = rng.integers(0, 5, 23)
converters = {
    "simple": Simple(30, input_type=InputType.IF),
    "data-norm": DataNorm(30, norm_data=[x[:8]], input_type=InputType.IF),
    "few-spike": FewSpike(k=8, norm_data=[x[:8]]),
}
results = {}
for name, converter in converters.items():
    net, inputs, outputs, layer_pops = converter.convert(model)
    compiled = converter.create_compiler(rng_seed=5, communicator=comm,
                                         build_dir=build_dir).compile(
        net, inputs=inputs, outputs=outputs)
    with compiled:
        metrics, _ = compiled.evaluate({inputs[0]: x}, {outputs[0]: y}, callbacks=[])
        batches = ((x[i:i + 4], y[i:i + 4]) for i in range(0, 23, 4))
        iter_metrics, _ = compiled.evaluate_batch_iter(inputs, outputs, batches, num_batches=6,
                                                       callbacks=[])
        predictions, _ = compiled.predict({inputs[0]: x}, outputs, callbacks=[])
    results[name] = {
        "accuracy": metrics[outputs[0]].result, "total": metrics[outputs[0]].total,
        "iter_accuracy": iter_metrics[outputs[0]].result, "iter_total": iter_metrics[outputs[0]].total,
        "predictions": predictions[outputs[0]].tolist(),
        "layers": sorted(layer.name for layer in layer_pops)}
if comm.rank == 0:
    json.dump({"ranks": comm.size, "results": results}, open(out_path, "w"))
