"""The conversion test harness (mlGeNN's ``tests/ml_genn_tf/converter.py``, spec §13.1).

:class:`HarnessConverter` gives binary spike inputs (a spike every step where x > 0), hidden
IF neurons with threshold 1 and output IF neurons that never fire, read out as their
membrane potential. Simulated for T = 2 steps, an output one hop from the input holds
exactly ``W x + b``: the input spikes at step 0 and the output integrates it at step 1,
and the bias, added at both steps, is halved here. :func:`linear_response` computes the
same numbers on the host from the IR's synapses.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from distsnn.connectivity import forward
from distsnn.convert import Converter
from distsnn.network import Network, Population
from distsnn.neurons import BinarySpikeInput, IntegrateFire, Neuron

NEVER = float(np.finfo(np.float32).max)


class HarnessConverter(Converter):
    """Binary input, IF hidden (threshold 1), never-firing IF outputs read as ``V``."""

    method = "test-harness"

    def __init__(self, evaluate_timesteps: int = 2):
        self.evaluate_timesteps = int(evaluate_timesteps)

    def validate_tf_layer(self, keras_layer, config) -> None:
        """No validation: linear outputs and any activation are accepted."""

    def create_input_neurons(self, pre_convert_output) -> Neuron:
        return BinarySpikeInput()

    def create_neurons(self, keras_layer, pre_convert_output, is_output: bool) -> Neuron:
        if is_output:
            return IntegrateFire(v_thresh=NEVER, readout="var")
        return IntegrateFire(v_thresh=1.0)

    def convert_bias(self, spec, pre_convert_output) -> Optional[np.ndarray]:
        """Half the bias: it is added at both of the two steps."""
        return None if spec.bias is None else spec.bias / np.float32(2.0)

    def create_compiler(self, **kwargs):
        from distsnn.compilers import InferenceCompiler

        return InferenceCompiler(evaluate_timesteps=self.evaluate_timesteps, **kwargs)


def linear_response(network: Network, target: Population,
                    values: dict[Population, np.ndarray], bias_scale: float = 1.0) -> np.ndarray:
    """``sum_conn W_conn values[source] + bias_scale * bias`` of ``target`` (host numpy)."""
    n = len(next(iter(values.values())))
    total = np.zeros((n, target.size), np.float64)
    for conn in network.incoming(target):
        x = np.asarray(values[conn.source], np.float64).reshape(n, -1)
        total += forward(conn.connectivity, x, conn.source.shape)
    bias = getattr(target.neuron, "bias", None)
    if bias is not None:
        total += bias_scale * np.asarray(bias, np.float64).reshape(1, -1)
    return total.reshape((n,) + target.shape)


def randomise(model, rng: np.random.Generator, bias: tuple[float, float] = (-1.0, 1.0)):
    """Random weights for a Keras model: kernels uniform in [-1, 1), biases in ``bias``,
    BatchNormalization statistics well away from zero variance. Returns the model."""
    for layer in model.layers:
        weights = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = weights
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape), rng.uniform(-1, 1, beta.shape),
                               rng.uniform(-1, 1, mean.shape), rng.uniform(0.5, 2, var.shape)])
        elif weights:
            layer.set_weights([rng.uniform(-1, 1, w.shape) if w.ndim > 1
                               else rng.uniform(*bias, w.shape) for w in weights])
    return model
