"""Launch scripts: a real one-node Slurm cluster (root only), sbatch templates, mpirun.sh.

The ``cluster`` fixture brings up Slurm with ``launch/local_slurm.sh up`` in a temporary
directory (on free ports, so it does not collide with another local cluster) and takes it
down at the end of the session. :func:`submit_and_wait` submits a batch script and waits,
bounded, for its end; to run a distsnn command on 2 ranks under srun::

    job = submit_and_wait(cluster, CPU_TEMPLATE, ["evaluate", "--network", net, ...], ntasks=2)
    assert job.ok, job.describe()
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat

import pytest

from helpers.processes import DISTSNN, REPO, run
from helpers.slurm import (
    VENV,
    SlurmCluster,
    assert_refuses_without_root,
    cluster_down,
    cluster_up,
    preempt_and_resume,
    submit,
    submit_and_wait,
)

LAUNCH = REPO / "launch"
LOCAL_SLURM = LAUNCH / "local_slurm.sh"
CPU_TEMPLATE = LAUNCH / "sbatch_cpu.sh"
GPU_TEMPLATE = LAUNCH / "sbatch_gpu.sh"
MPIRUN = LAUNCH / "mpirun.sh"

# A small MPI program: what each rank of the job sees, as one write per line (print() writes
# the text and the newline separately, and the launcher may interleave two ranks' writes).
RANKS_PROGRAM = (
    "import os, sys, distsnn.parallel.devices as d; "
    "from distsnn.parallel.communicator import MPICommunicator; c = MPICommunicator(); "
    "sys.stdout.write(f'rank {c.rank} of {c.size} local {c.local_rank}/{c.local_size} '"
    "f'env {d.local_rank_from_env()}/{d.local_size_from_env()} '"
    "f'slurm_localid {os.environ.get(\"SLURM_LOCALID\")}\\n'); sys.stdout.flush()"
)
RANK_LINE = re.compile(r"rank (\d+) of (\d+) local (\d+)/(\d+) env (\S+)/(\S+) "
                       r"slurm_localid (\d+|None)")


# --- the cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A one-node Slurm cluster, up for the whole session (skipped where it cannot be had)."""
    directory = tmp_path_factory.mktemp("slurm")
    conf = cluster_up(LOCAL_SLURM, directory, "LOCAL_SLURM_PORTS")
    try:
        yield SlurmCluster(directory=directory, conf=conf)
    finally:
        cluster_down(LOCAL_SLURM, directory)


def rank_lines(output: str) -> list[tuple]:
    return sorted(tuple(m.groups()) for m in RANK_LINE.finditer(output))


# --- tests on the real cluster -----------------------------------------------------------------


@pytest.mark.slurm
@pytest.mark.mpi
def test_cpu_template_runs_two_mpi_ranks_under_srun_pmi2(cluster):
    job = submit_and_wait(cluster, CPU_TEMPLATE, ["-c", RANKS_PROGRAM], ntasks=2,
                          env={"DISTSNN_CMD": "python"})
    print(job.describe())
    assert job.ok, job.describe()
    assert "srun --mpi=pmi2 python -c" in job.output  # the template's default plugin
    # Both ranks of one 2-rank MPI job (not two singletons of size 1), on one node; the
    # launcher-variable route of distsnn.parallel.devices agrees with MPI's node-local communicator.
    assert rank_lines(job.output) == [
        ("0", "2", "0", "2", "0", "2", "0"),
        ("1", "2", "1", "2", "1", "2", "1"),
    ], job.describe()
    assert job.seconds < 60


@pytest.mark.slurm
def test_failing_job_is_reported_with_its_exit_code(cluster):
    job = submit_and_wait(cluster, CPU_TEMPLATE,
                          ["-c", "import sys; print('failing on purpose'); sys.exit(3)"],
                          ntasks=1, env={"DISTSNN_CMD": "python"})
    assert job.state == "FAILED" and job.exit_code == 3, job.describe()
    assert "failing on purpose" in job.output
    assert not job.ok


@pytest.mark.slurm
def test_sbatch_template_runs_distsnn_evaluate_on_two_tasks(cluster, small_files, tmp_path):
    """The CPU template's default command is the venv's `distsnn`: a real 2-task evaluation."""
    out = tmp_path / "slurm_results.json"
    job = submit_and_wait(cluster, CPU_TEMPLATE,
                          ["evaluate", str(small_files["net"]), "--data",
                           str(small_files["data"]), "-t", "20", "--no-progress",
                           "--build-dir", str(tmp_path / "build"), "--output", str(out)],
                          ntasks=2, timeout=240)
    assert job.ok, job.describe()
    assert "srun --mpi=pmi2 distsnn evaluate" in job.output
    results = json.loads(out.read_text())
    assert results["ranks"] == 2
    assert results["metrics"]["20"]["sparse_categorical_accuracy"]["total"] == small_files["n"]
    assert results["spikes"]["examples"] == small_files["n"]


