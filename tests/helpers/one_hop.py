"""The one-hop lowering check shared by the connectivity tests.

Every case's connectivity runs from a binary-spiking input to never-firing IF neurons read
out as ``V`` after two steps, which then holds exactly ``W x``: one network per set of cases
and lowering, its predictions, inputs and GeNN matrix types per case.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

import distsnn.genn.builder as builder
from distsnn.compilers import InferenceCompiler
from distsnn.genn.toeplitz import toeplitz_connectivity
from distsnn.network import Network
from distsnn.neurons import BinarySpikeInput, IntegrateFire

NEVER = float(np.finfo(np.float32).max)  # a threshold the outputs never reach
#: distsnn's Toeplitz snippet in its CPU and CUDA forms (the latter checked on the CPU), and
#: explicit synapses
LOWERINGS = ["toeplitz", "toeplitz_cuda_form", "sparse"]


def simulate_one_hop(cases, lowering: str, build_dir,
                     make_input: Callable[[tuple, int], np.ndarray]) -> dict:
    """``{"x", "pred", "matrix"}`` by case name. Cases have ``name``, ``in_shape`` and
    ``make()``; ``make_input(shape, i)`` gives the examples of the i-th distinct input shape."""
    with pytest.MonkeyPatch.context() as mp:
        if lowering == "toeplitz_cuda_form":  # one diagonal per tap and channel
            mp.setattr(builder, "toeplitz_connectivity",
                       lambda geometry, backend: toeplitz_connectivity(geometry, "cuda"))
        return _simulate(cases, "sparse" if lowering == "sparse" else "toeplitz", build_dir,
                         make_input)


def _simulate(cases, connectivity: str, build_dir, make_input) -> dict:
    net, inputs, x, outputs = Network(), {}, {}, {}
    for case in cases:
        if case.in_shape not in inputs:
            pop = net.add_population(f"in{len(inputs)}", case.in_shape, BinarySpikeInput())
            x[pop] = make_input(case.in_shape, len(inputs))
            inputs[case.in_shape] = pop
    for case in cases:
        conn = case.make()
        out = net.add_population(case.name, conn.output_shape(case.in_shape),
                                 IntegrateFire(v_thresh=NEVER, readout="var"))
        net.connect(inputs[case.in_shape], out, conn, name=f"c_{case.name}")
        outputs[case.name] = out
    net.outputs = list(outputs.values())
    compiled = InferenceCompiler(evaluate_timesteps=2, rng_seed=1, build_dir=str(build_dir),
                                 connectivity=connectivity).compile(net)
    with compiled:
        preds, _ = compiled.predict(x, net.outputs, callbacks=[])
        groups = compiled.genn_model.synapse_populations
        matrix = {name: groups[f"c_{name}"].matrix_type if f"c_{name}" in groups else None
                  for name in outputs}  # an all-zero connection has no synapse group
    return {"x": {case.name: x[inputs[case.in_shape]] for case in cases},
            "pred": {name: preds[pop] for name, pop in outputs.items()}, "matrix": matrix}
