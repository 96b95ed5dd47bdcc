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

from helpers.processes import DISTSNN, REPO, journal_chunks, run
from helpers.slurm import cluster_down, cluster_up, slurm_env

LOCAL_CLUSTER = REPO / "launch" / "local_cluster.sh"
NODES = ("node1", "node2")


@dataclass
class Pair:
    directory: Path
    conf: Path

    @property
    def shared(self) -> Path:
        return self.directory / "shared"

    def node_tmp(self, node: str) -> Path:
        """Where the host sees the /tmp of ``node``."""
        return self.directory / node / "tmp"

    def env(self, extra: Optional[dict] = None) -> dict:
        return slurm_env(self.conf, extra)

    def srun(self, nodes: int, ntasks: int, args: list[str], timeout: float = 120,
             env: Optional[dict] = None, nodelist: Optional[str] = None
             ) -> subprocess.CompletedProcess:
        """``srun -N NODES -n NTASKS --mpi=pmi2 ARGS`` from the working tree, bounded."""
        command = ["srun", f"-N{nodes}", f"-n{ntasks}", "--mpi=pmi2",
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
def test_doctor_sees_four_ranks_on_two_nodes(pair):
    proc = pair.srun(2, 4, [DISTSNN, "doctor", "--json"], timeout=120,
                     env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(proc.stdout)
    ranks = sorted(report["ranks"], key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1, 2, 3]
    assert all(r["size"] == 4 for r in ranks)
    assert {r["host"] for r in ranks} == set(NODES)
    for node in NODES:
        on_node = [r for r in ranks if r["host"] == node]
        # Slurm's default block distribution: two consecutive ranks per node
        assert sorted((r["local_rank"], r["local_size"]) for r in on_node) == [(0, 2), (1, 2)], \
            on_node
    assert [r["host"] for r in ranks] == ["node1", "node1", "node2", "node2"]
    # the exported CUDA_VISIBLE_DEVICES reaches every rank on both nodes
    assert all(r["cuda_visible_devices"] == "0,1" for r in ranks)
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


STEPS = "4000,12000"  # slow enough (~0.05 s per example) for a node to be lost mid-run


def _slow_args(files: dict, out: Path, build: Path, *extra: str) -> list[str]:
    return [DISTSNN, "evaluate", str(files["net"]), "--data", str(files["data"]), "-t", STEPS,
            "-o", str(out), "--build-dir", str(build), "--no-progress", "--chunk-size", "5",
            *extra]


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


@pytest.mark.slurm
@pytest.mark.mpi
def test_a_lost_node_ends_the_job_and_it_resumes_on_the_surviving_node(pair, poisson_files):
    """SIGKILL of node2's rank mid-run under `srun --kill-on-bad-exit=1`: the launcher ends
    node1's rank at once (a hung rank, which exits nothing, is the watchdog's: see
    tests/jobs/test_jobs.py); nothing is left running, the journal on the shared folder holds
    what was done, and a rerun on node1 alone resumes to the uninterrupted results."""
    folder = pair.shared / "lost"
    folder.mkdir(exist_ok=True)
    files = {"net": Path(shutil.copy(poisson_files["net"], folder)),
             "data": Path(shutil.copy(poisson_files["data"], folder))}
    build = pair.shared / "build-lost"
    reference = run(_slow_args(files, folder / "reference.json", build), timeout=300)
    assert reference.returncode == 0, reference.stderr
    out = folder / "lost.json"
    command = ["srun", "-N2", "-n2", "--mpi=pmi2", "--kill-on-bad-exit=1", "--time=5",
               *_slow_args(files, out, build)]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=pair.env(), cwd=REPO)
    deadline = time.monotonic() + 240
    while journal_chunks(out) < 2:
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.1)
    victims = _node_rank_pids(1)
    assert len(victims) == 1
    os.kill(victims[0], signal.SIGKILL)
    start = time.monotonic()
    _, stderr = job.communicate(timeout=90)
    assert time.monotonic() - start < 60, stderr
    assert job.returncode != 0 and "node2: task 1: Killed" in stderr, stderr
    assert _node_rank_pids(0) == [] and _node_rank_pids(1) == []  # no rank left running
    done = journal_chunks(out)
    resumed = pair.srun(1, 1, [*_slow_args(files, out, build), "--resume"], timeout=240,
                        nodelist="node1")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from the journal {out}.journal" in resumed.stderr and done >= 2
    got, want = json.loads(out.read_text()), json.loads((folder / "reference.json").read_text())
    assert got["journal"]["resumed_examples"] > 0
    assert got["metrics"] == want["metrics"] and got["spikes"] == want["spikes"]


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
    result = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(LOCAL_CLUSTER), "up",
                             str(tmp_path / "c")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 3, result.stderr
    assert "must run as root" in result.stderr