@pytest.mark.slurm
@pytest.mark.mpi
def test_signalled_job_requeues_itself_and_resumes_from_its_journal(cluster, poisson_files,
                                                                    tmp_path):
    """SIGUSR1 to the tasks part-way (what ``--signal=USR1@120`` sends before the time limit):
    distsnn saves its journal and exits 138, the template runs ``scontrol requeue``, and the
    requeued job, rerunning the same command, ends with the results of an uninterrupted run."""
    build = tmp_path / "build"

    def argv(out, *extra):
        return ["evaluate", str(poisson_files["net"]), "--data", str(poisson_files["data"]),
                "-t", "4000,12000", "-o", str(out), "--build-dir", str(build), "--no-progress",
                *extra]

    reference = tmp_path / "reference.json"
    proc = run([DISTSNN, *argv(reference)], timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "requeued.json"
    job = submit(cluster, CPU_TEMPLATE, argv(out, "--chunk-size", "4"), ntasks=2, timeout=240)
    result = preempt_and_resume(cluster, job, out, "USR1")
    assert result.ok and result.restarts == 1, result.describe()
    assert "stopped by a signal (exit 138); requeueing job" in result.output, result.describe()
    got, expected = json.loads(out.read_text()), json.loads(reference.read_text())
    assert 0 < got["journal"]["resumed_examples"] < 96, got["journal"]
    assert got["ranks"] == 2
    assert got["metrics"] == expected["metrics"] and got["spikes"] == expected["spikes"]
    assert not (tmp_path / "requeued.json.journal").exists()


# --- the scripts without Slurm ----------------------------------------------------------------


@pytest.mark.parametrize("script", [LOCAL_SLURM, CPU_TEMPLATE, GPU_TEMPLATE, MPIRUN])
def test_scripts_are_valid_executable_bash(script):
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    result = run(["bash", "-n", str(script)], timeout=30)
    assert result.returncode == 0, result.stderr


def _fake_srun(tmp_path) -> dict:
    """An environment whose `srun` prints its arguments one per line."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    srun = bindir / "srun"
    srun.write_text('#!/bin/bash\nfor a in "$@"; do printf "<%s>\\n" "$a"; done\n')
    srun.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("script, default_mpi", [(CPU_TEMPLATE, "pmi2"), (GPU_TEMPLATE, "pmix")])
def test_templates_pass_arguments_through(tmp_path, script, default_mpi):
    env = {**_fake_srun(tmp_path), "DISTSNN_VENV": str(VENV)}
    env.pop("DISTSNN_CMD", None)
    args = ["evaluate", "--data", "a file with spaces.npz", "--label", "x'y\"z", ""]
    result = run(["bash", str(script), *args], timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"<--mpi={default_mpi}>", "<distsnn>"] + [
        f"<{a}>" for a in args]
    # the plugin and the command are configurable
    env.update(DISTSNN_SRUN_MPI="pmi2", DISTSNN_CMD="python -m distsnn")
    result = run(["bash", str(script), "doctor", "--json"], timeout=30, env=env)
    assert result.stdout.splitlines() == ["<--mpi=pmi2>", "<python>", "<-m>", "<distsnn>",
                                          "<doctor>", "<--json>"]


def test_templates_reject_a_bad_venv(tmp_path):
    env = {**_fake_srun(tmp_path), "DISTSNN_VENV": str(tmp_path / "no-venv")}
    result = run(["bash", str(CPU_TEMPLATE), "doctor"], timeout=30, env=env)
    assert result.returncode == 2 and "no bin/python" in result.stderr


def test_gpu_template_asks_for_one_gpu_per_task():
    directives = [line for line in GPU_TEMPLATE.read_text().splitlines()
                  if line.startswith("#SBATCH")]
    assert "#SBATCH --gpus-per-task=1" in directives
    assert any(d.startswith("#SBATCH --ntasks-per-node=") for d in directives)
    assert any(d.startswith("#SBATCH --cpus-per-task=") for d in directives)
    cpu = [line for line in CPU_TEMPLATE.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --ntasks=2" in cpu


@pytest.mark.mpi
def test_mpirun_script_runs_two_ranks():
    env = {"DISTSNN_CMD": "python"}
    result = run(["bash", str(MPIRUN), "2", "-c", RANKS_PROGRAM], timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = rank_lines(result.stdout)
    assert [line[:4] for line in lines] == [("0", "2", "0", "2"), ("1", "2", "1", "2")]
    # Hydra's MPI_LOCALRANKID gives the same node-local ranks before MPI starts
    assert [line[4:6] for line in lines] == [("0", "2"), ("1", "2")]


def test_mpirun_script_usage_error():
    result = run(["bash", str(MPIRUN), "two", "evaluate"], timeout=30)
    assert result.returncode == 2 and "usage" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="needs root and runuser to try local_slurm.sh as another user")
def test_local_slurm_refuses_without_root(tmp_path):
    assert_refuses_without_root(LOCAL_SLURM, tmp_path / "c")
