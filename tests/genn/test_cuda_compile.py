"""distsnn's CUDA path without a GPU: GeNN's CUDA code generator and nvcc, for every kind of
network distsnn builds (tests/helpers/cuda_cases.py), at GeNN batch sizes 1 and 64.

These are compile tests: nothing runs on a device. A subprocess preloads the stub driver
(launch/cuda/stub_driver.c, built by set-up) so that GeNN's CUDA backend, asking for device
0, finds an sm_90 device; each case's model is generated and compiled by nvcc for sm_90 and
sm_80. Whether the kernels compute the right numbers only a GPU run shows
(benchmarks/gpu_check.sh runs the same cases on a GPU and compares them with the CPU).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from distsnn.genn.cuda import cuda_backend_built, driver_present, toolkit_root
from helpers.cuda_cases import CASES, stub_environment, unbatched_accesses
from helpers.processes import DISTSNN, REPO, run

NVCC = toolkit_root() / "bin" / "nvcc"
pytestmark = pytest.mark.skipif(not NVCC.exists(), reason=f"no CUDA toolkit here ({NVCC})")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    """Every case generated and compiled once (one process, the stub driver preloaded)."""
    assert cuda_backend_built(), (f"{NVCC} exists but pygenn was built without its CUDA "
                                  f"backend: run `make setup`")
    root = tmp_path_factory.mktemp("cuda")
    out = root / "compile.json"
    proc = run([sys.executable, str(REPO / "tests" / "helpers" / "cuda_cases.py"), "compile",
                str(out), str(root / "build")], env=stub_environment(sm=90), timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {(r["case"], r["batch"]): r for r in json.loads(out.read_text())}


@pytest.mark.parametrize("case, batch", [(c.name, b) for c in CASES for b in c.batches])
def test_cuda_code_generates_and_compiles(compiled, case, batch):
    result = compiled[case, batch]
    assert result["ok"], result["error"]
    code = Path(result["code_dir"])
    makefile = (code / "Makefile").read_text()
    assert "-arch sm_90" in makefile  # GeNN generated for the stub's device
    assert (code / "librunner.so").stat().st_size > 0


@pytest.mark.parametrize("case", [c.name for c in CASES if 64 in c.batches])
def test_every_batched_read_in_the_synapse_kernels_has_a_batch_offset(compiled, case):
    """At batch 64 no weight-update kernel reads a batched variable (e.g. the analog input
    current ``Input``, the signed spike ``Sgn``) as if the batch had one lane."""
    code = Path(compiled[case, 64]["code_dir"])
    assert unbatched_accesses((code / "neuronUpdate.cc").read_text(),
                              (code / "synapseUpdate.cc").read_text()) == []


def test_the_batch_offset_check_finds_a_lane_0_read():
    """The check catches what the unpatched GeNN generated for a Toeplitz synapse group at
    batch 64 (distsnn's analog input, launch/genn-patches/toeplitz-batch-size.patch)."""
    neuron = "const float _lInput = group->Input[batchOffset + lid];"
    bad = "atomicAdd(&group->outPost[postBatchOffset + idPost], group->g[kernelInd] * " \
          "group->Input[ipre]);"
    assert unbatched_accesses(neuron, bad) == ["group->Input[ipre]"]
    assert unbatched_accesses(neuron, bad.replace("[ipre]", "[preBatchOffset + ipre]")) == []
    delayed = "group->srcSpk[preBatchDelayOffset + threadIdx.x]"  # a delayed source's spikes
    assert unbatched_accesses(f"group->srcSpk[batchOffset + lid]; {neuron}", delayed) == []


def test_doctor_says_why_cuda_cannot_run_and_auto_runs_on_the_cpu(small_files, build_dir,
                                                                    tmp_path):
    """A plain distsnn (no stub on the loader path) reports the CUDA backend as built, and
    whether and why it cannot run; `--backend auto` then evaluates on the CPU."""
    report = json.loads(run([DISTSNN, "doctor", "--json", "--no-tf"]).stdout)
    cuda = report["ranks"][0]["backends"]["cuda"]
    assert cuda["built"] is True
    if not driver_present():
        assert cuda["usable"] is False and "libcuda.so.1" in cuda["note"]
        out = tmp_path / "results.json"
        proc = run([DISTSNN, "evaluate", str(small_files["net"]), "--data",
                    str(small_files["data"]), "-t", "5", "--build-dir", str(build_dir),
                    "--no-progress", "-o", str(out)], env={"CUDA_VISIBLE_DEVICES": "0"})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_text())["backend"] == "cpu"
