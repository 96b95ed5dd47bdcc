"""The installation works: a real GeNN model runs, and `distsnn doctor` sees its MPI ranks."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers.processes import DISTSNN, run, run_mpi

# Per-neuron constant inputs; 0.0 never fires. All sums stay exact enough in float32 that
# V >= 1 is first reached after exactly ceil(1/x) additions (0.3f * 4 = 1.2 > 1, 0.3f * 3 < 1).
INPUTS = [0.25, 0.5, 0.3, 1.0, 0.7, 0.0]
TIMESTEPS = 97  # not a multiple of the periods, so floor() matters


def _period(x: float) -> float:
    return math.inf if x == 0 else math.ceil(1.0 / x)


def _expected_spike_steps(x: float) -> list[int]:
    """0-based steps at which a neuron with input x spikes (V += x, spike and reset at V >= 1)."""
    period = _period(x)
    if period == math.inf:
        return []
    return [k * period - 1 for k in range(1, TIMESTEPS // period + 1)]


def test_integrate_and_fire_spike_counts_single_threaded_cpu(tmp_path):
    pygenn = pytest.importorskip("pygenn", reason="pygenn is not installed: run `make setup`")

    counting_if = pygenn.create_neuron_model(
        "counting_if",
        vars=[("V", "scalar"), ("I", "scalar", pygenn.VarAccess.READ_ONLY),
              ("SpikeCount", "unsigned int")],
        sim_code="V += I;",
        threshold_condition_code="V >= 1.0",
        reset_code="V = 0.0;\nSpikeCount++;",
    )
    model = pygenn.GeNNModel("float", "distsnn_setup_if", backend="single_threaded_cpu")
    model.dt = 1.0
    model.seed = 1234  # 0 would mean "seed from std::random_device"
    pop = model.add_neuron_population(
        "neurons", len(INPUTS), counting_if, {},
        {"V": 0.0, "I": np.array(INPUTS, np.float32), "SpikeCount": 0})
    pop.spike_recording_enabled = True

    model.build(path_to_model=str(tmp_path))
    model.load(num_recording_timesteps=TIMESTEPS)
    for _ in range(TIMESTEPS):
        model.step_time()
    assert model.timestep == TIMESTEPS

    pop.vars["SpikeCount"].pull_from_device()
    counts = pop.vars["SpikeCount"].values.astype(int).tolist()
    expected = [0 if _period(x) == math.inf else TIMESTEPS // _period(x) for x in INPUTS]
    assert expected == [24, 48, 24, 97, 48, 0]  # the rule, spelled out
    assert counts == expected

    # The recorded spike times agree with the counter: neuron i fires at the end of every
    # ceil(1/x)-th step.
    model.pull_recording_buffers_from_device()
    times, ids = pop.spike_recording_data[0]
    for i, x in enumerate(INPUTS):
        steps = np.rint(np.sort(times[ids == i]) / model.dt).astype(int).tolist()
        assert steps == _expected_spike_steps(x), f"neuron {i} (input {x})"


def _doctor_json(stdout: str) -> dict:
    start = stdout.index("{")  # tolerate anything a launcher prints first
    return json.loads(stdout[start:])


@pytest.mark.mpi
def test_doctor_sees_two_mpi_ranks():
    assert DISTSNN, "the distsnn console script is not installed: run `make setup`"
    result = run_mpi(2, [DISTSNN, "doctor", "--json"], timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _doctor_json(result.stdout)
    assert report["size"] == 2
    assert {r["rank"] for r in report["ranks"]} == {0, 1}
    assert all(r["size"] == 2 for r in report["ranks"])
    assert report["ok"] and report["errors"] == []
    assert not report["common"]["mpi_library"].startswith("unavailable")
    for r in report["ranks"]:
        assert r["pygenn"], r
        assert r["backends"]["cpu"]["usable"], r["backends"]
        assert 0 <= r["local_rank"] < r["local_size"] <= 2


def test_doctor_alone_sees_one_rank():
    assert DISTSNN, "the distsnn console script is not installed: run `make setup`"
    # --no-tf: TensorFlow's import (seconds) is already covered by the MPI test.
    result = run([DISTSNN, "doctor", "--json", "--no-tf"], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = _doctor_json(result.stdout)
    assert report["size"] == 1
    assert [r["rank"] for r in report["ranks"]] == [0]
    assert report["ranks"][0]["local_size"] == 1

    # The human-readable form has the same one-row-per-rank table.
    text = run([DISTSNN, "doctor", "--no-tf"], timeout=120)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "distsnn doctor (1 rank)" in text.stdout
    assert "OK: every rank can run distsnn." in text.stdout
