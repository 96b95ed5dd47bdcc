"""Cross-node runs on a real two-node Slurm cluster on this machine (root only).

The ``pair`` fixture brings up ``launch/local_cluster.sh up`` in a temporary directory: two
compute nodes, ``node1`` and ``node2``, each a network namespace with its own hostname and
its own /tmp, and takes it down at the end of the module. Files that both nodes read go into
the cluster's shared folder (``pair.shared``); /tmp differs per node (node N's /tmp is the
host's ``DIR/nodeN/tmp``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from helpers.processes import DISTSNN, REPO, journal_chunks, openmpi_env, run
from helpers.slurm import (
    SlurmCluster,
    assert_refuses_without_root,
    cluster_down,
    cluster_up,
    preempt_and_resume,
    submit,
)

LOCAL_CLUSTER = REPO / "launch" / "local_cluster.sh"
CPU_TEMPLATE = REPO / "launch" / "sbatch_cpu.sh"
NODES = ("node1", "node2")


@dataclass
class Pair(SlurmCluster):
    @property
    def shared(self) -> Path:
        return self.directory / "shared"

    def node_tmp(self, node: str) -> Path:
        """Where the host sees the /tmp of ``node``."""
        return self.directory / node / "tmp"

    def srun(self, nodes: int, ntasks: int, args: list[str], timeout: float = 120,
             env: Optional[dict] = None, nodelist: Optional[str] = None, mpi: str = "pmi2"
             ) -> subprocess.CompletedProcess:
        """``srun -N NODES -n NTASKS --mpi=MPI ARGS`` from the working tree, bounded."""
        command = ["srun", f"-N{nodes}", f"-n{ntasks}", f"--mpi={mpi}",
                   f"--time={max(1, int(timeout // 60) + 1)}",
                   *([f"--nodelist={nodelist}"] if nodelist else []), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=self.env(env), cwd=REPO)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The two-node cluster, up for this module."""
    directory = tmp_path_factory.mktemp("pair")
    conf = cluster_up(LOCAL_CLUSTER, directory, "LOCAL_CLUSTER_PORTS")
    try:
        yield Pair(directory=directory, conf=conf)
    finally:
        cluster_down(LOCAL_CLUSTER, directory)


def _evaluate_args(files: dict, out: Path, build: Path | str) -> list[str]:
    return ["evaluate", str(files["net"]), "--data", str(files["data"]), "-t", "5",
            "--no-progress", "-o", str(out), "--build-dir", str(build)]


@pytest.fixture(scope="module")
def shared_files(pair, small_files) -> dict:
    """The small network and dataset, copied where both nodes read them (not /tmp)."""
    folder = pair.shared / "small"
    folder.mkdir(exist_ok=True)
    return {**small_files, "net": Path(shutil.copy(small_files["net"], folder)),
            "data": Path(shutil.copy(small_files["data"], folder)), "dir": folder}


