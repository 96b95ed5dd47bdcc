"""GPU selection per rank: launcher variables, CUDA_VISIBLE_DEVICES, nvidia-smi (faked)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings

import pytest

from distsnn.genn.builder import resolve_backend
from distsnn.parallel.devices import (
    GpuChoice,
    answering_gpus,
    local_rank_from_env,
    local_size_from_env,
    parse_slurm_tasks_per_node,
    select_gpu,
    visible_gpus,
)

# An environment in which no nvidia-smi can be found (PATH points at an empty place).
NO_SMI = {"PATH": "/nonexistent"}

SMI_TWO_GPUS = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaaaaaa-0000-0000-0000-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbbbbbb-1111-1111-1111-111111111111)
"""
SMI_MIG = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-cccccccc-2222-2222-2222-222222222222)
  MIG 3g.20gb     Device  0: (UUID: MIG-dddddddd-3333-3333-3333-333333333333)
  MIG 3g.20gb     Device  1: (UUID: MIG-eeeeeeee-4444-4444-4444-444444444444)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-ffffffff-5555-5555-5555-555555555555)
"""


def fake_smi(tmp_path, text: str, rc: int = 0) -> dict:
    """An environment whose PATH has only a fake `nvidia-smi` printing ``text``."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "nvidia-smi"
    assert "'" not in text
    # Shell builtins only: PATH holds nothing but this directory.
    script.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] || exit 9\nprintf '%s' '{text}'\n"
                      f"exit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": str(bindir)}


# --- local rank / size from each launcher ------------------------------------------------------

@pytest.mark.parametrize("environ, rank, size", [
    ({"LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}, 3, 4),                        # torchrun
    ({"MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2", "PMI_RANK": "5"}, 1, 2),   # Hydra/IMPI
    ({"SLURM_LOCALID": "2", "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_NODEID": "1"}, 2, 4),
    ({"SLURM_LOCALID": "0", "SLURM_TASKS_PER_NODE": "3,2", "SLURM_NODEID": "1"}, 0, 2),
    ({"SLURM_LOCALID": "1", "SLURM_TASKS_PER_NODE": "2(x3),1"}, 1, None),  # no node id: unknown
    ({"SLURM_LOCALID": "1", "SLURM_TASKS_PER_NODE": "garbage",
      "SLURM_NTASKS_PER_NODE": "8"}, 1, 8),
    ({"SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4"}, 1, 4),
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, 1, 2),  # Open MPI
    ({"PMI_LOCAL_RANK": "0", "PMI_LOCAL_SIZE": "3"}, 0, 3),
    ({"MV2_COMM_WORLD_LOCAL_RANK": "5", "MV2_COMM_WORLD_LOCAL_SIZE": "8"}, 5, 8),   # MVAPICH2
    ({"PALS_LOCAL_RANKID": "2", "PALS_LOCAL_SIZE": "4"}, 2, 4),                     # Cray PALS
    ({"PALS_LOCAL_RANKID": "2"}, 2, None),
    ({}, None, None),
    ({"PMI_RANK": "3", "PMI_SIZE": "4"}, None, None),  # global rank only: not a local rank
])
def test_local_rank_and_size_per_launcher(environ, rank, size):
    assert local_rank_from_env(environ) == rank
    assert local_size_from_env(environ) == size


def test_launcher_order_first_match_wins():
    # srun launching an MPICH program: both Slurm's and Hydra's variables could be present.
    environ = {"MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2", "SLURM_LOCALID": "0",
               "SLURM_NTASKS_PER_NODE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "3"}
    assert local_rank_from_env(environ) == 1
    assert local_size_from_env(environ) == 2
    # torchrun comes first of all
    assert local_rank_from_env({**environ, "LOCAL_RANK": "7"}) == 7
    # an unparsable value is skipped, not fatal
    assert local_rank_from_env({"LOCAL_RANK": "", "SLURM_LOCALID": "2"}) == 2


def test_parse_slurm_tasks_per_node():
    assert parse_slurm_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert parse_slurm_tasks_per_node("4") == [4]
    with pytest.raises(ValueError):
        parse_slurm_tasks_per_node("2(3)")


# --- visible GPUs ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("0,1,2,3", ["0", "1", "2", "3"]),
    ("2", ["2"]),
    (" 1 , 3 ", ["1", "3"]),
    ("GPU-aaaa,GPU-bbbb", ["GPU-aaaa", "GPU-bbbb"]),
    ("MIG-dddd", ["MIG-dddd"]),
    ("", []),
    ("-1", []),
    ("NoDevFiles", []),
    ("0,-1,2", ["0"]),  # CUDA stops at the first invalid entry
])
def test_visible_gpus_from_cuda_visible_devices(value, expected, tmp_path):
    # CUDA_VISIBLE_DEVICES wins over nvidia-smi, even when nvidia-smi lists other GPUs.
    environ = {**fake_smi(tmp_path, SMI_TWO_GPUS), "CUDA_VISIBLE_DEVICES": value}
    assert visible_gpus(environ) == expected


