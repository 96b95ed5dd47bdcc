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


def assert_matches_framework(result: dict, case, lowering: str, rtol: float, atol: float
                             ) -> None:
    """One case of :func:`simulate_one_hop`'s ``result`` equals ``case.keras(x)`` and used
    the GeNN matrix type its lowering asks for."""
    from pygenn import SynapseMatrixType
    x, pred = result["x"][case.name], result["pred"][case.name]
    expected = case.keras(x)
    assert pred.shape == expected.shape
    np.testing.assert_allclose(pred, expected, rtol=rtol, atol=atol,
                               err_msg=f"{case.name} ({lowering})")
    matrix = SynapseMatrixType.SPARSE if lowering == "sparse" else SynapseMatrixType.TOEPLITZ
    assert result["matrix"][case.name] == matrix


def assert_procedural_rows_are_the_synapses(cases, build_dir, tag: str) -> None:
    """The PROCEDURAL_KERNELG row-build code (CUDA), checked on the CPU through GeNN's own
    SPARSE initialisation from the same snippet: exactly each case's explicit synapses."""
    from pygenn import GeNNModel, create_neuron_model, init_postsynaptic, init_weight_update

    from distsnn.genn.lowering import kernel_geometry
    from distsnn.genn.toeplitz import _max_paths, procedural_connectivity
    neuron = create_neuron_model(f"{tag}_probe", vars=[("x", "scalar")])
    model = GeNNModel("float", f"{tag}_rows", backend="single_threaded_cpu")
    groups = []
    for i, case in enumerate(cases):
        geometry = kernel_geometry(case.make(), case.in_shape)
        pre = model.add_neuron_population(f"pre{i}", int(np.prod(case.in_shape)), neuron, {},
                                          {"x": 0.0})
        n_post = int(np.prod(case.make().output_shape(case.in_shape)))
        post = model.add_neuron_population(f"post{i}", n_post, neuron, {}, {"x": 0.0})
        groups.append((case, geometry, model.add_synapse_population(
            f"s{i}", "SPARSE", pre, post, init_weight_update("StaticPulse", {}, {"g": 1.0}),
            init_postsynaptic("DeltaCurr"), procedural_connectivity(geometry))))
    model.build(str(build_dir))
    model.load()
    for case, geometry, sg in groups:
        sg.pull_connectivity_from_device()
        got = sorted(zip(sg.get_sparse_pre_inds().tolist(), sg.get_sparse_post_inds().tolist()))
        pre, post, _ = case.make().synapses(case.in_shape)
        assert got == sorted(zip(pre.tolist(), post.tolist())), case.name
        assert np.bincount(pre).max() <= _max_paths(geometry.params(), False)
    model.unload()


def assert_geometry_counts_are_the_synapses(case) -> None:
    """The memory model's counts (fan-out, synapses, longest row, events) equal those of the
    case's explicit synapses."""
    from distsnn.genn.lowering import kernel_geometry
    conn = case.make()
    geometry = kernel_geometry(conn, case.in_shape)
    pre, _, _ = conn.synapses(case.in_shape)
    fan_out = np.bincount(pre, minlength=int(np.prod(case.in_shape)))
    np.testing.assert_array_equal(geometry.fan_out(), fan_out)
    assert geometry.synapse_count() == geometry.explicit_synapses()[0] == len(pre)
    assert geometry.longest_row() == geometry.explicit_synapses()[1] == fan_out.max()
    spikes = np.random.default_rng(2).integers(0, 5, fan_out.size)
    assert geometry.synaptic_events(spikes) == int(spikes @ fan_out)