@pytest.fixture(scope="module")
def reference(shared_files) -> dict:
    """The same evaluation on one rank (on the host)."""
    folder = shared_files["dir"]
    out = folder / "reference.json"
    proc = run([DISTSNN, *_evaluate_args(shared_files, out, folder / "build-reference")],
               timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def node_local_run(pair, shared_files) -> tuple[dict, str]:
    """4 ranks on 2 nodes, building into /tmp (a different directory on each node)."""
    out = shared_files["dir"] / "two-nodes-local-build.json"
    build = f"/tmp/distsnn-build-{uuid.uuid4().hex[:8]}"
    proc = pair.srun(2, 4, [DISTSNN, *_evaluate_args(shared_files, out, build)], timeout=240)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(out.read_text()), build


@pytest.mark.slurm
@pytest.mark.mpi
def test_doctor_places_ranks_binds_gpus_and_budgets_memory_per_node(pair):
    """3 ranks on 2 nodes (Slurm's block distribution: ranks 0, 1 on node1, rank 2 alone on
    node2): node-local ranks and sizes, the GPU each rank would bind from
    CUDA_VISIBLE_DEVICES=0,1 on its node, and the memory budget divided by its node's ranks."""
    proc = pair.srun(2, 3, [DISTSNN, "doctor", "--json"], timeout=120,
                     env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(proc.stdout)
    ranks = sorted(report["ranks"], key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1, 2] and all(r["size"] == 3 for r in ranks)
    assert [r["host"] for r in ranks] == ["node1", "node1", "node2"]
    assert [(r["local_rank"], r["local_size"]) for r in ranks] == [(0, 2), (1, 2), (0, 1)]
    assert all(r["cuda_visible_devices"] == "0,1" for r in ranks)
    assert [r["gpu_binding"] for r in ranks] == ["0", "1", "0"]
    budgets = [r["memory_budget_bytes"] for r in ranks]
    assert budgets[0] == budgets[1] and abs(budgets[2] - 2 * budgets[0]) <= 1, budgets
    assert "/ 2 rank(s) on this node" in ranks[0]["memory_budget_source"]
    assert "/ 1 rank(s) on this node" in ranks[2]["memory_budget_source"]
    assert not report["errors"], report["errors"]


@pytest.mark.slurm
@pytest.mark.mpi
def test_evaluation_across_nodes_matches_one_rank(node_local_run, reference, shared_files):
    results, _ = node_local_run
    assert results["ranks"] == 4
    assert results["metrics"]["5"]["sparse_categorical_accuracy"]["total"] == shared_files["n"]
    assert results["metrics"] == reference["metrics"]
    assert results["spikes"] == reference["spikes"]
    assert reference["ranks"] == 1


@pytest.mark.slurm
@pytest.mark.mpi
def test_node_local_build_directory_is_built_once_per_node(pair, node_local_run):
    results, build = node_local_run
    # build_reused: one entry per rank (rank order); the node's local rank 0 builds, the
    # others load its build (and report reused=True). Ranks 0, 1 on node1; 2, 3 on node2.
    assert results["build_reused"] == [False, True, False, True], results["build_reused"]
    relative = build.removeprefix("/tmp/")
    for node in NODES:  # each node's own /tmp holds a complete build
        local = pair.node_tmp(node) / relative
        assert any(local.glob("*_CODE/.distsnn-complete")), sorted(local.iterdir())
    assert not Path(build).exists()  # and the host's /tmp has none


@pytest.mark.slurm
@pytest.mark.mpi
def test_shared_build_directory_is_built_once_in_all(pair, shared_files):
    out = shared_files["dir"] / "two-nodes-shared-build.json"
    build = pair.shared / "build-shared"
    proc = pair.srun(2, 4, [DISTSNN, *_evaluate_args(shared_files, out, build)], timeout=240)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    reused = json.loads(out.read_text())["build_reused"]
    assert len(reused) == 4
    # both nodes' local rank 0 take the build lock in turn: the first builds, the second
    # finds the complete build and reuses it
    assert reused.count(False) == 1, reused
    assert reused[0] is False or reused[2] is False, reused


@pytest.mark.slurm
@pytest.mark.mpi
def test_open_mpi_across_nodes_matches_one_rank(pair, shared_files, reference):
    """Open MPI 5 (PyPI's wheel, launch/setup.sh) under ``srun --mpi=pmix``: Slurm's PMIx
    server starts the ranks, Open MPI's TCP transport carries the reductions between nodes."""
    out = shared_files["dir"] / "two-nodes-openmpi.json"
    build = f"/tmp/distsnn-build-{uuid.uuid4().hex[:8]}"
    proc = pair.srun(2, 4, [DISTSNN, *_evaluate_args(shared_files, out, build)], timeout=240,
                     env=openmpi_env(), mpi="pmix")
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    results = json.loads(out.read_text())
    assert results["versions"]["mpi_library"].startswith("Open MPI v5"), results["versions"]
    assert results["ranks"] == 4 and [d["host"] for d in results["devices"]] == \
        ["node1", "node1", "node2", "node2"]
    assert results["metrics"] == reference["metrics"]
    assert results["spikes"] == reference["spikes"]


STEPS = "40000,120000"  # slow enough (~0.2 s per example) for a node to be lost mid-run
PEER_TIMEOUT_S = 10


def _slow_args(files: dict, out: Path, build: Path, *extra: str) -> list[str]:
    return ["evaluate", str(files["net"]), "--data", str(files["data"]), "-t", STEPS,
            "-o", str(out), "--build-dir", str(build), "--no-progress", "--chunk-size", "5",
            *extra]


@pytest.fixture(scope="module")
def slow(pair, poisson_files) -> dict:
    """A Poisson network on the shared folder and its uninterrupted one-rank results."""
    folder = pair.shared / "slow"
    folder.mkdir(exist_ok=True)
    files = {"net": Path(shutil.copy(poisson_files["net"], folder)),
             "data": Path(shutil.copy(poisson_files["data"], folder)),
             "build": folder / "build", "dir": folder}
    out = folder / "reference.json"
    proc = run([DISTSNN, *_slow_args(files, out, files["build"])], timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {**files, "reference": json.loads(out.read_text())}


def _node_rank_pids(node_id: int) -> list[int]:
    """The distsnn ranks Slurm started on node ``node_id`` (seen from the host)."""
    pids = []
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"SLURM_NODEID={node_id}".encode() in env and b"evaluate" in argv \
                and any(e.startswith(b"PMI_RANK=") for e in env):
            pids.append(pid)
    return pids


def _kill_node2_mid_run(pair: Pair, slow: dict, out: Path, kill_on_bad_exit: int,
                        sig: signal.Signals = signal.SIGKILL
                        ) -> tuple[subprocess.CompletedProcess, float]:
    """``srun -N2 -n2`` of the slow evaluation; ``sig`` to node2's rank once the journal holds
    two chunks. The finished job and the seconds from the signal to its end."""
    command = ["srun", "-N2", "-n2", "--mpi=pmi2", f"--kill-on-bad-exit={kill_on_bad_exit}",
               "--time=5", DISTSNN, *_slow_args(slow, out, slow["build"], "--peer-timeout",
                                                 str(PEER_TIMEOUT_S))]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=pair.env(), cwd=REPO)
    try:
        deadline = time.monotonic() + 240
        while journal_chunks(out) < 2:
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()
            time.sleep(0.1)
        victims = _node_rank_pids(1)
        assert len(victims) == 1
        os.kill(victims[0], sig)
        killed = time.monotonic()
        stdout, stderr = job.communicate(timeout=PEER_TIMEOUT_S + 90)
    finally:
        if job.poll() is None:
            job.kill()
    ended = time.monotonic() - killed
    assert _node_rank_pids(0) == [] and _node_rank_pids(1) == []  # no rank left running
    return subprocess.CompletedProcess(command, job.returncode, stdout, stderr), ended


def _resume_on_node1(pair: Pair, slow: dict, out: Path) -> None:
    """Rerun with --resume on node1 alone: the uninterrupted results."""
    done = journal_chunks(out)
    resumed = pair.srun(1, 1, [DISTSNN, *_slow_args(slow, out, slow["build"], "--resume")],
                        timeout=240, nodelist="node1")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from the journal {out}.journal" in resumed.stderr and done >= 2
    got, want = json.loads(out.read_text()), slow["reference"]
    assert got["journal"]["resumed_examples"] > 0
    assert got["metrics"] == want["metrics"] and got["spikes"] == want["spikes"]


@pytest.mark.slurm
@pytest.mark.mpi
def test_a_lost_node_is_ended_by_the_launcher_and_resumes_on_the_other(pair, slow):
    """``srun --kill-on-bad-exit=1`` (the templates' setting): when node2's rank dies, Slurm
    ends node1's at once; the journal on the shared folder holds what was done."""
    out = slow["dir"] / "lost-launcher.json"
    job, seconds = _kill_node2_mid_run(pair, slow, out, kill_on_bad_exit=1)
    assert seconds < 60, job.stderr
    assert job.returncode != 0 and "node2: task 1: Killed" in job.stderr, job.stderr
    _resume_on_node1(pair, slow, out)


@pytest.mark.slurm
@pytest.mark.mpi
def test_a_lost_node_is_ended_by_the_watchdog_when_the_launcher_waits(pair, slow):
    """``srun --kill-on-bad-exit=0``: Slurm lets node1's rank run on, and MPICH's TCP transport
    blocks for good in its next message to the dead rank (the final reduction, or even a
    heartbeat send). distsnn's watchdog, which decides without MPI, ends node1's rank within
    the peer timeout and a grace period, with one line naming the lost rank; exit 75."""
    out = slow["dir"] / "lost-watchdog.json"
    job, seconds = _kill_node2_mid_run(pair, slow, out, kill_on_bad_exit=0)
    assert seconds < PEER_TIMEOUT_S + 30, job.stderr
    assert "node1: task 0: Exited with exit code 75" in job.stderr, job.stderr
    errors = [line for line in job.stderr.splitlines() if line.startswith("distsnn: error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"distsnn: error: rank 1 not heard from for {PEER_TIMEOUT_S} s"), job.stderr
    assert f"progress saved in {out}.journal" in errors[0]
    _resume_on_node1(pair, slow, out)


@pytest.mark.slurm
@pytest.mark.mpi
def test_a_hung_node_is_ended_by_the_watchdog(pair, slow):
    """SIGSTOP of node2's rank: it neither exits nor answers, so no launcher notices; node1's
    watchdog ends its rank (exit 75, one line naming rank 1), and srun, told to end the job
    when a task fails, then kills the stopped one. The journal resumes on node1."""
    out = slow["dir"] / "hung.json"
    job, seconds = _kill_node2_mid_run(pair, slow, out, kill_on_bad_exit=1, sig=signal.SIGSTOP)
    assert seconds < PEER_TIMEOUT_S + 30, job.stderr
    assert "node1: task 0: Exited with exit code 75" in job.stderr, job.stderr
    errors = [line for line in job.stderr.splitlines() if line.startswith("distsnn: error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"distsnn: error: rank 1 not heard from for {PEER_TIMEOUT_S} s"), job.stderr
    _resume_on_node1(pair, slow, out)


@pytest.mark.slurm
@pytest.mark.mpi
def test_a_two_node_batch_job_requeued_after_preemption_resumes_exactly(pair, slow):
    """``sbatch -N2 -n2 launch/sbatch_cpu.sh evaluate ...`` pre-empted (SIGTERM to its tasks)
    part-way: distsnn saves the journal (exit 143), the template requeues the job, and the
    rerun on both nodes says in its log that it resumes and ends with the uninterrupted
    results."""
    out = slow["dir"] / "requeued.json"
    job = submit(pair, CPU_TEMPLATE, _slow_args(slow, out, slow["build"]), ntasks=2,
                 timeout=300, sbatch_options=["--nodes=2"])
    result = preempt_and_resume(pair, job, out, "TERM")
    assert result.ok and result.restarts == 1, result.describe()
    assert "stopped by a signal (exit 143); requeueing job" in result.output, result.describe()
    assert f"resuming from the journal {out}.journal" in result.output, result.describe()
    got = json.loads(out.read_text())
    assert got["ranks"] == 2 and {d["host"] for d in got["devices"]} == set(NODES)
    assert 0 < got["journal"]["resumed_examples"] < 96, got["journal"]
    assert got["metrics"] == slow["reference"]["metrics"]
    assert got["spikes"] == slow["reference"]["spikes"]


# --- the script without the cluster -----------------------------------------------------------


def test_local_cluster_script_is_valid_executable_bash():
    assert LOCAL_CLUSTER.stat().st_mode & stat.S_IXUSR, f"{LOCAL_CLUSTER} is not executable"
    result = run(["bash", "-n", str(LOCAL_CLUSTER)], timeout=30)
    assert result.returncode == 0, result.stderr
    usage = run(["bash", str(LOCAL_CLUSTER), "sideways"], timeout=30)
    assert usage.returncode == 2 and "local_cluster.sh up" in usage.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="needs root and runuser to try local_cluster.sh as another user")
def test_local_cluster_refuses_without_root(tmp_path):
    assert_refuses_without_root(LOCAL_CLUSTER, tmp_path / "c")