def test_visible_gpus_from_nvidia_smi(tmp_path):
    assert visible_gpus(fake_smi(tmp_path, SMI_TWO_GPUS)) == [
        "GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-1111-1111-1111-111111111111"]


def test_visible_gpus_mig_instances_replace_their_gpu(tmp_path):
    assert visible_gpus(fake_smi(tmp_path, SMI_MIG)) == [
        "MIG-dddddddd-3333-3333-3333-333333333333", "MIG-eeeeeeee-4444-4444-4444-444444444444",
        "GPU-ffffffff-5555-5555-5555-555555555555"]


def test_visible_gpus_without_nvidia_smi_or_when_it_fails(tmp_path):
    assert visible_gpus(NO_SMI) == []
    failing = fake_smi(tmp_path, "NVIDIA-SMI has failed because it could not communicate "
                                 "with the NVIDIA driver.\n", rc=9)
    assert visible_gpus(failing) == []


# --- answering_gpus: what `auto` trusts -------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, ["GPU-aaaaaaaa-0000-0000-0000-000000000000",
            "GPU-bbbbbbbb-1111-1111-1111-111111111111"]),
    ("1", ["1"]), ("0,1", ["0", "1"]), ("1,5", ["1"]), ("7", []), ("", []),
    ("GPU-bbbbbbbb-1111-1111-1111-111111111111", ["GPU-bbbbbbbb-1111-1111-1111-111111111111"]),
    ("GPU-99999999-9999-9999-9999-999999999999", []),
])
def test_answering_gpus_are_visible_devices_that_nvidia_smi_lists(value, expected, tmp_path):
    environ = fake_smi(tmp_path, SMI_TWO_GPUS)
    if value is not None:
        environ["CUDA_VISIBLE_DEVICES"] = value
    assert answering_gpus(environ) == expected


def test_cuda_visible_devices_alone_is_no_gpu_for_auto(tmp_path):
    """A machine with no GPU but CUDA_VISIBLE_DEVICES set (copied job environments): the
    variable still picks the device to bind, but `auto` does not choose CUDA for it."""
    for environ in ({**NO_SMI, "CUDA_VISIBLE_DEVICES": "0,1"},
                    {**fake_smi(tmp_path, "No devices found.\n", rc=6),
                     "CUDA_VISIBLE_DEVICES": "0"}):
        assert visible_gpus(environ) != []
        assert answering_gpus(environ) == []
        assert resolve_backend("auto", bool(answering_gpus(environ))) == "cpu"


# --- select_gpu ------------------------------------------------------------------------------

