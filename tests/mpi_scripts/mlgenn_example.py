"""mlGeNN's TF example scripts (examples/tf/simple_cnn.py, vgg16_cifar10.py) with distsnn's
imports: convert a tiny Keras CNN, turn on kernel timing through ``genn_model`` before
``with``, evaluate a tf.data set with ``evaluate_batch_iter`` and a callback written for
mlGeNN, print the kernel timings including the "Reset" custom update.

Usage: mlgenn_example.py OUT_JSON BUILD_DIR. Rank 0 writes the metrics, each rank's count
of batches seen by the callback and the timings.
"""
import json
import sys

import keras
import numpy as np
import tensorflow as tf

from distsnn.callbacks import Callback
from distsnn.communicators import MPI
from distsnn.convert import DataNorm, InputType

out_path, build_dir = sys.argv[1], sys.argv[2]
communicator = MPI()

# every rank builds the same model and data: seeded, as the ranks must hold one network
keras.utils.set_random_seed(3)
rng = np.random.default_rng(3)
train_x = rng.random((16, 8, 8, 1)).astype(np.float32)
validate_x = rng.random((8, 8, 8, 1)).astype(np.float32)
validate_y = rng.integers(0, 4, 8)
tf_model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(4, 3, padding="same", activation="relu", use_bias=False),
    keras.layers.AveragePooling2D(2),
    keras.layers.Flatten(),
    keras.layers.Dense(4, activation="softmax", use_bias=False),
])
batch_size = communicator.num_ranks  # global: one example per rank per batch (CPU backend)
norm_i = rng.choice(train_x.shape[0], 8, replace=False)
mlg_norm_ds = tf.data.Dataset.from_tensor_slices((train_x[norm_i], np.zeros(8))).batch(4)
mlg_validate_ds = tf.data.Dataset.from_tensor_slices((validate_x, validate_y)).batch(batch_size)


class BatchCounter(Callback):
    """An mlGeNN-protocol callback: keyword set_params, (key, data) from get_data."""

    def set_params(self, data, compiled_network, **kwargs):
        self.batches = 0

    def on_batch_end(self, batch, metrics):
        self.batches += 1

    def get_data(self):
        return "batches", self.batches


converter = DataNorm(evaluate_timesteps=20, norm_data=[mlg_norm_ds],
                     input_type=InputType.POISSON, reset="zero")
net, net_inputs, net_outputs, tf_layer_pops = converter.convert(tf_model)
compiler = converter.create_compiler(dt=1.0, batch_size=batch_size, rng_seed=5,
                                     communicator=communicator, build_dir=build_dir)
compiled_net = compiler.compile(net, inputs=net_inputs, outputs=net_outputs)
compiled_net.genn_model.timing_enabled = True

with compiled_net:
    metrics, cb_data = compiled_net.evaluate_batch_iter(
        net_inputs, net_outputs, iter(mlg_validate_ds),
        num_batches=len(validate_y) // batch_size,
        callbacks=["batch_progress_bar", BatchCounter()])
    reset_time = compiled_net.genn_model.get_custom_update_time("Reset")
    timings = {"init_time": compiled_net.genn_model.init_time,
               "init_sparse_time": compiled_net.genn_model.init_sparse_time,
               "neuron_update_time": compiled_net.genn_model.neuron_update_time,
               "presynaptic_update_time": compiled_net.genn_model.presynaptic_update_time,
               "reset_time": reset_time}
    batches = communicator.gather_object(cb_data["batches"])
    if communicator.rank == 0:
        print(f"Accuracy = {100.0 * metrics[net_outputs[0]].result}%")
        print(f"Kernel profiling:\n"
              f"\tinit_time: {timings['init_time']} s\n"
              f"\tinit_sparse_time: {timings['init_sparse_time']} s\n"
              f"\tneuron_update_time: {timings['neuron_update_time']} s\n"
              f"\tpresynaptic_update_time: {timings['presynaptic_update_time']} s\n"
              f"\tcustom_update_reset_time: {reset_time} s")
        result = metrics[net_outputs[0]]
        with open(out_path, "w") as f:
            json.dump({"ranks": communicator.num_ranks, "batches": batches,
                       "metrics": {"correct": int(result.correct), "total": int(result.total)},
                       "timings": timings}, f)