def test_scheduler_narrowed_single_device_is_kept():
    # srun --gpus-per-task=1: Slurm gives each task one device; 4 tasks, 4 GPUs on the node.
    environ = {**NO_SMI, "CUDA_VISIBLE_DEVICES": "2", "SLURM_LOCALID": "2",
               "SLURM_NTASKS_PER_NODE": "4", "SLURM_STEP_ID": "0", "SLURM_STEP_GPUS": "0,1,2,3"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning allowed
        choice = select_gpu(2, 4, environ)
    assert choice == GpuChoice(device=0, visible_devices="2", warnings=[], n_visible=1,
                               remapped=False)
    assert environ["CUDA_VISIBLE_DEVICES"] == "2"


def test_narrowed_unknown_launcher_does_not_warn():
    environ = {**NO_SMI, "CUDA_VISIBLE_DEVICES": "GPU-1234"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        choice = select_gpu(0, 4, environ)
    assert (choice.device, choice.visible_devices, choice.warnings) == (0, "GPU-1234", [])


@pytest.mark.parametrize("local_rank, expected", [(0, "0"), (1, "1"), (2, "2"), (3, "3")])
def test_several_visible_devices_are_remapped_by_local_rank(local_rank, expected):
    environ = {**NO_SMI, "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 4 ranks on 4 GPUs: no warning
        choice = select_gpu(local_rank, 4, environ)
    assert choice.device == 0
    assert choice.visible_devices == expected
    assert choice.remapped and choice.n_visible == 4
    assert environ["CUDA_VISIBLE_DEVICES"] == expected


def test_remap_uses_the_listed_entries_not_positions():
    environ = {**NO_SMI, "CUDA_VISIBLE_DEVICES": "4,6"}
    assert select_gpu(1, 2, environ).visible_devices == "6"
    assert environ["CUDA_VISIBLE_DEVICES"] == "6"


def test_remap_from_nvidia_smi_when_cuda_visible_devices_unset(tmp_path):
    environ = fake_smi(tmp_path, SMI_TWO_GPUS)
    choice = select_gpu(1, 2, environ)
    assert choice.device == 0 and choice.remapped and choice.warnings == []
    assert environ["CUDA_VISIBLE_DEVICES"] == "GPU-bbbbbbbb-1111-1111-1111-111111111111"


def test_single_gpu_unset_is_left_unset(tmp_path):
    environ = fake_smi(tmp_path, SMI_TWO_GPUS.splitlines(keepends=True)[0])
    choice = select_gpu(0, 1, environ)
    assert (choice.device, choice.visible_devices, choice.remapped) == (0, None, False)
    assert "CUDA_VISIBLE_DEVICES" not in environ


def test_oversubscription_warns_and_mentions_mps():
    environ = {**NO_SMI, "CUDA_VISIBLE_DEVICES": "0,1", "MPI_LOCALRANKID": "3",
               "MPI_LOCALNRANKS": "4"}
    with pytest.warns(RuntimeWarning, match="4 ranks on this node share 2 GPU"):
        choice = select_gpu(environ=environ)  # rank and size from the environment
    assert choice.visible_devices == "1"  # 3 % 2
    assert len(choice.warnings) == 1 and "MPS" in choice.warnings[0]


def test_oversubscription_when_mpiexec_shares_one_exported_device():
    # CUDA_VISIBLE_DEVICES=0 mpiexec -n 4 ...: every rank gets the same single device.
    environ = {**NO_SMI, "CUDA_VISIBLE_DEVICES": "0", "MPI_LOCALRANKID": "1",
               "MPI_LOCALNRANKS": "4"}
    with pytest.warns(RuntimeWarning, match="4 ranks on this node share 1 GPU"):
        choice = select_gpu(environ=environ)
    assert (choice.device, choice.visible_devices, choice.remapped) == (0, "0", False)


def test_oversubscription_under_slurm_counts_step_gpus():
    environ = {**NO_SMI, "CUDA_VISIBLE_DEVICES": "0", "SLURM_LOCALID": "3",
               "SLURM_NTASKS_PER_NODE": "4", "SLURM_STEP_GPUS": "0,1"}
    with pytest.warns(RuntimeWarning, match="4 ranks on this node share 2 GPU"):
        select_gpu(environ=environ)


@pytest.mark.parametrize("value", [None, "", "-1", "NoDevFiles"])
def test_no_gpu(value):
    environ = dict(NO_SMI)
    if value is not None:
        environ["CUDA_VISIBLE_DEVICES"] = value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 8 CPU ranks and no GPU: nothing to warn about
        choice = select_gpu(3, 8, environ)
    assert choice.device is None and choice.n_visible == 0 and choice.warnings == []
    assert choice.visible_devices == value
    assert environ.get("CUDA_VISIBLE_DEVICES") == value  # untouched


def test_default_environ_is_the_process_environment():
    # select_gpu() with no arguments reads the launcher variables from os.environ and narrows
    # os.environ itself; run in a child process so this test process is left alone.
    code = ("import os, distsnn.parallel.devices as d; c = d.select_gpu(); "
            "print(c.device, c.visible_devices, os.environ['CUDA_VISIBLE_DEVICES'])")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "5,7", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    for name in ("LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "7", "7"]


def test_devices_module_imports_no_cuda_or_mpi():
    code = ("import sys, distsnn.parallel.devices; "
            "bad = [m for m in ('mpi4py', 'pygenn', 'cupy', 'torch') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
